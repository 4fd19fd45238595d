package session_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgate/pushgate/auth"
	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/presence"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/session"
	"github.com/pushgate/pushgate/wsproto"
)

// dialUser connects as user with a token granting channels.
func (g *gateway) dialUser(t testing.TB, user string, channels ...string) *wstest.Client {
	t.Helper()
	c := g.dial(t, "?token="+token(t, secret, jwt.MapClaims{"sub": user, "channels": channels}))
	c.ExpectMsg("subscribed", "") // the personal channel
	return c
}

func TestDisconnectByUser(t *testing.T) {
	g := startAuth(t, "")
	ctx := context.Background()
	a1, a2 := g.dialUser(t, "alice", "news"), g.dialUser(t, "alice", "news")
	bob := g.dialUser(t, "bob", "news")
	for _, c := range []*wstest.Client{a1, a2, bob} {
		c.Send(`{"op":"subscribe","channel":"news"}`)
		c.ExpectMsg("subscribed", "")
	}
	// What was published before the command reaches the client before its
	// close frame.
	g.publish(t, "news", `"before"`)
	n, err := g.sessions.Disconnect(ctx, session.Target{User: "alice"}, true, "moved to another room")
	if err != nil || n != 2 {
		t.Fatalf("disconnect alice: %d, %v; want 2 connections", n, err)
	}
	for _, c := range []*wstest.Client{a1, a2} {
		if m := c.ExpectMsg("message", ""); string(m.Data) != `"before"` {
			t.Fatalf("got %s before the close", m.Raw)
		}
		if reason := c.ExpectClose(wsproto.CloseDisconnected); reason != "moved to another room" {
			t.Fatalf("close reason %q", reason)
		}
	}
	// Bob is untouched: he still gets what is published.
	g.publish(t, "news", `"after"`)
	bob.ExpectMsg("message", "")
	if m := bob.ExpectMsg("message", ""); string(m.Data) != `"after"` {
		t.Fatalf("bob got %s", m.Raw)
	}
	n, err = g.sessions.Disconnect(ctx, session.Target{User: "bob"}, false, "")
	if err != nil || n != 1 {
		t.Fatalf("disconnect bob: %d, %v", n, err)
	}
	if reason := bob.ExpectClose(wsproto.CloseDisconnectedHard); reason == "" {
		t.Fatal("close without a reason")
	}
	// Nobody left to act on.
	for _, tgt := range []session.Target{{User: "alice"}, {User: "carol"}, {Client: "nosuch.1"}, {Client: "garbage"}} {
		if n, err := g.sessions.Disconnect(ctx, tgt, true, ""); n != 0 || err != nil {
			t.Fatalf("%+v: %d, %v", tgt, n, err)
		}
	}
	for _, tgt := range []session.Target{{}, {User: "a", Client: "b"}, {User: "bad user"}} {
		if _, err := g.sessions.Disconnect(ctx, tgt, true, ""); err == nil {
			t.Fatalf("%+v accepted", tgt)
		}
	}
}

