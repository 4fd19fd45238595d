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
// callbacks of one connection.
type Member struct {
	sub      Subscriber
	batch    Batcher // sub, when it batches; nil otherwise
	queued   int     // frames batch holds that the shard has yet to flush
	shard    *shard
	shardIdx int
	chans    []*channel   // subscribed channels, at most MaxChannels
	backlog  atomic.Int32 // its own ops queued on its shard, not yet run
	paces    bool         // batch is a Pacer too (a flag: a second interface would cost every member 16 bytes)
	enc      protocol.Encoding
	left     bool
}

// Subscriber returns the connection m is.
func (m *Member) Subscriber() Subscriber { return m.sub }

// Channels returns the names of the channels m is subscribed to.
func (m *Member) Channels() []string {
	names := make([]string, len(m.chans))
	for i, ch := range m.chans {
		names[i] = ch.name
	}
	return names
}

// Subscribed reports whether m is subscribed to the channel name.
func (m *Member) Subscribed(name string) bool { return m.find(name) >= 0 }

func (m *Member) find(name string) int {
	for i, ch := range m.chans {
		if ch.name == name {
			return i
		}
	}
	return -1
}
