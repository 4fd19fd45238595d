package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/presence"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/session"
)

// Config configures a Cluster.
type Config struct {
	// URL is the NATS URL(s), as the broker's. Required.
	URL string
	// Stream names the cluster: subjects and the lease bucket derive
	// from it. Default "PUSHGATE", as the broker's.
	Stream string
	// Replicas of the lease bucket when this node creates it. Default 1.
	Replicas int
	// Local is this node's sessions. Required.
	Local *session.Handler
	// Hub takes the presence events of other nodes. Required.
	Hub *broadcast.Hub
	// Presence is this node's presence registry. Required.
	Presence *presence.Registry
	// LeaseTTL is how long a node that stopped refreshing its lease still
	// counts as live. Default 15s.
	LeaseTTL time.Duration
	// Timeout bounds a call that asks every node. Default 2s.
	Timeout time.Duration
	// Lost counts presence events that could not be relayed to the other
	// nodes. Default: an unregistered counter.
	Lost prometheus.Counter
	// LocalStats returns this node's counts for a cluster-wide
	// /api/stats (any JSON value). Default none.
	LocalStats func() any
	// Logger receives the control plane's logs. Default slog.Default().
	Logger *slog.Logger
}

// Cluster is this node's part of the control plane.
type Cluster struct {
	cfg  Config
	node string
	nc   *nats.Conn
	log  *slog.Logger

	subjAll, subjPresence string
	subs                  []*nats.Subscription

	mu   sync.Mutex
	live map[string]bool // nodes with a lease, as listed and watched (this one included)
	// putSince: leases the watch saw put since the listing under way
	// began (nil when none is).
	putSince map[string]bool
	listed   bool // live has been listed once
	// batches: the nodes whose last lease seen says they read batches
	// (leaseFeatures); a node's lease is seen when it is renewed.
	batches map[string]bool
	kv      jetstream.KeyValue

	// Presence events to relay, sent by their own goroutine so that a slow
	// NATS never blocks a connection's op; past its capacity an event is
	// dropped, and the other nodes are told to ask again.
	relay    chan relayEvent
	unsynced atomic.Bool // events were lost: tell the others once connected
	// everConnected: NATS was connected once (ReconnectHandler).
	everConnected atomic.Bool
	lost          chan struct{} // wakes the lease goroutine to notify (eventsLost)
	lastNotice    time.Time     // of lost events; lease goroutine only

	answering chan struct{}  // calls of other nodes being answered (answer)
	answers   sync.WaitGroup // their goroutines

	quit chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// Subjects of the control plane. They are outside the broker's stream
// ("<stream>.>"), which must not capture them.
func nodeSubject(stream, node string) string { return stream + "-control.node." + node }

// New connects to NATS, takes this node's lease, and answers the other
// nodes' calls. NATS need not be up yet: calls fail with
// broadcast.ErrUnavailable until it is.
func New(cfg Config) (*Cluster, error) {
	if cfg.URL == "" || cfg.Local == nil || cfg.Hub == nil || cfg.Presence == nil {
		return nil, errors.New("control: URL, Local, Hub and Presence are required")
	}
	if cfg.Stream == "" {
		cfg.Stream = "PUSHGATE"
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 15 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Cluster{
		cfg: cfg, node: cfg.Local.Node(), log: cfg.Logger.With("control", cfg.URL),
		subjAll: cfg.Stream + "-control.all", subjPresence: cfg.Stream + "-presence",
		live: map[string]bool{}, batches: map[string]bool{}, quit: make(chan struct{}),
		relay: make(chan relayEvent, relayQueue), lost: make(chan struct{}, 1),
		answering: make(chan struct{}, maxAnswering),
	}
	if cfg.Lost == nil {
		cfg.Lost = prometheus.NewCounter(prometheus.CounterOpts{Name: "unregistered"})
		c.cfg.Lost = cfg.Lost
	}
	nc, err := nats.Connect(cfg.URL,
		nats.Name("pushgate control "+c.node),
		nats.NoEcho(), // this node answers its own calls and relays its own events
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectBufSize(-1),
		nats.PingInterval(time.Second),
		nats.MaxPingsOutstanding(2),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			// A slow consumer among them: relayed events were lost.
			c.log.Warn("control: NATS error", "err", err)
			c.eventsLost()
		}),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { c.everConnected.Store(true); c.eventsLost() }),
		// Resync now, unless this is the first connection: with
		// RetryOnFailedConnect, NATS calls it then too, and nothing
		// relayed was lost (a failed publish says so itself).
		nats.ReconnectHandler(func(*nats.Conn) {
			if c.everConnected.Swap(true) {
				c.eventsLost()
			}
		}),
		// A hung NATS holds a publish at most this long (default: a
		// minute), and with it the relay and the pings that notice.
		nats.FlusherTimeout(2*time.Second),
	)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	c.nc = nc
	if nc.IsConnected() {
		c.everConnected.Store(true)
	}
	for _, s := range []struct {
		subject string
		handle  nats.MsgHandler
	}{
		{nodeSubject(cfg.Stream, c.node), c.answer},
		{c.subjAll, c.answer},
		{c.subjPresence, c.relayedEvent},
	} {
		sub, err := nc.Subscribe(s.subject, s.handle)
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("control: %w", err)
		}
		c.subs = append(c.subs, sub)
	}
	c.wg.Add(2)
	go c.leases()
	go c.relayLoop()
	return c, nil
}

