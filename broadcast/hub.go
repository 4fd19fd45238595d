package broadcast

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"hash/maphash"
	"math"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgate/pushgate/protocol"
)

// Errors returned by the hub.
var (
	ErrClosed            = errors.New("broadcast: hub closed")
	ErrOverloaded        = errors.New("broadcast: too many publications in flight")
	ErrTooManyChannels   = errors.New("broadcast: too many channels on this connection")
	ErrAlreadySubscribed = errors.New("broadcast: already subscribed")
	ErrNotSubscribed     = errors.New("broadcast: not subscribed")
	// ErrUnavailable is a publish the cluster broker could not take.
	ErrUnavailable = errors.New("broadcast: the broker is unavailable")
	// ErrChannelLimit is a client's subscribe or publish that would create
	// a channel while the node holds Config.MaxNodeChannels.
	ErrChannelLimit = errors.New("broadcast: the node holds its maximum number of channels")
	// ErrInvalidData is a publish whose data is not valid JSON in UTF-8.
	ErrInvalidData = errors.New("broadcast: data is not valid JSON in UTF-8")
)

// Config configures a Hub. Zero values take the defaults.
type Config struct {
	// Shards is the number of delivery shards and of registry shards.
	// Default 4 x GOMAXPROCS; at most 65,536 (a Member keeps its shard in
	// 16 bits).
	Shards int
	// HistorySize is how many recent messages each channel keeps for
	// recovery. Default 100; negative disables history.
	HistorySize int
	// HistoryTTL is how long a message stays in history. Default 5m.
	HistoryTTL time.Duration
	// HistoryMaxBytes bounds what all channels' history holds, in bytes of
	// encoded frames (compressed copies included) plus what holding each
	// message costs besides (512 bytes); past it the node's oldest
	// messages are dropped first. Default 256 MiB.
	HistoryMaxBytes int64
	// HistoryChannelMaxBytes bounds one channel's history the same way;
	// its newest message is always kept, however large. Default 4 MiB.
	HistoryChannelMaxBytes int64
	// Evictions, when set, returns the counter of history dropped for a
	// reason (expired, size, channel_bytes, budget, restart); it is
	// resolved once per reason.
	Evictions func(reason string) prometheus.Counter
	// MaxChannels bounds the channels one connection subscribes to.
	// Default 128; at most 65,535 (a Member counts them in 16 bits).
	MaxChannels int
	// MaxNodeChannels bounds the channels clients may create on this
	// node, by subscribing or publishing (API publishes and the cluster's
	// are not refused): past it they get ErrChannelLimit. A channel lives
	// while it has subscribers or history. Default 1,000,000.
	MaxNodeChannels int
	// MaxPending bounds publications being fanned out at once; past it
	// Publish waits and TryPublish fails with ErrOverloaded. Default 4096.
	MaxPending int
	// MaxClientPending is the share of MaxPending that client publishes
	// (TryPublish) may hold, so that API publishes always find slots
	// whatever clients do. Default MaxPending/2; at most MaxPending.
	MaxClientPending int
	// Clustered hubs take their publications, offsets and epochs from a
	// cluster broker through Apply instead of numbering them: channels
	// have no epoch until the broker's first message names it, and a
	// subscriber that saw offsets on another node which this one has not
	// applied yet waits for them (see Subscribe).
	Clustered bool
	// Load, on a Clustered hub, makes channels loaded on demand: a
	// channel created by a subscribe (the first on this node, or the
	// first since it was dropped) is "loading", Load(name, load) is
	// called with an id for this load, and the channel's subscribers wait,
	// held on their shards (see Member), until Hub.Loaded(name, load) says
	// the broker has applied what it stores of the channel; Apply takes
	// only channels the hub holds, for the load they hold (Message.Load),
	// so that what the broker read for a channel dropped since is not
	// taken by the one made anew (whose history would then begin past what
	// its own load reads, every earlier offset skipped). Unload(name) is
	// called when a channel Load was called for is dropped (no
	// subscribers, no history). Both are called under the registry's lock,
	// in order for a name: they must not block nor call the hub, nor take
	// a lock that is held while the hub is called. Nil (the default, and
	// on a hub that is not Clustered): every channel the broker applies is
	// taken, and subscribers never wait.
	Load   func(name string, load uint64)
	Unload func(name string)
	// Occupied, when set, is told when a channel gets its first
	// subscriber on this node (true) and loses its last one (false), in
	// that order for a channel. It is called under the channel's lock and
	// must not block nor call the hub (occupancy.Tracker.Channel).
	Occupied func(name string, occupied bool)
	// FanoutDuration, when set, observes each publication's time from
	// reaching the hub to its last frame handed to a connection.
	FanoutDuration prometheus.Observer
}

