package broker

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/internal/natstest"
	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/protocol"
)

// session is a connection that checks, per subscription, that it gets
// each offset once, in order: from 1 when it subscribes since 0 (since),
// else from the offset of its "subscribed" reply.
type session struct {
	since bool
	mu    sync.Mutex
	last  map[string]uint64 // channel → last offset of the current subscription
	got   map[string]bool   // channel → a message came in the current subscription
	errs  []string
	// replied, if set, is told each "subscribed" reply's channel
	replied chan string
}

func newSession(since bool) *session {
	return &session{since: since, last: map[string]uint64{}, got: map[string]bool{}}
}

func (s *session) Encoding() protocol.Encoding { return protocol.WebSocket }

func (s *session) Send(frame []byte) error {
	v, _, err := decodeFrame(frame)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch v.Type {
	case "message":
		if want := s.last[v.Channel] + 1; v.Offset != want && len(s.errs) < 8 {
			s.errs = append(s.errs, fmt.Sprintf("%s: offset %d after %d", v.Channel, v.Offset, want-1))
		}
		s.last[v.Channel], s.got[v.Channel] = v.Offset, true
	case "subscribed":
		// Since 0 and recovered: the replay follows, from 1.
		if !(s.since && v.Recovered && !s.got[v.Channel]) {
			s.last[v.Channel] = v.Offset
		}
		if s.replied != nil {
			s.replied <- v.Channel
		}
	case "unsubscribed":
		delete(s.last, v.Channel) // the next subscription starts again
		delete(s.got, v.Channel)
	}
	return nil
}

func (s *session) at(channel string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last[channel]
}

func (s *session) failures() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.errs...)
}

type usage struct {
	heap       uint64
	goroutines int
}

func measure() usage {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return usage{ms.HeapAlloc, runtime.NumGoroutine()}
}

func (u usage) String() string {
	return fmt.Sprintf("heap %.1f MiB, %d goroutines", float64(u.heap)/(1<<20), u.goroutines)
}

// publishAll publishes offsets from..to to each channel through n, many
// at a time; each channel's publications in order.
func publishAll(t *testing.T, n *node, names []string, from, to int) map[string]string {
	t.Helper()
	var mu sync.Mutex
	epochs := map[string]string{}
	work := make(chan string)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 64 {
		wg.Go(func() {
			for name := range work {
				for i := from; i <= to; i++ {
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					r, err := n.b.Publish(ctx, name, fmt.Appendf(nil, `{"i":%d}`, i))
					cancel()
					if err == nil && r.Offset != uint64(i) {
						err = fmt.Errorf("offset %d, want %d", r.Offset, i)
					}
					if err != nil {
						failed.CompareAndSwap(nil, fmt.Sprintf("%s %d: %v", name, i, err))
						return
					}
					mu.Lock()
					epochs[name] = r.Epoch
					mu.Unlock()
				}
			}
		})
	}
	for _, name := range names {
		work <- name
	}
	close(work)
	wg.Wait()
	if f := failed.Load(); f != nil {
		t.Fatalf("publish: %v", f)
	}
	return epochs
}

func names(prefix string, n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return s
}

// waitAll waits until each channel's subscriber is at want, then checks
// none saw an offset out of place.
func waitAll(t *testing.T, subs map[string]*session, want uint64, timeout time.Duration) {
	t.Helper()
	wstest.Until(t, timeout, func() error {
		behind, example := 0, ""
		for name, s := range subs {
			if at := s.at(name); at != want {
				behind++
				example = fmt.Sprintf("%s at %d", name, at)
			}
		}
		if behind > 0 {
			return fmt.Errorf("%d subscribers short of %d (%s)", behind, want, example)
		}
		return nil
	})
	for _, s := range subs {
		if f := s.failures(); len(f) > 0 {
			t.Fatalf("a subscriber got offsets out of place: %v", f)
		}
	}
}

// fillConsumers is how many consumers the stream has: fills delete theirs.
func fillConsumers(t *testing.T, n *node) int {
	t.Helper()
	info, err := (*n.b.stream.Load()).Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Consumers
}

// servedState is how many channels serve keeps, as Publish sees them, and
// the node's NATS subscriptions.
func servedState(n *node) (names, subs int) {
	s := n.b.serving
	s.namesMu.Lock()
	defer s.namesMu.Unlock()
	return len(s.names), n.b.nc.NumSubscriptions()
}

