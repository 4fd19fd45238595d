package control

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/pushgate/pushgate/auth"
	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/internal/natstest"
	"github.com/pushgate/pushgate/internal/servertest"
	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/presence"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/session"
	"github.com/pushgate/pushgate/wsproto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var secret = []byte("0123456789abcdef0123456789abcdef-test")

func startNATS(t *testing.T) string { return natstest.Start(t).URL }

// node is one gateway: a hub, sessions with presence on "room*", a
// WebSocket listener, and its part of the control plane.
type node struct {
	addr     string
	sessions *session.Handler
	cluster  *Cluster
}

func startNode(t *testing.T, url string, ttl time.Duration) *node {
	t.Helper()
	hub := broadcast.New(broadcast.Config{})
	pat, _ := protocol.ParsePatterns("room*")
	pres := presence.New(presence.Config{Channels: pat})
	v, _ := auth.NewVerifier(auth.Config{Secret: secret})
	sessions := session.New(session.Config{Hub: hub, Presence: pres, Verifier: v})
	c, err := New(Config{URL: url, Local: sessions, Hub: hub, Presence: pres, LeaseTTL: ttl, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sessions.SetPeers(c)
	srv, err := server.New(server.Config{Handler: sessions, Authorize: sessions.Authorize})
	if err != nil {
		t.Fatal(err)
	}
	sessions.SetLookup(srv.Data)
	addr := servertest.Serve(t, srv, sessions.Close, c.Close, hub.Close)
	return &node{addr: addr, sessions: sessions, cluster: c}
}

// waitNodes waits until every node's lease listing has all of them.
func waitNodes(t *testing.T, nodes ...*node) {
	t.Helper()
	wstest.Eventually(t, "every node to see the others", func() bool {
		for _, n := range nodes {
			n.cluster.refresh(time.Second, true)
			if others, _ := n.cluster.others(); len(others) != len(nodes)-1 {
				return false
			}
		}
		return true
	})
}

// dial connects user to n with a token and subscribes it to channels.
func (n *node) dial(t *testing.T, user string, channels ...string) *wstest.Client {
	t.Helper()
	return n.dialInfo(t, user, user, channels...)
}

// dialInfo is dial with the name in the token's info.
func (n *node) dialInfo(t *testing.T, user, name string, channels ...string) *wstest.Client {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "channels": []string{"*"}, "info": map[string]string{"name": name}}).
		SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := wstest.Dial(t, n.addr, "/ws?token="+tok, "Sec-WebSocket-Protocol: pushgate.v1")
	c.ExpectMsg("subscribed", "")
	for _, ch := range channels {
		c.Send(`{"op":"subscribe","channel":"` + ch + `"}`)
		c.ExpectMsg("subscribed", "")
	}
	return c
}

type event struct {
	Type, Channel, Client, User, Code string
}

