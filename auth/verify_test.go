package auth_test

import (
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgate/pushgate/auth"
	"github.com/pushgate/pushgate/protocol"
)

var sentinels = []error{auth.ErrNoToken, auth.ErrMalformed, auth.ErrSignature, auth.ErrExpired, auth.ErrNotYetValid, auth.ErrClaims}

// unsigned builds a token from raw header and payload JSON, with sig as
// its signature segment.
func unsigned(header, payload, sig string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "." + sig
}

func TestVerify(t *testing.T) {
	k := keys()
	hs := newVerifier(t, auth.Config{Secret: secret})
	hsLeeway := newVerifier(t, auth.Config{Secret: secret, Leeway: 30 * time.Second})
	rs := newVerifier(t, auth.Config{PublicKeyPEM: pkixPEM(t, &k.rsa.PublicKey)})
	es := newVerifier(t, auth.Config{PublicKeyPEM: pkixPEM(t, &k.ec.PublicKey)})

	now := time.Now().Truncate(time.Second)
	exp := now.Add(time.Hour)
	full := jwt.MapClaims{"sub": "alice", "channels": []string{"news", "chat:*"}, "publish": []string{"chat:*"}, "exp": exp.Unix()}
	fullClaims := &auth.Claims{User: "alice", Channels: protocol.Patterns{"news", "chat:*"}, Publish: protocol.Patterns{"chat:*"}, ExpiresAt: exp, Deadline: exp}
	hsToken := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, secret, c) }
	noneToken := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, full)
	valid := hsToken(full)
	dot := strings.LastIndexByte(valid, '.')
	tampered := unsigned(`{"alg":"HS256","typ":"JWT"}`, `{"sub":"mallory","channels":["*"]}`, valid[dot+1:])

	for _, tc := range []struct {
		name  string
		v     *auth.Verifier
		token string
		want  *auth.Claims // nil for a refusal
		err   error
	}{
		{"HS256", hs, valid, fullClaims, nil},
		{"RS256", rs, sign(t, jwt.SigningMethodRS256, k.rsa, full), fullClaims, nil},
		{"ES256", es, sign(t, jwt.SigningMethodES256, k.ec, full), fullClaims, nil},
		{"anonymous, no exp", es, sign(t, jwt.SigningMethodES256, k.ec, jwt.MapClaims{"channels": []string{"*"}}),
			&auth.Claims{Channels: protocol.Patterns{"*"}}, nil},
		{"no claims at all", hs, hsToken(jwt.MapClaims{}), &auth.Claims{}, nil},
		{"null channels", hs, hsToken(jwt.MapClaims{"channels": nil}), &auth.Claims{}, nil},
		{"unknown claims ignored", hs, hsToken(jwt.MapClaims{"sub": "bob", "iss": "me", "aud": "x", "role": 7}), &auth.Claims{User: "bob"}, nil},

		{"wrong secret", hs, sign(t, jwt.SigningMethodHS256, []byte("another secret, long enough, 32+ bytes"), full), nil, auth.ErrSignature},
		{"tampered payload", hs, tampered, nil, auth.ErrSignature},
		{"alg none", hs, noneToken, nil, auth.ErrSignature},
		{"alg none vs RSA", rs, noneToken, nil, auth.ErrSignature},
		{"HS256 with the RSA public key as secret", rs, sign(t, jwt.SigningMethodHS256, pkixPEM(t, &k.rsa.PublicKey), full), nil, auth.ErrSignature},
		{"HS256 with the EC public key as secret", es, sign(t, jwt.SigningMethodHS256, pkixPEM(t, &k.ec.PublicKey), full), nil, auth.ErrSignature},
		{"HS384 with the right secret", hs, sign(t, jwt.SigningMethodHS384, secret, full), nil, auth.ErrSignature},
		{"RS256 to an HS256 verifier", hs, sign(t, jwt.SigningMethodRS256, k.rsa, full), nil, auth.ErrSignature},
		{"PS256 with the right key", rs, sign(t, jwt.SigningMethodPS256, k.rsa, full), nil, auth.ErrSignature},
		{"ES384", es, sign(t, jwt.SigningMethodES384, k.ec384, full), nil, auth.ErrSignature},
		{"ES256 by another key", es, sign(t, jwt.SigningMethodES256, k.ec2, full), nil, auth.ErrSignature},
		{"unknown alg", hs, unsigned(`{"alg":"XX256"}`, `{}`, "c2ln"), nil, auth.ErrSignature},
		{"no alg", hs, unsigned(`{"typ":"JWT"}`, `{}`, "c2ln"), nil, auth.ErrSignature},

		{"expired", hs, hsToken(jwt.MapClaims{"exp": now.Add(-time.Hour).Unix()}), nil, auth.ErrExpired},
		{"expired within leeway", hsLeeway, hsToken(jwt.MapClaims{"exp": now.Add(-10 * time.Second).Unix()}),
			&auth.Claims{ExpiresAt: now.Add(-10 * time.Second), Deadline: now.Add(20 * time.Second)}, nil}, // exp plus the 30s leeway
		{"expired beyond leeway", hsLeeway, hsToken(jwt.MapClaims{"exp": now.Add(-time.Minute).Unix()}), nil, auth.ErrExpired},
		{"nbf in the future", hs, hsToken(jwt.MapClaims{"nbf": now.Add(time.Hour).Unix()}), nil, auth.ErrNotYetValid},
		{"nbf within leeway", hsLeeway, hsToken(jwt.MapClaims{"nbf": now.Add(10 * time.Second).Unix()}), &auth.Claims{}, nil},
		{"nbf past", hs, hsToken(jwt.MapClaims{"nbf": now.Add(-time.Hour).Unix()}), &auth.Claims{}, nil},
		{"iat in the future is not checked", hs, hsToken(jwt.MapClaims{"iat": now.Add(time.Hour).Unix()}), &auth.Claims{}, nil},

		{"empty", hs, "", nil, auth.ErrNoToken},
		{"one segment", hs, "abc", nil, auth.ErrMalformed},
		{"two segments", hs, "abc.def", nil, auth.ErrMalformed},
		{"four segments", hs, valid + ".x", nil, auth.ErrMalformed},
		{"not base64", hs, "a!b.c$d.e", nil, auth.ErrMalformed},
		{"header not JSON", hs, unsigned(`{alg`, `{}`, "c2ln"), nil, auth.ErrMalformed},
		{"payload not JSON", hs, unsigned(`{"alg":"HS256"}`, `[1,`, "c2ln"), nil, auth.ErrMalformed},
		{"signature not base64", hs, unsigned(`{"alg":"HS256"}`, `{}`, "***"), nil, auth.ErrMalformed},

		{"channels a string", hs, hsToken(jwt.MapClaims{"channels": "news"}), nil, auth.ErrMalformed},
		{"channels with a number", hs, hsToken(jwt.MapClaims{"channels": []any{"news", 7}}), nil, auth.ErrMalformed},
		{"publish an object", hs, hsToken(jwt.MapClaims{"publish": map[string]any{"news": true}}), nil, auth.ErrMalformed},
		{"sub a number", hs, hsToken(jwt.MapClaims{"sub": 42}), nil, auth.ErrMalformed},
		{"exp not a number", hs, hsToken(jwt.MapClaims{"exp": "tomorrow"}), nil, auth.ErrMalformed},
		{"invalid channel pattern", hs, hsToken(jwt.MapClaims{"channels": []string{"news", "bad pattern"}}), nil, auth.ErrClaims},
		{"pattern with inner star", hs, hsToken(jwt.MapClaims{"channels": []string{"a*b"}}), nil, auth.ErrClaims},
		{"personal channel as pattern", hs, hsToken(jwt.MapClaims{"channels": []string{"#alice"}}), nil, auth.ErrClaims},
		{"empty pattern", hs, hsToken(jwt.MapClaims{"channels": []string{""}}), nil, auth.ErrClaims},
		{"invalid publish pattern", hs, hsToken(jwt.MapClaims{"channels": []string{"news"}, "publish": []string{"x y"}}), nil, auth.ErrClaims},
		{"invalid sub", hs, hsToken(jwt.MapClaims{"sub": "alice smith"}), nil, auth.ErrClaims},
		{"sub too long", hs, hsToken(jwt.MapClaims{"sub": strings.Repeat("a", protocol.MaxChannelLen)}), nil, auth.ErrClaims},
		{"sub with a slash", hs, hsToken(jwt.MapClaims{"sub": "alice/bob"}), nil, auth.ErrClaims},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.v.Verify(tc.token)
			if tc.err == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("claims\n got %+v\nwant %+v", got, tc.want)
				}
				return
			}
			if got != nil {
				t.Errorf("claims %+v with an error", got)
			}
			t.Log(err)
			for _, s := range sentinels {
				if errors.Is(err, s) != (s == tc.err) {
					t.Errorf("error %q: errors.Is(%v) = %v", err, s, !(s == tc.err))
				}
			}
		})
	}
}

