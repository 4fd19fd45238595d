package server

import (
	"errors"
	"sync/atomic"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/pushgate/pushgate/netpoll"
	"github.com/pushgate/pushgate/wsproto"
)

// Errors returned by Send.
var (
	ErrClosed       = errors.New("server: connection closed")
	ErrSlowConsumer = errors.New("server: outbound queue full, connection closed with 1013")
)

// maxIovecs bounds the frames one writev carries.
const maxIovecs = 64

// outQueue holds frames the socket has not taken yet. Frames are whole
// encoded frames, shared and never modified, so one broadcast frame can sit
// in many queues. A queue exists only while a connection is behind.
type outQueue struct {
	frames [][]byte
	head   int // frames[:head] are written
	off    int // bytes of frames[head] already written
	size   int // bytes not yet written
	iov    [][]byte
	total  *atomic.Int64 // bytes queued on all connections, for metrics
}

func (q *outQueue) push(frame []byte) {
	if q.head > 0 && len(q.frames) == cap(q.frames) {
		n := copy(q.frames, q.frames[q.head:])
		clear(q.frames[n:])
		q.frames, q.head = q.frames[:n], 0
	}
	q.frames = append(q.frames, frame)
	q.size += len(frame)
	q.total.Add(int64(len(frame)))
}

// vec returns the next frames to write, the first one cut at off.
func (q *outQueue) vec() [][]byte {
	q.iov = q.iov[:0]
	for i := q.head; i < len(q.frames) && len(q.iov) < maxIovecs; i++ {
		q.iov = append(q.iov, q.frames[i])
	}
	q.iov[0] = q.iov[0][q.off:]
	return q.iov
}

// advance records that n more bytes were written.
func (q *outQueue) advance(n int) {
	q.size -= n
	q.total.Add(-int64(n))
	for n > 0 {
		rest := len(q.frames[q.head]) - q.off
		if n < rest {
			q.off += n
			return
		}
		n -= rest
		q.frames[q.head] = nil
		q.head++
		q.off = 0
	}
}

// dropUnstarted discards the frames not begun yet and returns how many.
// A frame already partly written stays: cutting it would corrupt the stream.
func (q *outQueue) dropUnstarted() int {
	keep := q.head
	if q.off > 0 {
		keep++
	}
	dropped, bytes := len(q.frames)-keep, 0
	for _, f := range q.frames[keep:] {
		bytes += len(f)
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
// not be modified. A connection whose queue would exceed the configured
// bound is closed with 1013 and Send returns ErrSlowConsumer.
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

// Queue appends frame to the connection's outbound queue without writing
// it; Flush writes what is queued. A delivery loop queues each
// connection's frames of many messages and flushes once, so they leave in
// one writev instead of one write each. Frames queued by Queue stay until
// Flush: every Queue must be followed by a Flush. The queue bound and
// ErrSlowConsumer apply as for Send.
func (c *Conn) Queue(frame []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.Load() != stateOpen {
		return ErrClosed
	}
	if c.out == nil {
		c.srv.m.MessagesSent.Inc()
		c.out = c.srv.queues.Get().(*outQueue)
		c.out.push(frame)
		return nil
	}
	return c.sendLocked(frame)
}

// Flush writes the frames Queue left, unless a writability event is
// already awaited, which will.
func (c *Conn) Flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.out != nil && !c.writeArmed && c.state.Load() != stateClosed {
		c.flushLocked()
	}
}

func (c *Conn) sendLocked(frame []byte) error {
	if c.state.Load() != stateOpen {
		return ErrClosed
	}
	s := c.srv
	s.m.MessagesSent.Inc()
	if c.out == nil {
		c.writeLocked(frame)
		return nil
	}
	if c.out.size+len(frame) > s.cfg.OutboundQueueBytes {
		s.m.SlowConsumers.Inc()
		s.m.DroppedFrames.Add(float64(c.out.dropUnstarted() + 1))
		c.startCloseLocked(ReasonSlowConsumer, "slow consumer")
		return ErrSlowConsumer
	}
	c.out.push(frame)
	return nil
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
	} else {
		n = 0
	}
	switch {
	case n == len(frame):
		if c.closeQueued {
			c.closeWrittenLocked()
		}
	case err == nil || err == unix.EAGAIN:
		c.out = c.srv.queues.Get().(*outQueue)
		c.out.push(frame)
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
			c.out.advance(n)
		}
		switch {
		case c.out.size == 0:
			c.releaseQueueLocked()
			if c.closeQueued {
				c.closeWrittenLocked()
			}
		case err == unix.EINTR || err == nil:
		case err == unix.EAGAIN:
			c.armWriteLocked()
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
}

// armWriteLocked asks the write poller for one writability event.
func (c *Conn) armWriteLocked() {
	c.writeArmed = true
	var err error
	if c.writeReg {
		err = c.srv.writePoller.Rearm(int(c.fd), netpoll.Write)
	} else {
		err = c.srv.writePoller.Add(int(c.fd), netpoll.Write, c.onWritable)
		c.writeReg = err == nil
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
	c.writeArmed = false
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
