package broadcast

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// streamBroker plays the cluster broker for a hub with Config.Load: a
// stream numbers every channel's messages whoever serves them, keeping
// the last `keep` of each. For a channel Load asked for, after a random
// delay (counted on clock, not slept), it applies what the stream keeps
// of it, then calls Loaded, and from then on applies its live messages,
// until Unload. Now and then it gives up waiting: Loaded comes before the
// stored messages, which follow in order, as one consumer's would. Load
// and Unload only queue an event for its goroutine, which sees them late,
// as with a real broker: its Loaded and messages name the Load they are
// for, and a channel made anew since does not take them.
type streamBroker struct {
	h     *Hub
	t     *testing.T
	keep  uint64
	rng   *rand.Rand
	clock func() int64

	mu     sync.Mutex
	events []string // "load name id", "unload name", in the hub's order
	all    []string // every event, for the check of their order

	stream  map[string]uint64 // latest offset of each channel
	pending map[string]int64  // asked for: when, on clock, it is loaded
	served  map[string]bool   // loaded, not unloaded since
	ids     map[string]uint64 // the Load seen last of each channel
	loads   int
	gaveUp  int
}

func (b *streamBroker) event(e string) {
	b.mu.Lock()
	b.events = append(b.events, e)
	b.all = append(b.all, e)
	b.mu.Unlock()
}

func (b *streamBroker) takeEvents() {
	b.mu.Lock()
	events := b.events
	b.events = nil
	b.mu.Unlock()
	for _, e := range events {
		kind, name, _ := strings.Cut(e, " ")
		name, id, _ := strings.Cut(name, " ")
		delete(b.served, name)
		if kind == "load" {
			b.ids[name], _ = strconv.ParseUint(id, 10, 64)
			b.pending[name] = b.clock() + b.rng.Int64N(40)
		} else {
			delete(b.pending, name)
		}
	}
}

func (b *streamBroker) apply(name string, offset uint64) Applied {
	msg := Message{Channel: name, Epoch: "e1", Offset: offset, Data: []byte(`{}`), Time: time.Now(), Load: b.ids[name]}
	how, err := b.h.Apply(context.Background(), msg, nil)
	if err != nil {
		b.t.Error(err)
	}
	return how
}

// load applies what the stream keeps of name and says it is loaded
// (before, when it gives up).
func (b *streamBroker) load(name string, giveUp bool) {
	delete(b.pending, name)
	b.served[name] = true
	b.loads++
	if giveUp {
		b.gaveUp++
		b.h.Loaded(name, b.ids[name])
	}
	n := b.stream[name]
	for o := max(n, b.keep) - b.keep + 1; o <= n; o++ {
		if b.apply(name, o) == AppliedNotServed {
			break // dropped meanwhile: its Unload is queued
		}
	}
	if !giveUp {
		b.h.Loaded(name, b.ids[name])
	}
}

// round loads what is due and publishes one message to name.
func (b *streamBroker) round(name string) {
	b.takeEvents()
	now := b.clock()
	for c, due := range b.pending {
		if now >= due {
			b.load(c, b.rng.IntN(10) == 0)
		}
	}
	b.stream[name]++
	if b.served[name] {
		b.apply(name, b.stream[name]) // AppliedNotServed: its Unload is queued
	}
}

// finish loads every channel still asked for.
func (b *streamBroker) finish() {
	b.takeEvents()
	for c := range b.pending {
		b.load(c, false)
	}
}

// TestLoadChurn: subscribe/unsubscribe/leave churn on few shards, with
// positions, on a Clustered hub whose channels load on demand, while a
// broker publishes to every channel and loads the channels asked for
// after random delays. Every member's log must hold, per subscription,
// its reply, then consecutive offsets, nothing outside (checkLog); stable
// members, subscribed throughout, get every offset after their reply, to
// the last; Load and Unload alternate per channel; nothing is left held.
func TestLoadChurn(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"history", Config{HistorySize: 500, HistoryChannelMaxBytes: 1 << 30}},
		// Channels dropped whenever their subscribers go, reloaded at the
		// next subscribe.
		{"no history", Config{HistorySize: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) { loadChurn(t, tc.cfg) })
	}
}