func (c Config) withDefaults() Config {
	if c.Shards <= 0 {
		c.Shards = 4 * runtime.GOMAXPROCS(0)
	}
	c.Shards = min(c.Shards, math.MaxUint16+1) // Member.shard
	switch {
	case c.HistorySize == 0:
		c.HistorySize = 100
	case c.HistorySize < 0:
		c.HistorySize = 0
	}
	if c.HistoryTTL <= 0 {
		c.HistoryTTL = 5 * time.Minute
	}
	if c.HistoryMaxBytes <= 0 {
		c.HistoryMaxBytes = 256 << 20
	}
	if c.HistoryChannelMaxBytes <= 0 {
		c.HistoryChannelMaxBytes = 4 << 20
	}
	if c.MaxChannels <= 0 {
		c.MaxChannels = 128
	}
	c.MaxChannels = min(c.MaxChannels, math.MaxUint16) // Member.n
	if c.MaxNodeChannels <= 0 {
		c.MaxNodeChannels = 1_000_000
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 4096
	}
	if c.MaxClientPending <= 0 {
		c.MaxClientPending = max(c.MaxPending/2, 1)
	}
	c.MaxClientPending = min(c.MaxClientPending, c.MaxPending)
	if !c.Clustered || c.Load == nil {
		c.Load, c.Unload = nil, nil
	}
	return c
}

// Hub is the channel registry and fan-out of one node.
type Hub struct {
	cfg    Config
	seed   maphash.Seed
	tables []chanTable
	shards []*shard
	slots  chan struct{} // publish slots: one per publication in flight
	// clientSlots: one per client publication in flight, besides its slot
	clientSlots chan struct{}
	epoch       string        // random per hub; channel epochs extend it
	gen         atomic.Uint64 // channels created, for channel epochs
	next        atomic.Uint32 // round-robin shard assignment

	channels    atomic.Int64
	loading     atomic.Int64  // channels loading (Config.Load)
	loads       atomic.Uint64 // Load calls, for their ids
	subscribers atomic.Int64
	members     atomic.Int64
	index       historyIndex // entries in all channels' rings, oldest first (budget.go)
	evicted     [numEvictions]prometheus.Counter

	closeOnce sync.Once
	closed    atomic.Bool
	quit      chan struct{}
	wg        sync.WaitGroup
}

// New starts a hub: one goroutine per shard and one that expires history.
func New(cfg Config) *Hub {
	cfg = cfg.withDefaults()
	var e [6]byte
	_, _ = rand.Read(e[:])
	h := &Hub{
		cfg:    cfg,
		seed:   maphash.MakeSeed(),
		tables: make([]chanTable, cfg.Shards),
		shards: make([]*shard, cfg.Shards),
		slots:  make(chan struct{}, cfg.MaxPending),

		clientSlots: make(chan struct{}, cfg.MaxClientPending),
		epoch:       hex.EncodeToString(e[:]),
		quit:        make(chan struct{}),
	}
	for i := range h.tables {
		h.tables[i].chans = make(map[string]*channel)
	}
	h.index.max, h.index.chMax = cfg.HistoryMaxBytes, cfg.HistoryChannelMaxBytes
	h.index.kick = make(chan struct{}, 1)
	if cfg.Evictions != nil {
		for r := range numEvictions {
			h.evicted[r] = cfg.Evictions(evictionLabels[r])
		}
	}
	for i := range h.shards {
		s := newShard()
		h.shards[i] = s
		h.wg.Add(1)
		go func() { defer h.wg.Done(); s.run() }()
	}
	h.wg.Add(1)
	go func() { defer h.wg.Done(); h.expireLoop() }()
	return h
}

