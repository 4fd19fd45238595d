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

	// Frames Queue keeps are judged only once the socket has refused
	// them: a batch far over the bound reaches a client that reads.
	big := text(string(make([]byte, 1<<10)))
	for range 64 {
		if err := c.Queue(big); err != nil {
			t.Fatalf("Queue of a batch 16 times the bound: %v", err)
		}
	}
	c.Flush()
	for range 64 {
		client.ExpectMessage(ws.OpText, make([]byte, 1<<10))
	}

	// A client that stops reading: what its socket refuses counts, and
	// past the bound the connection is closed.
	var err error
	for i := 0; err == nil; i++ {
		if i > 100<<10 {
			t.Fatal("no slow-consumer close after 100 MiB")
		}
		if err = c.Queue(big); i%16 == 15 {
			c.Flush()
		}
	}
	if !errors.Is(err, server.ErrSlowConsumer) && !errors.Is(err, server.ErrClosed) {
		t.Fatalf("Queue past the bound: %v", err)
	}
	c.Flush()
	if err := c.Queue(text("late")); !errors.Is(err, server.ErrClosed) {
		t.Errorf("Queue on a closing connection: %v", err)
	}
	if n := count(g.m.SlowConsumers); n != 1 {
		t.Errorf("%v slow consumers counted", n)
	}
	// Reading at last, the client finds what the kernel held, then 1013.
	client.ExpectClose(1013)
}

// Frames handed over with Pace (a replay) never count against the bound:
// a replay many times the bound and the kernel's buffers waits for the
// socket, and a client that reads gets all of it, in order with what
// follows.
func TestPaceIsNotCounted(t *testing.T) {
	conns := make(capture, 1)
	g := start(t, server.Config{Handler: conns, OutboundQueueBytes: 4 << 10})
	client, _ := wstest.Dial(t, g.addr, "/ws")
	c := <-conns
	const frames = 16 << 10 // 16 MiB of 1 KiB frames
	big := text(string(make([]byte, 1<<10)))
	for i := range frames {
		if err := c.Pace(big); err != nil {
			t.Fatalf("Pace %d: %v", i, err)
		}
	}
	c.Flush()
	if err := c.Send(text("after the replay")); err != nil {
		t.Fatal(err)
	}
	for range frames {
		client.ExpectMessage(ws.OpText, make([]byte, 1<<10))
	}
	client.ExpectMessage(ws.OpText, []byte("after the replay"))
	if n := count(g.m.SlowConsumers); n != 0 {
		t.Errorf("%v slow consumers counted", n)
	}
}
