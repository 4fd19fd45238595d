package server

import (
	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/pushgate/pushgate/wsproto"
)

// The closing handshake, as pushgate runs it:
//
//   - The side that closes first sends a close frame; the other answers
//     with one. No data frame follows a close frame.
//   - Once our close frame is fully written we shut down our sending side
//     (FIN): the peer reads the close frame, then end of stream.
//   - The connection is finalized (descriptor closed) by the read task when
//     both close frames have passed, when the peer's TCP side ends, or when
//     the close timeout passes; in the last case the heartbeat "kicks" the
//     socket (shutdown of both sides) so that the read task wakes up.
//
// Only the read task closes the descriptor, so no other goroutine can ever
// touch a number the kernel has already given to a new connection.

// Close starts closing the connection with the close code of reason and a
// short text for the peer. It returns at once; frames already queued are
// sent before the close frame. (A slow consumer is the exception: past the
// queue bound, or with more than it waiting on a socket that took nothing
// for the pong timeout, its unstarted frames are dropped before it is
// closed with 1013.)
func (c *Conn) Close(reason CloseReason, text string) {
	c.closeWith(reason, reason.Code(), text)
}

// closeWith is Close with an explicit code, for errors from the frame
// reader.
func (c *Conn) closeWith(reason CloseReason, code ws.StatusCode, text string) {
	c.mu.Lock()
	c.closeCodeLocked(reason, code, text)
	c.mu.Unlock()
}

func (c *Conn) startCloseLocked(reason CloseReason, text string) {
	c.closeCodeLocked(reason, reason.Code(), text)
}

func (c *Conn) closeCodeLocked(reason CloseReason, code ws.StatusCode, text string) {
	if c.state.Load() != stateOpen {
		return
	}
	c.beginClosingLocked(reason)
	if c.ep == endpointEvents {
		c.queueCloseLocked(closeEvent(c.Encoding(), int(code), text))
		return
	}
	c.queueCloseLocked(wsproto.AppendCloseFrame(nil, code, text))
}

func (c *Conn) beginClosingLocked(reason CloseReason) {
	c.state.Store(stateClosing)
	c.reason = reason
	c.closeAt = c.srv.now()
}

// queueCloseLocked sends our close frame after whatever is queued. It
// bypasses the queue bound: it is the last frame.
func (c *Conn) queueCloseLocked(frame []byte) {
	setBit(&c.wbits, wCloseQueued, true)
	if c.out != nil {
		c.out.push(frame, false, false)
		return
	}
	c.writeLocked(frame)
}

// peerClose handles the peer's close frame: answer it (echoing its code,
// as RFC 6455 section 5.5.1 suggests) unless we closed first.
func (c *Conn) peerClose(payload []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	setBit(&c.wbits, wPeerClosed, true)
	if c.state.Load() != stateOpen {
		return
	}
	c.beginClosingLocked(ReasonPeerClosed)
	code, _ := wsproto.ParseClosePayload(payload)
	if code == 0 {
		c.queueCloseLocked(wsproto.AppendFrame(nil, ws.OpClose, nil))
		return
	}
	c.queueCloseLocked(wsproto.AppendCloseFrame(nil, code, ""))
}

// closeWrittenLocked runs once our close frame is fully written.
func (c *Conn) closeWrittenLocked() {
	setBit(&c.wbits, wCloseSent, true)
	if c.w(wPeerClosed) {
		// Both close frames have passed: wake the read task to finalize.
		c.kickLocked()
		return
	}
	_ = unix.Shutdown(int(c.fd), unix.SHUT_WR)
}

// brokenLocked handles a socket that failed a write: the peer is gone.
func (c *Conn) brokenLocked() {
	if c.state.Load() == stateOpen {
		c.beginClosingLocked(ReasonPeerGone)
	}
	if c.out != nil {
		c.releaseQueueLocked()
	}
	c.kickLocked()
}

// kickLocked shuts the socket down both ways, which makes it readable (end
// of stream), so the read task runs and finalizes the connection.
func (c *Conn) kickLocked() {
	if c.w(wKicked) || c.state.Load() == stateClosed {
		return
	}
	setBit(&c.wbits, wKicked, true)
	_ = unix.Shutdown(int(c.fd), unix.SHUT_RDWR)
}

// finalize closes the descriptor and releases the connection. Only the
// task holding flagReading calls it; fallback is the reason recorded if the
// connection was still open (the peer vanished).
func (c *Conn) finalize(fallback CloseReason) {
	s := c.srv
	c.mu.Lock()
	if c.state.Load() == stateClosed {
		c.mu.Unlock()
		return
	}
	reason := c.reason
	if c.state.Load() == stateOpen {
		reason = fallback
	}
	c.state.Store(stateClosed)
	if c.out != nil {
		c.releaseQueueLocked()
	}
	writeReg := c.w(wWriteReg)
	c.mu.Unlock()

	fd := int(c.fd)
	_ = s.readPoller.Remove(fd)
	if writeReg {
		_ = s.writePoller.Remove(fd)
	}
	// Out of the table before the number goes back to the kernel, which
	// may give it to the next accepted connection at once.
	s.conns.remove(fd, c)
	_ = unix.Close(fd)
	if c.rs != nil {
		c.releaseReader(c.rs)
	}
	s.m.ConnectionsOpen.Dec()
	s.transport[c.ep].open.Dec()
	s.closedBy[reason].Inc()
	s.handlers[c.ep].Closed(c)
	s.conns.signalIfEmpty()
}
