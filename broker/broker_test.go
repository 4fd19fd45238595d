package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/internal/natstest"
	"github.com/pushgate/pushgate/internal/proctest"
	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/metrics"
	"github.com/pushgate/pushgate/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startNATS(t testing.TB) *natstest.Server { return natstest.Start(t) }

// node is one gateway's hub and broker, without sockets.
type node struct {
	hub *broadcast.Hub
	b   *Broker
	m   *metrics.Broker
	g   *metrics.Gateway
}

func startNode(t testing.TB, url string, cfg Config) *node {
	return startNodeHistory(t, url, cfg, 0)
}

func startNodeHistory(t testing.TB, url string, cfg Config, historySize int) *node {
	t.Helper()
	n := &node{hub: broadcast.New(broadcast.Config{Shards: 2, Clustered: true, HistorySize: historySize}),
		m: metrics.NewBroker(nil), g: metrics.New(nil)}
	cfg.URL, cfg.Hub, cfg.Metrics, cfg.Gateway = url, n.hub, n.m, n.g
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = 3 * time.Second
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.b = b
	t.Cleanup(func() { b.Close(); n.hub.Close() })
	wstest.Until(t, 10*time.Second, func() error { return b.Ready() })
	if v := testutil.ToFloat64(n.m.Up); v != 1 {
		t.Fatalf("broker_up %v once ready, want 1", v)
	}
	return n
}

// client is a connection as the hub sees it: it records the messages it
// is sent, per channel, and the other replies.
type client struct {
	m       *broadcast.Member
	mu      sync.Mutex
	offsets map[string][]uint64
	data    map[string][]string
	replies []map[string]any
}

func (n *node) client(t *testing.T, channel string, pos *broadcast.Position) *client {
	t.Helper()
	c := &client{offsets: map[string][]uint64{}, data: map[string][]string{}}
	c.m = n.hub.Join(c)
	if err := n.hub.Subscribe(c.m, channel, pos); err != nil {
		t.Fatal(err)
	}
	return c
}

// answered is a client subscribed to channel, once its subscribe is
// answered (on a served node, once the channel is loaded), and its member.
func (n *node) answered(t *testing.T, channel string) (*client, *broadcast.Member) {
	t.Helper()
	c := &client{offsets: map[string][]uint64{}, data: map[string][]string{}}
	m := n.hub.Join(c)
	if err := n.hub.Subscribe(m, channel, nil); err != nil {
		t.Fatal(err)
	}
	wstest.Until(t, 10*time.Second, func() error {
		if c.reply(0) == nil {
			return errors.New("not answered yet")
		}
		return nil
	})
	return c, m
}

func (c *client) Encoding() protocol.Encoding { return protocol.WebSocket }

// envelope is what the test subscribers read of a frame the hub sends.
type envelope struct {
	Type      string          `json:"type"`
	Channel   string          `json:"channel"`
	Offset    uint64          `json:"offset"`
	Epoch     string          `json:"epoch"`
	Recovered bool            `json:"recovered"`
	Data      json.RawMessage `json:"data"`
}

// decodeFrame decodes an unmasked WebSocket text frame's JSON envelope;
// payload is the frame's payload.
func decodeFrame(frame []byte) (v envelope, payload []byte, err error) {
	payload = frame[2:]
	switch frame[1] {
	case 126:
		payload = frame[4:]
	case 127:
		payload = frame[10:]
	}
	err = json.Unmarshal(payload, &v)
	return v, payload, err
}

func (c *client) Send(frame []byte) error {
	v, payload, err := decodeFrame(frame)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v.Type == "message" {
		c.offsets[v.Channel] = append(c.offsets[v.Channel], v.Offset)
		c.data[v.Channel] = append(c.data[v.Channel], string(v.Data))
		return nil
	}
	var m map[string]any
	_ = json.Unmarshal(payload, &m)
	c.replies = append(c.replies, m)
	return nil
}

// dataOf returns the data c got on channel, in order.
func (c *client) dataOf(channel string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.data[channel])
}

