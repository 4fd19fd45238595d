package occupancy_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pushgate/pushgate/internal/natstest"
	"github.com/pushgate/pushgate/occupancy"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/webhook"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const delay = 300 * time.Millisecond

// events collects what trackers emit.
type events struct {
	ch chan webhook.Event
}

func newEvents() *events { return &events{ch: make(chan webhook.Event, 1000)} }

func (e *events) emit(ev webhook.Event) { e.ch <- ev }

// next waits for the next event and checks it.
func (e *events) next(t *testing.T, typ, name, node string) webhook.Event {
	t.Helper()
	select {
	case ev := <-e.ch:
		got := ev.User + ev.Channel
		if ev.Type != typ || got != name || (node != "" && ev.Node != node) || ev.Time == 0 {
			t.Fatalf("got %+v, want %s of %s from %q", ev, typ, name, node)
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s of %s", typ, name)
	}
	return webhook.Event{}
}

// none checks that nothing was emitted in the time a check would have
// taken: marked by an event of a sentinel user made after it.
func (e *events) none(t *testing.T, tr *occupancy.Tracker) {
	t.Helper()
	tr.User("sentinel", true)
	tr.User("sentinel", false)
	e.next(t, webhook.UserOnline, "sentinel", "")
	e.next(t, webhook.UserOffline, "sentinel", "")
}

func start(t *testing.T, cfg occupancy.Config) *occupancy.Tracker {
	t.Helper()
	cfg.Delay, cfg.Pass = delay, 20*time.Millisecond
	tr, err := occupancy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestSingleNode: online at a user's first connection, offline once the
// last has been closed for the delay, nothing for a reconnect within it;
// channels likewise, for the patterns given.
func TestSingleNode(t *testing.T) {
	ev := newEvents()
	pat, _ := protocol.ParsePatterns("room:*")
	tr := start(t, occupancy.Config{Node: "n1", Emit: ev.emit, Channels: pat})
	defer tr.Close(context.Background())

	tr.User("alice", true)
	ev.next(t, webhook.UserOnline, "alice", "n1")
	tr.User("alice", false) // a reconnect: down and up within the delay
	tr.User("alice", true)
	ev.none(t, tr)
	start := time.Now()
	tr.User("alice", false)
	ev.next(t, webhook.UserOffline, "alice", "n1")
	if d := time.Since(start); d < delay {
		t.Fatalf("offline after %v, before the delay %v", d, delay)
	}

	tr.Channel("news", true) // not in the patterns
	tr.Channel("room:1", true)
	ev.next(t, webhook.ChannelOccupied, "room:1", "n1")
	tr.Channel("room:1", false)
	ev.next(t, webhook.ChannelVacated, "room:1", "n1")

	// A name that is no NATS token.
	tr.User("bob@example.com.*>", true)
	ev.next(t, webhook.UserOnline, "bob@example.com.*>", "n1")
}

// TestSingleNodeClose: a node alone that stops announces what it held
// gone, for no node is left to.
func TestSingleNodeClose(t *testing.T) {
	ev := newEvents()
	tr := start(t, occupancy.Config{Node: "n1", Emit: ev.emit})
	tr.User("carol", true)
	ev.next(t, webhook.UserOnline, "carol", "n1")
	tr.Close(context.Background())
	ev.next(t, webhook.UserOffline, "carol", "n1")
}

// cluster is nodes sharing a NATS server, with the live list in the
// test's hands (the control plane's leases, in the gateway).
type cluster struct {
	mu   sync.Mutex
	live map[string]bool
	url  string
}

// liveFn is node's view: a dead node, which in life runs no more, knows
// nothing and leads nothing.
func (c *cluster) liveFn(node string) func() ([]string, bool) {
	return func() ([]string, bool) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.live[node] {
			return nil, false
		}
		var out []string
		for n, ok := range c.live {
			if ok {
				out = append(out, n)
			}
		}
		slices.Sort(out)
		return out, true
	}
}

func (c *cluster) set(node string, live bool) {
	c.mu.Lock()
	c.live[node] = live
	c.mu.Unlock()
}

func (c *cluster) node(t *testing.T, name string, ev *events) *occupancy.Tracker {
	c.set(name, true)
	return start(t, occupancy.Config{Node: name, Emit: ev.emit, URL: c.url, Stream: "T", Live: c.liveFn(name)})
}

// TestClusterMoves: a user with connections on two nodes is online once;
// closing one changes nothing; moving from one node to the other within
// the delay is no offline; closing the last is, sent by the leader.
func TestClusterMoves(t *testing.T) {
	ns := natstest.Start(t)
	c := &cluster{live: map[string]bool{}, url: ns.URL}
	ev := newEvents()
	a, b := c.node(t, "a", ev), c.node(t, "b", ev)
	defer a.Close(context.Background())
	defer b.Close(context.Background())

	a.User("dave", true)
	ev.next(t, webhook.UserOnline, "dave", "a")
	b.User("dave", true)
	a.User("dave", false)
	ev.none(t, a)

	// dave moves back to a: b's last closes, a's first opens within the
	// delay.
	b.User("dave", false)
	a.User("dave", true)
	ev.none(t, a)

	a.User("dave", false)
	ev.next(t, webhook.UserOffline, "dave", "a") // a leads: first by name

	// Many users at once, half on each node, each online and offline
	// exactly once.
	const n = 200
	seen := map[string]int{}
	for _, step := range []struct {
		up  bool
		typ string
	}{{true, webhook.UserOnline}, {false, webhook.UserOffline}} {
		for i := range n {
			[]*occupancy.Tracker{a, b}[i%2].User(fmt.Sprint("u", i), step.up)
		}
		for range n {
			e := <-ev.ch
			if e.Type != step.typ {
				t.Fatalf("got %+v, want %s", e, step.typ)
			}
			seen[e.User]++
		}
	}
	for i := range n {
		if seen[fmt.Sprint("u", i)] != 2 {
			t.Fatalf("u%d: %d events, want online and offline", i, seen[fmt.Sprint("u", i)])
		}
	}
}

// TestClusterNodeDies: the node holding a user's last connection stops
// renewing its lease; once it is no longer live, the leader takes it off
// and the user goes offline after the delay. One still held elsewhere
// does not.
func TestClusterNodeDies(t *testing.T) {
	ns := natstest.Start(t)
	c := &cluster{live: map[string]bool{}, url: ns.URL}
	ev := newEvents()
	a, b := c.node(t, "a", ev), c.node(t, "b", ev)
	defer b.Close(context.Background())
	a.User("erin", true)
	ev.next(t, webhook.UserOnline, "erin", "a")
	a.User("frank", true)
	ev.next(t, webhook.UserOnline, "frank", "a")
	b.User("frank", true)
	ev.none(t, b)

	// a dies holding erin and frank: it is not live any more, and writes
	// nothing more (its leaves never reach the store).
	c.set("a", false)
	ev.next(t, webhook.UserOffline, "erin", "b")
	ev.none(t, b) // frank is still on b
	a.Close(context.Background())
}
