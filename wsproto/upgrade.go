package wsproto

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gobwas/ws"
)

// Upgrader checks a client's opening handshake and answers it. The RFC 6455
// checks (method, HTTP version, Host, Upgrade, Connection, key length,
// version) and the 101 response are gobwas/ws's; Upgrader adds what gobwas
// leaves out: a key that is really base64 of 16 bytes, 426 for a missing
// version, the Origin allow-list, subprotocol and permessage-deflate
// negotiation, and an authorization hook. The zero value accepts any
// well-formed handshake.
type Upgrader struct {
	// Protocol is the subprotocol selected when the client offers it
	// (Sec-WebSocket-Protocol). Empty selects none.
	Protocol string
	// Origins is the Origin allow-list; nil allows every origin.
	Origins *OriginPolicy
	// Compression enables permessage-deflate negotiation.
	Compression bool
	// Authorize, when set, sees the request head after every other check
	// passed and may refuse the upgrade with a *HandshakeError. Whatever it
	// returns as state is handed back in Handshake.State.
	Authorize func(head []byte) (state any, err error)
	// Page is the body of the answer to a GET without an Upgrade header:
	// a browser opening the endpoint's URL as a page. The answer is still
	// 426 with Upgrade: websocket; Page tells the person reading it what
	// the endpoint is and how to connect. Empty: a one-line reason.
	Page string
}

// Handshake is what an accepted handshake negotiated.
type Handshake struct {
	Protocol    string // selected subprotocol, or ""
	Compression bool   // permessage-deflate negotiated
	State       any    // what Upgrader.Authorize returned
}

// HandshakeError is a refused handshake: the HTTP status and short reason
// sent to the client.
type HandshakeError struct {
	Status int
	Reason string
	header string // extra response header lines, each ending in CRLF
	body   string // the response body, if not Reason
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("wsproto: handshake refused: %d %s", e.Status, e.Reason)
}

// Result names the refusal for metrics and logs.
func (e *HandshakeError) Result() HandshakeResult {
	switch e.Status {
	case http.StatusUpgradeRequired:
		return ResultBadVersion
	case http.StatusUnauthorized:
		return ResultUnauthorized
	case http.StatusForbidden:
		return ResultForbiddenOrigin
	case http.StatusRequestHeaderFieldsTooLarge:
		return ResultTooLarge
	case http.StatusInternalServerError, http.StatusServiceUnavailable:
		return ResultInternal
	}
	return ResultBadRequest
}

// HandshakeResult is the outcome of an opening handshake. Its String is the
// label of pushgate_handshakes_total{result}.
type HandshakeResult uint8

// Handshake results.
const (
	ResultOK              HandshakeResult = iota
	ResultBadRequest                      // malformed or not a WebSocket handshake
	ResultBadVersion                      // 426
	ResultUnauthorized                    // 401
	ResultForbiddenOrigin                 // 403
	ResultTooLarge                        // 431
	ResultTimeout                         // no complete handshake in time
	ResultInternal                        // 500, 503: the server could not take it
	NumHandshakeResults
)

var handshakeResultLabels = [NumHandshakeResults]string{
	"ok", "bad_request", "bad_version", "unauthorized", "forbidden_origin", "too_large", "timeout", "internal_error",
}

func (r HandshakeResult) String() string { return handshakeResultLabels[r] }

// Refusals pushgate makes itself (gobwas/ws makes the others).
var (
	ErrMissingVersion = &HandshakeError{
		Status: http.StatusUpgradeRequired,
		Reason: "Sec-WebSocket-Version 13 required",
		header: "Sec-WebSocket-Version: 13\r\n",
	}
	ErrBadKey          = &HandshakeError{Status: http.StatusBadRequest, Reason: "Sec-WebSocket-Key is not base64 of 16 bytes"}
	ErrForbiddenOrigin = &HandshakeError{Status: http.StatusForbidden, Reason: "origin not allowed"}
	ErrBadRequestLine  = &HandshakeError{Status: http.StatusBadRequest, Reason: "malformed request line"}
	ErrHeadersTooLarge = &HandshakeError{Status: http.StatusRequestHeaderFieldsTooLarge, Reason: "request headers too large"}
	// ErrMethodNotAllowed refuses a request other than GET on an endpoint
	// that takes only GET (an event stream).
	ErrMethodNotAllowed = &HandshakeError{Status: http.StatusMethodNotAllowed, Reason: "only GET opens this endpoint", header: "Allow: GET\r\n"}
)

// Unauthorized is a 401 refusal for a missing or invalid bearer token; the
// response carries WWW-Authenticate (RFC 6750).
func Unauthorized(reason string) *HandshakeError {
	return &HandshakeError{
		Status: http.StatusUnauthorized,
		Reason: reason,
		header: "WWW-Authenticate: Bearer realm=\"pushgate\"\r\n",
	}
}

