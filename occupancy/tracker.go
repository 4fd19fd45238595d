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
	// Emit hands an event to the webhook sender; it must not block.
	// Required.
	Emit func(webhook.Event)
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
	// 100,000); past it a change is dropped, counted and logged.
	MaxChanges int
	// Dropped counts dropped changes (default unregistered).
	Dropped prometheus.Counter
	// Pass is how often the tracker writes changes and makes due checks
	// (default 250ms).
	Pass   time.Duration
	Logger *slog.Logger
}

// Tracker announces users and channels coming and going, cluster-wide.
// User and Channel are told of this node's changes; they never block.
type Tracker struct {
	cfg  Config
	st   store
	wake chan struct{}
	quit chan struct{}
	done chan struct{}

	mu      sync.Mutex // a leaf: User and Channel are called under others' locks
	changes map[string]change
	closed  bool

	// Owned by the loop.
	held      map[string]bool // entries that list this node
	leading   bool
	known     map[string]bool // live nodes at the last pass
	lastSweep time.Time
	lastWarn  time.Time // warnings are logged at most every 10s
}

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
		changes: map[string]change{}, held: map[string]bool{}, known: map[string]bool{}}
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
		t.mu.Unlock()
		t.cfg.Dropped.Inc()
		return
	}
	t.changes[key] = change{up: up, wasUp: c.wasUp || up}
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// Close writes the changes still waiting, until ctx is done, then stops.
// A node alone announces everything it held as gone: no node is left to.
func (t *Tracker) Close(ctx context.Context) {
	close(t.quit)
	<-t.done
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.write(ctx)
	if _, alone := t.st.(*memStore); alone {
		_ = t.st.scan(ctx, "", func(key string, _ []byte, _ uint64) { t.emitGone(key) })
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
		t.write(ctx)
		t.lead(ctx)
		cancel()
	}
}

// write applies the local changes; those that fail wait for the next
// pass.
func (t *Tracker) write(ctx context.Context) {
	t.mu.Lock()
	changes := t.changes
	t.changes = make(map[string]change, len(changes))
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
			err = t.st.create(ctx, key, []byte(t.cfg.Node))
			if err == nil {
				t.held[key] = true
				t.emit(key, true)
				return nil
			}
		case err == nil:
			nodes := strings.Fields(string(val))
			if slices.Contains(nodes, t.cfg.Node) {
				t.held[key] = true
				return nil
			}
			err = t.st.update(ctx, key, []byte(strings.Join(append(nodes, t.cfg.Node), " ")), rev)
			if err == nil {
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

// leave takes this node off key's entry; the last node off sets a check
// for after the delay.
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
		err = t.st.update(ctx, key, []byte(strings.Join(nodes, " ")), rev)
		if errors.Is(err, errConflict) {
			continue
		}
		if err != nil {
			return err
		}
		delete(t.held, key)
		if len(nodes) == 0 {
			return t.st.setDue(ctx, key, time.Now().Add(t.cfg.Delay))
		}
		return nil
	}
	return errConflict
}

// lead makes the due checks when this node leads: the first of the live
// nodes by name. Taking the lead, or seeing nodes gone, it first takes
// the nodes that are not live off every entry.
func (t *Tracker) lead(ctx context.Context) {
	nodes, ok := t.cfg.Live()
	if !ok {
		return
	}
	live := map[string]bool{t.cfg.Node: true}
	for _, n := range nodes {
		live[n] = true
	}
	gone := false
	for n := range t.known {
		gone = gone || !live[n]
	}
	t.known = live
	leader := slices.MinFunc(append(nodes, t.cfg.Node), cmp.Compare[string]) == t.cfg.Node
	if !leader {
		t.leading = false
		return
	}
	if !t.leading || gone || time.Since(t.lastSweep) > 5*time.Minute {
		if err := t.sweep(ctx, live); err != nil {
			t.warn("occupancy: sweep failed, retried", "err", err)
			return
		}
		t.leading, t.lastSweep = true, time.Now()
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

// sweep takes the nodes not live off every entry, and sets a check for
// the entries left with none.
func (t *Tracker) sweep(ctx context.Context, live map[string]bool) error {
	type stale struct {
		key string
		rev uint64
		val []byte
	}
	var list []stale
	err := t.st.scan(ctx, "", func(key string, val []byte, rev uint64) {
		if !strings.HasPrefix(key, userPrefix) && !strings.HasPrefix(key, channelPrefix) {
			return
		}
		nodes := strings.Fields(string(val))
		if len(nodes) == 0 || slices.ContainsFunc(nodes, func(n string) bool { return !live[n] }) {
			list = append(list, stale{key, rev, val})
		}
	})
	if err != nil {
		return err
	}
	due := t.st.due()
	for _, s := range list {
		nodes := slices.DeleteFunc(strings.Fields(string(s.val)), func(n string) bool { return !live[n] })
		if len(nodes) > 0 {
			if err := t.st.update(ctx, s.key, []byte(strings.Join(nodes, " ")), s.rev); err != nil && !errors.Is(err, errConflict) {
				return err
			}
			continue
		}
		// Gone with a node that died, or drained: its users may be
		// reconnecting elsewhere, so the delay counts from now.
		if _, set := due[s.key]; !set {
			if err := t.st.setDue(ctx, s.key, time.Now().Add(t.cfg.Delay)); err != nil {
				return err
			}
		}
	}
	if ns, ok := t.st.(*natsStore); ok {
		if err := ns.purgeDeletes(ctx); err != nil {
			t.warn("occupancy: delete markers not purged", "err", err)
		}
	}
	return nil
}

// check announces key gone if no live node holds it, and forgets its
// check at revision rev.
func (t *Tracker) check(ctx context.Context, key string, rev uint64, live map[string]bool) error {
	val, erev, err := t.st.get(ctx, key)
	switch {
	case errors.Is(err, errNotFound):
	case err != nil:
		return err
	case slices.ContainsFunc(strings.Fields(string(val)), func(n string) bool { return live[n] }):
		// Back on a node before the delay: nothing happened.
	default:
		switch err := t.st.remove(ctx, key, erev); {
		case errors.Is(err, errConflict):
			return nil // a node joined just now: checked again next pass
		case err != nil:
			return err
		}
		t.emit(key, false)
	}
	return t.st.clearDue(ctx, key, rev)
}

// warn logs a failure of the loop's, which retries every pass: at most
// one line every 10s while NATS is away.
func (t *Tracker) warn(msg string, args ...any) {
	if time.Since(t.lastWarn) >= 10*time.Second {
		t.lastWarn = time.Now()
		t.cfg.Logger.Warn(msg, args...)
	}
}

// emitGone announces key gone (a node alone, stopping).
func (t *Tracker) emitGone(key string) { t.emit(key, false) }

// emit hands the event for key coming (up) or going to the webhook.
func (t *Tracker) emit(key string, up bool) {
	ev := webhook.Event{Time: time.Now().UnixMilli(), Node: t.cfg.Node}
	name, err := b64.DecodeString(key[2:])
	if err != nil {
		return
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
	t.cfg.Emit(ev)
}
