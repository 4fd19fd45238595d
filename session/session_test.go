package session_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/internal/wstest"
)

func TestSubscribeAtConnectAndFanOut(t *testing.T) {
	g := start(t, options{})
	a := g.dial(t, "?channels=news,sport")
	b := g.dial(t, "?channels=news")
	for _, c := range []*wstest.Client{a, a, b} {
		c.ExpectMsg("subscribed", "")
	}
	res := g.publish(t, "news", `{"title":"hello"}`)
	if res.Offset != 1 || res.Delivered != 2 {
		t.Fatalf("publish: %+v", res)
	}
	want := `{"type":"message","channel":"news","offset":1,"data":{"title":"hello"}}`
	a.ExpectMessage(ws.OpText, []byte(want))
	b.ExpectMessage(ws.OpText, []byte(want))
	g.publish(t, "sport", `[1,2]`)
	a.ExpectMessage(ws.OpText, []byte(`{"type":"message","channel":"sport","offset":1,"data":[1,2]}`))
}

func TestSubscribeUnsubscribeOps(t *testing.T) {
	g := start(t, options{})
	c := g.dial(t, "")
	g.publish(t, "news", `1`)
	c.Send(`{"op":"subscribe","channel":"news"}`)
	m := c.ExpectMsg("subscribed", "")
	if m.Channel != "news" || m.Offset != 1 || m.Epoch == "" || m.Recovered {
		t.Fatalf("subscribed: %s", m.Raw)
	}
	g.publish(t, "news", `2`)
	if m := c.ExpectMsg("message", ""); m.Offset != 2 || string(m.Data) != "2" {
		t.Fatalf("message: %s", m.Raw)
	}
	c.Send(`{"op":"unsubscribe","channel":"news"}`)
	if m := c.ExpectMsg("unsubscribed", ""); m.Channel != "news" {
		t.Fatalf("unsubscribed: %s", m.Raw)
	}
	g.publish(t, "news", `3`)
	// Nothing more for news: the next frame is the answer to this op.
	c.Send(`{"op":"unsubscribe","channel":"news"}`)
	c.ExpectMsg("error", "not_subscribed")
}

// Every refused op gets its error reply and the connection goes on.
func TestClientErrors(t *testing.T) {
	g := start(t, options{hub: broadcast.Config{MaxChannels: 2}, publish: "chat:*"})
	c := g.dial(t, "?channels=a")
	c.ExpectMsg("subscribed", "")
	for _, tc := range []struct {
		name, send, code string
	}{
		{"malformed JSON", `{"op":`, "bad_request"},
		{"not an object", `[1]`, "bad_request"},
		{"unknown op", `{"op":"dance"}`, "bad_request"},
		{"no op", `{}`, "bad_request"},
		{"since not a number", `{"op":"subscribe","channel":"b","since":"x"}`, "bad_request"},
		{"empty channel", `{"op":"subscribe","channel":""}`, "invalid_channel"},
		{"bad character", `{"op":"subscribe","channel":"a b"}`, "invalid_channel"},
		{"quote", `{"op":"subscribe","channel":"a\""}`, "invalid_channel"},
		{"too long", `{"op":"subscribe","channel":"` + strings.Repeat("x", 129) + `"}`, "invalid_channel"},
		{"pattern", `{"op":"subscribe","channel":"chat:*"}`, "invalid_channel"},
		{"someone's personal channel", `{"op":"subscribe","channel":"#alice"}`, "forbidden"},
		{"twice", `{"op":"subscribe","channel":"a"}`, "already_subscribed"},
		{"not subscribed", `{"op":"unsubscribe","channel":"zzz"}`, "not_subscribed"},
		{"publish not allowed", `{"op":"publish","channel":"news","data":1}`, "forbidden"},
		{"publish to a user", `{"op":"publish","channel":"#alice","data":1}`, "forbidden"},
		{"publish without data", `{"op":"publish","channel":"chat:x"}`, "bad_request"},
		{"publish bad data", `{"op":"publish","channel":"chat:x","data":nope}`, "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.Send(tc.send)
			m := c.ExpectMsg("error", tc.code)
			if m.Message == "" {
				t.Fatalf("error without message: %s", m.Raw)
			}
			if strings.Contains(tc.name, "quote") && m.Channel != "" {
				t.Fatalf("invalid name echoed: %s", m.Raw)
			}
		})
	}
	c.Write(wstest.Frame(true, 0, ws.OpBinary, []byte(`{"op":"subscribe","channel":"b"}`)))
	c.ExpectMsg("error", "bad_request")
	c.Send(`{"op":"subscribe","channel":"b"}`)
	c.ExpectMsg("subscribed", "")
	c.Send(`{"op":"subscribe","channel":"c"}`)
	if m := c.ExpectMsg("error", "too_many_channels"); m.Channel != "c" {
		t.Fatalf("error: %s", m.Raw)
	}
	// Still served after all that.
	g.publish(t, "a", `"ok"`)
	c.ExpectMsg("message", "")
}

// A chat room: a client publishes to a channel open to client publishing,
// and every subscriber, the sender included, gets it.
func TestClientPublish(t *testing.T) {
	g := start(t, options{publish: "chat:*"})
	a := g.dial(t, "?channels=chat:lobby")
	b := g.dial(t, "?channels=chat:lobby")
	a.ExpectMsg("subscribed", "")
	b.ExpectMsg("subscribed", "")
	a.Send(`{"op":"publish","channel":"chat:lobby","data":{"name":"ann","text":"hi"}}`)
	for _, c := range []*wstest.Client{a, b} {
		m := c.ExpectMsg("message", "")
		if m.Channel != "chat:lobby" || m.Offset != 1 || string(m.Data) != `{"name":"ann","text":"hi"}` {
			t.Fatalf("got %s", m.Raw)
		}
	}
}

