package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/metrics"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/wsproto"
)

// parkMany opens n connections to g, each sending req and reading the
// response head (status want) and nothing more, so that no goroutine on
// the client side holds them; it checks that the server parked them
// without a goroutine each. They are closed when the test ends.
func parkMany(t *testing.T, g *gateway, n int, req string, want int) []net.Conn {
	t.Helper()
	base := runtime.NumGoroutine()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		c, err := net.Dial("tcp", g.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReaderSize(c, 256), nil)
		if err != nil || resp.StatusCode != want {
			t.Fatalf("%q: %v %v", req, resp, err)
		}
	}
	wstest.Eventually(t, fmt.Sprintf("%d connections registered", n), func() bool { return g.Len() == n })
	wstest.Eventually(t, "handshake goroutines to finish", func() bool { return runtime.NumGoroutine() <= base+2 })
	t.Logf("%d goroutines before, %d with %d idle connections", base, runtime.NumGoroutine(), n)
	return conns
}

// TestIdleConnectionsHoldNoGoroutines parks thousands of connections and
// checks that the goroutine count does not grow with them.
func TestIdleConnectionsHoldNoGoroutines(t *testing.T) {
	const n = 4000
	g := start(t, server.Config{Echo: true})
	conns := parkMany(t, g, n, wstest.UpgradeRequest("/ws"), http.StatusSwitchingProtocols)

	// And they are alive: one of them still echoes.
	c := conns[n/2]
	if _, err := c.Write(wstest.Frame(true, 0, ws.OpPing, []byte("?"))); err != nil {
		t.Fatal(err)
	}
	h, err := ws.ReadHeader(c)
	if err != nil || h.OpCode != ws.OpPong {
		t.Fatalf("got %v %v, want a pong", h.OpCode, err)
	}
}

// TestShutdown drains a server: readiness turns false, new connections
// are refused, every client gets 1001 (spread over the drain window), and
// Shutdown returns once the clients have answered.
func TestShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	// CloseTimeout is as long as any wait in these tests: the clients
	// answer the last close frames at once, but a loaded machine may take
	// its time to run them, and that must not count as a failed drain.
	srv, err := server.New(server.Config{Echo: true, CloseTimeout: wstest.Timeout, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	admin := httptest.NewServer(srv.AdminMux(reg))
	defer admin.Close()

	const n = 40
	closedAt := make([]time.Time, n)
	var wg sync.WaitGroup
	for i := range n {
		c, _ := wstest.Dial(t, ln.Addr().String(), "/echo")
		wg.Add(1)
		go func() {
			defer wg.Done()
			if reason := c.ExpectClose(1001); reason != "server shutting down" {
				t.Errorf("reason %q", reason)
			}
			closedAt[i] = time.Now()
			c.Write(wstest.Frame(true, 0, ws.OpClose, wstest.ClosePayload(1001, "")))
			c.ExpectEOF()
		}()
	}
	if status(t, admin.URL+"/readyz") != 200 {
		t.Fatal("not ready before shutdown")
	}

	const window = time.Second // the deadline minus CloseTimeout
	// start precedes the deadline's clock: a test descheduled between the
	// two would otherwise see a spread short by that pause.
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), window+wstest.Timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()

	wstest.Eventually(t, "readiness to turn false", func() bool { return status(t, admin.URL+"/readyz") == 503 })
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Error("a new connection was accepted while draining")
	}
	wg.Wait()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if ctx.Err() != nil {
		t.Error("Shutdown returned at its deadline, not once the clients had answered")
	}
	last := closedAt[0]
	for _, at := range closedAt {
		last = maxTime(last, at)
	}
	// The server waits before closing the later ones. Its window is the
	// deadline less CloseTimeout, counted when Shutdown gets there: a
	// loaded machine (the whole suite under -race on 2 cores) takes a few
	// hundred milliseconds of it first. Closed all at once, the spread
	// would be a few milliseconds.
	if spread := last.Sub(start); spread < window/2 {
		t.Errorf("closes spread over %v, want about %v", spread, window)
	}
	if got := count(m.ConnectionsClosed("shutdown")); got != n {
		t.Errorf("%v connections closed for shutdown, want %d", got, n)
	}
}

// TestShutdownDeadline checks that clients that never answer the close
// frame do not hold Shutdown past its deadline.
func TestShutdownDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Echo: true, CloseTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	mute, _ := wstest.Dial(t, ln.Addr().String(), "/echo")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = srv.Shutdown(ctx)
	if err == nil || !strings.Contains(err.Error(), "1 of 1 connections") {
		t.Fatalf("Shutdown: %v, want a report of the connection left", err)
	}
	mute.ExpectClose(1001)
	mute.ExpectEOF()
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// panicky is a Handler that panics on the message "panic".
type panicky struct{}

func (p panicky) Open(*server.Conn, wsproto.Handshake, []byte) {}
func (p panicky) Closed(*server.Conn)                          {}
func (p panicky) Message(c *server.Conn, _ ws.OpCode, msg []byte) {
	if string(msg) == "panic" {
		panic("handler bug")
	}
	_ = c.SendMessage(ws.OpText, msg)
}

// TestHandlerPanic checks that a Handler's panic closes that connection
// with 1011 and releases it, and nothing else.
func TestHandlerPanic(t *testing.T) {
	g := start(t, server.Config{Handler: panicky{}})
	bad, _ := wstest.Dial(t, g.addr, "/ws")
	good, _ := wstest.Dial(t, g.addr, "/ws")
	bad.Write(wstest.Text("panic"))
	bad.ExpectClose(1011)
	bad.ExpectEOF()
	wstest.Eventually(t, "the connection released", func() bool { return g.Len() == 1 })
	if n := count(g.m.ConnectionsClosed("internal_error")); n != 1 {
		t.Errorf("%v internal_error closes, want 1", n)
	}
	good.Write(wstest.Text("fine"))
	good.ExpectMessage(ws.OpText, []byte("fine"))
}
