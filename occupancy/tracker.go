package occupancy

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/webhook"
)

// Config configures a Tracker.
type Config struct {
	// Node names this node. Required, without spaces.
	Node string
	// Emit hands an event to the webhook sender (webhook.Sender.SendThen):
	// it must not block, reports whether the event was queued, and calls
	// delivered, when given, once the backend took it. Required.
	Emit func(ev webhook.Event, delivered func()) bool
	// Snapshot lists what this node holds now: the users with a
	// connection here, and the channels with a subscriber here. In a
	// cluster the tracker writes it again after NATS lost the bucket, after
	// the others stopped counting this node live, after changes were
	// dropped, and every few minutes. Optional; without it, what this node
	// wrote is written again instead.
	Snapshot func() (users, channels []string)
	// Delay is how long a user has had no connection, or a channel no
	// subscriber, on any node before it is announced offline or vacated
	// (default 5s).
	Delay time.Duration
	// Channels are the channels whose occupancy is announced (default
	// none). Personal channels never are: their users' are.
	Channels protocol.Patterns
	// URL, Stream and Replicas name the NATS cluster the nodes share, as
	// the broker's; without URL the node is alone and keeps everything in
	// memory.
	URL      string
	Stream   string
	Replicas int
	// Live lists the live nodes (this one among them) and whether they are
	// known yet: the control plane's leases. Required with URL.
	Live func() (nodes []string, known bool)
	// MaxChanges bounds the local changes waiting to be written (default
	// 100,000); past it a change is dropped, counted and logged, and the
	// node's snapshot written again once it can be.
	MaxChanges int
	// Dropped counts dropped changes (default unregistered).
	Dropped prometheus.Counter
	// Pass is how often the tracker writes changes and makes due checks
	// (default 250ms).
	Pass   time.Duration
	Logger *slog.Logger
}

// resyncEvery is how often, in a cluster, a node writes its snapshot
// again, whatever happened.
const resyncEvery = 5 * time.Minute

// Tracker announces users and channels coming and going, cluster-wide.
// User and Channel are told of this node's changes; they never block.
type Tracker struct {
	cfg       Config
	st        store
	wake      chan struct{}
	quit      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	mu        sync.Mutex // a leaf: User and Channel are called under others' locks
	changes   map[string]change
	overflow  bool     // changes were dropped: resync
	delivered []string // keys whose gone event the backend took
	closed    bool

	// Owned by the loop.
	held       map[string]bool    // entries that list this node
	announcing map[string]goingAt // gone events queued, the entry not yet deleted
	leading    bool
	sweep      bool            // the nodes not live are to be taken off the entries
	known      map[string]bool // live nodes at the last pass
	lastSweep  time.Time
	lastResync time.Time
	lastWarn   time.Time // warnings are logged at most every 10s
	unlisted   bool      // the live nodes listed lacked this one (resync)
}

// goingAt is a gone event on its way: the entry's revision it was decided
// at, and the due check's.
type goingAt struct{ entry, due uint64 }

// change is a key's latest local state since the last pass, and whether
// it was up at any point (a connection that came and went between passes
// still counts).
type change struct{ up, wasUp bool }

// Keys: "u." or "c." then the name in unpadded base64url, which NATS
// keys allow whatever the name.
const (
	userPrefix    = "u."
	channelPrefix = "c."
)

var b64 = base64.RawURLEncoding