// Close gives up this node's lease and leaves the control plane. Call it
// after the node's connections have closed, so that their leave events
// went out.
func (c *Cluster) Close() {
	c.once.Do(func() {
		close(c.quit)
		c.wg.Wait()
		c.mu.Lock()
		kv := c.kv
		c.mu.Unlock()
		if kv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = kv.Delete(ctx, c.node)
			cancel()
		}
		// Drain answers the calls under way, then closes; bounded.
		closed := make(chan struct{})
		c.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if c.nc.Drain() == nil {
			select {
			case <-closed:
			case <-time.After(2 * time.Second):
			}
		}
		c.answers.Wait()
		c.nc.Close()
	})
}

// leases keeps this node's lease and the list of live nodes, and tells
// local presence subscribers when a node disappears. Between listings, a
// watch of the bucket sees nodes arrive and drain at once; a lease that
// expires (a dead node) shows at the next listing.
func (c *Cluster) leases() {
	defer c.wg.Done()
	every := c.cfg.LeaseTTL / 3
	t := time.NewTicker(every)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var watch jetstream.KeyWatcher
	c.refresh(every, false) // puts the lease; creates the bucket
	for {
		if watch == nil {
			// Watched first, then listed: a lease put before the
			// listing is in it, one put after it is seen by the watch.
			// Until both, the nodes are not known (calls get 503).
			if watch = c.watch(ctx); watch != nil {
				c.refresh(every, true)
			}
		}
		var updates <-chan jetstream.KeyValueEntry
		if watch != nil {
			updates = watch.Updates()
		}
		select {
		case <-c.quit:
			return
		case <-t.C:
			c.refresh(every, watch != nil)
		case <-c.lost:
			c.notifyLost()
		case e, ok := <-updates:
			if !ok {
				watch = nil
				continue
			}
			c.watched(e)
		}
	}
}

// watch watches the lease bucket, nil if it cannot yet.
func (c *Cluster) watch(ctx context.Context) jetstream.KeyWatcher {
	c.mu.Lock()
	kv := c.kv
	c.mu.Unlock()
	if kv == nil {
		return nil
	}
	w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return nil
	}
	return w
}

// watched applies a change of the lease bucket.
func (c *Cluster) watched(e jetstream.KeyValueEntry) {
	if e == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.Operation() == jetstream.KeyValuePut {
		c.live[e.Key()] = true
		c.batches[e.Key()] = readsBatches(e.Value())
		if c.putSince != nil {
			c.putSince[e.Key()] = true
		}
		return
	}
	// A node that drained deleted its lease; its connections' leave
	// events went out as they closed.
	delete(c.live, e.Key())
	delete(c.batches, e.Key())
	delete(c.putSince, e.Key())
}

// A node's lease is the time it was renewed, then the features of the
// node's that the others must know of, each a word.
const (
	// featureBatches: the node reads batches of publications on the
	// broker's stream (see package broker).
	featureBatches = "batches"
	leaseFeatures  = " " + featureBatches
)