// Close stops the hub after the work already queued. Publishing after
// Close fails with ErrClosed.
func (h *Hub) Close() {
	h.closeOnce.Do(func() {
		h.closed.Store(true)
		close(h.quit)
		for _, s := range h.shards {
			s.stop()
		}
		h.wg.Wait()
	})
}

func (h *Hub) table(name string) *chanTable {
	return &h.tables[maphash.String(h.seed, name)%uint64(len(h.tables))]
}

// How lockChannel treats a channel that does not exist.
type createMode uint8

const (
	lookup        createMode = iota // return nil
	create                          // create it
	createLimited                   // create it unless MaxNodeChannels exist; else nil
	createServed                    // as createLimited, for a subscriber: it loads (Config.Load)
)

// lockChannel returns the channel called name, created as mode says,
// with its lock held, or nil. The table stays read-locked, so the expiry
// loop cannot drop the channel; unlock with unlockChannel.
func (h *Hub) lockChannel(name string, mode createMode) (*chanTable, *channel) {
	t := h.table(name)
	t.mu.RLock()
	ch := t.chans[name]
	if ch == nil {
		if mode == lookup || (mode >= createLimited && h.channels.Load() >= int64(h.cfg.MaxNodeChannels)) {
			t.mu.RUnlock()
			return nil, nil
		}
		t.mu.RUnlock()
		t.mu.Lock()
		if ch = t.chans[name]; ch == nil {
			// Counted before it exists: creations racing in other tables
			// cannot pass MaxNodeChannels together.
			if n := h.channels.Add(1); mode >= createLimited && n > int64(h.cfg.MaxNodeChannels) {
				h.channels.Add(-1)
				t.mu.Unlock()
				return nil, nil
			}
			ch = &channel{name: name, shards: make([]int32, len(h.shards))}
			if !h.cfg.Clustered { // else the broker's first message names it
				ch.epoch = h.epoch + "-" + strconv.FormatUint(h.gen.Add(1), 36)
			}
			t.chans[name] = ch
			if mode == createServed && h.cfg.Load != nil {
				// Under the table's lock, so that Load and Unload of a
				// name are called in order.
				ch.loading, ch.served = true, true
				ch.load = h.loads.Add(1)
				h.loading.Add(1)
				h.cfg.Load(name, ch.load)
			}
		}
		t.mu.Unlock()
		return h.lockChannel(name, mode) // the table was unlocked: look again
	}
	ch.mu.Lock()
	return t, ch
}

// Position reports where the channel called name stands on this node:
// its latest offset and epoch; ok false when the node does not hold it.
func (h *Hub) Position(name string) (pos Position, ok bool) {
	t, ch := h.lockChannel(name, lookup)
	if ch == nil {
		return Position{}, false
	}
	defer unlockChannel(t, ch)
	return Position{Offset: ch.offset, Epoch: ch.epoch}, true
}

// AdmitsChannel reports whether a client may publish to channel on this
// node: it exists, or fewer than MaxNodeChannels do. The cluster broker
// asks before a client's publish goes to the stream, whose every node
// would create the channel.
func (h *Hub) AdmitsChannel(name string) bool {
	if h.channels.Load() < int64(h.cfg.MaxNodeChannels) {
		return true
	}
	return h.holds(name)
}

// holds reports whether the hub holds the channel name.
func (h *Hub) holds(name string) bool {
	t := h.table(name)
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.chans[name] != nil
}

func unlockChannel(t *chanTable, ch *channel) {
	ch.mu.Unlock()
	t.mu.RUnlock()
}

// Join adds a connection to the hub. Call Leave when it closes.
func (h *Hub) Join(sub Subscriber) *Member {
	h.members.Add(1)
	i := h.next.Add(1) % uint32(len(h.shards))
	m := &Member{sub: sub, shard: uint16(i), enc: sub.Encoding()}
	m.first.m = m
	if _, ok := sub.(Batcher); ok {
		m.flags |= memberBatches
		if _, ok := sub.(Pacer); ok {
			m.flags |= memberPaces
		}
	}
	return m
}

