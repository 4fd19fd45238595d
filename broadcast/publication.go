package broadcast

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgate/pushgate/protocol"
)

// publication is one message of a channel, encoded once per encoding its
// subscribers take (protocol.Wire), shared and never modified.
type publication struct {
	ch     *channel
	offset uint64
	epoch  string // the channel's epoch when published
	at     time.Time
	wire   protocol.Wire
	data   []byte // the data field, a slice of the envelope

	// In history: its place in the hub's historyIndex, set when its
	// channel keeps it. older, newer and the encodings built after it was
	// kept are under the index's lock, which also counts what it weighs;
	// listed changes under both its channel's lock and the index's, so
	// either reads it.
	index        *historyIndex
	older, newer *publication
	listed       bool

	// Fan-out progress; done and onDone are nil when nobody waits.
	shards    atomic.Int32 // shards still delivering
	delivered atomic.Int64 // connections handed the frame
	done      chan struct{}
	onDone    func(Result)
	slots     chan struct{} // the hub's publish slots: one is freed when delivery ends
	// clientSlots, for a client's publication: one more is freed then
	clientSlots chan struct{}
	start       time.Time // when the hub took it, for observe
	observe     prometheus.Observer
}

// newPublication builds the message envelope of data, valid JSON, in
// channel at offset.
func newPublication(channel string, offset uint64, data []byte, at time.Time) *publication {
	p := &publication{offset: offset, at: at}
	var env []byte
	env, p.data = protocol.AppendMessage(protocol.Buffer(protocol.MessageSize(channel, data)), channel, offset, data)
	p.wire.Init(env)
	return p
}

// encodedFor returns the publication as m's connection is sent it.
func (p *publication) encodedFor(m *Member) []byte {
	if m.enc == protocol.WebSocket {
		return p.wire.Frame() // built with p
	}
	return p.wire.Encoded(m.enc, p.store)
}

// store stores an encoding of p built after p was created: history may
// hold p, and the copy counts too.
func (p *publication) store(set func()) {
	if x := p.index; x != nil {
		x.encoded(p, set)
	} else {
		set()
	}
}

// heldOverhead is what a message held in history costs beyond its
// frames: the publication itself, its slot in its channel's ring, what its
// publisher waited on, as the allocator rounds them. For small messages it
// is most of their cost (TestHistoryBytesAreMemory measures it: about 450
// bytes), so history's bytes count it, and the budget bounds memory
// whatever the messages' size.
const heldOverhead = 512

// weight is what p weighs in history: its encodings and heldOverhead. The
// index's lock is held (an encoding may be being stored).
func (p *publication) weight() int64 {
	return int64(p.wire.Size()) + heldOverhead
}

// shardDone records that one shard finished its part of the fan-out.
func (p *publication) shardDone(delivered int64) {
	p.delivered.Add(delivered)
	if p.shards.Add(-1) == 0 {
		p.finish()
	}
}

func (p *publication) finish() {
	if p.observe != nil {
		p.observe.Observe(time.Since(p.start).Seconds())
	}
	if p.slots != nil {
		<-p.slots
	}
	if p.clientSlots != nil {
		<-p.clientSlots
	}
	if p.done != nil {
		close(p.done)
	}
	if p.onDone != nil {
		p.onDone(p.result())
	}
}

func (p *publication) result() Result {
	return Result{Offset: p.offset, Epoch: p.epoch, Delivered: p.delivered.Load()}
}