// readsBatches reports whether a lease says its node reads batches.
func readsBatches(lease []byte) bool {
	return slices.Contains(strings.Fields(string(lease)), featureBatches)
}

// ReadBatches reports whether every live node reads batches of
// publications on the broker's stream (broker.Config.Batches): false
// until the nodes have been listed and each one's lease has been
// read, and while a node of a version before batching holds a lease.
func (c *Cluster) ReadBatches() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.listed {
		return false
	}
	for n := range c.live {
		if n != c.node && !c.batches[n] {
			return false
		}
	}
	return true
}

// refresh puts this node's lease and lists the live nodes; the listing
// counts as knowing them when watched is set (see leases).
func (c *Cluster) refresh(timeout time.Duration, watched bool) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	kv, err := c.bucket(ctx)
	if err != nil {
		c.log.Warn("control: no lease bucket", "err", err)
		return
	}
	// Leases the watch sees put while the listing runs may be missing
	// from it: they are live all the same.
	c.mu.Lock()
	c.putSince = map[string]bool{}
	c.mu.Unlock()
	if _, err := kv.Put(ctx, c.node, []byte(time.Now().UTC().Format(time.RFC3339)+leaseFeatures)); err != nil {
		c.log.Warn("control: lease not renewed", "err", err)
		// NATS may have restarted and lost the bucket (memory storage),
		// when a put only times out: it is made again (or found) at the
		// next renewal.
		c.mu.Lock()
		c.kv = nil
		c.mu.Unlock()
		return
	}
	keys, err := kv.Keys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		c.log.Warn("control: cannot list nodes", "err", err)
		return
	}
	now := make(map[string]bool, len(keys))
	for _, k := range keys {
		now[k] = true
	}
	// A node first listed is read once, so that batching need not wait
	// for its renewal; after that the watch sees its lease.
	c.mu.Lock()
	var unread []string
	for _, k := range keys {
		if _, known := c.batches[k]; !known && k != c.node {
			unread = append(unread, k)
		}
	}
	c.mu.Unlock()
	read := map[string]bool{}
	for _, k := range unread {
		if e, err := kv.Get(ctx, k); err == nil {
			read[k] = readsBatches(e.Value())
		}
	}
	c.mu.Lock()
	for k, v := range read {
		if _, known := c.batches[k]; !known {
			c.batches[k] = v
		}
	}
	for n := range c.putSince {
		now[n] = true
	}
	c.putSince = nil
	var gone []string
	for n := range c.live {
		if !now[n] {
			gone = append(gone, n)
		}
	}
	c.live = now
	for n := range c.batches {
		if !now[n] {
			delete(c.batches, n)
		}
	}
	c.listed = c.listed || watched
	c.mu.Unlock()
	if len(gone) > 0 {
		c.log.Info("control: nodes left the cluster", "nodes", gone)
		c.nodesGone()
	}
}

// bucket returns the lease bucket, created when missing.
func (c *Cluster) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	c.mu.Lock()
	kv := c.kv
	c.mu.Unlock()
	if kv != nil {
		return kv, nil
	}
	js, err := jetstream.New(c.nc)
	if err != nil {
		return nil, err
	}
	kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      c.cfg.Stream + "_nodes",
		Description: "pushgate nodes' leases",
		TTL:         c.cfg.LeaseTTL,
		Storage:     jetstream.MemoryStorage,
		Replicas:    c.cfg.Replicas,
	})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.kv = kv
	c.mu.Unlock()
	return kv, nil
}

// nodesGone sends every local subscriber of a presence channel a
// presence_lagging notice: members of a dead node left without a leave,
// or events between nodes were lost.
func (c *Cluster) nodesGone() {
	for _, ch := range c.cfg.Presence.Channels() {
		c.cfg.Hub.Event(ch, protocol.AppendError(protocol.Buffer(200), protocol.CodePresenceLagging,
			"a node left the cluster: its clients left without leave events; ask for presence again", ch))
	}
}

// Nodes lists the live nodes, this one among them, and reports whether
// they have been listed yet (occupancy.Config.Live).
func (c *Cluster) Nodes() ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.live))
	for n := range c.live {
		out = append(out, n)
	}
	return out, c.listed
}