// Subscribe subscribes m to channel, a valid channel name (the caller
// checks names and permissions). The subscriber is sent a "subscribed"
// reply, then, when pos is given, the history after pos (see Position),
// then every later message, with no gap and no duplicate between replay
// and live messages. On a channel that is loading (Config.Load) that
// reply waits for Loaded; whatever else is for m waits behind it.
func (h *Hub) Subscribe(m *Member, name string, pos *Position) error {
	switch {
	case m.left || h.closed.Load():
		return ErrClosed
	case m.find(name) != nil:
		return ErrAlreadySubscribed
	case int(m.n) >= h.cfg.MaxChannels:
		return ErrTooManyChannels
	}
	t, ch := h.lockChannel(name, createServed)
	if ch == nil {
		return ErrChannelLimit
	}
	o := op{kind: opSubscribe, ch: ch, m: m, byMember: true}
	if ch.loading {
		o.kind = opWait // answered by Loaded (load.go)
	} else {
		o.reply, o.replay, o.skip = h.greeting(ch, pos)
	}
	ch.subs++
	ch.shards[m.shard]++
	// Counted before the reply is queued: a client that has its reply
	// finds itself in Stats.
	h.subscribers.Add(1)
	o.sub = m.add(ch)
	if !h.shardOf(m).push(o) {
		m.drop(o.sub)
		ch.subs--
		ch.shards[m.shard]--
		h.subscribers.Add(-1)
		unlockChannel(t, ch)
		return ErrClosed
	}
	if ch.subs == 1 && h.cfg.Occupied != nil {
		h.cfg.Occupied(ch.name, true)
	}
	if ch.loading {
		w := waiter{sub: o.sub}
		if pos != nil {
			w.pos, w.hasPos = *pos, true
		}
		ch.waiting = append(ch.waiting, w)
	}
	unlockChannel(t, ch)
	return nil
}

// greeting is what a subscriber at pos (nil: none) is sent first on ch:
// its "subscribed" reply, the history it missed, and, on a Clustered hub,
// for a subscriber ahead of this node, the offset through which it skips
// messages. ch.mu is held.
func (h *Hub) greeting(ch *channel, pos *Position) (reply []byte, replay []*publication, skip uint64) {
	offset, recovered := ch.offset, false
	if h.cfg.Clustered && pos != nil && ch.epoch != "" && pos.Epoch == ch.epoch && pos.Offset > ch.offset {
		// The client saw, on another node, offsets this node has not
		// applied yet. They are on their way in order: skip through
		// pos.Offset rather than replaying or repeating them.
		skip, offset, recovered = pos.Offset, pos.Offset, true
	} else {
		replay, recovered = ch.recover(pos)
	}
	reply = protocol.AppendSubscribed(protocol.Buffer(96+len(ch.name)), ch.name, offset, ch.epoch, recovered)
	return reply, replay, skip
}

// Reply sends m the envelope in env, built into a protocol.Buffer (and
// not used again), after everything already queued for it, so that replies
// to a connection's ops arrive in the order of the ops.
func (h *Hub) Reply(m *Member, env []byte) {
	if !h.shardOf(m).push(op{kind: opReply, m: m, reply: env, byMember: true}) {
		_ = m.sub.Send(protocol.Frame(m.enc, env))
	}
}

// ReplyWire is Reply with an envelope shared with other connections
// (encoded once per encoding), written as m's socket drains, as a replay
// is (Pacer): it may be large, and must not count against m's outbound
// bound. Any goroutine may call it.
func (h *Hub) ReplyWire(m *Member, w *protocol.Wire) {
	if !h.shardOf(m).push(op{kind: opReply, m: m, wire: w, byMember: true}) {
		_ = m.sub.Send(w.Encoded(m.enc, nil))
	}
}

// Event sends the envelope in env, built into a protocol.Buffer, to every
// subscriber of channel, in order with the channel's messages; it is not
// a publication (no offset, no history). Each subscriber's encoding of it
// is built once. It reports how many shards took it (0: the channel has
// no subscriber on this node). The caller bounds how many it sends.
func (h *Hub) Event(channel string, env []byte) int {
	t, ch := h.lockChannel(channel, lookup)
	if ch == nil {
		return 0
	}
	defer unlockChannel(t, ch)
	w, n := protocol.NewWire(env), 0
	for i, c := range ch.shards {
		if c > 0 && h.shards[i].push(op{kind: opEvent, ch: ch, wire: w}) {
			n++
		}
	}
	return n
}

