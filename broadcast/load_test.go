package broadcast

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pushgate/pushgate/protocol"
)

// loadCalls records a hub's Load and Unload calls, in order.
type loadCalls struct {
	mu    sync.Mutex
	calls []string
}

func (c *loadCalls) add(s string) {
	c.mu.Lock()
	c.calls = append(c.calls, s)
	c.mu.Unlock()
}

func (c *loadCalls) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

// newLoadHub is a Clustered hub with Load, whose calls it records; the
// test acts as the broker.
func newLoadHub(cfg Config) (*Hub, *loadCalls) {
	c := &loadCalls{}
	cfg.Clustered = true
	cfg.Load = func(name string, _ uint64) { c.add("load " + name) }
	cfg.Unload = func(name string) { c.add("unload " + name) }
	return New(cfg), c
}

// lines renders a seqRecorder's log, one event a line.
func lines(log []seqEvent) []string {
	var out []string
	for _, e := range log {
		switch e.typ {
		case "subscribed":
			out = append(out, fmt.Sprintf("subscribed %s %d %s %v", e.channel, e.offset, e.epoch, e.recovered))
		case "message":
			out = append(out, fmt.Sprintf("message %s %d", e.channel, e.offset))
		case "unsubscribed":
			out = append(out, "unsubscribed "+e.channel)
		default:
			out = append(out, e.typ)
		}
	}
	return out
}

func checkLines(t *testing.T, who string, r *seqRecorder, want ...string) {
	t.Helper()
	if got := lines(r.events()); !slices.Equal(got, want) {
		t.Fatalf("%s got\n  %q\nwant\n  %q", who, got, want)
	}
}

// mark appends an event to r's log, as the hub would a frame.
func (r *seqRecorder) mark(typ string) {
	r.mu.Lock()
	r.log = append(r.log, seqEvent{typ: typ})
	r.mu.Unlock()
}

func pong() []byte { return append(protocol.Buffer(16), `{"type":"pong"}`...) }

// A subscribe to a channel the hub does not hold makes it load: the reply
// waits until the broker (the test) has applied the stored history and
// called Loaded, and is then what it would have been had the channel held
// that history all along, replay and skip included; live messages follow
// with no gap and no duplicate.
func TestLoadAnswersAsSubscribeWould(t *testing.T) {
	for _, tc := range []struct {
		name    string
		history int
		pos     *Position
		want    []string
	}{
		{"recovered", 0, &Position{Offset: 2, Epoch: "e1"}, []string{
			"subscribed news 5 e1 true", "message news 3", "message news 4", "message news 5", "message news 6", "message news 7"}},
		{"no position", 0, nil, []string{
			"subscribed news 5 e1 false", "message news 6", "message news 7"}},
		{"history too short", 2, &Position{Offset: 1, Epoch: "e1"}, []string{
			"subscribed news 5 e1 false", "message news 4", "message news 5", "message news 6", "message news 7"}},
		{"other epoch", 0, &Position{Offset: 3, Epoch: "e0"}, []string{
			"subscribed news 5 e1 false", "message news 1", "message news 2", "message news 3", "message news 4", "message news 5", "message news 6", "message news 7"}},
		// Seen on another node, not yet applied here: skipped, not replayed.
		{"ahead of the node", 0, &Position{Offset: 6, Epoch: "e1"}, []string{
			"subscribed news 6 e1 true", "message news 7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, calls := newLoadHub(Config{Shards: 2, HistorySize: tc.history})
			defer h.Close()
			r := &seqRecorder{}
			if err := h.Subscribe(h.Join(r), "news", tc.pos); err != nil {
				t.Fatal(err)
			}
			if got := calls.list(); !slices.Equal(got, []string{"load news"}) {
				t.Fatalf("calls %q, want load news", got)
			}
			apply(t, h, "news", "e1", 1, 2, 3, 4, 5) // the stored history
			h.flush()
			if s := h.Stats(); len(r.events()) != 0 || s.LoadingChannels != 1 || s.HeldMembers != 1 || s.Subscribers != 1 {
				t.Fatalf("before Loaded: log %q, stats %+v; want nothing sent, 1 channel loading, 1 member held", lines(r.events()), s)
			}
			loaded(h, "news")
			apply(t, h, "news", "e1", 6, 7) // live
			h.flush()
			checkLines(t, "subscriber", r, tc.want...)
			if s := h.Stats(); s.LoadingChannels != 0 || s.HeldMembers != 0 || s.HeldFrames != 0 {
				t.Fatalf("after Loaded: %+v", s)
			}
		})
	}
}