// Many publishers and subscribers over real sockets: every subscriber gets
// every message of its channels once, in order.
func TestConcurrentPublishersSubscribers(t *testing.T) {
	g := start(t, options{hub: broadcast.Config{Shards: 4}})
	const (
		channels   = 4
		clients    = 40
		publishers = 3 // per channel
		each       = 100
	)
	type sub struct {
		c     *wstest.Client
		chans []string
	}
	subs := make([]sub, clients)
	for i := range subs {
		chans := []string{fmt.Sprintf("c%d", i%channels), fmt.Sprintf("c%d", (i+1)%channels)}
		subs[i] = sub{g.dial(t, "?channels="+strings.Join(chans, ",")), chans}
		subs[i].c.ExpectMsg("subscribed", "")
		subs[i].c.ExpectMsg("subscribed", "")
	}
	var wg sync.WaitGroup
	for ch := 0; ch < channels; ch++ {
		for p := 0; p < publishers; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					g.publish(t, fmt.Sprintf("c%d", ch), fmt.Sprintf(`{"p":%d,"i":%d}`, p, i))
				}
			}()
		}
	}
	want := publishers * each
	for _, s := range subs {
		next := map[string]uint64{}
		for n := 0; n < 2*want; n++ {
			m := s.c.ExpectMsg("message", "")
			next[m.Channel]++
			if m.Offset != next[m.Channel] {
				t.Fatalf("channel %s: offset %d, want %d", m.Channel, m.Offset, next[m.Channel])
			}
		}
		for _, ch := range s.chans {
			if next[ch] != uint64(want) {
				t.Fatalf("channel %s: %d messages, want %d", ch, next[ch], want)
			}
		}
	}
	wg.Wait()
}

// Closing connections frees their registry entries.
func TestDisconnectFreesRegistry(t *testing.T) {
	g := start(t, options{hub: broadcast.Config{HistorySize: -1}})
	var cs []*wstest.Client
	for i := 0; i < 20; i++ {
		c := g.dial(t, fmt.Sprintf("?channels=x%d,shared", i%5))
		c.ExpectMsg("subscribed", "")
		c.ExpectMsg("subscribed", "")
		cs = append(cs, c)
	}
	if s := g.hub.Stats(); s.Members != 20 || s.Subscribers != 40 || s.Channels != 6 {
		t.Fatalf("stats %+v", s)
	}
	for i, c := range cs {
		if i%2 == 0 {
			c.Conn.Close() // vanishes
		} else {
			c.Write(wstest.Frame(true, 0, ws.OpClose, wstest.ClosePayload(1000, "")))
		}
	}
	wstest.Eventually(t, "registry to empty", func() bool {
		return g.hub.Stats() == broadcast.Stats{}
	})
	if res := g.publish(t, "shared", `1`); res.Delivered != 0 {
		t.Fatalf("delivered to %d closed connections", res.Delivered)
	}
}

// A subscriber that cannot keep up is closed with 1013; the others get
// everything.
func TestSlowSubscriber(t *testing.T) {
	g := start(t, options{queue: 1 << 20})
	slow := g.dial(t, "?channels=firehose")
	fast := g.dial(t, "?channels=firehose")
	slow.ExpectMsg("subscribed", "")
	fast.ExpectMsg("subscribed", "")
	payload := `"` + strings.Repeat("x", 32<<10) + `"`
	// 19 MB: more than the kernel's socket buffers and the queue hold, sent
	// at most 8 messages ahead of the fast reader so that it keeps up.
	const n, ahead = 600, 8
	read := make(chan struct{}, n)
	done := make(chan struct{})
	// Once it is judged slow, the slow client reads what its socket holds
	// (within the close timeout) and finds the 1013 at the end.
	closed := make(chan error, 1)
	go func() {
		for testutil.ToFloat64(g.m.SlowConsumers) == 0 {
			select {
			case <-done:
				closed <- errors.New("never judged slow")
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		code, reason, err := slow.TryReadClose()
		if err == nil && (code != 1013 || !strings.Contains(reason, "slow")) {
			err = fmt.Errorf("close %d %q, want 1013 slow consumer", code, reason)
		}
		closed <- err
	}()
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			if i >= ahead {
				<-read
			}
			g.publish(t, "firehose", payload)
		}
	}()
	for i := 1; i <= n; i++ {
		if m := fast.ExpectMsg("message", ""); m.Offset != uint64(i) {
			t.Fatalf("fast subscriber: offset %d, want %d", m.Offset, i)
		}
		read <- struct{}{}
	}
	<-done
	if err := <-closed; err != nil {
		t.Fatalf("slow subscriber: %v", err)
	}
}

// A client cannot publish text that is not UTF-8: the frame itself is
// invalid (RFC 6455 section 8.1), so the connection is closed with 1007
// and nothing reaches the channel.
func TestClientPublishInvalidUTF8(t *testing.T) {
	g := start(t, options{publish: "chat:*"})
	c := g.dial(t, "?channels=chat:x")
	c.ExpectMsg("subscribed", "")
	c.Write(wstest.Text("{\"op\":\"publish\",\"channel\":\"chat:x\",\"data\":\"\xff\"}"))
	c.ExpectClose(1007)
	if h := g.hub.History("chat:x", 0); len(h.Entries) != 0 {
		t.Fatalf("published %d entries", len(h.Entries))
	}
}