// Backlog is how many of m's own ops (subscribes, unsubscribes, replies)
// wait on its shard: a connection that sends ops faster than its shard
// runs them has a growing backlog, which the caller bounds.
func (h *Hub) Backlog(m *Member) int { return int(m.backlog.Load()) }

// After runs fn on m's shard once everything already queued for m has been
// handed to it, so that, say, closing the connection follows its replies
// (and, while m waits for a channel to load, follows them still). fn must
// not block.
func (h *Hub) After(m *Member, fn func()) {
	if !h.shardOf(m).push(op{kind: opCall, m: m, fn: fn}) {
		fn()
	}
}

// Unsubscribe ends m's subscription to channel; the subscriber is sent an
// "unsubscribed" reply after which no message of the channel follows.
func (h *Hub) Unsubscribe(m *Member, name string) error {
	sub := m.find(name)
	if sub == nil {
		return ErrNotSubscribed
	}
	ch := sub.ch
	m.drop(sub)
	h.release(m, ch, op{kind: opUnsubscribe, ch: ch, m: m, sub: sub, reply: protocol.AppendUnsubscribed(protocol.Buffer(40+len(name)), name), byMember: true})
	h.dropIfUnused(ch)
	return nil
}

// Leave removes a closed connection from the hub, in time proportional to
// its own subscriptions. Later calls do nothing. Its Subscriber should
// already fail Send (server.Conn does once closed): until the leave op
// runs on its shard the member may still be handed frames.
func (h *Hub) Leave(m *Member) {
	if m.left {
		return
	}
	m.left = true
	h.members.Add(-1)
	if m.n == 0 {
		return
	}
	// The subscriptions stay linked: the shard's leave op walks them,
	// and nothing changes them after this. It is queued before the counts
	// drop: a publication that then skips m's shard (no other subscriber
	// there) comes after it, not before one that, once another member
	// subscribes there, would reach m past the skipped one (a gap).
	h.shardOf(m).push(op{kind: opLeave, m: m})
	for sub := &m.first; sub != nil; sub = sub.next {
		if sub.ch != nil {
			h.release(m, sub.ch, op{})
		}
	}
	for sub := &m.first; sub != nil; sub = sub.next {
		if sub.ch != nil {
			h.dropIfUnused(sub.ch)
		}
	}
}

// shardOf is the shard that delivers to m.
func (h *Hub) shardOf(m *Member) *shard { return h.shards[m.shard] }

// release takes one subscription of m off ch's counts and, when o is set,
// queues o under the channel lock.
func (h *Hub) release(m *Member, ch *channel, o op) {
	ch.mu.Lock()
	ch.subs--
	ch.shards[m.shard]--
	if o.ch != nil {
		h.shardOf(m).push(o)
	}
	if ch.subs == 0 && h.cfg.Occupied != nil {
		h.cfg.Occupied(ch.name, false)
	}
	ch.mu.Unlock()
	h.subscribers.Add(-1)
}

// dropIfUnused removes ch from the registry if it is unused (see
// channel.unused): its offsets and epoch go with it.
func (h *Hub) dropIfUnused(ch *channel) {
	ch.mu.Lock()
	unused := ch.unused()
	ch.mu.Unlock()
	if !unused {
		return
	}
	t := h.table(ch.name)
	t.mu.Lock()
	h.dropLocked(t, ch)
	t.mu.Unlock()
}

// dropLocked removes ch if it is still registered and unused; t.mu is held.
// A channel that was loading has its waiting subscribes answered (their
// members' unsubscribes and leaves wait behind them), and Unload is called
// for one Load was called for.
func (h *Hub) dropLocked(t *chanTable, ch *channel) {
	ch.mu.Lock()
	dropped := ch.unused() && t.chans[ch.name] == ch
	if dropped {
		h.clearHistory(ch, evictUnserved) // a served channel's
		delete(t.chans, ch.name)
		h.channels.Add(-1)
		if ch.loading {
			h.answerLocked(ch)
		}
	}
	ch.mu.Unlock()
	if dropped && ch.served && h.cfg.Unload != nil {
		h.cfg.Unload(ch.name)
	}
}
