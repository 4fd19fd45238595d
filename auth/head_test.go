package auth_test

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgate/pushgate/auth"
	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/wsproto"
)

// head is a request head for target with the given header lines.
func head(target string, lines ...string) []byte {
	var b strings.Builder
	b.WriteString("GET " + target + " HTTP/1.1\r\nHost: pushgate.test\r\n")
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

func TestTokenFromHead(t *testing.T) {
	for _, tc := range []struct {
		name string
		head []byte
		want string // "" for no token
	}{
		{"query", head("/ws?token=abc"), "abc"},
		{"query among others", head("/ws?a=1&token=h.p.s&b=2"), "h.p.s"},
		{"query escaped", head("/ws?x=%26&token=a%2Eb%2Ec%3D"), "a.b.c="},
		{"query escaped key", head("/ws?%74oken=abc"), "abc"},
		{"query plus is space", head("/ws?token=a+b"), "a b"},
		{"query first of two", head("/ws?token=one&token=two"), "one"},
		{"query bad escape kept raw", head("/ws?token=a%zz"), "a%zz"},
		{"query other names", head("/ws?tokens=a&xtoken=b&token"), ""},
		{"query empty", head("/ws?token="), ""},
		{"query empty, header used", head("/ws?token=&x=1", "Authorization: Bearer h"), "h"},
		{"query wins over header", head("/ws?token=q", "Authorization: Bearer h"), "q"},
		{"header", head("/ws", "Authorization: Bearer h.p.s"), "h.p.s"},
		{"header scheme lower case", head("/ws", "authorization: bearer h"), "h"},
		{"header scheme upper case, extra spaces", head("/ws", "AUTHORIZATION:   BEARER   h  "), "h"},
		{"header other scheme", head("/ws", "Authorization: Basic dXNlcjpwYXNz"), ""},
		{"header scheme only", head("/ws", "Authorization: Bearer "), ""},
		{"header scheme prefix", head("/ws", "Authorization: Bearerh"), ""},
		{"LF line ends", []byte("GET /ws HTTP/1.1\nAuthorization: Bearer h\n\n"), "h"},
		{"bad request line, header still read", []byte("GET /ws?token=q\r\nAuthorization: Bearer h\r\n\r\n"), "h"},
		{"nothing", head("/ws"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := auth.TokenFromHead(tc.head)
			if got != tc.want || ok != (tc.want != "") {
				t.Fatalf("TokenFromHead = %q, %v; want %q", got, ok, tc.want)
			}
		})
	}
}

// FuzzTokenFromHead: no panic, a found token is never empty, and the query
// is read as net/url reads it.
func FuzzTokenFromHead(f *testing.F) {
	f.Add("token=abc", "Bearer h")
	f.Add("a=1&%74oken=a%2Eb", "")
	f.Add("token=&token=x", "bearer  y")
	f.Add("token=%zz;x", "Basic z")
	f.Fuzz(func(t *testing.T, query, authorization string) {
		h := head("/ws?"+query, "Authorization: "+authorization)
		token, ok := auth.TokenFromHead(h)
		if ok != (token != "") {
			t.Fatalf("%q, %v", token, ok)
		}
		if strings.ContainsAny(query+authorization, " \t\r\n") {
			return // the head is not what the test meant
		}
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		want := q.Get("token")
		if want == "" {
			if s, found := strings.CutPrefix(strings.ToLower(authorization), "bearer"); !found || s != "" {
				return // header cases are in TestTokenFromHead
			}
		}
		if token != want {
			t.Fatalf("token %q, url.ParseQuery says %q", token, want)
		}
	})
}

func TestAuthorize(t *testing.T) {
	v := newVerifier(t, auth.Config{Secret: secret})
	good := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "channels": []string{"news"}})
	for _, tc := range []struct {
		name   string
		head   []byte
		reason string // "" for accepted
	}{
		{"query", head("/ws?token=" + good), ""},
		{"header", head("/ws", "Authorization: Bearer "+good), ""},
		{"no token", head("/ws"), "missing token"},
		{"empty token", head("/ws?token="), "missing token"},
		{"other scheme", head("/ws", "Authorization: Basic "+good), "missing token"},
		{"malformed", head("/ws?token=nope"), "malformed token"},
		{"bad signature", head("/ws?token=" + sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 32)), jwt.MapClaims{})), "invalid token signature"},
		{"expired", head("/ws?token=" + sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()})), "token expired"},
		{"not yet valid", head("/ws?token=" + sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"nbf": time.Now().Add(time.Hour).Unix()})), "token not yet valid"},
		{"bad sub", head("/ws?token=" + sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "a\r\nb"})), "invalid sub claim"},
		{"bad channels", head("/ws?token=" + sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"channels": []string{"a b"}})), "invalid channels claim"},
		{"bad publish", head("/ws?token=" + sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"publish": []string{"#bob"}})), "invalid publish claim"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, err := v.Authorize(tc.head)
			if tc.reason == "" {
				if c, ok := state.(*auth.Claims); err != nil || !ok || c.User != "alice" {
					t.Fatalf("state %+v, err %v", state, err)
				}
				return
			}
			var he *wsproto.HandshakeError
			if state != nil || !errors.As(err, &he) || he.Status != http.StatusUnauthorized || he.Reason != tc.reason {
				t.Fatalf("state %v, err %v; want 401 %q", state, err, tc.reason)
			}
		})
	}
}

// TestAuthorizeUpgrade runs the hook inside a real wsproto handshake.
func TestAuthorizeUpgrade(t *testing.T) {
	v := newVerifier(t, auth.Config{Secret: secret})
	u := &wsproto.Upgrader{Authorize: v.Authorize}
	good := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "channels": []string{"news"}})
	for _, tc := range []struct {
		name   string
		head   string
		status int
	}{
		{"accepted", wstest.UpgradeRequest("/ws?token=" + good), http.StatusSwitchingProtocols},
		{"missing", wstest.UpgradeRequest("/ws"), http.StatusUnauthorized},
		{"expired", wstest.UpgradeRequest("/ws", "Authorization: Bearer "+
			sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()})), http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			hs, err := u.Upgrade(&out, []byte(tc.head))
			resp, rerr := http.ReadResponse(bufio.NewReader(&out), nil)
			if rerr != nil {
				t.Fatalf("response %q: %v", out.Bytes(), rerr)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%v)", resp.StatusCode, tc.status, err)
			}
			if tc.status != http.StatusSwitchingProtocols {
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				return
			}
			if c, ok := hs.State.(*auth.Claims); err != nil || !ok || c.User != "alice" {
				t.Fatalf("state %+v, err %v", hs.State, err)
			}
		})
	}
}
