package session_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pushgate/pushgate/auth"
	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/presence"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/session"
	"github.com/pushgate/pushgate/wsproto"
)

// presenceMsg is a presence, join or leave frame, decoded.
type presenceMsg struct {
	Type      string            `json:"type"`
	Channel   string            `json:"channel"`
	Client    string            `json:"client"`
	User      string            `json:"user"`
	Info      json.RawMessage   `json:"info"`
	Clients   []protocol.Client `json:"clients"`
	Truncated bool              `json:"truncated"`
	Code      string            `json:"code"`
}

func readPresence(t *testing.T, c *wstest.Client, typ string) presenceMsg {
	t.Helper()
	m := c.ReadMsg()
	var p presenceMsg
	if err := json.Unmarshal(m.Raw, &p); err != nil || p.Type != typ {
		t.Fatalf("got %s, want a %s", m.Raw, typ)
	}
	return p
}

// joinRoom connects in open mode with info and subscribes to room, and
// returns the client with its client id (from its own join event).
func joinRoom(t *testing.T, g *gateway, room, name string) (*wstest.Client, string) {
	t.Helper()
	c := g.dial(t, "?info="+url.QueryEscape(`{"name": "`+name+`"}`))
	c.Send(`{"op":"subscribe","channel":"` + room + `"}`)
	c.ExpectMsg("subscribed", "")
	j := readPresence(t, c, "join")
	if j.Channel != room || string(j.Info) != `{"name":"`+name+`"}` || j.Client == "" || j.User != "" {
		t.Fatalf("own join: %+v", j)
	}
	return c, j.Client
}

func TestPresenceJoinLeave(t *testing.T) {
	pat, _ := protocol.ParsePatterns("room:*")
	g := start(t, options{presence: presence.Config{Channels: pat}})
	a, aID := joinRoom(t, g, "room:1", "Ann")
	b, bID := joinRoom(t, g, "room:1", "Ben")
	if aID == bID || !strings.Contains(aID, ".") {
		t.Fatalf("client ids %q %q", aID, bID)
	}
	if j := readPresence(t, a, "join"); j.Client != bID || string(j.Info) != `{"name":"Ben"}` {
		t.Fatalf("a saw %+v", j)
	}
	a.Send(`{"op":"presence","channel":"room:1"}`)
	p := readPresence(t, a, "presence")
	got := map[string]string{}
	for _, c := range p.Clients {
		got[c.Client] = string(c.Info)
	}
	if len(got) != 2 || got[aID] != `{"name":"Ann"}` || got[bID] != `{"name":"Ben"}` || p.Truncated {
		t.Fatalf("presence %+v", p)
	}
	// Unsubscribing leaves; the leaver is not told of its own leave.
	b.Send(`{"op":"unsubscribe","channel":"room:1"}`)
	b.ExpectMsg("unsubscribed", "")
	if l := readPresence(t, a, "leave"); l.Client != bID || string(l.Info) != `{"name":"Ben"}` {
		t.Fatalf("leave %+v", l)
	}
	// Closing leaves.
	c, cID := joinRoom(t, g, "room:1", "Cy")
	readPresence(t, a, "join")
	c.Write(wstest.Frame(true, 0, 0x8, wstest.ClosePayload(1000, "")))
	if l := readPresence(t, a, "leave"); l.Client != cID {
		t.Fatalf("leave %+v", l)
	}
	// The backend disconnects by client id, taken from presence.
	d, dID := joinRoom(t, g, "room:1", "Di")
	readPresence(t, a, "join")
	n, err := g.sessions.Disconnect(context.Background(), session.Target{Client: dID}, false, "banned")
	if err != nil || n != 1 {
		t.Fatalf("disconnect %s: %d %v", dID, n, err)
	}
	if reason := d.ExpectClose(wsproto.CloseDisconnectedHard); reason != "banned" {
		t.Fatalf("reason %q", reason)
	}
	if l := readPresence(t, a, "leave"); l.Client != dID {
		t.Fatalf("leave %+v", l)
	}
	// Only the room's own subscribers hear; a channel without presence
	// has none.
	b.Send(`{"op":"presence","channel":"room:1"}`)
	b.ExpectMsg("error", "not_subscribed")
	b.Send(`{"op":"subscribe","channel":"lobby"}`)
	b.ExpectMsg("subscribed", "")
	b.Send(`{"op":"presence","channel":"lobby"}`)
	b.ExpectMsg("error", "presence_off")
	b.Send(`{"op":"presence","channel":"bad name"}`)
	b.ExpectMsg("error", "invalid_channel")
	if got := testutil.ToFloat64(g.m.PresenceEvents("join")); got != 4 {
		t.Fatalf("join events counted %v, want 4", got)
	}
}