// others is the live nodes but this one; ok is false until the nodes
// have been listed once.
func (c *Cluster) others() (nodes map[string]bool, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]bool, len(c.live))
	for n := range c.live {
		if n != c.node {
			out[n] = true
		}
	}
	return out, c.listed
}

// relayQueue bounds the presence events waiting to be relayed.
const relayQueue = 4096

type relayEvent struct {
	channel string
	env     []byte
}

// PresenceEvent queues a presence event sent on this node for the others
// (session.Peers). It runs under the presence registry's lock, so it
// never blocks and never calls the registry: past relayQueue waiting, the
// event is dropped, counted, and the loss signalled (eventsLost).
func (c *Cluster) PresenceEvent(channel string, env []byte) {
	select {
	case c.relay <- relayEvent{channel, bytes.Clone(env)}:
	default:
		c.cfg.Lost.Inc()
		c.eventsLost()
	}
}

// relayLoop publishes queued presence events; on Close it publishes what
// is still queued (within a second) so that the last connections' leave
// events go out.
func (c *Cluster) relayLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.quit:
			deadline := time.After(time.Second)
			for {
				select {
				case e := <-c.relay:
					c.publish(e)
					continue
				case <-deadline:
				default:
				}
				return
			}
		case e := <-c.relay:
			c.publish(e)
		}
	}
}

func (c *Cluster) publish(e relayEvent) {
	msg := nats.NewMsg(c.subjPresence)
	msg.Header.Set(hdrChannel, e.channel)
	msg.Data = e.env
	if err := c.nc.PublishMsg(msg); err != nil {
		c.cfg.Lost.Inc()
		c.eventsLost()
		return
	}
	if c.unsynced.Load() && len(c.relay) == 0 {
		select { // drained: the others can be told now
		case c.lost <- struct{}{}:
		default:
		}
	}
}

// Headers of relayed events.
const (
	hdrChannel = "Pushgate-Channel"
	hdrResync  = "Pushgate-Resync" // events were lost: ask for presence again
)

// eventsLost records that presence events between nodes were lost (NATS
// down, the queue full, a slow subscription): subscribers here may miss
// some, and the others' may miss this node's. It only flags and signals:
// the lease goroutine tells this node's subscribers (notifyLost), and the
// others' once NATS is back and the queue has drained. Any goroutine, any
// lock held.
func (c *Cluster) eventsLost() {
	c.unsynced.Store(true)
	select {
	case c.lost <- struct{}{}:
	default:
	}
}

// notifyLost tells this node's presence subscribers to ask again, at most
// once per resyncEvery, and, when events were lost, tells the other nodes
// once the relay queue has drained and NATS is connected (resync). It
// runs on the lease goroutine.
func (c *Cluster) notifyLost() {
	now := time.Now()
	if now.Sub(c.lastNotice) < resyncEvery {
		time.AfterFunc(resyncEvery-now.Sub(c.lastNotice), func() {
			select {
			case c.lost <- struct{}{}:
			default:
			}
		})
		return
	}
	c.lastNotice = now
	c.nodesGone()
	if c.unsynced.Load() && len(c.relay) == 0 && c.nc.IsConnected() {
		msg := nats.NewMsg(c.subjPresence)
		msg.Header.Set(hdrResync, c.node)
		if c.nc.PublishMsg(msg) == nil {
			c.unsynced.Store(false)
		}
	}
}

// resyncEvery bounds how often lost events make this node's presence
// subscribers ask again.
const resyncEvery = time.Second

// relayed hands another node's presence event to this node's
// subscribers of its channel.
func (c *Cluster) relayedEvent(m *nats.Msg) {
	if m.Header.Get(hdrResync) != "" {
		select { // the lease goroutine tells this node's subscribers
		case c.lost <- struct{}{}:
		default:
		}
		return
	}
	channel := m.Header.Get(hdrChannel)
	if !protocol.ValidName(channel) || !json.Valid(m.Data) {
		return
	}
	c.cfg.Hub.Event(channel, append(protocol.Buffer(len(m.Data)), m.Data...))
}

var _ session.Peers = (*Cluster)(nil)
