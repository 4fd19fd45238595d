package broadcast

import (
	"sync"
	"sync/atomic"

	"github.com/pushgate/pushgate/protocol"
)

type opKind uint8

const (
	opPublish     opKind = iota
	opSubscribe          // add m to ch, send reply, then replay
	opUnsubscribe        // remove m from ch, then send reply
	opLeave              // remove m from chans
	opReply              // send reply to m
	opEpoch              // ch started a new epoch: forget its skips, send reply to its subscribers
	opEvent              // send wire to ch's subscribers
	opCall               // run fn (tests, flush; After's, in m's order when m is set)
	opWait               // subscribe m to ch, which is loading: m is held until opAnswer (held.go)
	opAnswer             // ch has loaded: sub joins ch now, reply and replay go out in m's order
	opGreet              // (in a held queue) an answered opWait: send reply, then replay
)

// op is one instruction for a shard. A shard runs its ops in the order
// they were pushed, and every op about a channel is pushed under that
// channel's lock, so each connection sees a channel's messages in offset
// order and a subscription starts exactly after its replay. What an op
// sends a held member is kept for it, in the same order (held.go).
type op struct {
	kind opKind
	// byMember: pushed for m's own op (subscribe, unsubscribe, reply),
	// counted in m's backlog until run (for a held member, until what it
	// sends has been sent)
	byMember bool
	gone     bool // opWait: m unsubscribed or left before the answer, which joins no list
	ch       *channel
	m        *Member
	sub      *subscription // opSubscribe, opUnsubscribe: m's subscription to ch
	pub      *publication
	replay   []*publication
	reply    []byte         // an envelope in a protocol.Buffer, for m alone
	wire     *protocol.Wire // an envelope for every subscriber of ch, or shared by replies
	skip     uint64         // opSubscribe, opAnswer: offsets up to this one are not sent to m
	fn       func()
}

// skipKey is a subscription that skips the offsets it saw elsewhere.
type skipKey struct {
	ch *channel
	m  *Member
}

// shard delivers to the connections assigned to it. Its goroutine owns
// subs, so delivery takes no lock but the queue's; shards run in parallel,
// each writing to its own connections.
//
// A channel's subscribers on the shard are a list, not a set: a
// publication walks it in order, and each subscription knows its index
// (subscription.slot), so that one leaves in constant time by taking the
// last one's place. An idle subscriber costs the list 8 bytes.
type shard struct {
	mu      sync.Mutex
	queue   []op
	waiting atomic.Int64 // len(queue), for Stats without the lock
	stopped bool
	wake    chan struct{} // one pending wake-up at most

	subs map[*channel][]*subscription // owned by run
	// skip holds, for subscriptions made on a Clustered hub ahead of this
	// node, the offset through which they are not sent messages; almost
	// always empty (owned by run).
	skip map[skipKey]uint64

	// While a run of several ops is delivered, frames go to batching
	// members' queues and are flushed when the run ends (owned by run).
	batching bool
	queued   []*Member
	done     []pubDone // publications to complete after the flush

	// held keeps, in order, what is for the members that wait for a
	// channel to load (held.go); almost always empty (owned by run).
	held        map[*Member]*heldQueue
	heldMembers atomic.Int64 // len(held), for Stats
	heldFrames  atomic.Int64 // frames in held's queues, for Stats
}

type pubDone struct {
	pub *publication
	n   int64
}

// maxQueued bounds the frames a connection has waiting for its next
// write during a batch: one writev carries them.
const maxQueued = 64

func newShard() *shard {
	return &shard{wake: make(chan struct{}, 1), subs: make(map[*channel][]*subscription)}
}

// push queues o. It never blocks: publications are bounded by the hub's
// publish slots, a member's own ops by its backlog (Hub.Backlog, which the
// caller checks), the others by connections times their channels.
func (s *shard) push(o op) bool {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return false
	}
	if o.byMember {
		o.m.backlog.Add(1)
	}
	s.waiting.Add(1)
	s.queue = append(s.queue, o)
	first := len(s.queue) == 1
	s.mu.Unlock()
	if first {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// stop makes push refuse new ops; run returns once the queue is empty.
func (s *shard) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *shard) run() {
	var batch []op
	for range s.wake {
		for {
			s.mu.Lock()
			batch, s.queue = s.queue, batch[:0]
			stopped := s.stopped
			s.mu.Unlock()
			if len(batch) == 0 {
				if stopped {
					return
				}
				break
			}
			// Everything that queued up while the last batch was
			// delivered goes out as one: the busier the gateway, the more
			// frames each connection's write carries.
			s.batching = len(batch) > 1
			s.waiting.Add(-int64(len(batch)))
			for i := range batch {
				s.do(&batch[i])
			}
			s.flush()
			clear(batch) // drop references to frames and members
		}
	}
}

func (s *shard) do(o *op) {
	if o.byMember {
		if o.kind == opWait || o.m.flags&memberHeld != 0 {
			// What it sends is held: it counts until that is sent.
			s.doHeld(o)
			return
		}
		o.m.backlog.Add(-1)
	}
	s.exec(o)
}

