package server_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/wsproto"
)

func text(s string) []byte { return wsproto.AppendFrame(nil, ws.OpText, []byte(s)) }

// Frames kept by Queue leave at Flush, in order, followed by what Send
// added meanwhile; Queue keeps the queue bound and refuses a closed
// connection.
func TestQueueFlush(t *testing.T) {
	conns := make(capture, 1)
	g := start(t, server.Config{Handler: conns, OutboundQueueBytes: 4 << 10})
	client, _ := wstest.Dial(t, g.addr, "/ws")
	c := <-conns

	for i := range 40 {
		if err := c.Queue(text(fmt.Sprint("queued ", i))); err != nil {
			t.Fatal(err)
		}
	}
	// Send behind a queue joins it rather than overtaking it.
	if err := c.Send(text("sent")); err != nil {
		t.Fatal(err)
	}
	c.Flush()
	for i := range 40 {
		client.ExpectMessage(ws.OpText, []byte(fmt.Sprint("queued ", i)))
	}
	client.ExpectMessage(ws.OpText, []byte("sent"))
	c.Flush() // nothing queued: a no-op

	// Past the bound, Queue closes the connection like Send.
	big := text(string(make([]byte, 1<<10)))
	var err error
	for i := 0; err == nil; i++ {
		if i > 10 {
			t.Fatal("no slow-consumer close past the bound")
		}
		err = c.Queue(big)
	}
	if !errors.Is(err, server.ErrSlowConsumer) {
		t.Fatalf("Queue past the bound: %v", err)
	}
	c.Flush()
	if err := c.Queue(text("late")); !errors.Is(err, server.ErrClosed) {
		t.Errorf("Queue on a closing connection: %v", err)
	}
	// Unstarted frames were dropped; the client gets 1013.
	if reason := client.ExpectClose(1013); reason != "slow consumer" {
		t.Errorf("close reason %q", reason)
	}
	if n := count(g.m.SlowConsumers); n != 1 {
		t.Errorf("%v slow consumers counted", n)
	}
}
