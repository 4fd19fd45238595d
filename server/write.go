package server

import (
	"errors"
	"sync/atomic"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/pushgate/pushgate/netpoll"
	"github.com/pushgate/pushgate/wsproto"
)

// Waiting is how many bytes wait for the socket: queued, paced or not.
func (c *Conn) Waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.out == nil {
		return 0
	}
	return c.out.size
}

// Errors returned by Send.
var (
	ErrClosed       = errors.New("server: connection closed")
	ErrSlowConsumer = errors.New("server: outbound queue full, connection closed with 1013")
)

// maxIovecs bounds the frames one writev carries.
const maxIovecs = 64

// flushEarly is how many bytes Queue lets pile up untried before it tries
// the socket: the frames of a batch leave in few writev calls, and what a
// connection holds before the kernel was asked stays small.
const flushEarly = 64 << 10

// outFrame is a frame in an outbound queue.
type outFrame struct {
	b     []byte
	paced bool // part of a replay (Pace): not counted against the bound
	pair  bool // the rest of the frame before it: an event and its id (SendEvent)
}

// outQueue holds frames the socket has not taken yet. Frames are whole
// encoded frames, shared and never modified, so one broadcast frame can sit
// in many queues. A queue exists only while a connection is behind or a
// delivery batch is being queued.
type outQueue struct {
	frames  []outFrame
	head    int // frames[:head] are written
	off     int // bytes of frames[head] already written
	size    int // bytes not yet written
	counted int // bytes not yet written of frames that are not paced
	iov     [][]byte
	total   *atomic.Int64 // bytes queued on all connections, for metrics
}

func (q *outQueue) push(frame []byte, paced, pair bool) {
	if q.head > 0 && len(q.frames) == cap(q.frames) {
		n := copy(q.frames, q.frames[q.head:])
		clear(q.frames[n:])
		q.frames, q.head = q.frames[:n], 0
	}
	q.frames = append(q.frames, outFrame{frame, paced, pair})
	q.size += len(frame)
	if !paced {
		q.counted += len(frame)
	}
	q.total.Add(int64(len(frame)))
}

// vec returns the next frames to write, the first one cut at off.
func (q *outQueue) vec() [][]byte {
	q.iov = q.iov[:0]
	for i := q.head; i < len(q.frames) && len(q.iov) < maxIovecs; i++ {
		q.iov = append(q.iov, q.frames[i].b)
	}
	q.iov[0] = q.iov[0][q.off:]
	return q.iov
}

// advance records that n more bytes were written.
func (q *outQueue) advance(n int) {
	q.size -= n
	q.total.Add(-int64(n))
	for n > 0 {
		f := &q.frames[q.head]
		done := min(n, len(f.b)-q.off)
		if !f.paced {
			q.counted -= done
		}
		n -= done
		if q.off += done; q.off < len(f.b) {
			return
		}
		*f = outFrame{}
		q.head++
		q.off = 0
	}
}

// waiting is what counts against the queue bound: the bytes the socket
// refused of frames that are not part of a replay, but for the frame at
// the head, which is being written and will be finished whatever comes
// after it. So a reader that keeps up is never judged by the size of one
// message, nor by a replay paced by its socket.
func (q *outQueue) waiting() int {
	w := q.counted
	if f := q.frames[q.head:]; len(f) > 0 && !f[0].paced {
		w -= len(f[0].b) - q.off
	}
	return w
}

// dropUnstarted discards the frames not begun yet and returns how many.
// A frame already partly written stays: cutting it would corrupt the stream.
func (q *outQueue) dropUnstarted() int {
	keep := q.head
	// A frame begun, or the rest of an event whose id is written: cut, the
	// stream would name a position it did not deliver.
	if q.off > 0 || keep < len(q.frames) && q.frames[keep].pair {
		keep++
		for keep < len(q.frames) && q.frames[keep].pair {
			keep++ // the rest of the event begun
		}
	}
	dropped, bytes := 0, 0
	for _, f := range q.frames[keep:] {
		bytes += len(f.b)
		if !f.paced {
			q.counted -= len(f.b)
		}
		if !f.pair {
			dropped++
		}
	}
	q.size -= bytes
	q.total.Add(-int64(bytes))
	clear(q.frames[keep:])
	q.frames = q.frames[:keep]
	return dropped
}