// wantTold fails t unless each offset of told carries, in got, the data
// its publisher was told it is at.
func wantTold(t *testing.T, got []string, told map[uint64]string) {
	t.Helper()
	for o, d := range told {
		if o == 0 || o > uint64(len(got)) || got[o-1] != d {
			t.Fatalf("offset %d does not carry %s, which its publisher was told is there", o, d)
		}
	}
}

func (c *client) got(channel string) []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.offsets[channel])
}

func (c *client) reply(i int) map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i >= len(c.replies) {
		return nil
	}
	return c.replies[i]
}

// waitOffsets waits until c has exactly want on channel, in that order.
func (c *client) waitOffsets(t *testing.T, channel string, want []uint64) {
	t.Helper()
	wstest.Until(t, 10*time.Second, func() error {
		if got := c.got(channel); !slices.Equal(got, want) {
			return fmt.Errorf("%s: got %d offsets, want %d: %s", channel, len(got), len(want), diff(got, want))
		}
		return nil
	})
}

// diff describes how got differs from want: what is missing, repeated or
// out of order.
func diff(got, want []uint64) string {
	seen := map[uint64]int{}
	var dup, order []uint64
	for i, o := range got {
		if seen[o]++; seen[o] == 2 {
			dup = append(dup, o)
		}
		if i > 0 && o <= got[i-1] {
			order = append(order, o)
		}
	}
	var missing []uint64
	for _, o := range want {
		if seen[o] == 0 {
			missing = append(missing, o)
		}
	}
	return fmt.Sprintf("missing %v, repeated %v, out of order %v", head(missing), head(dup), head(order))
}

func head(s []uint64) []uint64 {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func seq(from, to uint64) []uint64 {
	var s []uint64
	for o := from; o <= to; o++ {
		s = append(s, o)
	}
	return s
}

func publish(t *testing.T, p broadcast.Publisher, channel string, i int) broadcast.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := p.Publish(ctx, channel, fmt.Appendf(nil, `{"i":%d}`, i))
	if err != nil {
		t.Fatalf("publish %d to %s: %v", i, channel, err)
	}
	return r
}

// Publishes through both nodes at once, to one channel, reach every
// subscriber of both nodes once each, numbered 1..N without a gap, in the
// same order everywhere.
func TestClusterFanoutAndNumbering(t *testing.T) {
	nats := startNATS(t)
	a, b := startNode(t, nats.URL, Config{}), startNode(t, nats.URL, Config{})
	var clients []*client
	for range 3 {
		clients = append(clients, a.client(t, "room.1", nil), b.client(t, "room.1", nil))
	}
	const perPublisher, publishers = 25, 4
	offsets := make(chan uint64, perPublisher*publishers)
	var wg sync.WaitGroup
	for p := range publishers {
		n := []*node{a, b}[p%2]
		wg.Go(func() {
			for i := range perPublisher {
				r := publish(t, n.b, "room.1", p*1000+i)
				offsets <- r.Offset
			}
		})
	}
	wg.Wait()
	close(offsets)
	var all []uint64
	for o := range offsets {
		all = append(all, o)
	}
	slices.Sort(all)
	const total = perPublisher * publishers
	if !slices.Equal(all, seq(1, total)) {
		t.Fatalf("publish offsets %v..., want 1..%d each once", head(all), total)
	}
	for _, c := range clients {
		c.waitOffsets(t, "room.1", seq(1, total))
	}
	// Same data at the same offset on every node.
	for _, c := range clients[1:] {
		c.mu.Lock()
		clients[0].mu.Lock()
		same := slices.Equal(c.data["room.1"], clients[0].data["room.1"])
		clients[0].mu.Unlock()
		c.mu.Unlock()
		if !same {
			t.Fatal("subscribers of different nodes got different data at the same offsets")
		}
	}
	// Each publish on a node waited for that node's fan-out.
	if r := publish(t, a.b, "room.1", 9999); r.Delivered != 3 || r.Offset != total+1 {
		t.Fatalf("publish result %+v, want offset %d delivered to node a's 3 subscribers", r, total+1)
	}
	// Publishes by source: each node counts the other's as broker.
	wstest.Until(t, 5*time.Second, func() error {
		if got := testutil.ToFloat64(a.m.Received); got != total+1 {
			return fmt.Errorf("node a received %v from the broker, want %d", got, total+1)
		}
		if got := testutil.ToFloat64(b.g.PublishesBroker); got != total/2+1 {
			return fmt.Errorf("node b counted %v publishes from other nodes, want %d", got, total/2+1)
		}
		return nil
	})
	if got := testutil.ToFloat64(a.m.Published) + testutil.ToFloat64(b.m.Published); got != total+1 {
		t.Fatalf("broker_published_total over nodes %v, want %d", got, total+1)
	}
}