func loadChurn(t *testing.T, cfg Config) {
	b := &streamBroker{t: t, keep: 200, rng: rand.New(rand.NewPCG(1, 2)),
		stream: map[string]uint64{}, pending: map[string]int64{}, served: map[string]bool{}, ids: map[string]uint64{}}
	// The broker's time is the churners' ops: it loads after some of
	// them and publishes about one message per two, however the
	// goroutines are scheduled.
	var churned atomic.Int64
	b.clock = churned.Load
	cfg.Shards, cfg.MaxChannels, cfg.Clustered = 2, 8, true
	cfg.Load = func(name string, id uint64) { b.event("load " + name + " " + strconv.FormatUint(id, 10)) }
	cfg.Unload = func(name string) { b.event("unload " + name) }
	h := New(cfg)
	defer h.Close()
	b.h = h
	const (
		nchan    = 6 // stables subscribe to the first 3; the others are dropped
		stable   = 2
		churners = 10
		ops      = 500
	)
	names := make([]string, nchan)
	for i := range names {
		names[i] = fmt.Sprintf("c%d", i)
	}
	var stables []*seqRecorder
	var stableMembers []*Member
	for i := range stable {
		r := &seqRecorder{}
		var s Subscriber = r
		if i%2 == 1 {
			s = &seqBatcher{seqRecorder: r}
		}
		m := h.Join(s)
		for _, c := range names[:3] {
			if err := h.Subscribe(m, c, nil); err != nil {
				t.Fatal(err)
			}
		}
		stables = append(stables, r)
		stableMembers = append(stableMembers, m)
	}

	ctx, stop := context.WithCancel(context.Background())
	brokerDone := make(chan struct{})
	var maxHeld Stats
	go func() {
		defer close(brokerDone)
		for i := 0; ctx.Err() == nil; i++ {
			for int64(i) > churned.Load()/2+1 && ctx.Err() == nil {
				runtime.Gosched() // ahead of the churners
			}
			b.round(names[i%nchan])
			if i%32 == 0 {
				if s := h.Stats(); s.HeldFrames > maxHeld.HeldFrames {
					maxHeld = s
				}
			}
		}
		b.finish()
	}()

	var done []*churner
	var dmu sync.Mutex
	var wg sync.WaitGroup
	for w := range churners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			join := func() *churner {
				r := &seqRecorder{}
				var s Subscriber = r
				if rng.IntN(2) == 0 {
					s = &seqBatcher{seqRecorder: r}
				}
				return &churner{rec: r, m: h.Join(s), asked: map[string][]*Position{}, last: map[string]Position{}, epoch: map[string]string{}}
			}
			finish := func(c *churner) {
				c.rec.close()
				h.Leave(c.m)
				dmu.Lock()
				done = append(done, c)
				dmu.Unlock()
			}
			c := join()
			for i := range ops {
				name := names[rng.IntN(nchan)]
				switch k := rng.IntN(40); {
				case k < 19:
					var pos *Position
					if p, ok := c.last[name]; ok && rng.IntN(3) > 0 {
						pos = &p
						if rng.IntN(4) == 0 {
							pos.Offset += uint64(rng.IntN(3)) // ahead of what it saw
						}
					}
					if !c.subscribe(t, h, name, pos) {
						return
					}
				case k < 37:
					if !c.unsubscribe(t, h, name) {
						return
					}
				case k < 38:
					h.Reply(c.m, pong())
				default:
					finish(c)
					c = join()
				}
				if i%8 == 0 {
					runtime.Gosched()
				}
				churned.Add(1)
				c.catchUp()
			}
			finish(c)
		}()
	}
	wg.Wait()
	stop()
	<-brokerDone
	h.flush()
	if t.Failed() {
		return
	}
	for i, c := range done {
		log := c.rec.events()
		// A pong is the churner's own: drop it for checkLog.
		kept := log[:0:0]
		for _, e := range log {
			if e.typ != "pong" {
				kept = append(kept, e)
			}
		}
		checkLog(t, fmt.Sprintf("churner log %d", i), kept, c.asked)
	}
	for i, r := range stables {
		asked := map[string][]*Position{}
		for _, c := range names[:3] {
			asked[c] = []*Position{nil}
		}
		log := r.events()
		checkLog(t, fmt.Sprintf("stable %d", i), log, asked)
		// After its reply (and the epoch's naming), every offset to the last.
		for _, c := range names[:3] {
			var from uint64
			var got []uint64
			for _, e := range log {
				switch {
				case e.channel != c:
				case e.typ == "subscribed":
					from, got = e.offset+1, nil
				case e.typ == "message":
					got = append(got, e.offset)
				}
			}
			contiguous(t, got, from, b.stream[c])
		}
	}
	for _, m := range stableMembers {
		h.Leave(m)
	}
	h.flush()
	if n := h.registered(); n != 0 {
		t.Fatalf("%d subscriptions left in the shards after everyone left", n)
	}
	if s := h.Stats(); s.Subscribers != 0 || s.Members != 0 || s.LoadingChannels != 0 || s.HeldMembers != 0 || s.HeldFrames != 0 {
		t.Fatalf("stats after everyone left: %+v", s)
	}
	// Per channel, Load and Unload alternate, Load first.
	b.mu.Lock()
	loaded := map[string]bool{}
	for _, e := range b.all {
		kind, name, _ := strings.Cut(e, " ")
		name, _, _ = strings.Cut(name, " ")
		if (kind == "load") == loaded[name] {
			t.Fatalf("%s while loaded=%v: %q", e, loaded[name], b.all)
		}
		loaded[name] = kind == "load"
	}
	t.Logf("%d member logs; %d Load/Unload calls, %d loads (%d given up); published %v; most held: %d members, %d frames",
		len(done)+stable, len(b.all), b.loads, b.gaveUp, b.stream, maxHeld.HeldMembers, maxHeld.HeldFrames)
	b.mu.Unlock()
}