func (q *outQueue) reset() {
	q.total.Add(-int64(q.size))
	clear(q.frames)
	clear(q.iov)
	*q = outQueue{frames: q.frames[:0], iov: q.iov[:0], total: q.total}
}

// Send hands an encoded frame to the connection without waiting for the
// socket: it is written now if the socket takes it, else queued and written
// when the socket becomes writable. frame is kept until written and must
// not be modified. A connection whose socket refused more than the
// configured bound (counted as waiting says) is closed with 1013 and Send
// returns ErrSlowConsumer.
func (c *Conn) Send(frame []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sendLocked(frame)
}

// SendMessage encodes payload as one message, compressed when the
// connection negotiated permessage-deflate, and sends it.
func (c *Conn) SendMessage(op ws.OpCode, payload []byte) error {
	var frame []byte
	if c.compression {
		frame = wsproto.AppendCompressedFrame(nil, op, payload)
	} else {
		frame = wsproto.AppendFrame(make([]byte, 0, wsproto.HeaderSize(len(payload))+len(payload)), op, payload)
	}
	return c.Send(frame)
}

// Queue appends frame to the connection's outbound queue; Flush writes
// what is queued. A delivery loop queues each connection's frames of many
// messages and flushes once, so they leave in one writev instead of one
// write each. Queue itself tries the socket once about 64 KiB wait, and
// every Queue must be followed by a Flush. Frames count against the bound
// (ErrSlowConsumer, as for Send) only once the socket has refused a write:
// then the frames queued behind count too.
func (c *Conn) Queue(frame []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queueLocked(frame, false)
}

// Pace is Queue for the frames of a replay (history a subscriber recovers):
// they are written as the socket drains, in order with everything else,
// and never count against the queue bound, so a client that reads is not
// closed for recovering more history than the bound. They cost the queue
// a reference each: replay frames are history's, shared. (An event
// stream's id lines, its own, do count: PaceEvent.)
func (c *Conn) Pace(frame []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queueLocked(frame, true)
}

// Flush writes the frames Queue left, unless a writability event is
// already awaited, which will.
func (c *Conn) Flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.out != nil && !c.w(wWriteArmed) && c.state.Load() != stateClosed {
		c.flushLocked()
	}
}

// queueLocked queues frame behind what is queued: frames the socket
// refused (a writability event is awaited, and then what the socket
// refused counts against the bound), or a batch to be flushed (tried once
// flushEarly bytes wait).
func (c *Conn) queueLocked(frame []byte, paced bool) error {
	return c.enqueueLocked(nil, frame, paced, false)
}

// SendEvent is Send for an event of an event stream: id, the connection's
// own bytes (its "id:" line, or nil), then frame, shared. They are written
// together: nothing the connection sends comes between them, and a slow
// consumer's close never keeps one without the other, so a stream never
// names a position whose event it did not deliver.
func (c *Conn) SendEvent(id, frame []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id == nil {
		return c.sendLocked(frame)
	}
	return c.enqueueLocked(id, frame, false, c.out == nil)
}

// QueueEvent is Queue for an event and its id (see SendEvent).
func (c *Conn) QueueEvent(id, frame []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enqueueLocked(id, frame, false, false)
}

// PaceEvent is Pace for an event and its id (see SendEvent).
func (c *Conn) PaceEvent(id, frame []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enqueueLocked(id, frame, true, false)
}

// enqueueLocked queues frame, after id when it is an event's (id not
// nil), and, with flush, tries the socket at once, as Send does on an
// empty queue. The id is the connection's own, not history's: it counts
// against the bound even in a replay (a stream following many channels
// would otherwise queue kilobytes of ids per replayed message, unbounded).
func (c *Conn) enqueueLocked(id, frame []byte, paced, flush bool) error {
	if c.state.Load() != stateOpen {
		return ErrClosed
	}
	s := c.srv
	c.countSent()
	if c.out == nil {
		c.out = s.queues.Get().(*outQueue)
	} else if c.w(wWriteArmed) && !paced && c.out.waiting()+len(id)+len(frame) > s.cfg.OutboundQueueBytes {
		return c.slowLocked(1)
	}
	if id != nil {
		c.out.push(id, false, false)
	}
	c.out.push(frame, paced, id != nil)
	if !c.w(wWriteArmed) && (flush || c.out.size >= flushEarly) {
		c.flushLocked()
		return c.sendErr()
	}
	return nil
}

