package server

import (
	"errors"
	"io"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/pushgate/pushgate/netpoll"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/wsproto"
)

// Connection states. state only moves forward.
const (
	stateOpen    uint32 = iota
	stateClosing        // a close frame is queued or sent; no more data goes out
	stateClosed         // the descriptor is closed
)

// endpoint is the path a connection was upgraded on, or the event
// stream it opened.
type endpoint uint8

const (
	endpointWS endpoint = iota
	endpointEcho
	endpointEvents // GET /events: Server-Sent Events (stream.go)
	numEndpoints
)

// maxReadsPerTask bounds the reads one task makes before it re-arms the
// poller and lets other connections have the worker.
const maxReadsPerTask = 16

// Conn is one WebSocket connection. While parked it is this struct and its
// socket: no goroutine, timer or buffer. A poller event runs a task on the
// worker pool that reads what arrived and re-arms the poller.
//
// Ownership: the task holding reading (flagReading) owns the read side
// (rs, rbits, strikes) and is the only one that may close the descriptor
// (finalize). Everything that writes to the socket holds mu.
//
// Layout: a parked connection's size is what the gateway is about, so the
// Conn stays within the 112-byte size class (TestConnSize): flags are bits,
// and what one read task counts is in its pooled readState, not here. Its
// first 64 bytes hold what a write and the heartbeat's sweep read, so that
// fan-out and the sweep touch one or two cache lines per connection (a
// 112-byte object starts at 0, 16, 32 or 48 bytes into a line).
type Conn struct {
	srv     *Server
	out     *outQueue // bytes the socket has not taken yet; nil if none (under mu)
	mu      sync.Mutex
	fd      int32
	state   atomic.Uint32 // written under mu
	flags   atomic.Uint32 // flagThrottled, flagBehind, flagAppPing, flagReading
	wroteAt atomic.Uint32 // clock of the last write the socket took bytes of
	seen    atomic.Uint32 // clock when bytes last arrived
	pingAt  atomic.Uint32 // clock when the unanswered ping went out, or 0
	expires atomic.Uint32 // Unix second at which it is closed (4001), or 0
	// clock when rs began holding a partial message, or 0
	partialAt atomic.Uint32
	// Under mu: the write side and the closing handshake (out too).
	closeAt uint32 // clock when closing began
	wbits   uint8  // wWriteReg, wWriteArmed, wCloseQueued, wCloseSent, wPeerClosed, wKicked
	reason  CloseReason

	data atomic.Value    // the Handler's state for this connection (SetData)
	rs   *wsproto.Reader // partial frame or message; nil when idle

	// Read-side limits (limits.go); the read task owns them, but for the
	// atomics and, while throttled (no read task), bytesIn.
	msgs        bucket // message rate (/ws; a stream's posted ops, under mu)
	bytesIn     bucket // byte rate (/ws)
	held        uint32 // bytes rs holds, counted in the server's partial budget
	ep          endpoint
	compression bool  // permessage-deflate (/ws, /echo), or a gzip-encoded stream
	rbits       uint8 // rReadDead, rThrottle (the read task's)
	strikes     uint8 // messages in a row refused for the message rate (a stream's: under mu)
}

// Bits of Conn.wbits, under mu.
const (
	wWriteReg    uint8 = 1 << iota // registered with the write poller
	wWriteArmed                    // a writability event is awaited; it will flush out
	wCloseQueued                   // our close frame is queued or sent
	wCloseSent                     // our close frame is fully written
	wPeerClosed                    // the peer's close frame arrived
	wKicked                        // the socket was shut down to end the connection
)

// Bits of Conn.rbits, the read task's.
const (
	rReadDead uint8 = 1 << iota // the frame reader failed; input is discarded
	rThrottle                   // this read went over the byte rate: stop reading after it
)

func (c *Conn) w(b uint8) bool { return c.wbits&b != 0 }
func (c *Conn) r(b uint8) bool { return c.rbits&b != 0 }

func setBit(bits *uint8, b uint8, on bool) {
	if on {
		*bits |= b
	} else {
		*bits &^= b
	}
}

