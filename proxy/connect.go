package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/pushgate/pushgate/auth"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/wsproto"
)

// ConnectRequest is the body POSTed to the connect proxy.
type ConnectRequest struct {
	Client    string `json:"client"`    // the id the connection will have
	Transport string `json:"transport"` // "websocket" or "sse"
	Path      string `json:"path"`
	Query     string `json:"query"` // raw, as the client sent it
	// RemoteAddr is the peer the gateway saw, host:port: a load
	// balancer's, behind one. X-Forwarded-For, in Headers, is what the
	// client (or the balancer) says: trust it only as far as your
	// balancer sets it.
	RemoteAddr string `json:"remote_addr"`
	// Headers holds those of the request's Cookie, Authorization, Origin,
	// User-Agent, X-Forwarded-For and --proxy-headers it had, by their
	// canonical names.
	Headers map[string]string `json:"headers"`
	// Refresh asks to extend a live connection's admission, once its
	// expire_at has come: Client and User are set, nothing else.
	Refresh bool   `json:"refresh,omitempty"`
	User    string `json:"user,omitempty"`
}

// ConnectAnswer is the connect proxy's 200 answer: the claims a token
// would carry.
type ConnectAnswer struct {
	User     string          `json:"user"`      // "" for an anonymous connection
	Channels []string        `json:"channels"`  // patterns it may subscribe to
	Publish  []string        `json:"publish"`   // patterns it may publish to
	Info     json.RawMessage `json:"info"`      // object shown in presence
	ExpireAt int64           `json:"expire_at"` // Unix seconds; 0: never
}

