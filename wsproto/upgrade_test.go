package wsproto_test

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"testing"

	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/wsproto"
)

func TestOriginPolicy(t *testing.T) {
	p, err := wsproto.NewOriginPolicy([]string{"https://app.example.com", "https://*.example.org", "http://localhost:8080"})
	if err != nil {
		t.Fatal(err)
	}
	for origin, want := range map[string]bool{
		"https://app.example.com":       true,
		"HTTPS://APP.EXAMPLE.COM":       true,
		"https://a.example.org":         true,
		"https://a.b.example.org":       true,
		"http://localhost:8080":         true,
		"https://example.org":           false,
		"https://evil.com/.example.org": false,
		"https://x.example.org:444":     false,
		"http://app.example.com":        false,
		"https://app.example.com.evil":  false,
		"null":                          false,
		"":                              false,
	} {
		if got := p.Allows(origin); got != want {
			t.Errorf("Allows(%q) = %v, want %v", origin, got, want)
		}
	}
	for _, bad := range []string{"example.com", "https://*", "https://a.*.com", "*.example.com"} {
		if _, err := wsproto.NewOriginPolicy([]string{bad}); err == nil {
			t.Errorf("NewOriginPolicy(%q) accepted", bad)
		}
	}
	if any, _ := wsproto.NewOriginPolicy(nil); !any.Allows("https://anything.test") {
		t.Error("an empty list must allow every origin")
	}
}

func TestUpgradeResponses(t *testing.T) {
	u := &wsproto.Upgrader{Protocol: "pushgate.v1", Compression: true}
	for _, tc := range []struct {
		name, head string
		status     int
		header     string // "Name: value" the response must carry
	}{
		{"malformed request line", "GET /ws HTTP/one\r\nHost: x\r\nSec-WebSocket-Version: 13\r\n\r\n", 400, ""},
		{"accepted", wstest.UpgradeRequest("/ws"), 101, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="},
		{"deflate", wstest.UpgradeRequest("/ws", "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"), 101,
			"Sec-WebSocket-Extensions: permessage-deflate;server_no_context_takeover;client_no_context_takeover"},
		{"deflate with a small server window is declined", wstest.UpgradeRequest("/ws", "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10"), 101,
			"Sec-WebSocket-Extensions: "},
		{"second offer accepted after a declined one", wstest.UpgradeRequest("/ws", "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9, permessage-deflate"), 101,
			"Sec-WebSocket-Extensions: permessage-deflate;server_no_context_takeover;client_no_context_takeover"},
		{"malformed deflate offer is declined", wstest.UpgradeRequest("/ws", "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99"), 101,
			"Sec-WebSocket-Extensions: "},
		{"a browser's GET", "GET /ws HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n\r\n", 426, "Upgrade: websocket"},
		{"authorize refuses", wstest.UpgradeRequest("/ws", "Authorization: Bearer nope"), 401, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := *u
			u.Authorize = func(head []byte) (any, error) {
				if v, _ := wsproto.HeaderValue(head, "Authorization"); string(v) == "Bearer nope" {
					return nil, &wsproto.HandshakeError{Status: 401, Reason: "bad token"}
				}
				return "state", nil
			}
			var out bytes.Buffer
			hs, err := u.Upgrade(&out, []byte(tc.head))
			resp, rerr := http.ReadResponse(bufio.NewReader(&out), nil)
			if rerr != nil {
				t.Fatalf("response %q: %v", out.Bytes(), rerr)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			var he *wsproto.HandshakeError
			if (tc.status == 101) != (err == nil) || (err != nil && (!errors.As(err, &he) || he.Status != tc.status)) {
				t.Fatalf("err %v for status %d", err, tc.status)
			}
			if tc.header != "" {
				name, value, _ := bytes.Cut([]byte(tc.header), []byte(": "))
				if got := resp.Header.Get(string(name)); got != string(value) {
					t.Errorf("%s: %q, want %q", name, got, value)
				}
			}
			if err == nil {
				if hs.State != "state" {
					t.Errorf("State %v", hs.State)
				}
				if want := resp.Header.Get("Sec-WebSocket-Extensions") != ""; hs.Compression != want {
					t.Errorf("Compression %v, want %v", hs.Compression, want)
				}
			}
		})
	}
}