// manyChannels starts NATS, a served node a that publishes stored offsets
// to each of n channels, and a served node b; under -race or -short, n is
// a fifth.
func manyChannels(t *testing.T, prefix string, n, stored int) (nats *natstest.Server, a, b *node, list []string, epochs map[string]string) {
	t.Helper()
	if testing.Short() || raceEnabled {
		n /= 5
	}
	nats = startNATS(t)
	a = startServedNode(t, nats.URL, 100)
	b = startServedNode(t, nats.URL, 100)
	list = names(prefix, n)
	return nats, a, b, list, publishAll(t, a, list, 1, stored)
}

// Thousands of channels, each with history on the stream, get their first
// subscriber on a served node at once, while another node publishes to
// all of them: each subscriber gets every offset once, in order, and once
// they all leave, the node reads nothing and holds nothing.
func TestServedManyLoadsAtOnce(t *testing.T) {
	stored, live := 5, 5
	_, a, b, list, epochs := manyChannels(t, "ch", 5000, stored)
	channels := len(list)
	before := measure()
	_, subs0 := servedState(b)

	start := time.Now()
	pubDone := make(chan map[string]string, 1)
	go func() { pubDone <- publishAll(t, a, list, stored+1, stored+live) }()
	subs := make(map[string]*session, channels)
	members := make(map[string]*broadcast.Member, channels)
	for _, name := range list {
		s := newSession(true)
		m := b.hub.Join(s)
		if err := b.hub.Subscribe(m, name, &broadcast.Position{Epoch: epochs[name]}); err != nil {
			t.Fatal(err)
		}
		subs[name], members[name] = s, m
	}
	wstest.Until(t, 2*time.Minute, func() error {
		if n := b.hub.Stats().LoadingChannels; n > 0 {
			return fmt.Errorf("%d channels loading", n)
		}
		return nil
	})
	loaded := time.Since(start)
	during := measure()
	<-pubDone
	waitAll(t, subs, uint64(stored+live), time.Minute)
	all := time.Since(start)
	t.Logf("%d channels × %d stored + %d live: loads answered in %v, every offset delivered in %v; loads %v, abandoned %v, fill errors %v",
		channels, stored, live, loaded.Round(time.Millisecond), all.Round(time.Millisecond),
		testutil.ToFloat64(b.m.Loads), testutil.ToFloat64(b.m.LoadsAbandoned), testutil.ToFloat64(b.m.FillErrors))

	for name, m := range members {
		if err := b.hub.Unsubscribe(m, name); err != nil {
			t.Fatal(err)
		}
		b.hub.Leave(m)
	}
	// History keeps channels, and so their reading, until it expires;
	// the hub holds nothing here once they are left (HistorySize aside,
	// checked by Stats).
	wstest.Until(t, 30*time.Second, func() error {
		if got := testutil.ToFloat64(b.m.Served); got != float64(b.hub.Stats().Channels) {
			return fmt.Errorf("served %v, hub channels %d", got, b.hub.Stats().Channels)
		}
		if c := fillConsumers(t, b); c != 0 {
			return fmt.Errorf("%d fill consumers left", c)
		}
		return nil
	})
	after := measure()
	served, natsSubs := servedState(b)
	t.Logf("process before the loads: %v; loaded: %v; all left: %v (hub channels %d kept by history, served %d, NATS subscriptions %d, %d before)",
		before, during, after, b.hub.Stats().Channels, served, natsSubs, subs0)
}