// Flags the heartbeat reads without the lock (one word: a parked
// connection's size is what the gateway is about).
const (
	flagThrottled uint32 = 1 << iota // reading paused for the byte rate; the heartbeat resumes it
	flagBehind                       // a writability event is awaited
	flagAppPing                      // pinged with Config.AppPing too
	flagReading                      // a read task is scheduled or running
)

func (c *Conn) setFlag(f uint32, on bool) {
	if on {
		c.flags.Or(f)
	} else {
		c.flags.And(^f)
	}
}

func (c *Conn) hasFlag(f uint32) bool { return c.flags.Load()&f != 0 }

// errPeerClosed stops the frame reader after a close frame.
var errPeerClosed = errors.New("server: peer sent close")

// Encoding is how the connection takes envelopes: WebSocket frames,
// compressed when it negotiated permessage-deflate, or events of a
// Server-Sent Events stream, gzip-encoded when it asked.
func (c *Conn) Encoding() protocol.Encoding {
	if c.ep == endpointEvents {
		if c.compression {
			return protocol.SSEGzip
		}
		return protocol.SSE
	}
	if c.compression {
		return protocol.WebSocketDeflate
	}
	return protocol.WebSocket
}

// SetData keeps the Handler's state for the connection; Data returns it,
// nil before. Any goroutine may read it (Server.Data finds it by slot).
func (c *Conn) SetData(v any) { c.data.Store(v) }

// Data returns what SetData stored.
func (c *Conn) Data() any { return c.data.Load() }

// Slot names the connection among the server's open connections: a small
// integer (its descriptor), reused once it has closed. Server.Data finds
// a connection's data by it.
func (c *Conn) Slot() int { return int(c.fd) }

// SetExpiry makes the heartbeat close the connection with 4001 "token
// expired" once t has passed (within a heartbeat tick); the zero time
// clears it. It may be called again, to refresh.
func (c *Conn) SetExpiry(t time.Time) {
	var sec uint32
	if !t.IsZero() {
		// Rounded up to the second the heartbeat compares: never before t.
		// 0 means "none"; Unix seconds fit until 2106.
		sec = uint32(max(t.Add(time.Second-1).Unix(), 1))
	}
	c.expires.Store(sec)
}

// WantAppPing makes the heartbeat send the connection Config.AppPing, a
// frame its application sees, each time it sends a ping: browsers cannot
// see WebSocket pings, so a page that gets no frame for a while can tell
// the link is dead. It costs no timer: the pings are the heartbeat's.
func (c *Conn) WantAppPing() { c.setFlag(flagAppPing, true) }

// readTask is the pool task that serves a readable connection.
type readTask Conn

func (t *readTask) Run() { (*Conn)(t).serve(nil, nil) }

// serve runs first (if any; false ends there) and serveRead, containing a
// Handler's panic:
// the connection is closed with 1011 and released, so a bug in handling
// one connection neither leaks it nor stops the process. The caller holds
// flagReading.
func (c *Conn) serve(pending []byte, first func() bool) {
	defer func() {
		if v := recover(); v != nil {
			c.srv.log.Error("connection handler panicked; closing the connection", "fd", c.fd, "panic", v, "stack", string(debug.Stack()))
			c.closeWith(ReasonInternal, wsproto.CloseInternal, "internal error")
			c.finalize(ReasonInternal)
		}
	}()
	if first != nil && !first() {
		return
	}
	c.serveRead(pending)
}

// onReadable is the read poller's callback: it schedules and returns.
func (c *Conn) onReadable(ev netpoll.Event) {
	if ev&netpoll.EventClosed != 0 {
		return
	}
	c.srv.m.PollerEvents.Inc()
	// easygo finds callbacks by descriptor number, so an event can reach a
	// connection twice; the flag keeps its reads to one task at a time.
	if c.flags.Or(flagReading)&flagReading == 0 {
		c.srv.pool.Schedule((*readTask)(c))
	}
}

