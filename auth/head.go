package auth

import (
	"bytes"
	"net/url"

	"github.com/pushgate/pushgate/wsproto"
)

// TokenFromHead finds the token in a raw HTTP/1.1 request head: the query
// parameter "token" of the request target (URL-decoded) or else the
// credentials of an "Authorization: Bearer" header (scheme in any case).
// The query wins because it is all a browser can send. The first "token"
// parameter decides; an empty one counts as none, so the header is tried.
func TokenFromHead(head []byte) (token string, ok bool) {
	if _, target, ok := wsproto.RequestTarget(head); ok {
		_, query := wsproto.SplitTarget(target)
		if token := queryToken(query); token != "" {
			return token, true
		}
	}
	if v, ok := wsproto.HeaderValue(head, "Authorization"); ok {
		scheme, creds, _ := bytes.Cut(v, []byte{' '})
		creds = bytes.TrimLeft(creds, " ")
		if bytes.EqualFold(scheme, []byte("Bearer")) && len(creds) > 0 {
			return string(creds), true
		}
	}
	return "", false
}

// queryToken returns the value of the first "token" parameter in a raw
// query, or "". A value that is not valid percent-encoding is returned as
// it is, to fail verification as malformed rather than pass as missing.
func queryToken(query []byte) string {
	for len(query) > 0 {
		var pair []byte
		pair, query, _ = bytes.Cut(query, []byte{'&'})
		k, v, _ := bytes.Cut(pair, []byte{'='})
		if string(k) != "token" {
			// Decode only when there is something to decode.
			if !bytes.ContainsAny(k, "%+") {
				continue
			}
			if key, err := url.QueryUnescape(string(k)); err != nil || key != "token" {
				continue
			}
		}
		if s, err := url.QueryUnescape(string(v)); err == nil {
			return s
		}
		return string(v)
	}
	return ""
}

// Authorize is a wsproto.Upgrader.Authorize hook: it verifies the token in
// head and returns its *Claims as the handshake's state. A missing or
// refused token is a 401 *wsproto.HandshakeError with a short reason.
func (v *Verifier) Authorize(head []byte) (any, error) {
	token, ok := TokenFromHead(head)
	if !ok {
		return nil, wsproto.Unauthorized(Reason(ErrNoToken))
	}
	c, err := v.Verify(token)
	if err != nil {
		return nil, wsproto.Unauthorized(Reason(err))
	}
	return c, nil
}
