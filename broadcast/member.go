package broadcast

import (
	"sync/atomic"

	"github.com/pushgate/pushgate/protocol"
)

// Subscriber is a connection as the hub sees it. server.Conn is one.
type Subscriber interface {
	// Send hands the connection an envelope as its encoding carries it,
	// without blocking; the bytes are shared and must not be modified. An
	// error means the connection is closed or closing.
	Send(wire []byte) error
	// Encoding is how the connection takes envelopes; it does not change.
	Encoding() protocol.Encoding
}

// Batcher is a Subscriber that can take several frames before writing
// them, so a shard with many messages for one connection hands them to the
// socket in one write. server.Conn is one.
type Batcher interface {
	// Queue keeps frame to be written by the next Flush.
	Queue(frame []byte) error
	// Flush writes what Queue kept.
	Flush()
}

// Pacer is a Batcher that takes the frames of a replay to be written as
// its socket drains: they are not counted against its outbound bound, so a
// subscriber that reads is never closed for recovering a large history.
// server.Conn is one.
type Pacer interface {
	// Pace keeps frame, after everything queued, to be written by Flush
	// and as the socket drains.
	Pace(frame []byte) error
}

// Member is a connection joined to the hub: its subscriptions and the shard
// that delivers to it. A Member's methods on the hub (Subscribe,
// Unsubscribe, Leave) must not be called concurrently, which holds for the
// callbacks of one connection. While one of its subscribes waits for a
// channel to load (Config.Load), the member is held: its shard keeps
// whatever is for it, in order, until that subscribe is answered.
//
// It is laid out for idle connections, which are most of them: 64 bytes,
// one cache line, holding its first subscription, so that a connection
// subscribed to one channel costs the hub one allocation and an entry in
// the channel's list on its shard (TestMemberMemory). Its shard is an
// index, its other subscriptions a list through the first.
type Member struct {
	first   subscription // the head of its subscriptions; unused when first.ch is nil
	sub     Subscriber
	backlog atomic.Int32 // its own ops queued on its shard, not yet run
	queued  int32        // frames its Batcher holds that the shard has yet to flush (owned by the shard)
	n       uint16       // subscriptions, at most MaxChannels
	shard   uint16       // index of the shard that delivers to it
	enc     protocol.Encoding
	flags   uint8 // memberBatches, memberPaces: set by Join; memberHeld: owned by the shard
	left    bool  // Leave has run (owned by its owner; the shard reads flags)
}

// Member flags. Interfaces the Subscriber implements are flags, not
// interface fields: a second interface would cost every member 16 bytes.
const (
	memberBatches uint8 = 1 << iota // sub is a Batcher
	memberPaces                     // sub is a Pacer too
	memberHeld                      // its shard keeps what is for it until a channel loads (held.go)
)

// subscription is one channel a member subscribes to, and its place in
// that channel's list on the member's shard. The member's first lives in
// the Member; others are allocated and linked from it.
//
// m is set once. ch and next belong to the member's owner (Subscribe,
// Unsubscribe, Leave), which never reads slot; slot belongs to the shard,
// which reads ch and next only in the leave op, the member's last.
type subscription struct {
	m    *Member
	ch   *channel // nil: unused (the first, after its channel was left)
	next *subscription
	slot int32 // index in the shard's list of ch's subscriptions
}

// Subscriber returns the connection m is.
func (m *Member) Subscriber() Subscriber { return m.sub }

// Channels returns the names of the channels m is subscribed to, in no
// particular order; none once m has left.
func (m *Member) Channels() []string {
	if m.left {
		return nil // the chain is the leave op's now
	}
	names := make([]string, 0, m.n)
	for s := &m.first; s != nil; s = s.next {
		if s.ch != nil {
			names = append(names, s.ch.name)
		}
	}
	return names
}

// Subscribed reports whether m is subscribed to the channel name.
func (m *Member) Subscribed(name string) bool { return m.find(name) != nil }

// find returns m's subscription to the channel name, nil if none.
func (m *Member) find(name string) *subscription {
	if m.left {
		return nil // Leave keeps the chain for its op; none is m's any more
	}
	for s := &m.first; s != nil; s = s.next {
		if s.ch != nil && s.ch.name == name {
			return s
		}
	}
	return nil
}

// add records a subscription of m to ch: the first's place when it is
// free, else a new one linked after it.
func (m *Member) add(ch *channel) *subscription {
	m.n++
	if m.first.ch == nil {
		m.first.ch = ch
		return &m.first
	}
	s := &subscription{m: m, ch: ch, next: m.first.next}
	m.first.next = s
	return s
}

// drop unlinks s, one of m's subscriptions. The shard may still hold it
// until it runs the op that removes it, so s itself is left as it is but
// for the first, whose place is marked free.
func (m *Member) drop(s *subscription) {
	m.n--
	if s == &m.first {
		m.first.ch = nil
		return
	}
	prev := &m.first
	for prev.next != s {
		prev = prev.next
	}
	prev.next = s.next
}
