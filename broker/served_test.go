package broker

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/internal/proctest"
	"github.com/pushgate/pushgate/internal/wstest"
)

// startServedNode is startNode with Config.ReadServed, its hub calling the
// broker's Load and Unload as the gateway wires them.
func startServedNode(t testing.TB, url string, historySize int) *node {
	t.Helper()
	return servedNodeWith(t, url, broadcast.Config{HistorySize: historySize}, (*Broker).Unload)
}

func publishN(t *testing.T, n *node, channel string, from, to int) (epoch string) {
	t.Helper()
	for i := from; i <= to; i++ {
		r, err := n.b.Publish(context.Background(), channel, fmt.Appendf(nil, `{"n":%d}`, i))
		if err != nil {
			t.Fatal(err)
		}
		if r.Offset != uint64(i) {
			t.Fatalf("publish %d to %s: offset %d", i, channel, r.Offset)
		}
		epoch = r.Epoch
	}
	return epoch
}

func offsets(from, to uint64) []uint64 {
	var s []uint64
	for o := from; o <= to; o++ {
		s = append(s, o)
	}
	return s
}

// A node reads only the channels it has subscribers for: a channel
// published to elsewhere costs it nothing until a client subscribes here,
// and that client, with `since`, recovers as on a node that read
// everything, then gets what follows live.
func TestServedReadsOnlyItsChannels(t *testing.T) {
	nats := startNATS(t)
	a := startServedNode(t, nats.URL, 100)
	b := startServedNode(t, nats.URL, 100)

	epoch := publishN(t, a, "news", 1, 5)
	publishN(t, a, "other", 1, 5)
	if s := b.hub.Stats(); s.Channels != 0 {
		t.Fatalf("b holds %d channels before any subscriber", s.Channels)
	}

	c := b.client(t, "news", &broadcast.Position{Offset: 2, Epoch: epoch})
	c.waitOffsets(t, "news", []uint64{3, 4, 5})
	if r := c.reply(0); r["type"] != "subscribed" || r["recovered"] != true || r["offset"] != float64(5) || r["epoch"] != epoch {
		t.Fatalf("b's reply to a subscribe since 2: %v, want subscribed, recovered, the channel at 5 in %s", r, epoch)
	}
	if got := c.dataOf("news"); !slices.Equal(got, []string{`{"n":3}`, `{"n":4}`, `{"n":5}`}) {
		t.Fatalf("replayed data %v", got)
	}
	publishN(t, a, "news", 6, 8)
	c.waitOffsets(t, "news", offsets(3, 8))

	// b read news' eight publications, and none of other's.
	if got := testutil.ToFloat64(b.m.Received); got != 8 {
		t.Fatalf("b received %v publications, want 8 (news only)", got)
	}
	if s := b.hub.Stats(); s.Channels != 1 {
		t.Fatalf("b holds %d channels, want 1", s.Channels)
	}
	if got := testutil.ToFloat64(b.m.Served); got != 1 {
		t.Fatalf("broker_channels_served %v, want 1", got)
	}
	if l, ab := testutil.ToFloat64(b.m.Loads), testutil.ToFloat64(b.m.LoadsAbandoned); l != 1 || ab != 0 {
		t.Fatalf("loads %v, abandoned %v: want news loaded once, in time", l, ab)
	}

	// A publish through b to a channel b does not serve does not wait
	// for a fan-out b will never do.
	r, err := b.b.Publish(context.Background(), "other", []byte(`{"n":6}`))
	if err != nil || r.Offset != 6 || r.Delivered != 0 {
		t.Fatalf("publish through b to other: %+v, %v", r, err)
	}

	// A channel with nothing stored: the subscriber starts at 0 and
	// gets the first publication, in the epoch it starts.
	d := b.client(t, "empty", nil)
	wstest.Until(t, 10*time.Second, func() error {
		if d.reply(0) == nil {
			return fmt.Errorf("no reply yet")
		}
		return nil
	})
	publishN(t, a, "empty", 1, 2)
	d.waitOffsets(t, "empty", []uint64{1, 2})

	// news' last subscriber here leaves: b stops reading it, its history
	// here goes (the stream keeps it for the next first subscriber).
	received := testutil.ToFloat64(b.m.Received)
	if err := b.hub.Unsubscribe(c.m, "news"); err != nil {
		t.Fatal(err)
	}
	wstest.Until(t, 10*time.Second, func() error {
		if got := testutil.ToFloat64(b.m.Served); got != 1 {
			return fmt.Errorf("%v channels served, want 1 (empty)", got)
		}
		return nil
	})
	publishN(t, a, "news", 9, 10)
	publishN(t, a, "empty", 3, 3) // after news' on the stream
	d.waitOffsets(t, "empty", []uint64{1, 2, 3})
	if got := testutil.ToFloat64(b.m.Received); got != received+1 {
		t.Fatalf("b received %v publications after news' last subscriber left, want 1 (empty's)", got-received)
	}
}