// TestVerifyWrapsLibraryErrors: the jwt/v5 error stays reachable for logs
// and errors.Is.
func TestVerifyWrapsLibraryErrors(t *testing.T) {
	v := newVerifier(t, auth.Config{Secret: secret})
	_, err := v.Verify(sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()}))
	if !errors.Is(err, auth.ErrExpired) || !errors.Is(err, jwt.ErrTokenExpired) {
		t.Fatalf("%v", err)
	}
	_, err = v.Verify(sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "a b"}))
	if !errors.Is(err, auth.ErrClaims) || !errors.Is(err, protocol.ErrUserName) {
		t.Fatalf("%v", err)
	}
}

func TestVerifyConcurrent(t *testing.T) {
	v := newVerifier(t, auth.Config{Secret: secret})
	token := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "channels": []string{"*"}})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if c, err := v.Verify(token); err != nil || c.User != "alice" {
					t.Errorf("%+v, %v", c, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestInfoClaim(t *testing.T) {
	v := newVerifier(t, auth.Config{Secret: secret})
	c, err := v.Verify(sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "info": map[string]any{"name": "Alice", "n": []int{1, 2}}}))
	if err != nil || string(c.Info) != `{"n":[1,2],"name":"Alice"}` {
		t.Fatalf("%s, %v", c.Info, err)
	}
	if c, err := v.Verify(sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice"})); err != nil || c.Info != nil {
		t.Fatalf("no info: %s, %v", c.Info, err)
	}
	for name, info := range map[string]any{
		"array":    []int{1},
		"string":   "Alice",
		"too big":  map[string]string{"name": strings.Repeat("x", auth.MaxInfoBytes)},
		"a number": 7,
	} {
		_, err := v.Verify(sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "info": info}))
		if !errors.Is(err, auth.ErrClaims) || !errors.Is(err, auth.ErrInfo) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := auth.ParseInfo([]byte("{\"a\":\"\xff\"}")); err == nil {
		t.Error("info that is not UTF-8 accepted")
	}
}