func TestServerSideSubscribe(t *testing.T) {
	g := startAuth(t, "")
	ctx := context.Background()
	a1, a2 := g.dialUser(t, "alice", "news"), g.dialUser(t, "alice", "news")
	// The token does not grant "vip": the client may not ask for it...
	a1.Send(`{"op":"subscribe","channel":"vip"}`)
	a1.ExpectMsg("error", "forbidden")
	// ...but the backend may subscribe it.
	g.publish(t, "vip", `"old"`)
	n, err := g.sessions.Subscribe(ctx, session.Target{User: "alice"}, "vip")
	if err != nil || n != 2 {
		t.Fatalf("subscribe: %d, %v", n, err)
	}
	for _, c := range []*wstest.Client{a1, a2} {
		m := c.ExpectMsg("subscribed", "")
		if m.Channel != "vip" || m.Offset != 1 || m.Epoch == "" || m.Recovered {
			t.Fatalf("got %s", m.Raw)
		}
	}
	if n, _ := g.sessions.Subscribe(ctx, session.Target{User: "alice"}, "vip"); n != 0 {
		t.Fatalf("subscribed again: %d", n)
	}
	g.publish(t, "vip", `"live"`)
	for _, c := range []*wstest.Client{a1, a2} {
		if m := c.ExpectMsg("message", ""); m.Channel != "vip" || m.Offset != 2 {
			t.Fatalf("got %s", m.Raw)
		}
	}
	// As if the client had asked: it may unsubscribe itself.
	a2.Send(`{"op":"unsubscribe","channel":"vip"}`)
	a2.ExpectMsg("unsubscribed", "")
	n, err = g.sessions.Unsubscribe(ctx, session.Target{User: "alice"}, "vip")
	if err != nil || n != 1 {
		t.Fatalf("unsubscribe: %d, %v; want the one still subscribed", n, err)
	}
	if m := a1.ExpectMsg("unsubscribed", ""); m.Channel != "vip" {
		t.Fatalf("got %s", m.Raw)
	}
	// Nothing of vip follows: the next frame is news'.
	g.publish(t, "vip", `"gone"`)
	for _, c := range []*wstest.Client{a1, a2} {
		c.Send(`{"op":"subscribe","channel":"news"}`)
		c.ExpectMsg("subscribed", "")
		g.publish(t, "news", `"n"`)
		if m := c.ExpectMsg("message", ""); m.Channel != "news" {
			t.Fatalf("got %s after unsubscribing", m.Raw)
		}
	}
	if _, err := g.sessions.Subscribe(ctx, session.Target{User: "alice"}, "bad name"); !errors.Is(err, protocol.ErrChannelName) {
		t.Fatalf("bad channel: %v", err)
	}
}

// Commands from other goroutines race with the clients' own ops and
// closes on the same connections, on presence channels: nothing is lost
// or double counted, no presence entry outlives its connection, and -race
// finds no unguarded access.
func TestCommandsRaceClientOps(t *testing.T) {
	v, _ := auth.NewVerifier(auth.Config{Secret: secret})
	pat, _ := protocol.ParsePatterns("c*")
	pres := presence.Config{Channels: pat, EventRate: 1 << 20}
	g := start(t, options{verifier: v, presence: pres})
	ctx := context.Background()
	const conns = 8
	clients := make([]*wstest.Client, conns)
	for i := range clients {
		clients[i] = g.dialUser(t, "racer", "*")
	}
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				c.Write(wstest.Text(fmt.Sprintf(`{"op":"subscribe","channel":"c%d"}`, j%5)))
				c.Write(wstest.Text(fmt.Sprintf(`{"op":"unsubscribe","channel":"c%d"}`, (j+i)%5)))
			}
		}()
	}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				_, _ = g.sessions.Subscribe(ctx, session.Target{User: "racer"}, fmt.Sprintf("c%d", j%5))
				_, _ = g.sessions.Unsubscribe(ctx, session.Target{User: "racer"}, fmt.Sprintf("c%d", (j+1)%5))
				_, _ = g.sessions.Presence(ctx, fmt.Sprintf("c%d", j%5))
			}
		}()
	}
	// Others connect, subscribe and vanish while the commands run.
	churner := token(t, secret, jwt.MapClaims{"sub": "churner", "channels": []string{"*"}})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 20 {
			c, err := wstest.TryConnectFrom("127.0.0.1", g.addr)
			if err != nil {
				continue
			}
			if c.TryUpgrade("/ws?channels=c1,c2&token="+churner, "Sec-WebSocket-Protocol: pushgate.v1") == nil {
				_, _ = g.sessions.Disconnect(ctx, session.Target{User: "churner"}, true, "churn")
			}
			c.Conn.Close()
		}
	}()
	wg.Wait()
	_, _ = g.sessions.Disconnect(ctx, session.Target{User: "racer"}, true, "")
	for _, c := range clients {
		c.ExpectClose(wsproto.CloseDisconnected)
	}
	wstest.Eventually(t, "every subscription and presence entry released", func() bool {
		s := g.hub.Stats()
		if s.Members != 0 || s.Subscribers != 0 {
			return false
		}
		for i := range 5 {
			if p, _ := g.sessions.Presence(ctx, fmt.Sprintf("c%d", i)); p.Total != 0 {
				return false
			}
		}
		return true
	})
}
