package server_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/server"
)

// Messages in progress hold memory until they end: node-wide, they may
// hold MaxPartialBytes. The connection whose message would pass it is
// closed with 1013; the others finish theirs, and other clients are served.
func TestPartialBudget(t *testing.T) {
	g := start(t, server.Config{Echo: true, MaxMessageSize: 128 << 10, MaxPartialBytes: 256 << 10, CloseTimeout: 100 * time.Millisecond})
	first := bytes.Repeat([]byte("p"), 60<<10)
	var held []*wstest.Client
	for i := 0; ; i++ {
		if i == 20 {
			t.Fatal("20 partial messages of 60 KiB held under a 256 KiB budget")
		}
		c, _ := wstest.Dial(t, g.addr, "/echo")
		c.Write(wstest.Frame(false, 0, ws.OpText, first))
		// Each fragment is read whole before the next client starts, so
		// the one that passes the budget is this one.
		wstest.Eventually(t, "the fragment to be held whole, or refused", func() bool {
			return g.gauge(t, "pushgate_partial_message_bytes") >= float64((len(held)+1)*len(first)) ||
				count(g.m.ConnectionsClosed("partial_budget")) == 1
		})
		if count(g.m.ConnectionsClosed("partial_budget")) == 1 {
			if reason := c.ExpectClose(1013); reason != "server busy: too many partial messages" {
				t.Fatalf("close reason %q", reason)
			}
			break
		}
		held = append(held, c)
		if b := g.gauge(t, "pushgate_partial_message_bytes"); b > 256<<10 {
			t.Fatalf("partial messages hold %v bytes, over the 256 KiB budget", b)
		}
	}
	if len(held) < 3 {
		t.Fatalf("only %d messages of 60 KiB held under a 256 KiB budget", len(held))
	}
	other, _ := wstest.Dial(t, g.addr, "/echo")
	other.Write(wstest.Text("served"))
	other.ExpectMessage(ws.OpText, []byte("served"))
	// The held messages complete, and give their bytes back.
	for _, c := range held {
		c.Write(wstest.Frame(true, 0, ws.OpContinuation, []byte("!")))
		c.ExpectMessage(ws.OpText, append(bytes.Clone(first), '!'))
	}
	wstest.Eventually(t, "the budget to be given back", func() bool {
		return g.gauge(t, "pushgate_partial_message_bytes") == 0 && g.gauge(t, "pushgate_partial_messages") == 0
	})
}

// A message begun must be finished within MessageTimeout, or the
// connection is closed with 1008.
func TestMessageTimeout(t *testing.T) {
	g := start(t, server.Config{Echo: true, MessageTimeout: 300 * time.Millisecond, CloseTimeout: 100 * time.Millisecond})
	stalled, _ := wstest.Dial(t, g.addr, "/echo")
	stalled.Write(wstest.Frame(false, 0, ws.OpText, []byte("never finished")))
	if reason := stalled.ExpectClose(1008); reason != "message not completed in time" {
		t.Fatalf("close reason %q", reason)
	}
	wstest.Eventually(t, "the close counted", func() bool { return count(g.m.ConnectionsClosed("message_timeout")) == 1 })
	// Its fragment is given back once the connection goes.
	stalled.Conn.Close()
	wstest.Eventually(t, "the reader released", func() bool { return g.gauge(t, "pushgate_partial_message_bytes") == 0 })
}

// A client streaming messages back to back, every read ending inside the
// next one, finishes each in time: the timeout runs per message, not from
// the first partial message the connection ever held.
func TestMessageTimeoutPerMessage(t *testing.T) {
	g := start(t, server.Config{Echo: true, MessageTimeout: 300 * time.Millisecond})
	c, _ := wstest.Dial(t, g.addr, "/echo")
	f := wstest.Text("0123456789")
	half := len(f) / 2
	c.Write(f[:half])
	// Ten messages, each finished about 100 ms after it began: a second
	// in all, three times the timeout.
	for range 10 {
		wstest.Eventually(t, "the half message to be held", func() bool { return g.gauge(t, "pushgate_partial_messages") == 1 })
		time.Sleep(100 * time.Millisecond)                  // the client is slow, not the test waiting for an event
		c.Write(append(bytes.Clone(f[half:]), f[:half]...)) // the end of one, the start of the next
		c.ExpectMessage(ws.OpText, []byte("0123456789"))
	}
}