// A user's personal channel works across nodes, and a client that
// reconnects to the other node recovers what it missed with since.
func TestClusterUsersAndRecoveryOnOtherNode(t *testing.T) {
	nats := startNATS(t)
	a, b := startNode(t, nats.URL, Config{}), startNode(t, nats.URL, Config{})
	alice := protocol.PersonalChannel("alice")
	onB := b.client(t, alice, nil)
	bob := b.client(t, protocol.PersonalChannel("bob"), nil)
	publish(t, a.b, alice, 1)
	onB.waitOffsets(t, alice, []uint64{1})

	// A client on node a sees 1..10, then reconnects to node b with since.
	onA := a.client(t, "news", nil)
	for i := range 10 {
		publish(t, a.b, "news", i)
	}
	onA.waitOffsets(t, "news", seq(1, 10))
	epoch, _ := a.hub.History("news", 0).Epoch, 0
	for i := 10; i < 15; i++ { // published while it reconnects
		publish(t, b.b, "news", i)
	}
	again := b.client(t, "news", &broadcast.Position{Offset: 10, Epoch: epoch})
	again.waitOffsets(t, "news", seq(11, 15))
	if r := again.reply(0); r["recovered"] != true || r["epoch"] != epoch {
		t.Fatalf("recovery on the other node: %v, want recovered in epoch %s", r, epoch)
	}
	if got := bob.got(protocol.PersonalChannel("bob")); len(got) != 0 {
		t.Fatalf("bob got alice's messages: %v", got)
	}
}

// A node started later reads the history from the stream before it is
// ready, and serves recovery from it.
func TestClusterLateNodeReadsHistory(t *testing.T) {
	nats := startNATS(t)
	a := startNodeHistory(t, nats.URL, Config{}, 20)
	for i := range 30 {
		publish(t, a.b, "news", i)
	}
	c := startNodeHistory(t, nats.URL, Config{}, 20) // ready means caught up
	h := c.hub.History("news", 0)
	if h.Offset != 30 || len(h.Entries) != 20 || h.Entries[0].Offset != 11 {
		t.Fatalf("late node's history: offset %d, %d entries from %d; want 30, 20 from 11",
			h.Offset, len(h.Entries), h.Entries[0].Offset)
	}
	if h.Epoch != a.hub.History("news", 0).Epoch {
		t.Fatal("late node's epoch differs from the first node's")
	}
	r := c.client(t, "news", &broadcast.Position{Offset: 25, Epoch: h.Epoch})
	r.waitOffsets(t, "news", seq(26, 30))
}