// ErrorAnswer is the body of a refusal: a 401 or 403 from the connect
// proxy, a 200 with "error" from the subscribe and publish proxies.
type ErrorAnswer struct {
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// ForwardedHeaders are the request headers the connect proxy always sees.
var ForwardedHeaders = []string{"Cookie", "Authorization", "Origin", "User-Agent", "X-Forwarded-For"}

// Connector asks the connect proxy about new connections, and about
// renewing the admission of live ones.
type Connector struct {
	c       *Client
	renew   *Client  // the same backend, with a budget of its own: renewals never starve connects, nor connects renewals
	headers []string // canonical names
	now     func() time.Time
}

// ErrRefused is a renewal the backend refused (401 or 403); other errors
// of Refresh are failures to ask.
var ErrRefused = errors.New("proxy: the backend refused")

// refusal is a connect answer that refuses: 401 or 403 with a message.
type refusal struct {
	status  int
	message string
}

// NewConnector returns the Connector for cfg (Name, Replayable and Parse
// are set here). extra names headers forwarded besides ForwardedHeaders.
func NewConnector(cfg Config, extra []string) (*Connector, error) {
	cfg.Name, cfg.Replayable = "connect", true
	k := &Connector{now: time.Now}
	cfg.Parse = k.parse
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	k.c = c
	rc := cfg
	rc.MaxInFlight = max(1, cfg.MaxInFlight/4)
	rc.MaxWaiting = 4 * rc.MaxInFlight
	if k.renew, err = New(rc); err != nil {
		return nil, err
	}
	for _, h := range append(append([]string(nil), ForwardedHeaders...), extra...) {
		h = http.CanonicalHeaderKey(strings.TrimSpace(h))
		if h != "" && !contains(k.headers, h) {
			k.headers = append(k.headers, h)
		}
	}
	return k, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Client is the connector's HTTP client for connects.
func (k *Connector) Client() *Client { return k.c }

// Close drops the idle connections to the backend.
func (k *Connector) Close() {
	k.c.Close()
	k.renew.Close()
}

// Connect asks the backend about the connection whose request head is
// head, from remote, to be called client, on transport. It returns the claims the
// backend grants, or a *wsproto.HandshakeError to refuse the upgrade
// with: the backend's 401 or 403 and message, or 503 when it could not
// answer.
func (k *Connector) Connect(head []byte, client, transport string, remote net.Addr) (*auth.Claims, error) {
	_, target, _ := wsproto.RequestTarget(head)
	path, query := wsproto.SplitTarget(target)
	req := ConnectRequest{Client: client, Transport: transport, Path: string(path), Query: string(query), Headers: map[string]string{}}
	if remote != nil {
		req.RemoteAddr = remote.String()
	}
	for _, h := range k.headers {
		if v, ok := wsproto.HeaderValue(head, h); ok {
			req.Headers[h] = string(v)
		}
	}
	body, _ := json.Marshal(req)
	a, err := k.c.Call(context.Background(), body)
	if err != nil {
		return nil, &wsproto.HandshakeError{Status: http.StatusServiceUnavailable, Reason: "the authentication backend is unavailable, try again later"}
	}
	switch v := a.Value.(type) {
	case refusal:
		if v.status == http.StatusUnauthorized {
			return nil, &wsproto.HandshakeError{Status: http.StatusUnauthorized, Reason: v.message}
		}
		return nil, &wsproto.HandshakeError{Status: http.StatusForbidden, Reason: v.message}
	default:
		return v.(*auth.Claims), nil
	}
}

// Refresh asks the backend to extend the admission of client, of user,
// and hands the new claims, or ErrRefused, or the failure to ask, to done
// on a goroutine of the client's. It reports false, calling nothing, when
// the renewals' client is busy. Renewals have a quarter of MaxInFlight of
// their own.
func (k *Connector) Refresh(client, user string, done func(*auth.Claims, error)) bool {
	body, _ := json.Marshal(ConnectRequest{Client: client, User: user, Refresh: true})
	return k.renew.Go(context.Background(), body, func(a Answer, err error) {
		if err != nil {
			done(nil, err)
			return
		}
		if r, ok := a.Value.(refusal); ok {
			done(nil, fmt.Errorf("%w: %s", ErrRefused, r.message))
			return
		}
		done(a.Value.(*auth.Claims), nil)
	})
}

// parse reads a connect answer: 200 with claims, 401 or 403 with a
// message; any other status is the backend's failure.
func (k *Connector) parse(status int, body []byte) (any, error) {
	switch status {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		return refusal{status: status, message: message(body, "refused by the authentication backend")}, nil
	default:
		return nil, fmt.Errorf("status %d, want 200, 401 or 403", status)
	}
	var ans ConnectAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		return nil, fmt.Errorf("not the connect answer: %v", err)
	}
	claims, err := ans.Claims()
	if err != nil {
		return nil, err
	}
	if !claims.ExpiresAt.IsZero() && !claims.ExpiresAt.After(k.now()) {
		return refusal{status: http.StatusUnauthorized, message: "the authentication backend's expire_at has passed"}, nil
	}
	return claims, nil
}

// Claims checks the answer as a token's claims are checked and returns
// what it grants.
func (a ConnectAnswer) Claims() (*auth.Claims, error) {
	if a.User != "" && !protocol.ValidUser(a.User) {
		return nil, fmt.Errorf("user %q: %v", a.User, protocol.ErrUserName)
	}
	for _, list := range [][]string{a.Channels, a.Publish} {
		for _, p := range list {
			if err := protocol.CheckPattern(p); err != nil {
				return nil, fmt.Errorf("pattern %q: %v", p, err)
			}
		}
	}
	c := &auth.Claims{User: a.User, Channels: a.Channels, Publish: a.Publish, Proxied: true}
	if len(a.Info) > 0 && string(a.Info) != "null" {
		info, err := auth.ParseInfo(a.Info)
		if err != nil {
			return nil, err
		}
		c.Info = info
	}
	if a.ExpireAt > 0 {
		c.ExpiresAt = time.Unix(a.ExpireAt, 0)
		c.Deadline = c.ExpiresAt
	}
	return c, nil
}

// message is the message of a refusal's body: its error.message, or
// its text, made safe to show (printable ASCII, at most 200 bytes).
func message(body []byte, fallback string) string {
	var e ErrorAnswer
	s := string(body)
	if json.Unmarshal(body, &e) == nil && e.Error != nil {
		s = e.Error.Message
	}
	return printable(s, fallback)
}

func printable(s, fallback string) string {
	b := make([]byte, 0, min(len(s), 200))
	for i := 0; i < len(s) && len(b) < 200; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			b = append(b, c)
		}
	}
	if t := strings.TrimSpace(string(b)); t != "" {
		return t
	}
	return fallback
}
