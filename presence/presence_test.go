package presence_test

import (
	"strconv"
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
		if d := r.Join("room:a", protocol.Client{Client: "n." + strconv.Itoa(i), User: u}); d != presence.Send {
			t.Fatalf("join %d: %v", i, d)
		}
	}
	if d := r.Join("room:a", protocol.Client{Client: "n.0", User: "alice"}); d != presence.Drop {
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
		if _, _, ok := r.Leave("room:a", id); !ok {
			t.Fatalf("leave %s", id)
		}
	}
	if _, _, ok := r.Leave("room:a", "n.0"); ok {
		t.Fatal("left twice")
	}
	_, users2, userCount := r.Stats("room:a", true)
	if userCount != 1 || len(users2) != 1 || users2[0] != "alice" {
		t.Fatalf("users after leaves: %v", users2)
	}
	for _, id := range []string{"n.1", "n.3", "n.4"} {
		r.Leave("room:a", id)
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
		if d := r.Join("c", protocol.Client{Client: strconv.Itoa(i)}); d != w {
			t.Fatalf("event %d: %v, want %v", i, d, w)
		}
	}
	now = now.Add(time.Second)
	if _, d, _ := r.Leave("c", "0"); d != presence.Send {
		t.Fatalf("next second: %v", d)
	}
	// Another channel has its own rate.
	if d := r.Join("d", protocol.Client{Client: "x"}); d != presence.Send {
		t.Fatal(d)
	}
}

// BenchmarkJoinLeave10k is one join and one leave in a channel of 10,000
// members: it must not grow with the members.
func BenchmarkJoinLeave10k(b *testing.B) {
	pat, _ := protocol.ParsePatterns("*")
	r := presence.New(presence.Config{Channels: pat, EventRate: 1 << 30})
	for i := range 10_000 {
		r.Join("big", protocol.Client{Client: "m." + strconv.Itoa(i), User: "u" + strconv.Itoa(i%5000)})
	}
	c := protocol.Client{Client: "new.1", User: "newcomer"}
	b.ReportAllocs()
	for b.Loop() {
		r.Join("big", c)
		r.Leave("big", c.Client)
	}
}

// BenchmarkList10k is one presence list (capped at 1,000) of a channel of
// 10,000 members.
func BenchmarkList10k(b *testing.B) {
	pat, _ := protocol.ParsePatterns("*")
	r := presence.New(presence.Config{Channels: pat, EventRate: 1 << 30})
	for i := range 10_000 {
		r.Join("big", protocol.Client{Client: "m." + strconv.Itoa(i), User: "u" + strconv.Itoa(i)})
	}
	b.ReportAllocs()
	for b.Loop() {
		r.List("big", 0)
	}
}

// A presence answer is built once and shared while nobody comes or goes;
// under churn, a big channel's is rebuilt at most once per AnswerMaxAge,
// a small one's every time.
func TestAnswerShared(t *testing.T) {
	pat, _ := protocol.ParsePatterns("*")
	now := time.Unix(100, 0)
	r := presence.New(presence.Config{Channels: pat, Now: func() time.Time { return now }})
	builds := 0
	encode := func(clients []protocol.Client, total int) *protocol.Wire {
		builds++
		return protocol.NewWire(protocol.AppendPresence(protocol.Buffer(64), "c", clients, false))
	}
	if r.Answer("c", encode) != nil {
		t.Fatal("an answer for nobody")
	}
	for i := range presence.AnswerCacheMin {
		r.Join("c", protocol.Client{Client: "m" + strconv.Itoa(i)})
	}
	r.Join("c", protocol.Client{Client: "a"})
	w := r.Answer("c", encode)
	now = now.Add(time.Hour)
	if r.Answer("c", encode) != w || builds != 1 {
		t.Fatal("rebuilt with nobody coming or going")
	}
	r.Join("c", protocol.Client{Client: "b"})
	w2 := r.Answer("c", encode)
	if w2 == w || builds != 2 {
		t.Fatal("not rebuilt after a join")
	}
	r.Join("c", protocol.Client{Client: "d"})
	now = now.Add(presence.AnswerMaxAge / 2)
	if r.Answer("c", encode) != w2 || builds != 2 {
		t.Fatal("rebuilt within AnswerMaxAge")
	}
	now = now.Add(presence.AnswerMaxAge)
	if r.Answer("c", encode) == w2 || builds != 3 {
		t.Fatal("not rebuilt after AnswerMaxAge")
	}
	// A small channel's answer is always current.
	r.Join("s", protocol.Client{Client: "x"})
	small := r.Answer("s", encode)
	r.Join("s", protocol.Client{Client: "y"})
	if r.Answer("s", encode) == small || builds != 5 {
		t.Fatal("a small channel's answer was stale")
	}
}