// The broker gave up loading (a timeout): Loaded with what the channel
// holds, here nothing. The subscriber is answered at once, not recovered;
// the broker's first message then names the epoch, and nothing was lost
// after the reply.
func TestLoadGivenUp(t *testing.T) {
	h, _ := newLoadHub(Config{Shards: 1})
	defer h.Close()
	r := &seqRecorder{}
	if err := h.Subscribe(h.Join(r), "news", &Position{Offset: 4, Epoch: "e1"}); err != nil {
		t.Fatal(err)
	}
	loaded(h, "news")
	apply(t, h, "news", "e1", 9)
	h.flush()
	checkLines(t, "subscriber", r, "subscribed news 0  false", "subscribed news 8 e1 true", "message news 9")
}

// What a member is handed keeps the order of its ops while it waits on a
// loading channel: its later subscribe's reply and that channel's
// messages, its reply and After's fn all wait behind the load's answer,
// and a publication of the other channel is done without waiting for it.
func TestLoadKeepsMemberOrder(t *testing.T) {
	h, _ := newLoadHub(Config{Shards: 1})
	defer h.Close()
	// b is served already: its subscriber loaded it.
	if err := h.Subscribe(h.Join(&seqRecorder{}), "b", nil); err != nil {
		t.Fatal(err)
	}
	loaded(h, "b")
	apply(t, h, "b", "e1", 1)
	r := &seqRecorder{}
	m := h.Join(&seqBatcher{seqRecorder: r})
	if err := h.Subscribe(m, "a", &Position{Offset: 1, Epoch: "e1"}); err != nil {
		t.Fatal(err)
	}
	apply(t, h, "a", "e1", 1, 2) // a's stored history
	if err := h.Subscribe(m, "b", nil); err != nil {
		t.Fatal(err)
	}
	apply(t, h, "b", "e1", 2, 3) // each waits for its fan-out: not for m
	h.Reply(m, pong())
	ran := make(chan struct{})
	h.After(m, func() { r.mark("fn"); close(ran) })
	apply(t, h, "b", "e1", 4)
	h.flush()
	if s := h.Stats(); len(r.events()) != 0 || s.HeldMembers != 1 || s.HeldFrames != 5 || h.Backlog(m) != 3 {
		t.Fatalf("while a loads: log %q, stats %+v, backlog %d; want nothing sent, 1 member held with 5 frames (b's reply, 3 messages, the pong), backlog 3 (its subscribes and reply)",
			lines(r.events()), s, h.Backlog(m))
	}
	loaded(h, "a")
	<-ran
	apply(t, h, "a", "e1", 3)
	apply(t, h, "b", "e1", 5)
	h.flush()
	checkLines(t, "member", r,
		"subscribed a 2 e1 true", "message a 2",
		"subscribed b 1 e1 false", "message b 2", "message b 3",
		"pong", "fn", "message b 4",
		"message a 3", "message b 5")
	if s := h.Stats(); s.HeldMembers != 0 || s.HeldFrames != 0 || h.Backlog(m) != 0 {
		t.Fatalf("after the answer: stats %+v, backlog %d", s, h.Backlog(m))
	}
}

// A member waits on two channels at once (a connect with two channels);
// their loads end in the other order. The first's answer lets the held
// queue go, with the second's reply in its place.
func TestLoadAnsweredOutOfOrder(t *testing.T) {
	h, _ := newLoadHub(Config{Shards: 1})
	defer h.Close()
	r := &seqRecorder{}
	m := h.Join(r)
	for _, c := range []string{"a", "b"} {
		if err := h.Subscribe(m, c, nil); err != nil {
			t.Fatal(err)
		}
	}
	h.Reply(m, pong())
	loaded(h, "b")
	apply(t, h, "b", "e1", 1, 2)
	h.flush()
	if got := r.events(); len(got) != 0 {
		t.Fatalf("b's answer came before a's: %q sent, want nothing yet", lines(got))
	}
	apply(t, h, "a", "e1", 1)
	loaded(h, "a")
	apply(t, h, "a", "e1", 2)
	apply(t, h, "b", "e1", 3)
	h.flush()
	checkLines(t, "member", r,
		"subscribed a 1 e1 false",
		"subscribed b 0  false", "pong",
		"subscribed b 0 e1 true", "message b 1", "message b 2",
		"message a 2", "message b 3")
}

