package broadcast

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgate/pushgate/wsproto"
)

// compressMin is the smallest envelope worth compressing: below it deflate
// saves too little to pay for itself, and subscribers that negotiated
// permessage-deflate get the plain frame (RSV1 clear is always allowed).
const compressMin = 512

// publication is one message of a channel, encoded once: frame is the whole
// WebSocket frame every subscriber is sent, shared and never modified.
type publication struct {
	ch     *channel
	offset uint64
	epoch  string // the channel's epoch when published
	at     time.Time
	frame  []byte // text frame carrying the envelope
	data   []byte // the data field, a slice of frame

	deflateOnce sync.Once
	deflated    []byte // compressed frame, built on first need

	// In history: its place in the hub's historyIndex, set when its
	// channel keeps it. older, newer and, once built, deflated are under
	// the index's lock, which also counts what it weighs; listed changes
	// under both its channel's lock and the index's, so either reads it.
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

// newPublication encodes the envelope
// {"type":"message","channel":<channel>,"offset":<offset>,"data":<data>}
// into one frame. channel needs no escaping (see nameChar) and data is
// valid JSON.
func newPublication(channel string, offset uint64, data []byte, at time.Time) *publication {
	var num [20]byte
	off := strconv.AppendUint(num[:0], offset, 10)
	const (
		a = `{"type":"message","channel":"`
		b = `","offset":`
		c = `,"data":`
		d = `}`
	)
	n := len(a) + len(channel) + len(b) + len(off) + len(c) + len(data) + len(d)
	f := make([]byte, 0, wsproto.HeaderSize(n)+n)
	f = wsproto.AppendHeader(f, ws.OpText, false, n)
	f = append(f, a...)
	f = append(f, channel...)
	f = append(f, b...)
	f = append(f, off...)
	f = append(f, c...)
	start := len(f)
	f = append(f, data...)
	end := len(f)
	f = append(f, d...)
	return &publication{offset: offset, at: at, frame: f, data: f[start:end:end]}
}

// frameFor returns the frame for a subscriber: compressed when it
// negotiated permessage-deflate and the envelope is large enough.
func (p *publication) frameFor(m *Member) []byte {
	if !m.compress || len(p.frame) < compressMin {
		return p.frame
	}
	p.deflateOnce.Do(func() {
		d := wsproto.AppendCompressedFrame(nil, ws.OpText, wsproto.Payload(p.frame))
		if x := p.index; x != nil {
			x.deflated(p, d) // history may hold it: the copy counts too
		} else {
			p.deflated = d
		}
	})
	return p.deflated
}

// heldOverhead is what a message held in history costs beyond its
// frames: the publication itself, its slot in its channel's ring, what its
// publisher waited on, as the allocator rounds them. For small messages it
// is most of their cost (TestHistoryBytesAreMemory measures it: about 450
// bytes), so history's bytes count it, and the budget bounds memory
// whatever the messages' size.
const heldOverhead = 512

// weight is what p weighs in history: its frames and heldOverhead. The
// index's lock is held (deflated may be being set).
func (p *publication) weight() int64 {
	return int64(len(p.frame)+len(p.deflated)) + heldOverhead
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

// appendSubscribed encodes
// {"type":"subscribed","channel":...,"offset":...,"epoch":...,"recovered":...}.
func appendSubscribed(dst []byte, channel string, offset uint64, epoch string, recovered bool) []byte {
	p := make([]byte, 0, 96+len(channel))
	p = append(p, `{"type":"subscribed","channel":"`...)
	p = append(p, channel...)
	p = append(p, `","offset":`...)
	p = strconv.AppendUint(p, offset, 10)
	p = append(p, `,"epoch":"`...)
	p = append(p, epoch...)
	p = append(p, `","recovered":`...)
	p = strconv.AppendBool(p, recovered)
	p = append(p, '}')
	return wsproto.AppendFrame(dst, ws.OpText, p)
}

// appendUnsubscribed encodes {"type":"unsubscribed","channel":...}.
func appendUnsubscribed(dst []byte, channel string) []byte {
	p := make([]byte, 0, 40+len(channel))
	p = append(p, `{"type":"unsubscribed","channel":"`...)
	p = append(p, channel...)
	p = append(p, `"}`...)
	return wsproto.AppendFrame(dst, ws.OpText, p)
}
