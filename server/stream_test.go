package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/internal/ssetest"
	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/wsproto"
)

// streams is an event-stream Handler for tests: it records what Open saw
// and hands each connection to open.
type streams struct {
	mu     sync.Mutex
	opened []string // queries
	states []any
	conns  chan *server.Conn
	open   func(c *server.Conn)
	closed chan struct{}
}

func newStreams() *streams {
	return &streams{conns: make(chan *server.Conn, 64), closed: make(chan struct{}, 64)}
}

func (h *streams) Open(c *server.Conn, hs wsproto.Handshake, query []byte) {
	h.mu.Lock()
	h.opened = append(h.opened, string(query))
	h.states = append(h.states, hs.State)
	h.mu.Unlock()
	if h.open != nil {
		h.open(c)
	}
	h.conns <- c
}

func (h *streams) Message(*server.Conn, ws.OpCode, []byte) { panic("a stream has no messages") }
func (h *streams) Closed(*server.Conn) {
	select {
	case h.closed <- struct{}{}:
	default: // a test that does not wait for it
	}
}

func (h *streams) query(i int) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.opened[i]
}

// event is the SSE encoding of an envelope.
func event(env string) []byte {
	return protocol.Frame(protocol.SSE, append(protocol.Buffer(len(env)), env...))
}

// closeData decodes a close event's data.
func closeData(t *testing.T, e ssetest.Event) (code int, reason string) {
	t.Helper()
	var v struct {
		Type   string
		Code   int
		Reason string
	}
	if err := json.Unmarshal([]byte(e.Data), &v); err != nil || v.Type != "close" {
		t.Fatalf("want a close event, got %v (%v)", e, err)
	}
	return v.Code, v.Reason
}

