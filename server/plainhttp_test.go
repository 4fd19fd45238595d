package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/server"
)

// TestHeadLimitForEveryRequest: --max-header-bytes bounds every request
// head on the public listener, whatever it asks for. An upgrade whose
// request line alone is longer than the limit (a long token in the query)
// is a 431 like any other oversized upgrade, not a plain request for
// net/http to answer 404; a plain request is held to the same limit.
func TestHeadLimitForEveryRequest(t *testing.T) {
	pages := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "page") })
	g := start(t, server.Config{Pages: pages, MaxHeaderBytes: 8 << 10})
	long := strings.Repeat("t", 9<<10)
	for _, tc := range []struct{ name, request string }{
		{"upgrade with a 9 KB token in the query", wstest.UpgradeRequest("/ws?token=" + long)},
		{"plain GET with a 9 KB query", "GET /?q=" + long + " HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"plain GET with a 9 KB header", "GET / HTTP/1.1\r\nHost: x\r\nCookie: " + long + "\r\n\r\n"},
		{"plain GET of /healthz with a 9 KB header", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + long + "\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := count(g.m.Handshakes("too_large"))
			c := wstest.Connect(t, g.addr)
			c.Write([]byte(tc.request))
			resp := c.Response()
			if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Fatalf("status %s, want 431", resp.Status)
			}
			c.ExpectEOF()
			wstest.Eventually(t, "the refusal counted as too_large", func() bool { return count(g.m.Handshakes("too_large")) == before+1 })
		})
	}
	// Just under the limit, a plain request is served.
	c := wstest.Connect(t, g.addr)
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("p", 7<<10) + "\r\n\r\n"))
	if resp := c.Response(); resp.StatusCode != http.StatusOK {
		t.Fatalf("a 7 KiB head: %s", resp.Status)
	}
}

// TestPlainHTTPHoldsASlot: a plain HTTP request holds a handshake slot
// until its connection closes, so --max-handshakes bounds plain HTTP on
// the public listener too.
func TestPlainHTTPHoldsASlot(t *testing.T) {
	release := make(chan struct{})
	pages := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		_, _ = io.WriteString(w, "page")
	})
	g := start(t, server.Config{Pages: pages, MaxHandshakes: 16})
	var cs []*wstest.Client
	for range 3 {
		c := wstest.Connect(t, g.addr)
		c.Write([]byte("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"))
		cs = append(cs, c)
	}
	wstest.Eventually(t, "three slots held by plain HTTP requests", func() bool { return count(g.m.HandshakesInFlight) == 3 })
	close(release)
	for _, c := range cs {
		if resp := c.Response(); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %s", resp.Status)
		}
	}
	wstest.Eventually(t, "the slots released", func() bool { return count(g.m.HandshakesInFlight) == 0 })
}

// TestPlainHTTPTimeouts: a plain request gets --handshake-timeout to send
// itself, body included: one that stalls in its body is cut off instead of
// holding its connection (and slot) for ever.
func TestPlainHTTPTimeouts(t *testing.T) {
	pages := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			return
		}
		_, _ = io.WriteString(w, "page")
	})
	g := start(t, server.Config{Pages: pages, HandshakeTimeout: 300 * time.Millisecond})
	c := wstest.Connect(t, g.addr)
	c.Write([]byte("POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf"))
	expectClosed(t, c)
	wstest.Eventually(t, "the slot released", func() bool { return count(g.m.HandshakesInFlight) == 0 })
}

// expectClosed reads whatever the server still sends and checks that it
// then ends the connection, within wstest.Timeout.
func expectClosed(t *testing.T, c *wstest.Client) {
	t.Helper()
	_ = c.Conn.SetReadDeadline(time.Now().Add(wstest.Timeout))
	_, err := io.Copy(io.Discard, c.R)
	if err != nil && strings.Contains(err.Error(), "timeout") {
		t.Fatalf("the connection is still open after %v", wstest.Timeout)
	}
}
