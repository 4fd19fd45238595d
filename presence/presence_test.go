package presence_test

import (
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pushgate/pushgate/presence"
	"github.com/pushgate/pushgate/protocol"
)

func TestCountsAndList(t *testing.T) {
	pat, _ := protocol.ParsePatterns("room:*")
	now := time.Unix(100, 0)
	r := presence.New(presence.Config{Channels: pat, MaxList: 3, EventRate: 1000, Now: func() time.Time { return now }})
	if !r.On("room:a") || r.On("lobby") || r.On("#room:a") {
		t.Fatal("On does not follow the patterns")
	}
	users := []string{"alice", "alice", "bob", "", ""}
	for i, u := range users {
		if d := r.Join("room:a", protocol.Client{Client: "n." + strconv.Itoa(i), User: u}, nil); d != presence.Send {
			t.Fatalf("join %d: %v", i, d)
		}
	}
	if d := r.Join("room:a", protocol.Client{Client: "n.0", User: "alice"}, nil); d != presence.Drop {
		t.Fatal("a client joined twice")
	}
	clients, _, userCount := r.Stats("room:a", false)
	if clients != 5 || userCount != 2 || r.Clients() != 5 {
		t.Fatalf("clients %d users %d total %d", clients, userCount, r.Clients())
	}
	list, total := r.List("room:a", 0)
	if len(list) != 3 || total != 5 {
		t.Fatalf("list %d of %d, want 3 of 5", len(list), total)
	}
	if list, _ := r.List("room:a", 2); len(list) != 2 {
		t.Fatalf("limit 2 listed %d", len(list))
	}
	for _, id := range []string{"n.0", "n.2"} {
		if _, _, ok := r.Leave("room:a", id, nil); !ok {
			t.Fatalf("leave %s", id)
		}
	}
	if _, _, ok := r.Leave("room:a", "n.0", nil); ok {
		t.Fatal("left twice")
	}
	_, users2, userCount := r.Stats("room:a", true)
	if userCount != 1 || len(users2) != 1 || users2[0] != "alice" {
		t.Fatalf("users after leaves: %v", users2)
	}
	for _, id := range []string{"n.1", "n.3", "n.4"} {
		r.Leave("room:a", id, nil)
	}
	if c, _, _ := r.Stats("room:a", false); c != 0 || r.Clients() != 0 {
		t.Fatal("an empty room still counts")
	}
}

func TestEventRate(t *testing.T) {
	pat, _ := protocol.ParsePatterns("*")
	now := time.Unix(100, 0)
	r := presence.New(presence.Config{Channels: pat, EventRate: 2, Now: func() time.Time { return now }})
	want := []presence.Decision{presence.Send, presence.Send, presence.Notice, presence.Drop, presence.Drop}
	for i, w := range want {
		if d := r.Join("c", protocol.Client{Client: strconv.Itoa(i)}, nil); d != w {
			t.Fatalf("event %d: %v, want %v", i, d, w)
		}
	}
	// A lone client that leaves and joins again, emptying the channel
	// each time, does not restart its rate.
	r.Join("e", protocol.Client{Client: "a"}, nil)
	for i := range 4 {
		_, d, _ := r.Leave("e", "a", nil)
		if d2 := r.Join("e", protocol.Client{Client: "a"}, nil); i > 0 && (d != presence.Drop || d2 != presence.Drop) {
			t.Fatalf("cycle %d: %v %v, want drops: the rate is the channel's, emptied or not", i, d, d2)
		}
	}
	now = now.Add(time.Second)
	if _, d, _ := r.Leave("c", "0", nil); d != presence.Send {
		t.Fatalf("next second: %v", d)
	}
	// Another channel has its own rate.
	if d := r.Join("d", protocol.Client{Client: "x"}, nil); d != presence.Send {
		t.Fatal(d)
	}
}