// New starts a Tracker; Close stops it.
func New(cfg Config) (*Tracker, error) {
	if cfg.Node == "" || strings.ContainsAny(cfg.Node, " ") || cfg.Emit == nil {
		return nil, errors.New("occupancy: a Node without spaces and Emit are required")
	}
	if cfg.Delay <= 0 {
		cfg.Delay = 5 * time.Second
	}
	if cfg.MaxChanges <= 0 {
		cfg.MaxChanges = 100_000
	}
	if cfg.Pass <= 0 {
		cfg.Pass = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Dropped == nil {
		cfg.Dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "unregistered"})
	}
	if cfg.Stream == "" {
		cfg.Stream = "PUSHGATE"
	}
	t := &Tracker{cfg: cfg, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
		changes: map[string]change{}, held: map[string]bool{}, announcing: map[string]goingAt{}, known: map[string]bool{},
		lastResync: time.Now()}
	if cfg.URL == "" {
		t.st = newMemStore()
		t.cfg.Live = func() ([]string, bool) { return []string{cfg.Node}, true }
	} else {
		if cfg.Live == nil {
			return nil, errors.New("occupancy: Live is required in a cluster")
		}
		st, err := newNATSStore(cfg.URL, cfg.Stream, max(cfg.Replicas, 1), cfg.Logger)
		if err != nil {
			return nil, err
		}
		t.st = st
	}
	go t.run()
	return t, nil
}

// User tells the tracker that this node's first connection of user opened
// (online) or its last one closed.
func (t *Tracker) User(user string, online bool) {
	t.changed(userPrefix+b64.EncodeToString([]byte(user)), online)
}

// Channel tells the tracker that a channel got its first subscriber on
// this node (occupied) or lost its last one. Channels outside
// Config.Channels are ignored.
func (t *Tracker) Channel(name string, occupied bool) {
	if !t.cfg.Channels.Match(name) {
		return
	}
	t.changed(channelPrefix+b64.EncodeToString([]byte(name)), occupied)
}

func (t *Tracker) changed(key string, up bool) {
	t.mu.Lock()
	c, ok := t.changes[key]
	if !ok && (len(t.changes) >= t.cfg.MaxChanges || t.closed) {
		t.overflow = t.overflow || !t.closed
		t.mu.Unlock()
		t.cfg.Dropped.Inc()
		return
	}
	t.changes[key] = change{up: up, wasUp: c.wasUp || up}
	t.mu.Unlock()
	t.poke()
}

func (t *Tracker) poke() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// Close writes the changes still waiting, until ctx is done, then stops.
// A node alone announces everything it held as gone: no node is left to.
// Only the first call does anything.
func (t *Tracker) Close(ctx context.Context) {
	t.closeOnce.Do(func() { t.close(ctx) })
}

func (t *Tracker) close(ctx context.Context) {
	close(t.quit)
	<-t.done
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.write(ctx)
	if _, alone := t.st.(*memStore); alone {
		_ = t.st.scan(ctx, "", func(key string, _ []byte, rev uint64) { t.emit(key, false, rev, nil) })
	}
	t.st.close()
}

