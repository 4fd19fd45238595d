package webhook

import (
	"strings"
	"testing"
)

func TestVerify(t *testing.T) {
	secret := []byte("a webhook secret for tests")
	body := []byte(`{"events":[{"type":"user_online","time":1,"node":"gw-1","user":"alice"}]}`)
	sig := Sign(secret, body)
	if !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 || strings.ToLower(sig) != sig {
		t.Fatalf("Sign = %q, want sha256= and 64 lowercase hex digits", sig)
	}
	tampered := []byte(strings.Replace(string(body), "alice", "alicf", 1))
	for _, tc := range []struct {
		name   string
		secret []byte
		body   []byte
		header string
		want   bool
	}{
		{"signed", secret, body, sig, true},
		{"tampered body", secret, tampered, sig, false},
		{"body cut", secret, body[:len(body)-1], sig, false},
		{"wrong secret", []byte("another secret"), body, sig, false},
		{"empty secret", nil, body, Sign(nil, body), false},
		{"no prefix", secret, body, strings.TrimPrefix(sig, "sha256="), false},
		{"other algorithm", secret, body, "sha1=" + strings.TrimPrefix(sig, "sha256="), false},
		{"digits cut", secret, body, sig[:len(sig)-2], false},
		{"not hex", secret, body, sig[:len(sig)-1] + "g", false},
		{"empty", secret, body, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Verify(tc.secret, tc.body, tc.header); got != tc.want {
				t.Errorf("Verify = %v, want %v", got, tc.want)
			}
		})
	}
}