func TestPresenceFromToken(t *testing.T) {
	v, _ := auth.NewVerifier(auth.Config{Secret: secret})
	pat, _ := protocol.ParsePatterns("chat:*")
	g := start(t, options{verifier: v, presence: presence.Config{Channels: pat, MaxList: 2}})
	dial := func(user string) *wstest.Client {
		c := g.dial(t, "?token="+token(t, secret, jwt.MapClaims{"sub": user, "channels": []string{"chat:*"}, "info": map[string]string{"name": strings.ToUpper(user)}})+
			"&info="+url.QueryEscape(`{"name":"forged"}`))
		c.ExpectMsg("subscribed", "")
		c.Send(`{"op":"subscribe","channel":"chat:x"}`)
		c.ExpectMsg("subscribed", "")
		if j := readPresence(t, c, "join"); j.User != user || string(j.Info) != `{"name":"`+strings.ToUpper(user)+`"}` {
			t.Fatalf("join %+v: the token's info, not the query's", j)
		}
		return c
	}
	a := dial("alice")
	dial("alice")
	dial("bob")
	a.Send(`{"op":"presence","channel":"chat:x"}`)
	for {
		m := a.ReadMsg()
		if m.Type == "join" {
			continue
		}
		var p presenceMsg
		_ = json.Unmarshal(m.Raw, &p)
		if p.Type != "presence" || len(p.Clients) != 2 || !p.Truncated {
			t.Fatalf("want 2 of 3 clients and truncated: %s", m.Raw)
		}
		break
	}
}

// A connection asks for presence at most 4 times at once, then twice a
// second: each answer may be large.
func TestPresenceOpRate(t *testing.T) {
	pat, _ := protocol.ParsePatterns("room")
	g := start(t, options{presence: presence.Config{Channels: pat}})
	c, _ := joinRoom(t, g, "room", "Ann")
	for range 5 {
		c.Send(`{"op":"presence","channel":"room"}`)
	}
	for range 4 {
		readPresence(t, c, "presence")
	}
	if m := c.ExpectMsg("error", "rate_limited"); m.Channel != "room" {
		t.Fatalf("got %s", m.Raw)
	}
	// The budget refills: within a second another is answered.
	wstest.Until(t, 5*time.Second, func() error {
		c.Send(`{"op":"presence","channel":"room"}`)
		if m := c.ReadMsg(); m.Type != "presence" {
			return errors.New(string(m.Raw))
		}
		return nil
	})
}

func TestPresenceInfoRefused(t *testing.T) {
	g := start(t, options{})
	for _, info := range []string{`[1]`, `{"a":`, `"x"`, `{"a":"` + strings.Repeat("x", 1100) + `"}`} {
		c := g.dial(t, "?info="+url.QueryEscape(info))
		if m := c.ExpectMsg("error", "bad_request"); !strings.Contains(m.Message, "info") {
			t.Fatalf("%s: %s", info, m.Raw)
		}
	}
}

// Under a storm of joins a channel sends at most EventRate events a
// second, then one presence_lagging notice; the counts stay exact.
func TestPresenceEventRate(t *testing.T) {
	pat, _ := protocol.ParsePatterns("room")
	second := time.Unix(1_800_000_000, 0)
	g := start(t, options{presence: presence.Config{Channels: pat, EventRate: 3, Now: func() time.Time { return second }}})
	watcher := g.dial(t, "")
	watcher.Send(`{"op":"subscribe","channel":"room"}`)
	watcher.ExpectMsg("subscribed", "")
	readPresence(t, watcher, "join") // 1 of 3
	for range 6 {
		c := g.dial(t, "")
		c.Send(`{"op":"subscribe","channel":"room"}`)
		c.ExpectMsg("subscribed", "")
	}
	readPresence(t, watcher, "join")
	readPresence(t, watcher, "join")
	if m := watcher.ExpectMsg("error", "presence_lagging"); m.Channel != "room" {
		t.Fatalf("notice %s", m.Raw)
	}
	watcher.Send(`{"op":"presence","channel":"room"}`)
	if p := readPresence(t, watcher, "presence"); len(p.Clients) != 7 {
		t.Fatalf("presence lists %d clients, want all 7", len(p.Clients))
	}
	if got := testutil.ToFloat64(g.m.PresenceEvents("dropped")); got != 4 {
		t.Fatalf("dropped %v, want 4 (the notice and 3 more)", got)
	}
}
