package session_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/server"
)

// bigData is a JSON string of about n bytes, tagged so that a reader can
// tell messages apart.
func bigData(tag, n int) string {
	return fmt.Sprintf(`"%d:%s"`, tag, strings.Repeat("x", n))
}

// readAll reads want messages of channel from c, in offset order from
// first, and reports anything else (a 1013 above all). It may run on its
// own goroutine.
func readAll(t *testing.T, c *wstest.Client, channel string, first uint64, want int) {
	for i := range want {
		m, err := c.TryReadMsg()
		if err != nil {
			t.Errorf("message %d: %v", i, err)
			return
		}
		if m.Type != "message" || m.Channel != channel || m.Offset != first+uint64(i) {
			t.Errorf("message %d: got %.120s", i, m.Raw)
			return
		}
	}
}

// A reconnect storm: many clients recover a large history at once, more
// than --outbound-queue-bytes each. Readers that read are never closed as
// slow consumers: the replay is written as their sockets drain.
func TestRecoveryStormKeepsReaders(t *testing.T) {
	g := start(t, options{}) // the default 1 MiB outbound queue
	const clients, messages, size = 48, 6, 300 << 10
	for i := range messages {
		g.publish(t, "big", bigData(i, size))
	}
	epoch := g.hub.History("big", 0).Epoch
	var wg sync.WaitGroup
	for range clients {
		c := g.dial(t, "")
		c.Send(fmt.Sprintf(`{"op":"subscribe","channel":"big","since":0,"epoch":%q}`, epoch))
		wg.Go(func() {
			if m, err := c.TryReadMsg(); err != nil || m.Type != "subscribed" || !m.Recovered {
				t.Errorf("subscribe: %v %s, want recovered", err, m.Raw)
				return
			}
			readAll(t, c, "big", 1, messages)
		})
	}
	wg.Wait()
}

// Large publishes that arrive together (one delivery batch) reach readers
// whole: frames a shard queues are counted against the bound only once
// the socket has refused them.
func TestLargePublishesKeepReaders(t *testing.T) {
	g := start(t, options{})
	const readers, rounds, size = 8, 5, 700 << 10
	cs := make([]*wstest.Client, readers)
	for i := range cs {
		cs[i] = g.dial(t, "?channels=big")
		cs[i].ExpectMsg("subscribed", "")
	}
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() { readAll(t, c, "big", 1, 2*rounds) })
	}
	for r := range rounds {
		var pub sync.WaitGroup
		for i := range 2 {
			pub.Go(func() {
				if _, err := g.hub.Publish(context.Background(), "big", []byte(bigData(2*r+i, size))); err != nil {
					t.Error(err)
				}
			})
		}
		pub.Wait()
	}
	wg.Wait()
}

// A subscriber that stops reading is still closed with 1013 once what its
// socket refused passes the bound, and readers go on.
func TestStalledSubscriberClosed(t *testing.T) {
	g := start(t, options{queue: 256 << 10, hub: broadcast.Config{HistorySize: -1}})
	stalled := g.dial(t, "?channels=feed")
	stalled.ExpectMsg("subscribed", "")
	reader := g.dial(t, "?channels=feed")
	reader.ExpectMsg("subscribed", "")
	for i := 0; ; i++ {
		if i == 2000 {
			t.Fatal("no slow-consumer close after 2000 × 64 KiB")
		}
		g.publish(t, "feed", bigData(i, 64<<10))
		if m := reader.ReadMsg(); m.Offset != uint64(i+1) {
			t.Fatalf("reader got %.80s, want offset %d", m.Raw, i+1)
		}
		if testutil.ToFloat64(g.m.SlowConsumers) == 1 {
			break
		}
	}
	stalled.ExpectClose(1013)
}

// A client that never reads cannot pin memory through replays: paced
// replays do not count against the bound while its socket takes them, but
// once its socket has taken nothing for --pong-timeout with more than the
// bound waiting, it is closed as a slow consumer. (Its own replies alone,
// about 150 bytes a cycle, would take some 7,000 cycles to pass the bound.)
func TestStalledReplaysClosed(t *testing.T) {
	g := start(t, options{hub: broadcast.Config{HistorySize: 10},
		tune: func(c *server.Config) { c.PongTimeout, c.ClientMessageRate = 500*time.Millisecond, -1 }})
	c := g.dial(t, "")
	// 100 replays of 160 KiB: more than loopback's socket buffers (10 MiB
	// at most) and the bound together, so the socket stalls with more than
	// the bound waiting; then the close is a matter of --pong-timeout.
	cycle := 0
	for ; cycle < 100 && testutil.ToFloat64(g.m.SlowConsumers) == 0; cycle++ {
		for i := range 10 {
			g.publish(t, "big", bigData(100*cycle+i, 16<<10))
		}
		epoch := g.hub.History("big", 0).Epoch
		c.Send(fmt.Sprintf(`{"op":"subscribe","channel":"big","since":0,"epoch":%q}`, epoch))
		c.Send(`{"op":"unsubscribe","channel":"big"}`)
		wstest.Eventually(t, "both ops to run", func() bool {
			s := g.hub.Stats()
			return s.Subscribers == 0 && s.QueuedOps == 0
		})
	}
	wstest.Eventually(t, "a slow-consumer close of the client that never reads", func() bool {
		return testutil.ToFloat64(g.m.SlowConsumers) == 1
	})
	t.Logf("closed as a slow consumer; %d replays sent", cycle)
}