// exec runs o: see opKind.
func (s *shard) exec(o *op) {
	switch o.kind {
	case opPublish:
		var n int64
		for _, sub := range s.subs[o.ch] {
			m := sub.m
			if len(s.skip) > 0 && s.skipped(o.ch, m, o.pub.offset) {
				continue
			}
			if s.send(m, o.pub.encodedFor(m)) == nil {
				n++
			}
		}
		if s.batching {
			s.done = append(s.done, pubDone{o.pub, n})
		} else {
			o.pub.shardDone(n)
		}
	case opSubscribe:
		s.join(o.ch, o.sub, o.skip)
		s.greet(o.m, o.reply, o.replay)
	case opUnsubscribe:
		if !s.forgetWait(o.m, o.ch, o.sub) {
			s.remove(o.ch, o.sub)
		}
		_ = s.send(o.m, protocol.Frame(o.m.enc, o.reply))
	case opLeave:
		// The member's last op: its owner no longer changes its
		// subscriptions, so the shard may walk them.
		for sub := &o.m.first; sub != nil; sub = sub.next {
			if sub.ch != nil && !s.forgetWait(o.m, sub.ch, sub) {
				s.remove(sub.ch, sub)
			}
		}
	case opWait:
		s.wait(o)
	case opAnswer:
		s.answer(o)
	case opReply:
		if o.wire != nil {
			if s.pace(o.m, o.wire.Encoded(o.m.enc, nil)) == nil && !s.batching && o.m.queued > 0 {
				s.flush()
			}
			break
		}
		_ = s.send(o.m, protocol.Frame(o.m.enc, o.reply))
	case opEpoch:
		for k := range s.skip {
			if k.ch == o.ch {
				delete(s.skip, k)
			}
		}
		fallthrough
	case opEvent:
		for _, sub := range s.subs[o.ch] {
			_ = s.send(sub.m, o.wire.Encoded(sub.m.enc, nil))
		}
	case opCall:
		if o.m != nil && o.m.flags&memberHeld != 0 {
			s.hold(o.m, heldItem{o: o.clone()})
			return
		}
		s.call(o.fn)
	}
}

// call runs fn after writing what ran before: flush (and tests) rely on it.
func (s *shard) call(fn func()) {
	batching := s.batching
	s.flush()
	s.batching = batching
	fn()
}

// join adds sub, m's subscription to ch, to ch's list, skipping offsets
// through skip (when not 0).
func (s *shard) join(ch *channel, sub *subscription, skip uint64) {
	list := s.subs[ch]
	sub.slot = int32(len(list))
	s.subs[ch] = append(list, sub)
	if skip > 0 {
		if s.skip == nil {
			s.skip = make(map[skipKey]uint64)
		}
		s.skip[skipKey{ch, sub.m}] = skip
	}
}

// greet sends m its "subscribed" reply, then its replay.
func (s *shard) greet(m *Member, reply []byte, replay []*publication) {
	if s.send(m, protocol.Frame(m.enc, reply)) != nil {
		return
	}
	for _, p := range replay {
		if s.pace(m, p.encodedFor(m)) != nil {
			return
		}
	}
	if len(replay) > 0 && !s.batching && m.queued > 0 {
		s.flush()
	}
}

// send hands frame to m: queued while a run of ops is being delivered
// (every frame of m, so its order holds), else written now.
func (s *shard) send(m *Member, frame []byte) error {
	if m.flags&memberHeld != 0 {
		s.hold(m, heldItem{frame: frame})
		return nil
	}
	if !s.batching || m.flags&memberBatches == 0 {
		return m.sub.Send(frame)
	}
	b := m.sub.(Batcher)
	if m.queued == 0 {
		s.queued = append(s.queued, m)
	}
	if err := b.Queue(frame); err != nil {
		return err
	}
	// Every maxQueued frames leave, so a long run keeps the queue short
	// (a Pacer's replay frames instead leave as its socket drains).
	if m.queued++; m.queued >= maxQueued {
		b.Flush()
		m.queued = 1 // still listed; one more Flush is harmless
	}
	return nil
}

// pace hands m a frame of a replay, which a Pacer writes as its socket
// drains (see Pacer); it is flushed with the run's frames, or at once
// outside a run.
func (s *shard) pace(m *Member, frame []byte) error {
	if m.flags&memberHeld != 0 {
		s.hold(m, heldItem{frame: frame, paced: true})
		return nil
	}
	if m.flags&memberPaces == 0 {
		return s.send(m, frame)
	}
	if m.queued == 0 {
		s.queued = append(s.queued, m)
	}
	m.queued++
	return m.sub.(Pacer).Pace(frame)
}

// flush writes what the run queued, then completes its publications: a
// publication is done when its frames were handed to the sockets.
func (s *shard) flush() {
	for _, m := range s.queued {
		m.queued = 0
		m.sub.(Batcher).Flush()
	}
	clear(s.queued)
	s.queued = s.queued[:0]
	for _, d := range s.done {
		d.pub.shardDone(d.n)
	}
	clear(s.done)
	s.done = s.done[:0]
	s.batching = false
}

// skipped reports whether m's subscription to ch skips offset, and forgets
// the skip once past it.
func (s *shard) skipped(ch *channel, m *Member, offset uint64) bool {
	k := skipKey{ch, m}
	through, ok := s.skip[k]
	if !ok {
		return false
	}
	if offset <= through {
		return true
	}
	delete(s.skip, k)
	return false
}

// remove takes sub out of ch's list: the last subscription takes its
// place. A list that emptied goes; one at a quarter of its capacity is
// copied into one half as large, so a channel that was big does not keep
// its peak.
func (s *shard) remove(ch *channel, sub *subscription) {
	if len(s.skip) > 0 {
		delete(s.skip, skipKey{ch, sub.m})
	}
	list := s.subs[ch]
	i, last := sub.slot, len(list)-1
	list[i] = list[last]
	list[i].slot = i
	list[last] = nil
	list = list[:last]
	switch {
	case len(list) == 0:
		delete(s.subs, ch)
		return
	case cap(list) >= 64 && len(list) <= cap(list)/4:
		list = append(make([]*subscription, 0, 2*len(list)), list...)
	}
	s.subs[ch] = list
}
