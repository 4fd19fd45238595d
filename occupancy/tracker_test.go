package occupancy_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pushgate/pushgate/internal/natstest"
	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/occupancy"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/webhook"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const delay = 300 * time.Millisecond

// events collects what trackers emit, standing for the webhook sender:
// it takes every event and says so at once, unless told to keep the
// acknowledgements (a backend that has not answered yet) or to refuse
// events (a full queue).
type events struct {
	ch chan webhook.Event

	mu      sync.Mutex
	keep    bool
	kept    []func()
	refuse  bool
	refused int // events offered while refusing
}

func newEvents() *events { return &events{ch: make(chan webhook.Event, 1000)} }

func (e *events) emit(ev webhook.Event, delivered func()) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.refuse {
		e.refused++
		return false
	}
	e.ch <- ev
	if delivered != nil {
		if e.keep {
			e.kept = append(e.kept, delivered)
		} else {
			delivered()
		}
	}
	return true
}

// any waits for the next event.
func (e *events) any(t *testing.T) webhook.Event {
	t.Helper()
	select {
	case ev := <-e.ch:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	return webhook.Event{}
}

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
	live map[string]bool // listed by the control plane
	dead map[string]bool // stopped: knows nothing, writes nothing more
	url  string
}

// liveFn is node's view: a dead node, which in life runs no more, knows
// nothing and leads nothing.
func (c *cluster) liveFn(node string) func() ([]string, bool) {
	return func() ([]string, bool) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.dead[node] {
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

// kill stops node counting as live, and its tracker from doing anything.
func (c *cluster) kill(node string) {
	c.mu.Lock()
	c.live[node], c.dead[node] = false, true
	c.mu.Unlock()
}

// twoNodes starts nodes a and b sharing a new NATS server, each closed
// when the test ends if it has not closed it.
func twoNodes(t *testing.T) (*natstest.Server, *cluster, *events, *occupancy.Tracker, *occupancy.Tracker) {
	ns := natstest.Start(t)
	c := &cluster{live: map[string]bool{}, dead: map[string]bool{}, url: ns.URL}
	ev := newEvents()
	a, b := c.node(t, "a", ev), c.node(t, "b", ev)
	t.Cleanup(func() { a.Close(context.Background()); b.Close(context.Background()) })
	return ns, c, ev, a, b
}

func (c *cluster) node(t *testing.T, name string, ev *events) *occupancy.Tracker {
	c.set(name, true)
	return start(t, occupancy.Config{Node: name, Emit: ev.emit, URL: c.url, Stream: "T", Live: c.liveFn(name),
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
}

// TestClusterMoves: a user with connections on two nodes is online once;
// closing one changes nothing; moving from one node to the other within
// the delay is no offline; closing the last is, sent by the leader.
func TestClusterMoves(t *testing.T) {
	_, _, ev, a, b := twoNodes(t)

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
			e := ev.any(t)
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
	_, c, ev, a, b := twoNodes(t)
	a.User("erin", true)
	ev.next(t, webhook.UserOnline, "erin", "a")
	a.User("frank", true)
	ev.next(t, webhook.UserOnline, "frank", "a")
	b.User("frank", true)
	ev.none(t, b)

	// a dies holding erin and frank: it is not live any more, and writes
	// nothing more (its leaves never reach the store).
	c.kill("a")
	ev.next(t, webhook.UserOffline, "erin", "b")
	ev.none(t, b) // frank is still on b
	a.Close(context.Background())
}

// TestClusterNATSRestart: NATS restarts and loses the bucket (memory
// storage); the nodes make it again and write what they hold, so a user
// online before still goes offline when she leaves (her online may be
// sent again: delivery is at least once).
func TestClusterNATSRestart(t *testing.T) {
	ns, _, ev, _, b := twoNodes(t)
	b.User("ivan", true)
	first := ev.next(t, webhook.UserOnline, "ivan", "b")
	ns.Stop()
	ns.Start()
	// Once b has written ivan again, his online comes again. The new
	// bucket's revisions start again, the seqs grow on all the same.
	again := ev.next(t, webhook.UserOnline, "ivan", "b")
	b.User("ivan", false)
	off := ev.next(t, webhook.UserOffline, "ivan", "a")
	if !(first.Seq < again.Seq && again.Seq < off.Seq) || off.Seq >= 1<<53 {
		t.Fatalf("seqs %d, %d, %d: want growing, and exact in a JavaScript number", first.Seq, again.Seq, off.Seq)
	}
}

// TestSeqOrders: the seq of a user's events grows with each, so a backend
// orders them without trusting clocks.
func TestSeqOrders(t *testing.T) {
	ev := newEvents()
	tr := start(t, occupancy.Config{Node: "n1", Emit: ev.emit})
	defer tr.Close(context.Background())
	var seqs []uint64
	for range 2 {
		tr.User("judy", true)
		seqs = append(seqs, ev.next(t, webhook.UserOnline, "judy", "n1").Seq)
		tr.User("judy", false)
		seqs = append(seqs, ev.next(t, webhook.UserOffline, "judy", "n1").Seq)
	}
	for i, seq := range seqs {
		if seq == 0 || (i > 0 && seq <= seqs[i-1]) {
			t.Fatalf("seqs %v, want each larger than the one before", seqs)
		}
	}
}

// TestOfflineWaitsForTheQueue: a gone event the sender's full queue
// refused is announced once the queue takes it, not lost.
func TestOfflineWaitsForTheQueue(t *testing.T) {
	ev := newEvents()
	tr := start(t, occupancy.Config{Node: "n1", Emit: ev.emit})
	defer tr.Close(context.Background())
	tr.User("kim", true)
	ev.next(t, webhook.UserOnline, "kim", "n1")
	ev.mu.Lock()
	ev.refuse = true
	ev.mu.Unlock()
	tr.User("kim", false)
	// Offered, refused, and offered again the next pass.
	wstest.Eventually(t, "kim's offline offered twice while refused", func() bool {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		if ev.refused >= 2 {
			ev.refuse = false
			return true
		}
		return false
	})
	ev.next(t, webhook.UserOffline, "kim", "n1")
}

// TestClusterLeaderDiesBeforeDelivery: the leader queued a user's
// offline and died before the backend took it; the next leader announces
// it again (at least once), and the entry goes once it is taken.
func TestClusterLeaderDiesBeforeDelivery(t *testing.T) {
	_, c, ev, a, b := twoNodes(t)
	b.User("liam", true)
	ev.next(t, webhook.UserOnline, "liam", "b")
	ev.mu.Lock()
	ev.keep = true // the backend does not answer a's batch
	ev.mu.Unlock()
	b.User("liam", false)
	ev.next(t, webhook.UserOffline, "liam", "a")
	c.kill("a")
	ev.mu.Lock()
	ev.keep = false
	ev.mu.Unlock()
	ev.next(t, webhook.UserOffline, "liam", "b")
	ev.none(t, b)
	a.Close(context.Background())
}

// TestClusterLeaseLapse: a node whose lease lapsed (it was not listed for
// a while) was taken off its users, who went offline; once listed again
// it writes them again, and they are online again.
func TestClusterLeaseLapse(t *testing.T) {
	_, c, ev, _, b := twoNodes(t)
	b.User("mia", true)
	ev.next(t, webhook.UserOnline, "mia", "b")
	c.set("b", false) // b runs on, but the others do not see its lease
	ev.next(t, webhook.UserOffline, "mia", "a")
	c.set("b", true)
	ev.next(t, webhook.UserOnline, "mia", "b")
	b.User("mia", false)
	ev.next(t, webhook.UserOffline, "mia", "a")
}
