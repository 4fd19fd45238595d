package session_test

import (
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/server"
)

// A connection that asks for app-level pings (ping=1) gets {"type":"ping"}
// with each WebSocket ping; its {"op":"pong"} answers (no reply), and the
// connection lives on. One that did not ask sees WebSocket pings only.
func TestAppPing(t *testing.T) {
	g := start(t, options{tune: func(c *server.Config) {
		c.PingInterval = 100 * time.Millisecond
		c.PongTimeout = time.Minute
	}})
	app, plain := g.dial(t, "?ping=1"), g.dial(t, "")
	for range 3 {
		if h, _ := app.ReadFrame(); h.OpCode != ws.OpPing {
			t.Fatalf("got %v, want the WebSocket ping first", h.OpCode)
		}
		if m := app.ReadMsg(); m.Type != "ping" || string(m.Raw) != `{"type":"ping"}` {
			t.Fatalf("got %s", m.Raw)
		}
		app.Send(`{"op":"pong"}`)
	}
	for range 3 {
		if h, p := plain.ReadFrame(); h.OpCode != ws.OpPing {
			t.Fatalf("a connection that did not ask got %v %q", h.OpCode, p)
		}
		plain.Write(wstest.Frame(true, 0, ws.OpPong, nil))
	}
}

// A connection that asked for app-level pings and keeps talking, but is
// sent nothing, still gets {"type":"ping"}: its application cannot tell
// our silence from a dead link.
func TestAppPingWhileTalking(t *testing.T) {
	g := start(t, options{tune: func(c *server.Config) {
		c.PingInterval = 150 * time.Millisecond
		c.PongTimeout = time.Minute
	}})
	c := g.dial(t, "?ping=1")
	done := make(chan struct{})
	talked := make(chan struct{})
	go func() {
		defer close(talked)
		tick := time.NewTicker(30 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if _, err := c.Conn.Write(wstest.Text(`{"op":"pong"}`)); err != nil {
					return
				}
			}
		}
	}()
	defer func() { close(done); <-talked }()
	for range 3 {
		h, p := c.ReadFrame()
		if h.OpCode != ws.OpText || string(p) != `{"type":"ping"}` {
			t.Fatalf("got %v %q, want only app-level pings (the client is never silent)", h.OpCode, p)
		}
	}
}