// next reads c's next frame as a presence event or notice.
func next(t *testing.T, c *wstest.Client) event {
	t.Helper()
	var e event
	m := c.ReadMsg()
	if err := json.Unmarshal(m.Raw, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestClusterPresenceAndCommands(t *testing.T) {
	url := startNATS(t)
	a, b := startNode(t, url, 3*time.Second), startNode(t, url, 3*time.Second)
	waitNodes(t, a, b)
	ctx := context.Background()

	ann := a.dial(t, "ann", "room")
	if e := next(t, ann); e.Type != "join" || e.User != "ann" {
		t.Fatalf("own join %+v", e)
	}
	bob := b.dial(t, "bob", "room")
	bobID := next(t, bob).Client
	// Bob's join on b reaches ann on a.
	if e := next(t, ann); e.Type != "join" || e.Client != bobID || e.User != "bob" {
		t.Fatalf("ann saw %+v", e)
	}
	ann2 := b.dial(t, "ann", "room") // ann again, on b
	next(t, ann2)
	next(t, ann)
	next(t, bob)

	for _, n := range []*node{a, b} {
		p, err := n.cluster.Presence(ctx, "room")
		if err != nil || p.Total != 3 || len(p.Clients) != 3 {
			t.Fatalf("presence from %s: %+v %v", n.sessions.Node(), p, err)
		}
		s, err := n.cluster.PresenceStats(ctx, "room")
		if err != nil || s.Clients != 3 || s.Users != 2 {
			t.Fatalf("stats: %+v %v; want 3 clients of 2 users", s, err)
		}
	}
	// A client's presence op lists every node's clients.
	ann.Send(`{"op":"presence","channel":"room"}`)
	var p struct {
		Type    string
		Clients []protocol.Client
	}
	if err := json.Unmarshal(skipEvents(t, ann, "presence").Raw, &p); err != nil || len(p.Clients) != 3 {
		t.Fatalf("ann's presence op: %+v %v", p, err)
	}
	if _, err := a.cluster.Presence(ctx, "lobby"); !errors.Is(err, session.ErrPresenceOff) {
		t.Fatalf("presence of a channel without it: %v", err)
	}

	// A command on a for a client of b reaches it.
	n, err := a.cluster.Subscribe(ctx, session.Target{Client: bobID}, "news")
	if err != nil || n != 1 {
		t.Fatalf("subscribe bob from a: %d %v", n, err)
	}
	if m := skipEvents(t, bob, "subscribed"); m.Channel != "news" {
		t.Fatalf("bob got %s", m.Raw)
	}
	page, err := a.cluster.Channels(ctx, "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, c := range page.Channels {
		got[c.Name] = c.Subscribers
	}
	if got["room"] != 3 || got["news"] != 1 || got["#ann"] != 2 || page.Next != "" {
		t.Fatalf("channels %v", got)
	}
	if page, _ := a.cluster.Channels(ctx, "", "", 2); len(page.Channels) != 2 || page.Next != page.Channels[1].Name ||
		!slices.IsSortedFunc(page.Channels, func(x, y broadcast.ChannelInfo) int { return compare(x.Name, y.Name) }) {
		t.Fatalf("first page of 2: %+v", page)
	}
	n, err = b.cluster.Unsubscribe(ctx, session.Target{User: "bob"}, "news")
	if err != nil || n != 1 {
		t.Fatalf("unsubscribe: %d %v", n, err)
	}
	skipEvents(t, bob, "unsubscribed")

	// A user's connections on both nodes.
	n, err = b.cluster.Disconnect(ctx, session.Target{User: "ann"}, false, "gone fishing")
	if err != nil || n != 2 {
		t.Fatalf("disconnect ann: %d %v", n, err)
	}
	for _, c := range []*wstest.Client{ann, ann2} {
		if r := c.ExpectClose(wsproto.CloseDisconnectedHard); r != "gone fishing" {
			t.Fatalf("reason %q", r)
		}
	}
	// Bob hears both leave, one from each node (after any join relayed
	// late).
	for range 2 {
		if m := skipJoins(t, bob); m.Type != "leave" || !strings.Contains(string(m.Raw), `"user":"ann"`) {
			t.Fatalf("bob saw %s", m.Raw)
		}
	}
	if n, err := a.cluster.Disconnect(ctx, session.Target{Client: "nosuchnode.1"}, true, ""); n != 0 || err != nil {
		t.Fatalf("unknown node: %d %v", n, err)
	}
}

// skipEvents reads c's frames until one of type typ, skipping join and
// leave events: one relayed from another node may come late.
func skipEvents(t *testing.T, c *wstest.Client, typ string) wstest.Msg {
	t.Helper()
	for {
		m := c.ReadMsg()
		switch m.Type {
		case typ:
			return m
		case "join", "leave":
			continue
		}
		t.Fatalf("got %s, want %s", m.Raw, typ)
	}
}

// skipJoins reads c's next frame that is not a join.
func skipJoins(t *testing.T, c *wstest.Client) wstest.Msg {
	t.Helper()
	for {
		if m := c.ReadMsg(); m.Type != "join" {
			return m
		}
	}
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// A node that dies (no drain, its lease left to expire) leaves no ghost in
// lists, and within its lease the others tell their presence subscribers
// to ask again.
func TestClusterNodeDies(t *testing.T) {
	url := startNATS(t)
	a, b := startNode(t, url, 1500*time.Millisecond), startNode(t, url, 1500*time.Millisecond)
	waitNodes(t, a, b)
	ann := a.dial(t, "ann", "room")
	next(t, ann)
	bob := b.dial(t, "bob", "room")
	next(t, bob)
	next(t, ann) // bob's join
	// b dies: its control plane goes silent without giving up its lease
	// (its sockets stay open: what matters is that nobody hears of them).
	b.cluster.once.Do(func() { // Close, but for giving up the lease
		close(b.cluster.quit)
		b.cluster.wg.Wait()
		b.cluster.nc.Close()
	})
	start := time.Now()
	// A command by user cannot know whether b held some of the user's
	// connections: it says so (503) rather than answer a count.
	if _, err := a.cluster.Disconnect(context.Background(), session.Target{User: "bob"}, true, ""); !errors.Is(err, broadcast.ErrUnavailable) {
		t.Fatalf("disconnect with b silent: %v, want unavailable", err)
	}
	p, err := a.cluster.Presence(context.Background(), "room")
	if err != nil || p.Total != 1 || p.Clients[0].User != "ann" {
		t.Fatalf("presence with b dead: %+v %v", p, err)
	}
	if e := next(t, ann); e.Type != "error" || e.Code != "presence_lagging" || e.Channel != "room" {
		t.Fatalf("ann got %+v, want a presence_lagging notice", e)
	}
	// Bound: the lease (1.5 s) and a third of it for a to look.
	if d := time.Since(start); d > 1500*time.Millisecond*4/3+time.Second {
		t.Fatalf("notice after %v", d)
	}
}

// A node's answer that would pass NATS's payload limit is cut to fit,
// its totals kept: the call neither times out nor loses the node.
func TestClusterAnswerFitsPayload(t *testing.T) {
	url := natstest.Start(t, func(o *natsserver.Options) { o.MaxPayload = 64 << 10 }).URL
	a, b := startNode(t, url, 3*time.Second), startNode(t, url, 3*time.Second)
	waitNodes(t, a, b)
	name := strings.Repeat("n", 1000)
	for i := range 80 { // 80 KiB of info on b
		c := b.dialInfo(t, "u"+strconv.Itoa(i), name, "room")
		defer c.Conn.Close()
	}
	p, err := a.cluster.Presence(context.Background(), "room")
	if err != nil || p.Total != 80 || len(p.Clients) == 0 || len(p.Clients) >= 80 {
		t.Fatalf("presence through a 64 KiB NATS: total %d, %d listed, %v; want all 80 counted, a part listed", p.Total, len(p.Clients), err)
	}
	s, err := a.cluster.PresenceStats(context.Background(), "room")
	if err != nil || s.Clients != 80 || s.Users != 80 {
		t.Fatalf("stats: %+v %v", s, err)
	}
}

// When NATS goes away, events between nodes are lost: each node tells its
// presence subscribers to ask again at once, and, once NATS is back, tells
// the other nodes to tell theirs.
func TestClusterEventsLost(t *testing.T) {
	n := natstest.Start(t)
	a, b := startNode(t, n.URL, 3*time.Second), startNode(t, n.URL, 3*time.Second)
	waitNodes(t, a, b)
	ann := a.dial(t, "ann", "room")
	next(t, ann)
	bob := b.dial(t, "bob", "room")
	next(t, bob)
	skipEvents(t, ann, "join") // bob's
	n.Stop()
	for _, c := range []*wstest.Client{ann, bob} {
		if m := skipEvents(t, c, "error"); m.Code != "presence_lagging" {
			t.Fatalf("with NATS gone: %s", m.Raw)
		}
	}
	n.Start()
	// Back: each node resyncs the other, whose subscribers are told again.
	for _, c := range []*wstest.Client{ann, bob} {
		if m := skipEvents(t, c, "error"); m.Code != "presence_lagging" {
			t.Fatalf("with NATS back: %s", m.Raw)
		}
	}
}

// A presence event that finds the relay queue full is dropped, counted
// and signalled, without blocking or calling the registry: it is handed
// over under the registry's lock (a full queue used to deadlock it).
func TestRelayFullDoesNotBlock(t *testing.T) {
	pat, _ := protocol.ParsePatterns("*")
	reg := presence.New(presence.Config{Channels: pat})
	hub := broadcast.New(broadcast.Config{})
	defer hub.Close()
	lost := prometheus.NewCounter(prometheus.CounterOpts{Name: "lost"})
	c := &Cluster{cfg: Config{Presence: reg, Hub: hub, Lost: lost}, relay: make(chan relayEvent), lost: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 3 {
			reg.Join("room", protocol.Client{Client: "c" + strconv.Itoa(i)}, func(presence.Decision) {
				c.PresenceEvent("room", []byte(`{"type":"join"}`))
			})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a full relay queue blocked the registry")
	}
	if testutil.ToFloat64(lost) != 3 || !c.unsynced.Load() || len(c.lost) != 1 {
		t.Fatalf("lost %v, unsynced %v, signalled %d", testutil.ToFloat64(lost), c.unsynced.Load(), len(c.lost))
	}
}

// Batches on the broker's stream are written only while every live node
// reads them: a node of a version before batching (its lease is a bare
// time) turns them off until its lease goes.
func TestReadBatchesWaitsForOldNodes(t *testing.T) {
	url := startNATS(t)
	a, b := startNode(t, url, 900*time.Millisecond), startNode(t, url, 900*time.Millisecond)
	waitNodes(t, a, b)
	wstest.Eventually(t, "a to see b's lease say it reads batches", a.cluster.ReadBatches)

	a.cluster.mu.Lock()
	kv := a.cluster.kv
	a.cluster.mu.Unlock()
	ctx := context.Background()
	if _, err := kv.Put(ctx, "old-node", []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		t.Fatal(err)
	}
	wstest.Eventually(t, "a to stop batching for the old node", func() bool { return !a.cluster.ReadBatches() })
	wstest.Eventually(t, "b to stop batching for the old node", func() bool { return !b.cluster.ReadBatches() })
	// The old node drains: its lease is deleted.
	if err := kv.Delete(ctx, "old-node"); err != nil {
		t.Fatal(err)
	}
	wstest.Eventually(t, "a to batch again", a.cluster.ReadBatches)
	wstest.Eventually(t, "b to batch again", b.cluster.ReadBatches)
}

// TestLeasesAfterNATSRestart: NATS restarts and loses the lease bucket
// (memory storage); the nodes make it again, renew their leases in it,
// and list the nodes from it (a third one that joins then).
func TestLeasesAfterNATSRestart(t *testing.T) {
	ns := natstest.Start(t)
	a, b := startNode(t, ns.URL, time.Second), startNode(t, ns.URL, time.Second)
	listed := func(want int) func() bool {
		return func() bool {
			for _, n := range []*node{a, b} {
				if nodes, ok := n.cluster.Nodes(); !ok || len(nodes) != want {
					return false
				}
			}
			return true
		}
	}
	wstest.Eventually(t, "both nodes listed", listed(2))
	ns.Stop()
	ns.Start()
	wstest.Eventually(t, "both leases in the bucket made again", func() bool { return leaseCount(t, ns.URL) == 2 })
	startNode(t, ns.URL, time.Second)
	wstest.Eventually(t, "the third node listed by both", listed(3))
}

// leaseCount reads how many leases the bucket holds, from NATS itself.
func leaseCount(t *testing.T, url string) int {
	nc, err := nats.Connect(url)
	if err != nil {
		return -1
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return -1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, "PUSHGATE_nodes")
	if err != nil {
		return -1
	}
	keys, err := kv.Keys(ctx)
	if err != nil {
		return -1
	}
	return len(keys)
}
