package broker

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/metrics"
)

// servedNodeWith is startServedNode whose hub's Unload goes through
// unload, so that a test can hold it back as a busy serve would.
func servedNodeWith(t testing.TB, url string, hc broadcast.Config, unload func(b *Broker, name string)) *node {
	t.Helper()
	var reader atomic.Pointer[Broker]
	hc.Clustered = true
	hc.Load = func(name string, id uint64) { reader.Load().Load(name, id) }
	hc.Unload = func(name string) { unload(reader.Load(), name) }
	if hc.Shards == 0 {
		hc.Shards = 2
	}
	n := &node{hub: broadcast.New(hc), m: metrics.NewBroker(nil), g: metrics.New(nil)}
	b, err := New(Config{URL: url, Hub: n.hub, Metrics: n.m, Gateway: n.g, ReadServed: true, PublishTimeout: 3 * time.Second,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	reader.Store(b)
	n.b = b
	t.Cleanup(func() { b.Close(); n.hub.Close() })
	wstest.Until(t, 10*time.Second, func() error { return b.Ready() })
	return n
}

// A node publishes to a channel it serves whose last subscriber has just
// left: the hub dropped it, but serve has not yet taken the Unload (it
// is queued behind other work). The publish is confirmed at offset 1; its
// caller must be told so, not offset 0 in no epoch.
func TestServedPublishToChannelDroppedMeanwhile(t *testing.T) {
	nats := startNATS(t)
	var mu sync.Mutex
	var held []string
	b := servedNodeWith(t, nats.URL, broadcast.Config{}, func(_ *Broker, name string) {
		mu.Lock()
		held = append(held, name)
		mu.Unlock()
	})
	_, m := b.answered(t, "news")
	if err := b.hub.Unsubscribe(m, "news"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	n := len(held)
	mu.Unlock()
	if n != 1 {
		t.Fatalf("the hub called Unload %d times, want once", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := b.b.Publish(ctx, "news", []byte(`{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Offset != 1 || r.Epoch == "" {
		t.Fatalf("publish confirmed by the stream reported %+v, want offset 1 in its epoch", r)
	}
}

var errNotYet = errors.New("not yet")

// NATS loses its store and another node publishes into the new stream
// while this served node is reconnected but has not yet looked at the
// stream (its answers are slow): the live messages of the new stream must
// not be taken for the old one's. The subscriber gets the new epoch from
// its start, as on a node reading everything
// (TestClusterStreamRecreatedWhileAway), and the history holds it all.
func TestServedStreamRecreatedWhileAway(t *testing.T) {
	nats := startNATS(t)
	proxy := newAckDropper(t, nats.URL)
	w := startServedNode(t, nats.URL, 100)
	b := startServedNode(t, proxy.URL, 100)
	c := b.client(t, "news", nil)
	wstest.Until(t, 10*time.Second, func() error {
		if c.reply(0) == nil {
			return errNotYet
		}
		return nil
	})
	before := publishN(t, w, "news", 1, 5)
	c.waitOffsets(t, "news", seq(1, 5))

	proxy.streamAPI.Store(true) // b cannot look at the new stream yet
	reconnects := b.b.nc.Stats().Reconnects
	nats.Stop()
	if err := os.RemoveAll(nats.Dir); err != nil {
		t.Fatal(err)
	}
	nats.Start()
	wstest.Until(t, 20*time.Second, func() error { return w.b.Ready() })
	wstest.Until(t, 20*time.Second, func() error {
		if b.b.nc.Stats().Reconnects == reconnects {
			return errNotYet
		}
		return b.b.nc.Flush() // its live subscriptions are back
	})
	after := publishN(t, w, "news", 1, 8)
	if after == before {
		t.Fatal("the stream was not recreated")
	}
	proxy.streamAPI.Store(false)
	wstest.Until(t, 20*time.Second, func() error { return b.b.Ready() })
	c.waitOffsets(t, "news", append(seq(1, 5), seq(1, 8)...))
	if h := b.hub.History("news", 0); h.Epoch != after || len(h.Entries) != 8 || !h.Complete {
		t.Fatalf("b's history: epoch %s, %d entries, complete %v; want the new stream's 8", h.Epoch, len(h.Entries), h.Complete)
	}
}

// A node publishes to a channel it serves; the channel's last subscriber
// leaves meanwhile, and serve takes the Unload after Publish saw the
// channel served but before the publication's live message came: serve
// drops that message, as it no longer reads the channel. Publish must not
// wait its whole PublishTimeout for a fan-out that will never come.
func TestServedPublishWhileUnloaded(t *testing.T) {
	nats := startNATS(t)
	proxy := newAckDropper(t, nats.URL)
	unloads := make(chan string, 8)
	b := servedNodeWith(t, proxy.URL, broadcast.Config{}, func(_ *Broker, name string) { unloads <- name })
	_, m := b.answered(t, "news")
	if err := b.hub.Unsubscribe(m, "news"); err != nil {
		t.Fatal(err)
	}
	name := <-unloads // held back: serve still reads news

	const late = 500 * time.Millisecond
	proxy.delayLive.Store(int64(late))
	start := time.Now()
	done := make(chan error, 1)
	var r broadcast.Result
	go func() {
		var err error
		r, err = b.b.Publish(context.Background(), "news", []byte(`{"n":1}`))
		done <- err
	}()
	// Confirmed (the live message is held): serve takes the Unload.
	time.Sleep(late / 2)
	b.b.Unload(name)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if r.Offset != 1 || r.Epoch == "" {
		t.Fatalf("publish reported %+v, want offset 1 in its epoch", r)
	}
	if took > late+time.Second {
		t.Fatalf("publish took %v: it waited for a fan-out of a channel no longer served (its live message came %v late)", took, late)
	}
}
