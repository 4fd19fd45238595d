package server_test

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/metrics"
	"github.com/pushgate/pushgate/server"
)

func TestHandshakeRefusals(t *testing.T) {
	var logs wstest.SyncBuffer
	g := start(t, server.Config{
		Echo: true, AllowedOrigins: []string{"https://app.example.com", "https://*.example.org"}, MaxHeaderBytes: 1024,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	for _, tc := range []struct {
		name    string
		request string
		status  int
		result  string
		header  string // a header line the response must carry
	}{
		{"POST", strings.Replace(wstest.UpgradeRequest("/ws"), "GET", "POST", 1), 405, "bad_request", ""},
		{"HTTP/1.0", strings.Replace(wstest.UpgradeRequest("/ws"), "HTTP/1.1", "HTTP/1.0", 1), 505, "bad_request", ""},
		{"no Host", wstest.UpgradeRequest("/ws", "Host:"), 400, "bad_request", ""},
		{"no Upgrade", wstest.UpgradeRequest("/ws", "Upgrade:"), 400, "bad_request", ""},
		{"Upgrade not websocket", wstest.UpgradeRequest("/ws", "Upgrade: h2c"), 400, "bad_request", ""},
		{"Connection without upgrade", wstest.UpgradeRequest("/ws", "Connection: keep-alive"), 400, "bad_request", ""},
		{"no key", wstest.UpgradeRequest("/ws", "Sec-WebSocket-Key:"), 400, "bad_request", ""},
		{"key not base64", wstest.UpgradeRequest("/ws", "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!!!"), 400, "bad_request", ""},
		{"key of 18 bytes", wstest.UpgradeRequest("/ws", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAA"), 400, "bad_request", ""},
		{"key too short", wstest.UpgradeRequest("/ws", "Sec-WebSocket-Key: AAAA"), 400, "bad_request", ""},
		{"version 8", wstest.UpgradeRequest("/ws", "Sec-WebSocket-Version: 8"), 426, "bad_version", "Sec-Websocket-Version: 13"},
		{"no version", wstest.UpgradeRequest("/ws", "Sec-WebSocket-Version:"), 426, "bad_version", "Sec-Websocket-Version: 13"},
		{"plain GET of /ws", "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", 426, "bad_version", "Sec-Websocket-Version: 13"},
		{"origin not allowed", wstest.UpgradeRequest("/ws", "Origin: https://evil.example"), 403, "forbidden_origin", ""},
		{"origin wildcard is not the apex", wstest.UpgradeRequest("/ws", "Origin: https://example.org"), 403, "forbidden_origin", ""},
		{"origin scheme differs", wstest.UpgradeRequest("/echo", "Origin: http://app.example.com"), 403, "forbidden_origin", ""},
		{"headers too large", wstest.UpgradeRequest("/ws", "Cookie: "+strings.Repeat("c", 2000)), 431, "too_large", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := count(g.m.Handshakes(tc.result))
			c := wstest.Connect(t, g.addr)
			c.Write([]byte(tc.request))
			resp := c.Response()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %s, want %d", resp.Status, tc.status)
			}
			if body, _ := io.ReadAll(resp.Body); len(body) == 0 {
				t.Errorf("refusal without a reason in the body")
			}
			if tc.header != "" {
				name, value, _ := strings.Cut(tc.header, ": ")
				if got := resp.Header.Get(name); got != value {
					t.Errorf("%s: %q, want %q", name, got, value)
				}
			}
			c.ExpectEOF()
			wstest.Eventually(t, "the refusal counter", func() bool { return count(g.m.Handshakes(tc.result)) == before+1 })
			logged := fmt.Sprintf("level=DEBUG msg=\"upgrade refused\" remote=%s status=%d", c.Conn.LocalAddr(), tc.status)
			wstest.Eventually(t, "the debug line "+logged, func() bool { return strings.Contains(logs.String(), logged) })
		})
	}
}

func TestHandshakeAccepts(t *testing.T) {
	g := start(t, server.Config{Echo: true, AllowedOrigins: []string{"https://app.example.com", "https://*.example.org"}})
	for _, tc := range []struct {
		name     string
		path     string
		extra    []string
		protocol string
	}{
		{"plain", "/ws", nil, ""},
		{"subprotocol offered among others", "/ws", []string{"Sec-WebSocket-Protocol: chat, pushgate.v1"}, "pushgate.v1"},
		{"other subprotocols only", "/ws", []string{"Sec-WebSocket-Protocol: chat"}, ""},
		{"Connection is a list", "/ws", []string{"Connection: keep-alive, Upgrade"}, ""},
		{"header names in any case", "/ws", []string{"UPGRADE: WebSocket", "connection: upgrade"}, ""},
		{"allowed origin", "/ws", []string{"Origin: https://app.example.com"}, ""},
		{"allowed origin, other case", "/ws", []string{"Origin: HTTPS://App.Example.com"}, ""},
		{"wildcard origin", "/ws", []string{"Origin: https://a.b.example.org"}, ""},
		{"no origin (not a browser)", "/ws", nil, ""},
		{"echo with query", "/echo?x=1", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, resp := wstest.Dial(t, g.addr, tc.path, tc.extra...)
			if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
				t.Errorf("Sec-WebSocket-Accept %q", got)
			}
			if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != tc.protocol {
				t.Errorf("Sec-WebSocket-Protocol %q, want %q", got, tc.protocol)
			}
			c.Write(wstest.Frame(true, 0, ws.OpPing, []byte("alive?")))
			c.ExpectMessage(ws.OpPong, []byte("alive?"))
		})
	}
}