// Subscribers come and go on a few channels (Load, Unload, Load of the
// same names) while another node publishes to them: each subscription
// gets, after its reply, each offset once, in order, until it
// unsubscribes; subscribers that stay get everything; nothing is left
// served once they all left.
func TestServedChurn(t *testing.T) {
	const channels, rounds = 20, 300
	nats := startNATS(t)
	a := startServedNode(t, nats.URL, 100)
	b := servedNodeWith(t, nats.URL, broadcast.Config{HistorySize: -1}, (*Broker).Unload) // no history: channels drop with their last subscriber
	list := names("churn", channels)
	publishAll(t, a, list, 1, 1)
	before := measure()
	_, subs0 := servedState(b)

	stop := make(chan struct{})
	var pubs sync.WaitGroup
	var done atomic.Int64 // offsets published to every channel so far
	done.Store(1)
	tick := make(chan struct{}, 1) // the churners' pace: a round of publishes per tick
	pubs.Go(func() {
		for i := 2; ; i++ {
			select {
			case <-stop:
				return
			case <-tick:
			}
			publishAll(t, a, list, i, i)
			done.Store(int64(i))
		}
	})
	var churn sync.WaitGroup
	var bad atomic.Value
	sessions := make([]*session, 8)
	for w := range sessions {
		s := newSession(false)
		s.replied = make(chan string, 2*rounds)
		sessions[w] = s
		churn.Go(func() {
			m := b.hub.Join(s)
			defer b.hub.Leave(m)
			for r := range rounds {
				name := list[(w+r)%channels]
				kick(tick)
				if err := b.hub.Subscribe(m, name, nil); err != nil {
					bad.CompareAndSwap(nil, err.Error())
					return
				}
				if r%2 == 0 { // every other time, until the channel has loaded
					for c := range s.replied {
						if c == name {
							break
						}
					}
				}
				if err := b.hub.Unsubscribe(m, name); err != nil {
					bad.CompareAndSwap(nil, err.Error())
					return
				}
			}
		})
	}
	churn.Wait()
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	t.Logf("churn: %d rounds × %d members, %d offsets published per channel meanwhile: loads %v, abandoned %v",
		rounds, len(sessions), done.Load(), testutil.ToFloat64(b.m.Loads), testutil.ToFloat64(b.m.LoadsAbandoned))

	// Subscribers that stay, while the publishing goes on.
	stay := map[string]*session{}
	var members []*broadcast.Member
	for _, name := range list {
		s := newSession(false)
		m := b.hub.Join(s)
		if err := b.hub.Subscribe(m, name, nil); err != nil {
			t.Fatal(err)
		}
		stay[name], members = s, append(members, m)
	}
	wstest.Until(t, 10*time.Second, func() error {
		if n := b.hub.Stats().LoadingChannels; n > 0 {
			return fmt.Errorf("%d loading", n)
		}
		return nil
	})
	close(stop)
	pubs.Wait()
	final := int(done.Load()) + 1
	publishAll(t, a, list, final, final)
	waitAll(t, stay, uint64(final), 10*time.Second)
	for _, s := range sessions {
		if f := s.failures(); len(f) > 0 {
			t.Fatalf("a churning subscriber got offsets out of place: %v", f)
		}
	}
	for _, m := range members {
		b.hub.Leave(m)
	}
	wstest.Until(t, 10*time.Second, func() error {
		if n, subs := servedState(b); n != 0 || subs != subs0 || testutil.ToFloat64(b.m.Served) != 0 {
			return fmt.Errorf("all left: %d channels served, %d NATS subscriptions (%d before), gauge %v", n, subs, subs0, testutil.ToFloat64(b.m.Served))
		}
		if c := fillConsumers(t, b); c != 0 {
			return fmt.Errorf("%d fill consumers left", c)
		}
		return nil
	})
	t.Logf("process before: %v, after: %v", before, measure())
}

// NATS restarts while thousands of channels load on a served node: once
// it is back, each subscriber gets every offset once, in order.
func TestServedNATSRestartDuringLoads(t *testing.T) {
	stored, live := 5, 3
	nats, a, b, list, epochs := manyChannels(t, "r", 2000, stored)
	channels := len(list)
	before := measure()

	subs := make(map[string]*session, channels)
	for _, name := range list {
		s := newSession(true)
		if err := b.hub.Subscribe(b.hub.Join(s), name, &broadcast.Position{Epoch: epochs[name]}); err != nil {
			t.Fatal(err)
		}
		subs[name] = s
	}
	wstest.Until(t, time.Minute, func() error {
		if n := testutil.ToFloat64(b.m.Loads); n < float64(channels/10) {
			return fmt.Errorf("%v loads", n)
		}
		return nil
	})
	loading := b.hub.Stats().LoadingChannels
	nats.Stop()
	nats.Start()
	for _, n := range []*node{a, b} {
		wstest.Until(t, 30*time.Second, func() error { return n.b.Ready() })
	}
	publishAll(t, a, list, stored+1, stored+live)
	waitAll(t, subs, uint64(stored+live), time.Minute)
	t.Logf("%d channels, %d loading when NATS stopped: loads %v, abandoned %v, fill errors %v; process before %v, after %v",
		channels, loading, testutil.ToFloat64(b.m.Loads), testutil.ToFloat64(b.m.LoadsAbandoned), testutil.ToFloat64(b.m.FillErrors), before, measure())
	wstest.Until(t, time.Minute, func() error {
		if c := fillConsumers(t, b); c != 0 {
			return fmt.Errorf("%d fill consumers left", c)
		}
		return nil
	})
}