func (t *Tracker) run() {
	defer close(t.done)
	tick := time.NewTicker(t.cfg.Pass)
	defer tick.Stop()
	for {
		select {
		case <-t.quit:
			return
		case <-t.wake:
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		nodes, known := t.cfg.Live()
		t.resyncIfDue(ctx, nodes, known)
		t.write(ctx)
		if known {
			t.lead(ctx, nodes)
		}
		cancel()
	}
}

// resyncIfDue writes this node's holdings again when they may have been
// lost (see Config.Snapshot). nodes are the live ones, if known.
func (t *Tracker) resyncIfDue(ctx context.Context, nodes []string, known bool) {
	ns, clustered := t.st.(*natsStore)
	if !clustered {
		return
	}
	why := ""
	if reopened, err := ns.reopen(ctx); err != nil {
		t.warn("occupancy: bucket not made again after a reconnect, retried", "err", err)
	} else if reopened {
		why = "NATS reconnected"
	}
	if known {
		if listed := slices.Contains(nodes, t.cfg.Node); !listed {
			t.unlisted = true
		} else if t.unlisted {
			t.unlisted = false
			why = "this node is live again"
		}
	}
	t.mu.Lock()
	if t.overflow {
		t.overflow = false
		why = "changes were dropped"
	}
	t.mu.Unlock()
	if why == "" && time.Since(t.lastResync) >= resyncEvery {
		why = "periodic"
	}
	if why == "" {
		return
	}
	t.lastResync = time.Now()
	t.resync()
	if why != "periodic" {
		t.cfg.Logger.Info("occupancy: writing this node's users and channels again", "why", why)
	}
}

// resync queues a change for everything this node holds, by its snapshot
// (or what it wrote): each is checked against its entry, joined again if
// it lost this node, and left if this node no longer holds it.
func (t *Tracker) resync() {
	var want map[string]bool
	if t.cfg.Snapshot != nil {
		users, channels := t.cfg.Snapshot()
		want = make(map[string]bool, len(users)+len(channels))
		for _, u := range users {
			want[userPrefix+b64.EncodeToString([]byte(u))] = true
		}
		for _, c := range channels {
			if t.cfg.Channels.Match(c) {
				want[channelPrefix+b64.EncodeToString([]byte(c))] = true
			}
		}
	} else {
		want = make(map[string]bool, len(t.held))
		for k := range t.held {
			want[k] = true
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for key := range t.held {
		if _, pending := t.changes[key]; !pending && !want[key] {
			t.changes[key] = change{} // gone unseen: left
		}
	}
	for key := range want {
		c, pending := t.changes[key]
		if !pending {
			c.up = true
		}
		c.wasUp = true
		t.changes[key] = c
		delete(t.held, key) // joined again: its entry is read and mended
	}
}

// write applies the local changes, and finishes the gone events the
// backend took; what fails waits for the next pass.
func (t *Tracker) write(ctx context.Context) {
	t.mu.Lock()
	changes := t.changes
	t.changes = make(map[string]change, len(changes))
	delivered := t.delivered
	t.delivered = nil
	t.mu.Unlock()
	var failed int
	var lastErr error
	for key, c := range changes {
		if err := t.apply(ctx, key, &c); err != nil {
			failed++
			lastErr = err
			t.mu.Lock()
			if _, newer := t.changes[key]; !newer {
				t.changes[key] = c
			}
			t.mu.Unlock()
		}
	}
	for _, key := range delivered {
		if err := t.announced(ctx, key); err != nil {
			failed++
			lastErr = err
			t.mu.Lock()
			t.delivered = append(t.delivered, key)
			t.mu.Unlock()
		}
	}
	if failed > 0 {
		t.warn("occupancy: changes not written yet, retried", "count", failed, "err", lastErr)
	}
}

// apply writes one change, updating c to what is left to do.
func (t *Tracker) apply(ctx context.Context, key string, c *change) error {
	if c.wasUp && !t.held[key] {
		if err := t.join(ctx, key); err != nil {
			return err
		}
	}
	c.wasUp = false
	if !c.up && t.held[key] {
		return t.leave(ctx, key)
	}
	return nil
}

// join lists this node in key's entry; creating the entry announces it.
func (t *Tracker) join(ctx context.Context, key string) error {
	for range 8 {
		val, rev, err := t.st.get(ctx, key)
		switch {
		case errors.Is(err, errNotFound):
			var created uint64
			if created, err = t.st.create(ctx, key, []byte(t.cfg.Node)); err == nil {
				t.held[key] = true
				t.emit(key, true, created, nil)
				return nil
			}
		case err == nil:
			nodes := strings.Fields(string(val))
			if slices.Contains(nodes, t.cfg.Node) {
				t.held[key] = true
				return nil
			}
			if err = t.st.update(ctx, key, []byte(strings.Join(append(nodes, t.cfg.Node), " ")), rev); err == nil {
				t.held[key] = true
				return nil
			}
		}
		if !errors.Is(err, errExists) && !errors.Is(err, errConflict) {
			return err
		}
	}
	return errConflict
}

// leave takes this node off key's entry; when no live node is left on it,
// a check is set for after the delay. The change is done only once both
// are written.
func (t *Tracker) leave(ctx context.Context, key string) error {
	for range 8 {
		val, rev, err := t.st.get(ctx, key)
		if errors.Is(err, errNotFound) {
			delete(t.held, key)
			return nil
		}
		if err != nil {
			return err
		}
		nodes := slices.DeleteFunc(strings.Fields(string(val)), func(n string) bool { return n == t.cfg.Node })
		if len(nodes) != len(strings.Fields(string(val))) {
			err = t.st.update(ctx, key, []byte(strings.Join(nodes, " ")), rev)
			if errors.Is(err, errConflict) {
				continue
			}
			if err != nil {
				return err
			}
		}
		// The nodes left may be dead ones not swept yet: due all the same.
		if !slices.ContainsFunc(nodes, func(n string) bool { return t.known[n] && n != t.cfg.Node }) {
			if err := t.st.setDue(ctx, key, time.Now().Add(t.cfg.Delay)); err != nil {
				return err
			}
		}
		delete(t.held, key)
		return nil
	}
	return errConflict
}

// lead makes the due checks when this node leads: the first of the live
// nodes (known) by name. Taking the lead, or seeing nodes gone, it first takes
// the nodes that are not live off every entry, until that succeeds.
func (t *Tracker) lead(ctx context.Context, nodes []string) {
	live := map[string]bool{t.cfg.Node: true}
	for _, n := range nodes {
		live[n] = true
	}
	for n := range t.known {
		t.sweep = t.sweep || !live[n]
	}
	t.known = live
	leader := slices.MinFunc(append(nodes, t.cfg.Node), cmp.Compare[string]) == t.cfg.Node
	if !leader {
		t.leading = false
		return
	}
	if !t.leading || t.sweep || time.Since(t.lastSweep) > resyncEvery {
		if err := t.sweepNodes(ctx, live); err != nil {
			t.warn("occupancy: sweep failed, retried", "err", err)
			return
		}
		t.leading, t.sweep, t.lastSweep = true, false, time.Now()
	}
	now := time.Now()
	for key, d := range t.st.due() {
		if !now.Before(d.at) {
			if err := t.check(ctx, key, d.rev, live); err != nil {
				t.warn("occupancy: check failed, retried", "err", err)
				return
			}
		}
	}
}

// sweepNodes takes the nodes not live off every entry, and sets a check
// for the entries left with none.
func (t *Tracker) sweepNodes(ctx context.Context, live map[string]bool) error {
	var stale []string
	err := t.st.scan(ctx, "", func(key string, val []byte, _ uint64) {
		if !strings.HasPrefix(key, userPrefix) && !strings.HasPrefix(key, channelPrefix) {
			return
		}
		nodes := strings.Fields(string(val))
		if len(nodes) == 0 || slices.ContainsFunc(nodes, func(n string) bool { return !live[n] }) {
			stale = append(stale, key)
		}
	})
	if err != nil {
		return err
	}
	due := t.st.due()
	for _, key := range stale {
		if err := t.takeOffDead(ctx, key, live, due); err != nil {
			return err
		}
	}
	if ns, ok := t.st.(*natsStore); ok {
		if err := ns.purgeDeletes(ctx); err != nil {
			t.warn("occupancy: delete markers not purged", "err", err)
		}
	}
	return nil
}

// takeOffDead takes the nodes not live off key's entry, read again on a
// conflict; an entry left with none is due a check after the delay (its
// users may be reconnecting elsewhere), unless it has one.
func (t *Tracker) takeOffDead(ctx context.Context, key string, live map[string]bool, due map[string]dueCheck) error {
	for range 8 {
		val, rev, err := t.st.get(ctx, key)
		if errors.Is(err, errNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		all := strings.Fields(string(val))
		nodes := slices.DeleteFunc(slices.Clone(all), func(n string) bool { return !live[n] })
		if len(nodes) != len(all) {
			if err := t.st.update(ctx, key, []byte(strings.Join(nodes, " ")), rev); errors.Is(err, errConflict) {
				continue
			} else if err != nil {
				return err
			}
		}
		if _, set := due[key]; len(nodes) == 0 && !set {
			return t.st.setDue(ctx, key, time.Now().Add(t.cfg.Delay))
		}
		return nil
	}
	return errConflict
}

// check announces key gone if no live node holds it: the event is queued
// first, and the entry deleted only once the backend took it
// (announced), so a leader that dies in between leaves the check to the
// next one. A check that finds key held forgets its check at revision rev.
func (t *Tracker) check(ctx context.Context, key string, rev uint64, live map[string]bool) error {
	if _, on := t.announcing[key]; on {
		return nil
	}
	val, erev, err := t.st.get(ctx, key)
	switch {
	case errors.Is(err, errNotFound):
	case err != nil:
		return err
	case slices.ContainsFunc(strings.Fields(string(val)), func(n string) bool { return live[n] }):
		// Back on a node before the delay: nothing happened.
	default:
		t.announcing[key] = goingAt{entry: erev, due: rev}
		if !t.emit(key, false, erev, func() { t.took(key) }) {
			delete(t.announcing, key) // the queue is full: next pass
		}
		return nil
	}
	return t.st.clearDue(ctx, key, rev)
}

// took is called by the sender once the backend took key's gone event.
func (t *Tracker) took(key string) {
	t.mu.Lock()
	t.delivered = append(t.delivered, key)
	t.mu.Unlock()
	t.poke()
}

// announced deletes the entry whose gone event the backend took, and
// forgets its check. If the entry changed meanwhile: a live node holding
// it again means the backend, told it was gone, is told it is back; with
// none, it is checked again (and may be announced gone twice).
func (t *Tracker) announced(ctx context.Context, key string) error {
	at, ok := t.announcing[key]
	if !ok {
		return nil
	}
	err := t.st.remove(ctx, key, at.entry)
	if errors.Is(err, errConflict) {
		val, rev, gerr := t.st.get(ctx, key)
		switch {
		case errors.Is(gerr, errNotFound):
			err = nil // deleted by another leader
		case gerr != nil:
			return gerr
		case slices.ContainsFunc(strings.Fields(string(val)), func(n string) bool { return t.known[n] }):
			t.emit(key, true, rev, nil)
			err = t.st.clearDue(ctx, key, at.due)
		default:
			err = nil // checked again next pass
		}
	} else if err == nil {
		err = t.st.clearDue(ctx, key, at.due)
	}
	if err != nil {
		return err
	}
	delete(t.announcing, key)
	return nil
}

// warn logs a failure of the loop's, which retries every pass: at most
// one line every 10s while NATS is away.
func (t *Tracker) warn(msg string, args ...any) {
	if time.Since(t.lastWarn) >= 10*time.Second {
		t.lastWarn = time.Now()
		t.cfg.Logger.Warn(msg, args...)
	}
}

// emit hands the event for key coming (up) or going to the webhook, with
// seq, and reports whether it was queued.
func (t *Tracker) emit(key string, up bool, seq uint64, delivered func()) bool {
	ev := webhook.Event{Time: time.Now().UnixMilli(), Node: t.cfg.Node, Seq: t.st.epoch() + seq}
	name, err := b64.DecodeString(key[2:])
	if err != nil {
		return true // not ours
	}
	switch {
	case strings.HasPrefix(key, userPrefix) && up:
		ev.Type, ev.User = webhook.UserOnline, string(name)
	case strings.HasPrefix(key, userPrefix):
		ev.Type, ev.User = webhook.UserOffline, string(name)
	case up:
		ev.Type, ev.Channel = webhook.ChannelOccupied, string(name)
	default:
		ev.Type, ev.Channel = webhook.ChannelVacated, string(name)
	}
	return t.cfg.Emit(ev, delivered)
}