// A subscriber that unsubscribes while its channel loads: its subscribe is
// still answered, then its unsubscribe, and it gets none of the channel's
// messages; another, still subscribed, gets them all. Then the same
// member subscribes again to the channel, still loading.
func TestLoadUnsubscribeWhileLoading(t *testing.T) {
	h, calls := newLoadHub(Config{Shards: 2})
	defer h.Close()
	r1, r2 := &seqRecorder{}, &seqRecorder{}
	m1, m2 := h.Join(r1), h.Join(r2)
	for _, m := range []*Member{m1, m2} {
		if err := h.Subscribe(m, "a", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Unsubscribe(m1, "a"); err != nil {
		t.Fatal(err)
	}
	if err := h.Subscribe(m1, "b", nil); err != nil { // takes the first's place
		t.Fatal(err)
	}
	loaded(h, "b")
	apply(t, h, "b", "e1", 1)
	h.flush()
	if got := r1.events(); len(got) != 0 {
		t.Fatalf("m1 was sent %q while a loads, want nothing", lines(got))
	}
	if err := h.Subscribe(m1, "a", &Position{Offset: 0, Epoch: "e1"}); err != nil {
		t.Fatal(err)
	}
	apply(t, h, "a", "e1", 1)
	loaded(h, "a")
	apply(t, h, "a", "e1", 2)
	h.flush()
	checkLines(t, "m1", r1,
		"subscribed a 1 e1 false", "unsubscribed a",
		"subscribed b 0  false", "subscribed b 0 e1 true", "message b 1",
		"subscribed a 1 e1 true", "message a 1", "message a 2")
	checkLines(t, "m2", r2, "subscribed a 1 e1 false", "message a 2")
	if got := calls.list(); !slices.Equal(got, []string{"load a", "load b"}) {
		t.Fatalf("calls %q", got)
	}
	h.Leave(m1)
	h.Leave(m2)
	h.flush()
	if n := h.registered(); n != 0 {
		t.Fatalf("%d subscriptions registered after everyone left", n)
	}
	if s := h.Stats(); s.Subscribers != 0 || s.Members != 0 || s.HeldMembers != 0 || s.HeldFrames != 0 || s.LoadingChannels != 0 {
		t.Fatalf("stats after everyone left: %+v", s)
	}
}

// A loading channel whose waiting subscribers all go is dropped: their
// subscribes are answered then, so that what they queued after them runs,
// and Unload is called once. A channel that another subscriber still
// waits on stays loading.
func TestLoadDroppedWhileLoading(t *testing.T) {
	h, calls := newLoadHub(Config{Shards: 2})
	defer h.Close()
	r := &seqRecorder{}
	m := h.Join(r)
	if err := h.Subscribe(m, "a", nil); err != nil {
		t.Fatal(err)
	}
	h.Reply(m, pong())
	if err := h.Unsubscribe(m, "a"); err != nil {
		t.Fatal(err)
	}
	h.flush()
	checkLines(t, "unsubscribed", r, "subscribed a 0  false", "pong", "unsubscribed a")
	if got := calls.list(); !slices.Equal(got, []string{"load a", "unload a"}) {
		t.Fatalf("calls %q, want load a, unload a", got)
	}
	h.Leave(m)
	loaded(h, "a") // no longer held: nothing to do
	if how, err := h.Apply(context.Background(), Message{Channel: "a", Epoch: "e1", Offset: 1, Data: []byte(`1`), Load: h.loadOf("a")}, nil); how != AppliedNotServed || err != nil {
		t.Fatalf("Apply to the dropped channel: %v %v, want AppliedNotServed", how, err)
	}

	// Leave while waiting on two channels, one shared with another member
	// who stays.
	r2, other := &seqRecorder{}, &seqRecorder{}
	m2, mo := h.Join(r2), h.Join(other)
	for _, c := range []string{"b", "c"} {
		if err := h.Subscribe(m2, c, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Subscribe(mo, "c", nil); err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{})
	h.After(m2, func() { r2.mark("fn"); close(ran) })
	h.Leave(m2)
	h.flush() // b's answer, at its drop, was handed on
	r2.mark("left")
	h.flush()
	if got := calls.list(); !slices.Equal(got, []string{"load a", "unload a", "load b", "load c", "unload b"}) {
		t.Fatalf("calls %q: want b unloaded, c still loading", got)
	}
	select {
	case <-ran:
		t.Fatal("After's fn ran before the wait on c was answered")
	default:
	}
	if s := h.Stats(); s.LoadingChannels != 1 || s.HeldMembers != 2 {
		t.Fatalf("stats %+v, want c loading, m2 and mo held", s)
	}
	loaded(h, "c")
	<-ran
	h.Leave(mo)
	h.flush()
	checkLines(t, "leaving member", r2, "subscribed b 0  false", "left", "subscribed c 0  false", "fn")
	if got := calls.list(); !slices.Equal(got, []string{"load a", "unload a", "load b", "load c", "unload b", "unload c"}) {
		t.Fatalf("calls %q", got)
	}
	if n := h.registered(); n != 0 {
		t.Fatalf("%d subscriptions registered after everyone left", n)
	}
	if s := h.Stats(); s.Subscribers != 0 || s.Members != 0 || s.Channels != 0 || s.HeldMembers != 0 || s.HeldFrames != 0 || s.LoadingChannels != 0 {
		t.Fatalf("stats after everyone left: %+v", s)
	}
	loaded(h, "nowhere") // unknown: nothing
}

// Apply takes no slot for a channel the hub does not serve: with every
// slot held by publications stuck on a blocked shard, applies to other
// channels return at once, reported, done called with a zero Result.
func TestApplyNotServed(t *testing.T) {
	h, _ := newLoadHub(Config{Shards: 1, MaxPending: 2})
	defer h.Close()
	m := h.Join(&seqRecorder{})
	if err := h.Subscribe(m, "busy", nil); err != nil {
		t.Fatal(err)
	}
	loaded(h, "busy")
	release := blockShard(h, m)
	defer release()
	for o := uint64(1); o <= 2; o++ {
		if how, err := h.Apply(context.Background(), Message{Channel: "busy", Epoch: "e1", Offset: o, Data: []byte(`1`), Load: h.loadOf("busy")}, nil); how != AppliedInOrder || err != nil {
			t.Fatalf("apply busy %d: %v %v", o, how, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 10 {
		var got *Result
		how, err := h.Apply(ctx, Message{Channel: fmt.Sprintf("idle%d", i%3), Epoch: "e1", Offset: uint64(i + 1), Data: []byte(`1`), Load: h.loadOf(fmt.Sprintf("idle%d", i%3))}, func(r Result) { got = &r })
		if how != AppliedNotServed || err != nil || got == nil || *got != (Result{}) {
			t.Fatalf("apply %d to a channel not served: %v %v, done with %v; want AppliedNotServed, done with a zero Result", i, how, err, got)
		}
	}
	if s := h.Stats(); s.InFlight != 2 || s.Channels != 1 {
		t.Fatalf("stats %+v, want the 2 stuck publications in flight and 1 channel", s)
	}
}

// The broker sees Load and Unload late. What it read for a channel that was
// dropped and made anew since (a live message, its Loaded) names the
// earlier Load and is not taken by the new channel; else the new one's
// history would begin at that message, its own load's earlier offsets
// skipped as already applied, and a subscriber recovering from before it
// told recovered false, its messages lost.
func TestLoadIgnoresAnEarlierLoad(t *testing.T) {
	var mu sync.Mutex
	ids := map[string]uint64{}
	h := New(Config{Shards: 1, Clustered: true,
		Load:   func(name string, id uint64) { mu.Lock(); ids[name] = id; mu.Unlock() },
		Unload: func(string) {}})
	defer h.Close()
	idOf := func() uint64 { mu.Lock(); defer mu.Unlock(); return ids["news"] }
	applyFor := func(load uint64, offsets ...uint64) (hows []Applied) {
		for _, o := range offsets {
			how, err := h.Apply(context.Background(), Message{Channel: "news", Epoch: "e1", Offset: o, Data: []byte(`1`), Load: load}, nil)
			if err != nil {
				t.Fatal(err)
			}
			hows = append(hows, how)
		}
		return hows
	}

	a := h.Join(&seqRecorder{})
	if err := h.Subscribe(a, "news", nil); err != nil {
		t.Fatal(err)
	}
	first := idOf()
	applyFor(first, 1, 2, 3)
	h.Loaded("news", first)
	if err := h.Unsubscribe(a, "news"); err != nil { // the last subscriber: dropped
		t.Fatal(err)
	}
	h.flush()
	r := &seqRecorder{}
	if err := h.Subscribe(h.Join(r), "news", &Position{Offset: 2, Epoch: "e1"}); err != nil {
		t.Fatal(err)
	}
	second := idOf()
	if second == first {
		t.Fatalf("the channel made anew loads with the same id %d", first)
	}

	// The broker, before it sees the Unload and the new Load.
	if hows := applyFor(first, 4); hows[0] != AppliedNotServed {
		t.Fatalf("a live message read for the earlier load: %v, want AppliedNotServed", hows[0])
	}
	h.Loaded("news", first)
	h.flush()
	if s := h.Stats(); len(r.events()) != 0 || s.LoadingChannels != 1 || s.HeldMembers != 1 {
		t.Fatalf("after the earlier load's Loaded: log %q, stats %+v; want the subscriber still waiting", lines(r.events()), s)
	}

	// The broker sees the new Load and reads the stream.
	applyFor(second, 1, 2, 3, 4)
	h.Loaded("news", second)
	applyFor(second, 5)
	h.flush()
	checkLines(t, "subscriber", r, "subscribed news 4 e1 true", "message news 3", "message news 4", "message news 5")
}