// TestHandshakeByteByByte sends the upgrade request one byte per write and
// a frame in the same write as the request's last byte.
func TestHandshakeByteByByte(t *testing.T) {
	g := start(t, echo())
	c := wstest.Connect(t, g.addr)
	req := []byte(wstest.UpgradeRequest("/echo"))
	for _, b := range req[:len(req)-1] {
		c.Write([]byte{b})
	}
	c.Write(append(req[len(req)-1:], wstest.Text("right behind the request")...))
	if resp := c.Response(); resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %s", resp.Status)
	}
	c.ExpectMessage(ws.OpText, []byte("right behind the request"))
}

func TestHandshakeTimeout(t *testing.T) {
	g := start(t, server.Config{Echo: true, HandshakeTimeout: 100 * time.Millisecond})
	silent := wstest.Connect(t, g.addr)
	slow := wstest.Connect(t, g.addr)
	slow.Write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\n")) // and never the rest
	silent.ExpectEOF()
	slow.ExpectEOF()
	wstest.Eventually(t, "two timeouts counted", func() bool { return count(g.m.Handshakes("timeout")) == 2 })
}

// TestEchoDisabled checks that /echo is plain HTTP (404) without --echo.
func TestEchoDisabled(t *testing.T) {
	g := start(t, server.Config{})
	c := wstest.Connect(t, g.addr)
	c.Write([]byte(wstest.UpgradeRequest("/echo")))
	if resp := c.Response(); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %s, want 404", resp.Status)
	}
}

// TestPlainHTTP checks that requests that are not upgrades reach net/http
// with every byte, including those read while looking for an upgrade.
func TestPlainHTTP(t *testing.T) {
	pages := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, r.Method+" "+r.URL.String()+" "+string(body))
	})
	g := start(t, server.Config{Pages: pages})
	for _, tc := range []struct{ path, want string }{
		{"/healthz", "ok\n"},
		{"/readyz", "ready\n"},
	} {
		resp, err := http.Get("http://" + g.addr + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != tc.want {
			t.Errorf("GET %s: %s %q", tc.path, resp.Status, body)
		}
		if !resp.Close {
			t.Errorf("GET %s: the connection is kept alive; every request must start at the listener", tc.path)
		}
	}

	// Head and body in one write, then more body later.
	c := wstest.Connect(t, g.addr)
	c.Write([]byte("POST /submit?a=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nfirst"))
	c.Write([]byte("-half"))
	resp, err := http.ReadResponse(bufio.NewReader(c.Conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "POST /submit?a=1 first-half" {
		t.Fatalf("got %q", body)
	}
}

func TestAdminMux(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := start(t, server.Config{Metrics: metrics.New(reg)})
	admin := httptest.NewServer(g.AdminMux(reg))
	defer admin.Close()
	for path, want := range map[string]string{
		"/metrics": "pushgate_connections 0",
		"/healthz": "ok",
		"/readyz":  "ready",
	} {
		resp, err := http.Get(admin.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %s, body lacks %q", path, resp.Status, want)
		}
	}
	// The profiler is the gateway's to add, behind its API key.
	resp, err := http.Get(admin.URL + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/cmdline: %s, want 404", resp.Status)
	}
}

// TestBrowserOpensWS checks what a person gets who opens /ws in a browser:
// still 426 with Upgrade: websocket, but a body that says what the
// endpoint is and how to connect.
func TestBrowserOpensWS(t *testing.T) {
	g := start(t, echo())
	for path, want := range map[string][]string{
		"/ws":   {"pushgate WebSocket endpoint", `new WebSocket("wss://" + location.host + "/ws", "pushgate.v1")`, "/pushgate.js", "chat demo"},
		"/echo": {"echo endpoint", "new WebSocket("},
	} {
		c := wstest.Connect(t, g.addr)
		c.Write([]byte("GET " + path + " HTTP/1.1\r\nHost: localhost:8080\r\nAccept: text/html,application/xhtml+xml\r\n" +
			"User-Agent: Mozilla/5.0\r\n\r\n"))
		resp := c.Response()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusUpgradeRequired || resp.Header.Get("Upgrade") != "websocket" ||
			resp.Header.Get("Sec-WebSocket-Version") != "13" {
			t.Errorf("GET %s: %s, Upgrade %q, Sec-WebSocket-Version %q; want 426 with websocket and 13", path, resp.Status,
				resp.Header.Get("Upgrade"), resp.Header.Get("Sec-WebSocket-Version"))
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
			t.Errorf("GET %s: Content-Type %q", path, ct)
		}
		for _, w := range want {
			if !strings.Contains(string(body), w) {
				t.Errorf("GET %s: the body lacks %q:\n%s", path, w, body)
			}
		}
		c.ExpectEOF()
	}
	// A request that is an upgrade without a version is still told only
	// what it lacks.
	c := wstest.Connect(t, g.addr)
	c.Write([]byte(wstest.UpgradeRequest("/ws", "Sec-WebSocket-Version:")))
	resp := c.Response()
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != 426 || strings.Contains(string(body), "endpoint") {
		t.Errorf("upgrade without a version: %s %q", resp.Status, body)
	}
}