// NATS goes away and comes back: the nodes keep serving their own
// subscribers, refuse publishes with ErrUnavailable and report it, then
// reconnect by themselves and deliver again, with no gap and no duplicate.
func TestClusterSurvivesNATSRestart(t *testing.T) {
	nats := startNATS(t)
	a, b := startNode(t, nats.URL, Config{}), startNode(t, nats.URL, Config{})
	onA, onB := a.client(t, "news", nil), b.client(t, "news", nil)
	for i := range 5 {
		publish(t, a.b, "news", i)
	}
	onB.waitOffsets(t, "news", seq(1, 5))

	nats.Stop()
	wstest.Until(t, 10*time.Second, func() error {
		if a.b.Ready() == nil {
			return errors.New("node a still ready with NATS down")
		}
		if testutil.ToFloat64(a.m.Up) != 0 {
			return errors.New("broker_up still 1 with NATS down")
		}
		return nil
	})
	// Publishes fail at once: refused before they are queued, so nothing
	// waits for a slot, a channel's turn or NATS. A queued publish would
	// leave its channel's state behind, and one that failed in the queue
	// would count as a broker error.
	_, err := a.b.Publish(context.Background(), "lost", []byte(`{"lost":true}`))
	if !errors.Is(err, broadcast.ErrUnavailable) {
		t.Fatalf("publish with NATS down: %v, want ErrUnavailable", err)
	}
	if err := a.b.TryPublish("lost", []byte(`1`), nil); !errors.Is(err, broadcast.ErrUnavailable) {
		t.Fatalf("client publish with NATS down: %v, want ErrUnavailable", err)
	}
	a.b.mu.Lock()
	_, queued := a.b.chans["lost"]
	a.b.mu.Unlock()
	if queued || testutil.ToFloat64(a.m.PublishErrors) != 0 {
		t.Fatalf("publishes with NATS down were queued (channel state %v, broker_publish_errors_total %v); they should be refused at once",
			queued, testutil.ToFloat64(a.m.PublishErrors))
	}
	// Local work goes on: a new subscriber on a node is served.
	local := a.client(t, "other", nil)
	wstest.Until(t, 5*time.Second, func() error {
		if local.reply(0)["type"] != "subscribed" {
			return errors.New("no subscribed reply while NATS is down")
		}
		return nil
	})

	nats.Start()
	for _, n := range []*node{a, b} {
		wstest.Until(t, 20*time.Second, func() error { return n.b.Ready() })
	}
	for i := 5; i < 10; i++ {
		publish(t, []*node{a, b}[i%2].b, "news", i)
	}
	onA.waitOffsets(t, "news", seq(1, 10))
	onB.waitOffsets(t, "news", seq(1, 10))
	if got := testutil.ToFloat64(a.m.Reconnects); got < 1 {
		t.Fatalf("broker_reconnects_total %v, want at least 1", got)
	}
	if got := testutil.ToFloat64(a.m.PublishErrors); got != 0 {
		// Refused before queueing: counted as refused by the callers, not
		// as a broker error.
		t.Fatalf("broker_publish_errors_total %v, want 0", got)
	}
}

