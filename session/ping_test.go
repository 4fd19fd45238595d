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