// BenchmarkJoinLeave10k is one join and one leave in a channel of 10,000
// members: it must not grow with the members.
func BenchmarkJoinLeave10k(b *testing.B) {
	pat, _ := protocol.ParsePatterns("*")
	r := presence.New(presence.Config{Channels: pat, EventRate: 1 << 30})
	for i := range 10_000 {
		r.Join("big", protocol.Client{Client: "m." + strconv.Itoa(i), User: "u" + strconv.Itoa(i%5000)}, nil)
	}
	c := protocol.Client{Client: "new.1", User: "newcomer"}
	b.ReportAllocs()
	for b.Loop() {
		r.Join("big", c, nil)
		r.Leave("big", c.Client, nil)
	}
}

// BenchmarkList10k is one presence list (capped at 1,000) of a channel of
// 10,000 members.
func BenchmarkList10k(b *testing.B) {
	pat, _ := protocol.ParsePatterns("*")
	r := presence.New(presence.Config{Channels: pat, EventRate: 1 << 30})
	for i := range 10_000 {
		r.Join("big", protocol.Client{Client: "m." + strconv.Itoa(i), User: "u" + strconv.Itoa(i)}, nil)
	}
	b.ReportAllocs()
	for b.Loop() {
		r.List("big", 0)
	}
}

// A small channel's answer is built for every ask; a big one's at most
// once per AnswerInterval past the first: the asks in between wait for
// the next build, which answers them all, and nothing is kept after.
func TestAnswerBatched(t *testing.T) {
	pat, _ := protocol.ParsePatterns("*")
	now := time.Unix(100, 0)
	var mu sync.Mutex
	r := presence.New(presence.Config{Channels: pat, Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	builds := 0
	encode := func(clients []protocol.Client, total int) *protocol.Wire {
		builds++
		return protocol.NewWire(protocol.AppendPresence(protocol.Buffer(64), "c", clients, false))
	}
	var got []*protocol.Wire
	deliver := func(w *protocol.Wire) { got = append(got, w) }
	r.Join("s", protocol.Client{Client: "x"}, nil)
	for range 3 {
		r.Answer("s", 0, encode, deliver)
	}
	if builds != 3 || len(got) != 3 {
		t.Fatalf("small channel: %d builds for %d answers, want one each", builds, len(got))
	}
	for i := range presence.AnswerBatchMin + 1 {
		r.Join("c", protocol.Client{Client: "m" + strconv.Itoa(i)}, nil)
	}
	builds, got = 0, nil
	r.Answer("c", 0, encode, deliver) // built now
	if builds != 1 || len(got) != 1 {
		t.Fatalf("first ask of a big channel: %d builds, %d answers", builds, len(got))
	}
	done := make(chan struct{})
	var late []*protocol.Wire
	for i := range 5 {
		if o := r.Answer("c", i, encode, func(w *protocol.Wire) {
			late = append(late, w) // under the registry's lock: one at a time
			if len(late) == 5 {
				close(done)
			}
		}); o != presence.Deferred {
			t.Fatalf("ask %d: %v, want deferred", i, o)
		}
	}
	// One asker has one ask waiting at most.
	if o := r.Answer("c", 3, encode, func(*protocol.Wire) { t.Error("a pending ask answered") }); o != presence.Pending {
		t.Fatalf("a second ask of one asker: %v, want pending", o)
	}
	if builds != 1 {
		t.Fatalf("asks within the interval built %d answers", builds-1)
	}
	r.Join("c", protocol.Client{Client: "newcomer"}, nil)
	<-done // the flush, AnswerInterval after the first build
	if builds != 2 || late[0] != late[4] {
		t.Fatalf("%d builds; the waiting asks must share the one next answer", builds)
	}
	var p struct{ Clients []protocol.Client }
	if err := json.Unmarshal(late[0].Envelope(), &p); err != nil || len(p.Clients) != presence.AnswerBatchMin+2 {
		t.Fatalf("the deferred answer lists %d clients, want the newcomer too", len(p.Clients))
	}
}