// A publish still waiting when NATS dies is answered with an error, never
// dropped silently; and once NATS is back, the broker's numbering is right.
// The publishers go on until NATS refuses them, so NATS always dies while
// they publish, whatever the machine's speed.
func TestClusterPublishInFlightWhenNATSDies(t *testing.T) {
	nats := startNATS(t)
	a := startNode(t, nats.URL, Config{PublishTimeout: time.Second})
	sub := a.client(t, "news", nil)
	const publishers = 4
	stopped := make(chan struct{}) // closed once NATS has shut down
	var (
		mu         sync.Mutex
		ok, failed int
		unexpected []error
		afterStop  int // publishes begun with NATS down that succeeded
		wg         sync.WaitGroup
	)
	for p := range publishers {
		wg.Go(func() {
			for i := 0; ; i++ {
				down := isClosed(stopped)
				_, err := a.b.Publish(context.Background(), "news", fmt.Appendf(nil, `{"p":%d,"i":%d}`, p, i))
				mu.Lock()
				switch {
				case err == nil && down:
					afterStop++
				case err == nil:
					ok++
				case errors.Is(err, broadcast.ErrUnavailable):
					failed++
				default:
					unexpected = append(unexpected, err)
				}
				mu.Unlock()
				if err != nil || down {
					return
				}
			}
		})
	}
	// Stop NATS while publishes are going.
	wstest.Until(t, 10*time.Second, func() error {
		if len(sub.got("news")) < 20 {
			return errors.New("waiting for publishes to flow")
		}
		return nil
	})
	nats.Stop()
	close(stopped)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(wstest.Timeout):
		t.Fatalf("publishers still waiting %v after NATS stopped: a publish was never answered", wstest.Timeout)
	}
	// Each publisher ended, so on a refusal (ErrUnavailable) unless one of
	// these: none hung, none was lost.
	if len(unexpected) > 0 || afterStop > 0 {
		t.Fatalf("unexpected errors %v; %d publishes begun with NATS down succeeded", unexpected, afterStop)
	}
	nats.Start()
	wstest.Until(t, 20*time.Second, func() error { return a.b.Ready() })
	r := publish(t, a.b, "news", -1)
	// Every confirmed publish was delivered; offsets are consecutive (a
	// publish whose confirmation was lost may have been stored: it is
	// then delivered, never twice).
	sub.waitOffsets(t, "news", seq(1, r.Offset))
	if got := len(sub.got("news")) - 1; got < ok {
		t.Fatalf("%d publishes confirmed but only %d delivered", ok, got)
	}
	// Publishes refused before they were queued (NATS already gone) are
	// the callers' to count; only those that failed in the queue count as
	// broker errors.
	n := testutil.ToFloat64(a.m.PublishErrors)
	if n > float64(failed) {
		t.Fatalf("broker_publish_errors_total %v, more than the %d failed publishes", n, failed)
	}
	t.Logf("%d publishes confirmed before NATS died; of the %d refused, %v failed in the queue", ok, failed, n)
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Something that is not a pushgate publication on the stream is counted
// and dropped; publications after it are delivered.
func TestClusterDropsForeignMessages(t *testing.T) {
	nats := startNATS(t)
	a := startNode(t, nats.URL, Config{})
	sub := a.client(t, "news", nil)
	nc, err := natsConnect(nats.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, m := range []*natsMsg{
		{subject: "PUSHGATE.news", data: `{"x":1}`},                                                         // no headers
		{subject: "PUSHGATE.news", data: `not json`, hdr: map[string]string{hdrOffset: "1", hdrEpoch: "e"}}, // bad data
		{subject: "PUSHGATE.bad\"name", data: `1`, hdr: map[string]string{hdrOffset: "1", hdrEpoch: "e"}},   // bad channel
		{subject: "PUSHGATE.news", data: "\"\xff\"", hdr: map[string]string{hdrOffset: "1", hdrEpoch: "e"}}, // not UTF-8
	} {
		if err := m.publish(nc); err != nil {
			t.Fatal(err)
		}
	}
	wstest.Until(t, 5*time.Second, func() error {
		if got := testutil.ToFloat64(a.m.Invalid); got != 4 {
			return fmt.Errorf("broker_invalid_messages_total %v, want 4", got)
		}
		return nil
	})
	r := publish(t, a.b, "news", 1)
	sub.waitOffsets(t, "news", []uint64{r.Offset})
}

func TestSubjects(t *testing.T) {
	for _, ch := range []string{"news", "a.b.c", "#alice", "chat:room-1"} {
		s := subjectFor("P.", ch)
		got, ok := channelOf("P.", s)
		if !ok || got != ch {
			t.Fatalf("%q -> %q -> %q %v", ch, s, got, ok)
		}
	}
	for _, s := range []string{"P.", "Q.news", "P.a.b"} {
		if _, ok := channelOf("P.", s); ok {
			t.Fatalf("%q decoded as a channel", s)
		}
	}
}

// testWriter sends a node's log to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

type natsMsg struct {
	subject, data string
	hdr           map[string]string
}

func natsConnect(url string) (*nats.Conn, error) { return nats.Connect(url) }

func (m *natsMsg) publish(nc *nats.Conn) error {
	msg := nats.NewMsg(m.subject)
	msg.Data = []byte(m.data)
	for k, v := range m.hdr {
		msg.Header.Set(k, v)
	}
	_, err := nc.RequestMsg(msg, 5*time.Second) // JetStream acknowledges
	return err
}

// A channel left idle past the history TTL is gone from the stream; its
// next publication starts a new epoch at offset 1. A subscriber that
// stayed connected through it is told, on every node, before offset 1,
// and nothing of the new epoch is taken for a duplicate.
func TestClusterEpochChangeReachesLiveSubscribers(t *testing.T) {
	nats := startNATS(t)
	cfg := Config{HistoryTTL: time.Second}
	a, b := startNode(t, nats.URL, cfg), startNode(t, nats.URL, cfg)
	onA, onB := a.client(t, "tick", nil), b.client(t, "tick", nil)
	first := publish(t, a.b, "tick", 1)
	publish(t, a.b, "tick", 2)
	onA.waitOffsets(t, "tick", seq(1, 2))
	onB.waitOffsets(t, "tick", seq(1, 2))
	// Wait for the stream to forget the channel.
	stream := *a.b.stream.Load()
	wstest.Until(t, 10*time.Second, func() error {
		_, err := stream.GetLastMsgForSubject(context.Background(), subjectFor(a.b.prefix, "tick"))
		if err == nil {
			return errors.New("the stream still holds the channel")
		}
		return nil
	})
	again := publish(t, b.b, "tick", 3)
	if again.Offset != 1 || again.Epoch == first.Epoch || again.Epoch == "" {
		t.Fatalf("first publish %+v, after the TTL %+v: want offset 1 in a new epoch", first, again)
	}
	for _, c := range []*client{onA, onB} {
		c.waitOffsets(t, "tick", []uint64{1, 2, 1})
		// replies: subscribed (no epoch yet), the first epoch, the new one.
		if got := c.reply(1); got["epoch"] != first.Epoch || got["recovered"] != true {
			t.Fatalf("when the channel got its first epoch: %v", got)
		}
		if got := c.reply(2); got["type"] != "subscribed" || got["epoch"] != again.Epoch || got["offset"] != 0.0 || got["recovered"] != false {
			t.Fatalf("on the new epoch the live subscriber was sent %v, want subscribed %s at 0, not recovered", got, again.Epoch)
		}
	}
}

// NATS loses its store (restarted empty) and other nodes publish into the
// new stream before this node looks at it, past the sequence this node had
// applied: the node must still read the new stream from its start, not
// resume at its old position and skip what came first.
func TestClusterStreamRecreatedWhileAway(t *testing.T) {
	nats := startNATS(t)
	a, b := startNode(t, nats.URL, Config{}), startNode(t, nats.URL, Config{})
	onA := a.client(t, "news", nil)
	for i := range 5 {
		publish(t, b.b, "news", i)
	}
	onA.waitOffsets(t, "news", seq(1, 5))
	before := onA.reply(1)["epoch"]

	a.b.applyMu.Lock() // node a cannot look at the new stream yet
	locked := true
	defer func() {
		if locked {
			a.b.applyMu.Unlock()
		}
	}()
	nats.Stop()
	if err := os.RemoveAll(nats.Dir); err != nil {
		t.Fatal(err)
	}
	nats.Start()
	wstest.Until(t, 20*time.Second, func() error { return b.b.Ready() })
	var last broadcast.Result
	for i := range 8 {
		last = publish(t, b.b, "news", 10+i)
	}
	if last.Offset != 8 || last.Epoch == before {
		t.Fatalf("after the store was lost: %+v, want offset 8 in a new epoch", last)
	}
	a.b.applyMu.Unlock()
	locked = false
	wstest.Until(t, 20*time.Second, func() error { return a.b.Ready() })
	onA.waitOffsets(t, "news", append(seq(1, 5), seq(1, 8)...))
	if got := onA.reply(2); got["epoch"] != last.Epoch || got["recovered"] != false {
		t.Fatalf("node a's subscriber was told %v of the new epoch", got)
	}
	if h := a.hub.History("news", 0); h.Epoch != last.Epoch || len(h.Entries) != 8 || !h.Complete {
		t.Fatalf("node a's history: epoch %s, %d entries, complete %v; want the new stream's 8", h.Epoch, len(h.Entries), h.Complete)
	}
}

// A NATS that hangs (SIGSTOP: its TCP connections stay open, nothing
// answers) is noticed within seconds: the node stops being ready,
// broker_up turns 0, and publishes fail within the publish timeout
// instead of hanging. When NATS resumes, so does the node.
func TestClusterNoticesHungNATS(t *testing.T) {
	ns, url := proctest.NATS(t)
	a := startNode(t, url, Config{PublishTimeout: 2 * time.Second})
	sub := a.client(t, "news", nil)
	publish(t, a.b, "news", 1)
	sub.waitOffsets(t, "news", seq(1, 1))

	if err := ns.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	wstest.Until(t, 5*time.Second, func() error {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", ns.Cmd.Process.Pid))
		if err != nil {
			return err
		}
		if _, rest, _ := strings.Cut(string(stat), ") "); !strings.HasPrefix(rest, "T") {
			return fmt.Errorf("nats-server not stopped yet: %.40s", rest)
		}
		return nil
	})
	defer func() {
		if stopped {
			_ = ns.Cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	// A publish made as NATS hangs fails; it does not wait for ever.
	_, err := a.b.Publish(context.Background(), "news", []byte(`{"hung":true}`))
	if !errors.Is(err, broadcast.ErrUnavailable) {
		t.Fatalf("publish to a hung NATS: %v, want ErrUnavailable", err)
	}
	wstest.Until(t, 10*time.Second, func() error {
		if a.b.Ready() == nil || testutil.ToFloat64(a.m.Up) != 0 {
			return errors.New("node still ready with NATS hung")
		}
		return nil
	})
	if err := ns.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	wstest.Until(t, 20*time.Second, func() error { return a.b.Ready() })
	r := publish(t, a.b, "news", 2)
	sub.waitOffsets(t, "news", seq(1, r.Offset))
}

// A publish's timeout runs from when it was queued, not from when its
// channel's turn came: one stuck behind others for longer than the publish
// timeout is refused, and never written to the stream.
func TestPublishTimeoutCountsTheQueue(t *testing.T) {
	nats := startNATS(t)
	a := startNode(t, nats.URL, Config{PublishTimeout: time.Second})
	cs := &chanState{subject: subjectFor(a.b.prefix, "late")}
	a.b.slots <- struct{}{} // as Publish takes one
	r := &request{ctx: context.Background(), queued: time.Now().Add(-2 * time.Second), data: []byte(`1`), id: a.b.msgID(), result: make(chan error, 1)}
	if kept, _ := a.b.send(cs, []*request{r}); len(kept) != 0 {
		t.Fatal("a publish queued for twice its timeout was sent")
	}
	if err := <-r.result; !errors.Is(err, broadcast.ErrUnavailable) {
		t.Fatalf("a publish queued for twice its timeout: %v, want ErrUnavailable", err)
	}
	if _, err := (*a.b.stream.Load()).GetLastMsgForSubject(context.Background(), cs.subject); err == nil {
		t.Fatal("the expired publish was written to the stream")
	}
}

// In cluster mode too, a client cannot create channels past the node's
// MaxNodeChannels by publishing: the broker asks the hub before the
// publish goes to the stream.
func TestClientPublishChannelCap(t *testing.T) {
	nats := startNATS(t)
	n := &node{hub: broadcast.New(broadcast.Config{Shards: 2, Clustered: true, MaxNodeChannels: 5}), m: metrics.NewBroker(nil), g: metrics.New(nil)}
	b, err := New(Config{URL: nats.URL, Hub: n.hub, Metrics: n.m, Gateway: n.g,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)), PublishTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(); n.hub.Close() })
	wstest.Until(t, 10*time.Second, func() error { return b.Ready() })
	refused := 0
	for i := range 20 {
		err := b.TryPublish(fmt.Sprintf("chat:%d", i), []byte(`1`), func(error) {})
		switch {
		case errors.Is(err, broadcast.ErrChannelLimit):
			refused++
		case err != nil:
			t.Fatal(err)
		}
		// One at a time, so that the count the broker asks is current.
		wstest.Eventually(t, "the publish applied or refused", func() bool { return n.hub.Stats().History+int64(refused) == int64(i+1) })
	}
	if c := n.hub.Stats().Channels; c != 5 || refused != 15 {
		t.Fatalf("%d channels, %d publishes refused; want 5 and 15", c, refused)
	}
}

// A hot channel: many publishers on two nodes at once, through Publish and
// TryPublish. Publications waiting for the channel go out together, several
// to a stream message, and still each subscriber of each node gets 1..N
// once, the data each publish was told it got, the same everywhere, and a
// node started later reads the same history from the batches.
func TestClusterHotChannelBatches(t *testing.T) {
	nats := startNATS(t)
	const history = 5000
	a := startNodeHistory(t, nats.URL, Config{}, history)
	b := startNodeHistory(t, nats.URL, Config{}, history)
	onA, onB := a.client(t, "ticker", nil), b.client(t, "ticker", nil)

	const publishers, each, clientEach = 32, 40, 100
	want := map[uint64]string{} // offset → data, as the publishers were told
	var mu sync.Mutex
	var wg sync.WaitGroup
	for p := range publishers {
		n := []*node{a, b}[p%2]
		wg.Go(func() {
			for i := range each {
				data := fmt.Sprintf(`{"p":%d,"i":%d}`, p, i)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				r, err := n.b.Publish(ctx, "ticker", []byte(data))
				cancel()
				if err != nil {
					t.Errorf("publish: %v", err)
					return
				}
				mu.Lock()
				if prev, ok := want[r.Offset]; ok {
					t.Errorf("offset %d given to %s and %s", r.Offset, prev, data)
				}
				want[r.Offset] = data
				mu.Unlock()
			}
		})
	}
	// Clients' publishes: queued without waiting, 100 from each node.
	var failed atomic.Int32
	for i := range clientEach {
		for _, n := range []*node{a, b} {
			for {
				err := n.b.TryPublish("ticker", fmt.Appendf(nil, `{"client":%d}`, i), func(error) { failed.Add(1) })
				if err == nil {
					break
				}
				if !errors.Is(err, broadcast.ErrOverloaded) {
					t.Fatal(err)
				}
				runtime.Gosched()
			}
		}
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	total := uint64(publishers*each + 2*clientEach)
	for _, c := range []*client{onA, onB} {
		c.waitOffsets(t, "ticker", seq(1, total))
	}
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d client publishes failed", n)
	}
	got := onA.dataOf("ticker")
	wantTold(t, got, want)
	onB.mu.Lock()
	same := slices.Equal(onB.data["ticker"], got)
	onB.mu.Unlock()
	if !same {
		t.Fatal("the nodes' subscribers got different data at the same offsets")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := (*a.b.stream.Load()).Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs*2 > total {
		t.Fatalf("the stream holds %d messages for %d publications: publications waiting for a channel are not sent together", info.State.Msgs, total)
	}
	t.Logf("%d publications in %d stream messages", total, info.State.Msgs)

	late := startNodeHistory(t, nats.URL, Config{}, history)
	r := late.client(t, "ticker", &broadcast.Position{Offset: 0, Epoch: a.hub.History("ticker", 0).Epoch})
	r.waitOffsets(t, "ticker", seq(1, total))
	r.mu.Lock()
	same = slices.Equal(r.data["ticker"], got)
	r.mu.Unlock()
	if !same {
		t.Fatal("a node started later read other data from the stream")
	}
}

// NATS lost the channel's last publications after the nodes applied them
// (a crash before its store reached the disk; here they are deleted). The
// next publish must not take their offsets again, which every node would
// skip as read: it starts a new epoch, and the subscribers are told to
// resync, then get it.
func TestClusterStreamLostTail(t *testing.T) {
	nats := startNATS(t)
	a := startNode(t, nats.URL, Config{})
	b := startNode(t, nats.URL, Config{})
	onA, onB := a.client(t, "news", nil), b.client(t, "news", nil)
	first := publish(t, a.b, "news", 1)
	for i := 2; i <= 5; i++ {
		publish(t, a.b, "news", i)
	}
	onA.waitOffsets(t, "news", []uint64{1, 2, 3, 4, 5})
	onB.waitOffsets(t, "news", []uint64{1, 2, 3, 4, 5})
	st := *a.b.stream.Load()
	for _, seq := range []uint64{4, 5} {
		if err := st.DeleteMsg(context.Background(), seq); err != nil {
			t.Fatal(err)
		}
	}
	r := publish(t, a.b, "news", 6)
	if r.Epoch == first.Epoch || r.Offset != 1 {
		t.Fatalf("publish after the stream lost 4 and 5: offset %d in %q, want 1 in a new epoch (was %q)", r.Offset, r.Epoch, first.Epoch)
	}
	for _, c := range []*client{onA, onB} {
		c.waitOffsets(t, "news", []uint64{1, 2, 3, 4, 5, 1})
		if got := c.dataOf("news"); got[5] != `{"i":6}` {
			t.Fatalf("data %v", got)
		}
		c.mu.Lock()
		last := c.replies[len(c.replies)-1]
		c.mu.Unlock()
		if last["type"] != "subscribed" || last["epoch"] != r.Epoch || last["recovered"] != false {
			t.Fatalf("last reply %v: want subscribed in the new epoch, not recovered", last)
		}
	}
	if g := testutil.ToFloat64(a.m.Gaps); g != 1 {
		t.Fatalf("gaps counted on a: %v, want 1", g)
	}
}