// serveRead consumes pending (bytes read along with the handshake) and then
// what the socket holds, until it would block. It then finalizes the
// connection or re-arms the poller. The caller holds flagReading.
func (c *Conn) serveRead(pending []byte) {
	s := c.srv
	t := s.readStates.Get().(*readState)
	t.c, t.work = c, 0
	if len(pending) > 0 {
		c.consume(t, pending)
	}
	buf := t.buf
	ended, dead := false, false
	for range maxReadsPerTask {
		if c.r(rReadDead) {
			// What it sends is not handled (closing after an error, or
			// mid-message): dropped in the kernel, uncopied, but read to
			// its end so that the peer's writes finish and it reads our
			// close frame. All closing connections together are read no
			// faster than discardRate: past it they wait for the next
			// heartbeat tick, and their peers' writes block. (Copied
			// out at full speed, the 1 MiB messages of 300 reconnecting
			// holders took the healthy client's p99 past 500ms:
			// TestPartialMessages; dropped at full speed, they came back
			// faster, and bombs took it there: TestCompressionBombs.)
			budget := s.takeDiscard()
			if budget == 0 {
				dead = true
				break
			}
			n, err := discard(int(c.fd), budget)
			s.returnDiscard(budget - max(n, 0))
			if n > 0 {
				c.seen.Store(s.now())
				s.m.BytesReceived.Add(float64(n))
				break // drained, or yielding: the others come first
			}
			if err == unix.EINTR {
				continue
			}
			ended = err != unix.EAGAIN
			break
		}
		n, err := unix.Read(int(c.fd), buf)
		if n > 0 {
			c.seen.Store(s.now())
			s.m.BytesReceived.Add(float64(n))
			c.consume(t, buf[:n])
			if n < len(buf) || c.r(rThrottle) || t.work >= maxWorkPerTask {
				break // drained (a new arrival re-fires after Rearm), paused or yielding
			}
			continue
		}
		if err == unix.EINTR {
			continue
		}
		ended = err != unix.EAGAIN // EOF or a socket error
		break
	}
	t.c = nil
	s.readStates.Put(t)
	if ended || c.handshakeDone() {
		c.finalize(ReasonPeerGone)
		return
	}
	if dead {
		// Over discardRate: read again once a heartbeat tick.
		s.m.DrainPauses.Inc()
		c.setFlag(flagThrottled, true)
		return
	}
	if c.r(rThrottle) {
		// Over the byte rate: not read (reading stays held, the poller
		// unarmed) until the heartbeat finds the debt paid.
		setBit(&c.rbits, rThrottle, false)
		s.m.ReadThrottles.Inc()
		c.setFlag(flagThrottled, true)
		return
	}
	c.setFlag(flagReading, false)
	// A failure here means the poller is closed: Shutdown closes the rest.
	_ = s.readPoller.Rearm(int(c.fd), netpoll.Read)
}

// discardBytes is how much one discard may drop; discardRate how fast
// all closing connections together may be read (32 MiB at once).
const discardBytes = 1 << 20

var discardRate = rate{perSecond: 64 << 20, burst: 32 << 20}

// takeDiscard takes what one discard may drop from the node's budget: up
// to discardBytes, 0 when it is spent.
func (s *Server) takeDiscard() int {
	s.discardMu.Lock()
	defer s.discardMu.Unlock()
	n := min(s.discardBudget.refill(discardRate, s.now()), discardBytes)
	if n <= 0 {
		return 0
	}
	s.discardBudget.tokens -= n
	return int(n)
}

// returnDiscard gives back what a discard did not use.
func (s *Server) returnDiscard(n int) {
	if n <= 0 {
		return
	}
	s.discardMu.Lock()
	s.discardBudget.tokens = min(s.discardBudget.tokens+int32(n), discardRate.burst)
	s.discardMu.Unlock()
}

// discard drops up to n bytes of what the socket holds, without copying
// them (MSG_TRUNC on TCP), and returns how many; io.EOF is the end of
// stream.
func discard(fd, n int) (int, error) {
	r, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), 0, uintptr(n), unix.MSG_TRUNC|unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	if r == 0 {
		return 0, io.EOF
	}
	return int(r), nil
}