// Upgrade answers the handshake in head, a complete request head as read by
// ReadHead, writing the response to w. A refusal is returned as a
// *HandshakeError after its response was written; any other error is a
// failure to write.
func (u *Upgrader) Upgrade(w io.Writer, head []byte) (Handshake, error) {
	// gobwas/ws returns without a response for a malformed request line.
	method, _, ok := RequestTarget(head)
	if !ok {
		return Handshake{}, WriteRefusal(w, ErrBadRequestLine)
	}
	if _, ok := HeaderValue(head, "Sec-WebSocket-Version"); !ok {
		if _, ok := HeaderValue(head, "Upgrade"); !ok && string(method) == http.MethodGet {
			return Handshake{}, WriteRefusal(w, u.notWebSocket()) // a browser's page request
		}
		return Handshake{}, WriteRefusal(w, ErrMissingVersion)
	}
	var (
		hs    Handshake
		state any
		dn    deflateNegotiator
	)
	g := ws.Upgrader{
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			if err := u.check(head); err != nil {
				return nil, rejection(err)
			}
			if u.Authorize != nil {
				var err error
				if state, err = u.Authorize(head); err != nil {
					return nil, rejection(err)
				}
			}
			return ws.HandshakeHeaderString(""), nil
		},
	}
	if u.Protocol != "" {
		g.Protocol = func(p []byte) bool { return string(p) == u.Protocol }
	}
	if u.Compression {
		g.Negotiate = dn.negotiate
	}
	ghs, err := g.Upgrade(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(head), w})
	if err != nil {
		var rej *ws.ConnectionRejectedError
		if errors.As(err, &rej) {
			return hs, &HandshakeError{Status: rej.StatusCode(), Reason: rej.Error()}
		}
		return hs, err
	}
	hs.Protocol = ghs.Protocol
	hs.Compression = dn.accepted
	hs.State = state
	return hs, nil
}

// notWebSocket is the answer to a plain GET: 426 (RFC 9110 §15.5.22 wants
// the Upgrade header with it) and Page.
func (u *Upgrader) notWebSocket() *HandshakeError {
	body := u.Page
	if body != "" && !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	return &HandshakeError{
		Status: http.StatusUpgradeRequired,
		Reason: "not a WebSocket handshake (no Upgrade header)",
		header: "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
		body:   body,
	}
}

// check makes the checks gobwas/ws does not.
func (u *Upgrader) check(head []byte) *HandshakeError {
	key, _ := HeaderValue(head, "Sec-WebSocket-Key")
	var raw [18]byte
	if n, err := base64.StdEncoding.Decode(raw[:], key); err != nil || n != 16 {
		return ErrBadKey
	}
	if origin, ok := HeaderValue(head, "Origin"); ok && !u.Origins.Allows(string(origin)) {
		return ErrForbiddenOrigin
	}
	return nil
}

// rejection turns a refusal into the error gobwas/ws answers with.
func rejection(err error) error {
	var he *HandshakeError
	if !errors.As(err, &he) {
		he = &HandshakeError{Status: http.StatusInternalServerError, Reason: "handshake check failed"}
	}
	opts := []ws.RejectOption{ws.RejectionStatus(he.Status), ws.RejectionReason(he.Reason)}
	if he.header != "" {
		opts = append(opts, ws.RejectionHeader(ws.HandshakeHeaderString(he.header)))
	}
	return ws.RejectConnectionError(opts...)
}

// WriteRefusal writes e as a complete HTTP response to w and returns e, or
// the write error.
func WriteRefusal(w io.Writer, e *HandshakeError) error {
	body := e.body
	if body == "" {
		body = e.Reason + "\n"
	}
	resp := "HTTP/1.1 " + strconv.Itoa(e.Status) + " " + http.StatusText(e.Status) + "\r\n" +
		e.header +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
		"Connection: close\r\n\r\n" + body
	if _, err := io.WriteString(w, resp); err != nil {
		return err
	}
	return e
}

// OriginPolicy is an Origin allow-list. Entries are exact origins
// ("https://app.example.com"), a wildcard for one or more subdomain labels
// ("https://*.example.com"), or "*" for any. Matching ignores ASCII case.
type OriginPolicy struct {
	any       bool
	exact     map[string]bool
	wildcards []wildcardOrigin
}

// wildcardOrigin is "scheme://*.domain": scheme is "https://", suffix
// ".domain".
type wildcardOrigin struct{ scheme, suffix string }

// NewOriginPolicy parses an allow-list. An empty list allows every origin.
func NewOriginPolicy(entries []string) (*OriginPolicy, error) {
	p := &OriginPolicy{exact: make(map[string]bool)}
	if len(entries) == 0 {
		p.any = true
	}
	for _, e := range entries {
		e = strings.ToLower(strings.TrimSpace(e))
		switch {
		case e == "*":
			p.any = true
		case e == "":
		case strings.Contains(e, "://*."):
			scheme, domain, _ := strings.Cut(e, "://*.")
			if domain == "" || strings.Contains(domain, "*") {
				return nil, fmt.Errorf("wsproto: bad origin pattern %q", e)
			}
			p.wildcards = append(p.wildcards, wildcardOrigin{scheme + "://", "." + domain})
		case strings.Contains(e, "*") || !strings.Contains(e, "://"):
			return nil, fmt.Errorf("wsproto: bad origin %q: want scheme://host[:port], scheme://*.domain or *", e)
		default:
			p.exact[strings.TrimSuffix(e, "/")] = true
		}
	}
	return p, nil
}

// Allows reports whether origin may open a connection. A nil policy allows
// everything.
func (p *OriginPolicy) Allows(origin string) bool {
	if p == nil || p.any {
		return true
	}
	origin = strings.ToLower(origin)
	if p.exact[origin] {
		return true
	}
	for _, w := range p.wildcards {
		host, ok := strings.CutPrefix(origin, w.scheme)
		if !ok {
			continue
		}
		sub, ok := strings.CutSuffix(host, w.suffix)
		if ok && sub != "" && !strings.ContainsAny(sub, "/:@") {
			return true
		}
	}
	return false
}