// countSent counts a message handed to the connection, in all and by
// transport.
func (c *Conn) countSent() {
	c.srv.m.MessagesSent.Inc()
	c.srv.transport[c.ep].sent.Inc()
}

// sendLocked writes frame at once when nothing is queued, else queues it.
func (c *Conn) sendLocked(frame []byte) error {
	if c.out != nil || c.state.Load() != stateOpen {
		return c.queueLocked(frame, false)
	}
	c.countSent()
	c.writeLocked(frame)
	return nil
}

// slowLocked closes a connection whose socket refused more than the bound:
// its unstarted frames and refused more (the frames being handed to it)
// are dropped and counted.
func (c *Conn) slowLocked(refused int) error {
	s := c.srv
	s.m.SlowConsumers.Inc()
	s.m.DroppedFrames.Add(float64(c.out.dropUnstarted() + refused))
	c.startCloseLocked(ReasonSlowConsumer, "slow consumer")
	return ErrSlowConsumer
}

// sendErr is what a frame handed to the connection meets once it is no
// longer open.
func (c *Conn) sendErr() error {
	switch {
	case c.state.Load() == stateOpen:
		return nil
	case c.reason == ReasonSlowConsumer:
		return ErrSlowConsumer
	}
	return ErrClosed
}

// writeLocked writes frame to the socket, which has nothing queued, and
// queues what it does not take.
func (c *Conn) writeLocked(frame []byte) {
	n, err := unix.Write(int(c.fd), frame)
	for err == unix.EINTR {
		n, err = unix.Write(int(c.fd), frame)
	}
	if n > 0 {
		c.srv.m.BytesSent.Add(float64(n))
		c.wroteAt.Store(c.srv.now())
	} else {
		n = 0
	}
	switch {
	case n == len(frame):
		if c.w(wCloseQueued) {
			c.closeWrittenLocked()
		}
	case err == nil || err == unix.EAGAIN:
		c.out = c.srv.queues.Get().(*outQueue)
		c.out.push(frame, false, false)
		c.out.advance(n)
		c.armWriteLocked()
	default:
		c.brokenLocked()
	}
}

// flushLocked writes queued frames until the queue is empty or the socket
// is full, batching many frames into one writev.
func (c *Conn) flushLocked() {
	for c.out != nil {
		n, err := unix.Writev(int(c.fd), c.out.vec())
		if n > 0 {
			c.srv.m.BytesSent.Add(float64(n))
			c.wroteAt.Store(c.srv.now())
			c.out.advance(n)
		}
		switch {
		case c.out.size == 0:
			c.releaseQueueLocked()
			if c.w(wCloseQueued) {
				c.closeWrittenLocked()
			}
		case err == unix.EINTR || err == nil:
		case err == unix.EAGAIN:
			c.armWriteLocked()
			if c.out != nil && c.state.Load() == stateOpen && c.out.waiting() > c.srv.cfg.OutboundQueueBytes {
				_ = c.slowLocked(0)
			}
			return
		default:
			c.brokenLocked()
			return
		}
	}
}

func (c *Conn) releaseQueueLocked() {
	c.out.reset()
	c.srv.queues.Put(c.out)
	c.out = nil
	c.setFlag(flagBehind, false)
}

// armWriteLocked asks the write poller for one writability event.
func (c *Conn) armWriteLocked() {
	setBit(&c.wbits, wWriteArmed, true)
	c.setFlag(flagBehind, true)
	var err error
	if c.w(wWriteReg) {
		err = c.srv.writePoller.Rearm(int(c.fd), netpoll.Write)
	} else {
		err = c.srv.writePoller.Add(int(c.fd), netpoll.Write, c.onWritable)
		setBit(&c.wbits, wWriteReg, err == nil)
	}
	if err != nil {
		c.brokenLocked()
	}
}

// writeTask is the pool task that drains a writable connection's queue.
type writeTask Conn

func (t *writeTask) Run() {
	c := (*Conn)(t)
	c.mu.Lock()
	setBit(&c.wbits, wWriteArmed, false)
	if c.state.Load() != stateClosed && c.out != nil {
		c.flushLocked()
	}
	c.mu.Unlock()
}

// onWritable is the write poller's callback.
func (c *Conn) onWritable(ev netpoll.Event) {
	if ev&netpoll.EventClosed != 0 {
		return
	}
	c.srv.m.PollerEvents.Inc()
	c.srv.pool.Schedule((*writeTask)(c))
}
