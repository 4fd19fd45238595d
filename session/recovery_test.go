package session_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pushgate/pushgate/broadcast"
)

// Recovery under fire: a client disconnects while publishes go on, comes
// back with since while more publishes race with the replay, and ends with
// every offset exactly once, in order.
func TestRecoveryAcrossReconnects(t *testing.T) {
	// History keeps every message however fast the publisher runs: the
	// byte bounds (a channel's 4 MiB is some 7,000 of these) are not what
	// is tested here.
	g := start(t, options{hub: broadcast.Config{HistorySize: 100000, HistoryChannelMaxBytes: 1 << 30, HistoryMaxBytes: 1 << 30}})
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var published atomic.Uint64
	progress := make(chan struct{}, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			res, err := g.hub.Publish(ctx, "feed", []byte(fmt.Sprint(i)))
			if err != nil && ctx.Err() == nil {
				t.Error(err)
				return
			}
			published.Store(res.Offset)
			select {
			case progress <- struct{}{}:
			default:
			}
		}
	}()
	var last uint64
	var epoch string
	for round := 0; round < 8; round++ {
		c := g.dial(t, "")
		if round == 0 {
			c.Send(`{"op":"subscribe","channel":"feed"}`)
		} else {
			c.Send(fmt.Sprintf(`{"op":"subscribe","channel":"feed","since":%d,"epoch":%q}`, last, epoch))
		}
		sub := c.ExpectMsg("subscribed", "")
		if round == 0 {
			last, epoch = sub.Offset, sub.Epoch
		} else if !sub.Recovered || sub.Epoch != epoch {
			t.Fatalf("round %d: %s", round, sub.Raw)
		}
		// Read the replay and then live messages, well past the point of
		// subscribing, so that replay and live traffic meet.
		for last < sub.Offset+50 {
			m := c.ExpectMsg("message", "")
			if m.Offset != last+1 {
				t.Fatalf("round %d: offset %d after %d", round, m.Offset, last)
			}
			last = m.Offset
		}
		c.Conn.Close()
		// Let publishes go on while the client is away.
		for away := published.Load(); published.Load() < away+30; {
			<-progress
		}
	}
	stop()
	wg.Wait()
}

func TestRecoveryFailsOverSockets(t *testing.T) {
	g := start(t, options{hub: broadcast.Config{HistorySize: 5}})
	for i := 1; i <= 20; i++ {
		g.publish(t, "news", fmt.Sprint(i))
	}
	epoch := g.hub.History("news", 0).Epoch
	for _, tc := range []struct {
		name      string
		since     uint64
		epoch     string
		recovered bool
		first     uint64
	}{
		{"recovered", 17, epoch, true, 18},
		{"history too short", 3, epoch, false, 16},
		{"restarted (other epoch)", 18, "before-restart", false, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := g.dial(t, "")
			c.Send(fmt.Sprintf(`{"op":"subscribe","channel":"news","since":%d,"epoch":%q}`, tc.since, tc.epoch))
			sub := c.ExpectMsg("subscribed", "")
			if sub.Recovered != tc.recovered || sub.Offset != 20 || sub.Epoch != epoch {
				t.Fatalf("got %s", sub.Raw)
			}
			for o := tc.first; o <= 20; o++ {
				if m := c.ExpectMsg("message", ""); m.Offset != o || string(m.Data) != fmt.Sprint(o) {
					t.Fatalf("replay: got %s, want offset %d", m.Raw, o)
				}
			}
			g.publish(t, "other", "0")
			c.Send(`{"op":"unsubscribe","channel":"news"}`)
			c.ExpectMsg("unsubscribed", "") // nothing else was replayed
		})
	}
}