// TestStreamWire reads a stream byte for byte: the response head, the
// retry field, an event with its id and one without, then, as the server
// drains, the close event and the end of the stream.
func TestStreamWire(t *testing.T) {
	h := newStreams()
	g := start(t, server.Config{Events: h, CloseTimeout: wstest.Timeout})
	conn, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET /events?channels=news HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\nLast-Event-ID: news,e-1,4\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no",
		"Access-Control-Allow-Origin": "https://app.example", "Access-Control-Allow-Credentials": "true",
	} {
		if got := resp.Header.Get(name); resp.StatusCode != 200 || got != want {
			t.Fatalf("%s: %s = %q, want %q", resp.Status, name, got, want)
		}
	}
	if resp.ContentLength != -1 || len(resp.TransferEncoding) != 0 {
		t.Fatalf("the stream has a length: %d %v", resp.ContentLength, resp.TransferEncoding)
	}
	c := <-h.conns
	if q := h.query(0); q != "last_event_id=news%2Ce-1%2C4&channels=news" {
		t.Fatalf("Open's query %q", q)
	}
	if c.Encoding() != protocol.SSE {
		t.Fatalf("encoding %v", c.Encoding())
	}
	if err := c.SendEvent([]byte("id: news,e-1,5\n"), event(`{"type":"message","channel":"news","offset":5,"data":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.SendEvent(nil, event(`{"type":"error","code":"forbidden","message":"no"}`)); err != nil {
		t.Fatal(err)
	}
	want := "retry: 2000\n\n" +
		"id: news,e-1,5\n" + `data: {"type":"message","channel":"news","offset":5,"data":1}` + "\n\n" +
		`data: {"type":"error","code":"forbidden","message":"no"}` + "\n\n"
	got := make([]byte, len(want))
	_ = conn.SetReadDeadline(time.Now().Add(wstest.Timeout))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != want {
		t.Fatalf("read %q (%v), want %q", got, err, want)
	}

	ctx, cancel := context.WithTimeout(context.Background(), wstest.Timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.Shutdown(ctx) }()
	rest, err := io.ReadAll(br)
	if want := `data: {"type":"close","code":1001,"reason":"server shutting down"}` + "\n\n"; err != nil || string(rest) != want {
		t.Fatalf("after drain %q (%v), want %q and the end", rest, err, want)
	}
	conn.Close() // as a browser does at the end of the stream
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	<-h.closed
	if n := count(g.m.ConnectionsClosed("shutdown")); n != 1 {
		t.Fatalf("closed for shutdown: %v", n)
	}
}

func TestStreamRefusals(t *testing.T) {
	h := newStreams()
	h.open = func(c *server.Conn) { _ = c.SendEvent(nil, event("ok")) }
	g := start(t, server.Config{Events: h, AllowedOrigins: []string{"https://app.example"},
		Authorize: func(head []byte, _ int, _ net.Addr) (any, error) {
			if v, _ := wsproto.HeaderValue(head, "Authorization"); string(v) == "Bearer good" {
				return "claims", nil
			}
			return nil, wsproto.Unauthorized("missing token")
		}})
	for _, c := range []struct {
		req    string
		status int
		header string
	}{
		{"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\nContent-Length: 0\r\n\r\n", 405, "Allow: GET"},
		{"GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\nOrigin: https://evil.example\r\n\r\n", 403, ""},
		{"GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\nOrigin: https://app.example\rX: y\r\n\r\n", 403, ""},
		{"GET /events HTTP/1.1\r\nHost: x\r\n\r\n", 401, "Www-Authenticate: Bearer realm=\"pushgate\""},
	} {
		conn, err := net.Dial("tcp", g.addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(conn, c.req)
		_ = conn.SetReadDeadline(time.Now().Add(wstest.Timeout))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil || resp.StatusCode != c.status {
			t.Fatalf("%q: %v %v, want %d", c.req, resp, err, c.status)
		}
		if name, value, ok := strings.Cut(c.header, ": "); ok && resp.Header.Get(name) != value {
			t.Fatalf("%q: %s %q, want %q", c.req, name, resp.Header.Get(name), value)
		}
	}
	s := ssetest.MustOpen(t, g.addr, "/events", "Authorization: Bearer good", "Origin: https://app.example")
	if e := s.Event(); e.Data != "ok" {
		t.Fatalf("event %v", e)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.states) != 1 || h.states[0] != "claims" {
		t.Fatalf("Open's states %v", h.states)
	}

	// Without a Handler, /events is a plain path.
	plain := start(t, server.Config{})
	if st := status(t, "http://"+plain.addr+"/events"); st != 404 {
		t.Fatalf("/events without a handler: %d", st)
	}
}

// TestStreamHeartbeat: an idle stream gets comments, and one that asked
// for app-level pings gets ping events.
func TestStreamHeartbeat(t *testing.T) {
	h := newStreams()
	var pings atomic.Bool
	h.open = func(c *server.Conn) {
		if pings.Load() {
			c.WantAppPing()
		}
	}
	g := start(t, server.Config{Events: h, PingInterval: 50 * time.Millisecond, PongTimeout: time.Second})
	s := ssetest.MustOpen(t, g.addr, "/events")
	<-h.conns
	want := "retry: 2000\n\n:\n:\n:\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(s.Resp.Body, got); err != nil || string(got) != want {
		t.Fatalf("an idle stream read %q (%v), want %q", got, err, want)
	}

	pings.Store(true)
	s = ssetest.MustOpen(t, g.addr, "/events")
	<-h.conns
	for range 2 {
		if e := s.Event(); e.Data != protocol.Ping || e.HasID {
			t.Fatalf("want a ping event, got %v", e)
		}
	}
	if n := count(g.m.HeartbeatPings); n < 5 {
		t.Fatalf("heartbeats counted: %v", n)
	}
}

// TestStreamBytesAfterRequest: a client that sends bytes on its stream is
// closed with 1002 and a reason, and nothing it sent is read as a request.
func TestStreamBytesAfterRequest(t *testing.T) {
	h := newStreams()
	g := start(t, server.Config{Events: h})
	s := ssetest.MustOpen(t, g.addr, "/events")
	<-h.conns
	if _, err := io.WriteString(s.Conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	code, reason := closeData(t, s.Event())
	if code != 1002 || reason != "an event stream takes no request bytes" {
		t.Fatalf("closed %d %q", code, reason)
	}
	if _, err := s.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the close event: %v, want the end", err)
	}
	s.Conn.Close() // as a browser does at the end of the stream
	<-h.closed
	if n := count(g.m.ConnectionsClosed("protocol_error")); n != 1 {
		t.Fatalf("closed for a protocol error: %v", n)
	}
}

// TestStreamSlowConsumer: a stream that stops reading is closed as a slow
// consumer like a WebSocket; what it then reads is whole events, each id
// with its data, and the close event names no position.
func TestStreamSlowConsumer(t *testing.T) {
	h := newStreams()
	g := start(t, server.Config{Events: h, OutboundQueueBytes: 64 << 10})
	s := ssetest.MustOpen(t, g.addr, "/events")
	c := <-h.conns
	data := strings.Repeat("x", 1000)
	var err error
	sent := 0
	for sent = 1; err == nil && sent < 1_000_000; sent++ {
		env := fmt.Sprintf(`{"type":"message","channel":"news","offset":%d,"data":"%s"}`, sent, data)
		err = c.QueueEvent([]byte(fmt.Sprintf("id: news,e-1,%d\n", sent)), event(env))
		if sent%16 == 0 {
			c.Flush()
		}
	}
	c.Flush()
	if !errors.Is(err, server.ErrSlowConsumer) {
		t.Fatalf("after %d events: %v", sent, err)
	}
	n := 0
	for {
		e, err := s.Next()
		if err != nil {
			t.Fatalf("after %d events: %v", n, err)
		}
		var v struct {
			Type   string
			Offset int
			Code   int
		}
		if err := json.Unmarshal([]byte(e.Data), &v); err != nil {
			t.Fatalf("event %d: %v: %q", n, err, e.Data)
		}
		if v.Type == "close" {
			if v.Code != 1013 || e.HasID || e.LastEventID != fmt.Sprintf("news,e-1,%d", n) {
				t.Fatalf("close event %v after %d events", e, n)
			}
			break
		}
		n++
		if v.Offset != n || e.LastEventID != fmt.Sprintf("news,e-1,%d", n) || !e.HasID {
			t.Fatalf("event %d: %v", n, e)
		}
	}
	if n == 0 || n >= sent {
		t.Fatalf("read %d of %d events before the close", n, sent)
	}
	s.Conn.Close()
	<-h.closed
	if count(g.m.SlowConsumers) != 1 {
		t.Fatal("not counted as a slow consumer")
	}
}

// TestIdleStreamsHoldNoGoroutines parks thousands of streams and checks
// that the goroutine count does not grow with them.
func TestIdleStreamsHoldNoGoroutines(t *testing.T) {
	const n = 2000
	h := newStreams()
	h.conns = make(chan *server.Conn, n)
	g := start(t, server.Config{Events: h})
	parkMany(t, g, n, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusOK)
}
