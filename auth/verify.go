package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgate/pushgate/protocol"
)

// Claims is what a verified token grants a connection.
type Claims struct {
	User      string            // "sub"; may be empty (anonymous token)
	Channels  protocol.Patterns // "channels": patterns the connection may subscribe to
	Publish   protocol.Patterns // "publish": patterns it may publish to (optional claim)
	ExpiresAt time.Time         // zero if the token has no exp
	// Deadline is when the token stops being accepted: exp plus the
	// verifier's leeway (zero without exp). A connection it opened is
	// closed then, unless refreshed with a later token.
	Deadline time.Time
	// Info is the "info" claim, a JSON object of at most MaxInfoBytes
	// (compacted), shown with the connection in presence and join/leave
	// events; nil when absent.
	Info json.RawMessage
	// Open marks claims no token made: in open mode, only the Info a
	// client gave itself.
	Open bool
	// Proxied marks claims the backend's connect proxy granted: when they
	// expire the gateway asks it again instead of closing with 4001.
	Proxied bool
}

// MaxInfoBytes bounds the info claim: it is held with every presence
// entry and sent in every join and leave event.
const MaxInfoBytes = 1024

// ErrInfo is an info claim that is not a JSON object of at most
// MaxInfoBytes.
var ErrInfo = errors.New("info is not a JSON object of at most 1024 bytes")

// ParseInfo checks and compacts an info object (a token's claim, or what a
// client supplies in open mode). What it returns is a copy of the compact
// object alone: it is held as long as the connection, and Compact's buffer
// is as large as raw (a 1 KiB object padded with 7 KiB of spaces).
func ParseInfo(raw []byte) (json.RawMessage, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil || b.Len() > MaxInfoBytes || b.Len() < 2 || b.Bytes()[0] != '{' || !utf8.Valid(b.Bytes()) {
		return nil, ErrInfo
	}
	return json.RawMessage(bytes.Clone(b.Bytes())), nil
}

// tokenClaims is the payload as decoded. A claim of the wrong JSON type
// fails decoding, which jwt/v5 reports as a malformed token.
type tokenClaims struct {
	jwt.RegisteredClaims
	Channels []string        `json:"channels"`
	Publish  []string        `json:"publish"`
	Info     json.RawMessage `json:"info"`
}

// Verify checks token's signature, exp and nbf, and the pushgate claims,
// and returns what it grants. A refusal wraps one of the Err sentinels.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	var tc tokenClaims
	if _, err := v.parser.ParseWithClaims(token, &tc, v.keyFunc); err != nil {
		return nil, fromJWT(err)
	}
	if tc.Subject != "" && !protocol.ValidUser(tc.Subject) {
		return nil, claimError("sub", fmt.Errorf("sub %q: %w", tc.Subject, protocol.ErrUserName))
	}
	if err := checkPatterns("channels", tc.Channels); err != nil {
		return nil, err
	}
	if err := checkPatterns("publish", tc.Publish); err != nil {
		return nil, err
	}
	c := &Claims{User: tc.Subject, Channels: tc.Channels, Publish: tc.Publish}
	if len(tc.Info) > 0 && string(tc.Info) != "null" {
		info, err := ParseInfo(tc.Info)
		if err != nil {
			return nil, claimError("info", err)
		}
		c.Info = info
	}
	if tc.ExpiresAt != nil {
		c.ExpiresAt = tc.ExpiresAt.Time
		c.Deadline = c.ExpiresAt.Add(v.leeway)
	}
	return c, nil
}

// keyFunc hands jwt/v5 our one key; WithValidMethods has already refused
// any other algorithm.
func (v *Verifier) keyFunc(*jwt.Token) (any, error) { return v.key, nil }

func checkPatterns(claim string, patterns []string) error {
	for i, p := range patterns {
		if err := protocol.CheckPattern(p); err != nil {
			return claimError(claim, fmt.Errorf("%s[%d] %q: %w", claim, i, p, err))
		}
	}
	return nil
}