// Live messages lost on the way (core NATS drops what a slow consumer
// cannot take): the next one shows the gap, the channel is read again from
// the stream, and the subscriber gets every offset once.
func TestServedFillsGaps(t *testing.T) {
	nats := startNATS(t)
	proxy := newAckDropper(t, nats.URL)
	a := startNode(t, nats.URL, Config{}) // reads everything: both kinds share a stream
	b := startServedNode(t, proxy.URL, 100)
	epoch := publishN(t, a, "news", 1, 3)
	c := b.client(t, "news", &broadcast.Position{Offset: 3, Epoch: epoch})
	wstest.Until(t, 10*time.Second, func() error {
		if c.reply(0) == nil {
			return fmt.Errorf("no reply yet")
		}
		return nil
	})
	proxy.dropLive.Store(2)
	publishN(t, a, "news", 4, 6) // 4 and 5 dropped; 6 shows the gap
	c.waitOffsets(t, "news", []uint64{4, 5, 6})
	if proxy.droppedLive.Load() != 2 {
		t.Fatalf("%d live messages dropped, want 2", proxy.droppedLive.Load())
	}
	publishN(t, a, "news", 7, 7)
	c.waitOffsets(t, "news", []uint64{4, 5, 6, 7})
}

// A node cut from NATS loses what was published meanwhile on the live
// subjects: after it reconnects, every served channel is read again from
// where it stood.
func TestServedAfterReconnect(t *testing.T) {
	nats := startNATS(t)
	proxy := newAckDropper(t, nats.URL)
	a := startNode(t, nats.URL, Config{})
	b := startServedNode(t, proxy.URL, 100)
	epoch := publishN(t, a, "news", 1, 3)
	c := b.client(t, "news", &broadcast.Position{Offset: 3, Epoch: epoch})
	publishN(t, a, "news", 4, 4)
	c.waitOffsets(t, "news", []uint64{4})

	proxy.refuse.Store(true)
	proxy.cut()
	wstest.Until(t, 10*time.Second, func() error {
		if b.b.Ready() == nil {
			return fmt.Errorf("b still ready")
		}
		return nil
	})
	publishN(t, a, "news", 5, 7)
	proxy.refuse.Store(false)
	c.waitOffsets(t, "news", offsets(4, 7))
	publishN(t, a, "news", 8, 8)
	c.waitOffsets(t, "news", offsets(4, 8))
}

// A stream made by an earlier version does not republish. NATS 2.10 and
// later let it gain RePublish, and a served node reads it; Debian's 2.9
// does not, and a served node stays not ready, saying why, while a node
// reading everything uses the stream as it is.
func TestServedOnAnOlderStream(t *testing.T) {
	older := func(t *testing.T, url string) {
		t.Helper()
		nc, err := natsgo.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "PUSHGATE", Subjects: []string{"PUSHGATE.>"},
			Storage: jetstream.FileStorage, MaxAge: 5 * time.Minute, Duplicates: 2 * time.Minute, AllowDirect: true}); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("nats=2.15", func(t *testing.T) {
		nats := startNATS(t)
		older(t, nats.URL)
		n := startServedNode(t, nats.URL, 100)
		sp := n.b.stream.Load()
		info, err := (*sp).Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.RePublish == nil {
			t.Fatal("the stream does not republish after a served node set it up")
		}
	})
	t.Run("nats=debian", func(t *testing.T) {
		_, url := proctest.NATS(t)
		older(t, url)
		all := startNode(t, url, Config{}) // ready: it keeps the stream as it is
		var reader atomic.Pointer[Broker]
		hub := broadcast.New(broadcast.Config{Shards: 1, Clustered: true,
			Load: func(name string, id uint64) { reader.Load().Load(name, id) }, Unload: func(name string) { reader.Load().Unload(name) }})
		defer hub.Close()
		b, err := New(Config{URL: url, Hub: hub, ReadServed: true,
			Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if err != nil {
			t.Fatal(err)
		}
		reader.Store(b)
		defer b.Close()
		wstest.Until(t, 10*time.Second, func() error {
			if err := b.Ready(); err == nil || !strings.Contains(err.Error(), "does not republish") {
				return fmt.Errorf("served node's readiness: %v", err)
			}
			return nil
		})
		if _, err := all.b.Publish(context.Background(), "news", []byte(`{}`)); err != nil {
			t.Fatalf("the node reading everything cannot publish: %v", err)
		}
	})
}

// NATS before 2.10 (Debian's 2.9) republishes a message without the
// Nats-Time-Stamp header. A served node applying it live must still give
// it a time: history expires by it (--history-ttl), and a zero time made
// every live message expire at the next sweep, so that a client resuming
// on the node between the sweep and the next message was told
// recovered:false (TestClusterBehindHAProxy/read=served on CI).
func TestServedLiveMessagesWithoutTimeStamp(t *testing.T) {
	_, url := proctest.NATS(t)
	n := startServedNode(t, url, 100)
	// Answered once loaded: a publish before that would be part of the
	// load, not a message after the subscribe.
	c, _ := n.answered(t, "news")
	before := time.Now()
	publishN(t, n, "news", 1, 3)
	c.waitOffsets(t, "news", offsets(1, 3))
	h := n.hub.History("news", 0)
	if len(h.Entries) != 3 {
		t.Fatalf("history holds %d entries, want 3", len(h.Entries))
	}
	for _, e := range h.Entries {
		if e.Time.Before(before.Add(-time.Minute)) || e.Time.After(time.Now().Add(time.Minute)) {
			t.Errorf("offset %d has time %v; want about %v", e.Offset, e.Time, before)
		}
	}
}