// consume feeds bytes to the frame reader, keeping the reader on the
// connection only while it holds something partial. t is the read task's
// state.
func (c *Conn) consume(t *readState, p []byte) {
	if c.r(rReadDead) {
		return
	}
	s := c.srv
	if c.ep == endpointEvents {
		// An event stream's client sends nothing after its request (it
		// leaves by closing): bytes here are another request, pipelined
		// on a response that never ends. Refused, and nothing is read
		// after them.
		setBit(&c.rbits, rReadDead, true)
		s.log.Debug("closing event stream: the client sent bytes after its request", "fd", c.fd, "bytes", len(p))
		c.Close(ReasonProtocol, "an event stream takes no request bytes")
		return
	}
	if c.rs != nil && c.rs.Held() > 0 && c.state.Load() != stateOpen {
		// Closing: the message in progress will never be handled. Drop it
		// and what follows rather than hold it through the closing
		// handshake (which then ends at the close timeout).
		setBit(&c.rbits, rReadDead, true)
		c.releaseReader(c.rs)
		return
	}
	r := c.rs
	if r == nil {
		r = s.readers.Get().(*wsproto.Reader)
	}
	opts := wsproto.Options{MaxMessageSize: s.cfg.MaxMessageSize, Compression: c.compression}
	if c.ep == endpointWS {
		opts.MaxInflateRatio = s.cfg.MaxInflateRatio
	}
	t.completed = false
	err := r.Feed(p, opts, t)
	if err == nil && !r.Idle() {
		if c.rs == nil {
			s.partial.Add(1)
		}
		if c.rs == nil || t.completed {
			// The message in progress began after the last one completed:
			// its time runs from here.
			c.partialAt.Store(max(s.now(), 1))
		}
		c.rs = r
		c.holdPartial()
		return
	}
	c.releaseReader(r)
	if err == nil {
		return
	}
	setBit(&c.rbits, rReadDead, true)
	var ce *wsproto.CloseError
	switch {
	case errors.Is(err, errPeerClosed), errors.Is(err, errRateClosed):
	case errors.As(err, &ce):
		s.log.Debug("closing connection", "fd", c.fd, "code", int(ce.Code), "reason", ce.Reason)
		c.closeWith(reasonFor(ce.Code), ce.Code, ce.Reason)
	default:
		s.log.Warn("closing connection", "fd", c.fd, "err", err)
		c.closeWith(ReasonInternal, wsproto.CloseInternal, "internal error")
	}
}

// releaseReader returns r, the connection's frame reader or a fresh one,
// to the pool.
func (c *Conn) releaseReader(r *wsproto.Reader) {
	if c.rs != nil {
		c.srv.partial.Add(-1)
		c.rs = nil
		c.partialAt.Store(0)
		c.releaseHeld()
	}
	r.Reset()
	c.srv.readers.Put(r)
}

// handshakeDone reports whether both close frames have passed, so the TCP
// connection can go.
func (c *Conn) handshakeDone() bool {
	if c.state.Load() == stateOpen {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w(wPeerClosed) && c.w(wCloseSent)
}

// readState is one read task's: its buffer and what it counts, pooled
// (Server.readStates) rather than kept in every parked Conn. It is the
// frame reader's Handler for the task's connection.
type readState struct {
	c         *Conn
	buf       []byte // readBufferSize
	work      uint32 // message bytes this task handled
	completed bool   // a message completed during this Feed
}

func (t *readState) HandleMessage(op ws.OpCode, payload []byte) error {
	c := t.c
	if c.state.Load() != stateOpen {
		return nil // after our close frame, data is discarded
	}
	c.srv.m.MessagesReceived.Inc()
	t.completed = true
	t.work += uint32(min(len(payload), maxWorkPerTask))
	if c.admitMessage(len(payload)) {
		c.srv.handlers[c.ep].Message(c, op, payload)
	} else if c.strikes > MaxRateStrikes {
		return errRateClosed
	}
	return nil
}

func (t *readState) HandleControl(op ws.OpCode, payload []byte) error {
	c := t.c
	switch op {
	case ws.OpPing:
		_ = c.Send(wsproto.AppendFrame(nil, ws.OpPong, payload))
	case ws.OpClose:
		c.peerClose(payload)
		return errPeerClosed
	}
	return nil // unsolicited pongs are ignored; any bytes count as life
}
