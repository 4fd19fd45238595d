package server

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pushgate/pushgate/netpoll"
	"github.com/pushgate/pushgate/wsproto"
)

// handshake reads the request head of a new connection and routes it:
// upgrades to /ws and /echo are answered here, on the raw connection,
// without net/http; any other request goes to the HTTP server with the
// bytes already read put back in front. A head over MaxHeaderBytes is a
// 431 whatever it asks for. It runs on its own goroutine, holding pc's
// admission slot, which it gives back unless net/http takes it over.
func (s *Server) handshake(pc *pendingConn) {
	defer s.endHandshake(pc)
	toHTTP := false
	defer func() {
		if !toHTTP {
			s.adm.release(pc)
		}
	}()

	bufp := s.headBufs.Get().(*[]byte)
	defer s.headBufs.Put(bufp)
	buf := *bufp
	n, headLen, err := wsproto.ReadHead(pc, buf)
	s.headRead(pc)
	_, target, _ := wsproto.RequestTarget(buf[:n])
	path, query := wsproto.SplitTarget(target)
	ep, upgrade := s.route(path)

	switch {
	case pc.shed.Load():
		return // closed and counted when it was shed
	case errors.Is(err, wsproto.ErrHeadTooLarge):
		s.refuse(pc, wsproto.WriteRefusal(pc, wsproto.ErrHeadersTooLarge))
		return
	case err != nil:
		s.headFailed(pc, n, err)
		return
	case !upgrade:
		pc.prefix = bytes.Clone(buf[:n])
		_ = pc.SetDeadline(time.Time{}) // net/http sets its own
		if toHTTP = s.httpLn.push(pc); !toHTTP {
			pc.Close()
		}
		return
	}
	if !s.adm.pin(pc) {
		return // shed just now
	}
	if ep == endpointEvents {
		s.stream(pc, buf[:headLen], query, buf[headLen:n])
		return
	}
	s.upgrade(pc, ep, buf[:headLen], query, buf[headLen:n])
}

// upgrade answers a WebSocket handshake whose head is complete and, if it
// is accepted, parks the connection. pc is pinned: not to be shed.
func (s *Server) upgrade(pc *pendingConn, ep endpoint, head, query, pending []byte) {
	// The descriptor is taken before the 101 is written: a connection the
	// server could not hold afterwards is refused instead.
	fd, err := netpoll.Dup(pc.Conn)
	if err != nil {
		s.log.Error("cannot hold a WebSocket connection", "remote", pc.RemoteAddr(), "err", err)
		s.adm.unpin(pc)
		s.refuse(pc, wsproto.WriteRefusal(pc, cannotHold(err)))
		return
	}
	u := s.upgraders[ep]
	if ep == endpointWS && s.cfg.Authorize != nil {
		withSlot := *u
		withSlot.Authorize = func(head []byte) (any, error) { return s.cfg.Authorize(head, fd, pc.RemoteAddr()) }
		u = &withSlot
	}
	hs, err := u.Upgrade(pc, head)
	if err != nil {
		unix.Close(fd)
		s.adm.unpin(pc)
		s.refuse(pc, err)
		return
	}
	// Closing the net.Conn takes the socket out of the Go runtime's
	// poller; the duplicate keeps it open.
	pc.Close()
	s.hsResults[wsproto.ResultOK].Inc()
	s.open(fd, ep, hs, query, pending)
}

// cannotHold is the answer to an upgrade whose descriptor the server could
// not take: 500 for a listener that has none, 503 for a transient failure
// (out of descriptors).
func cannotHold(err error) *wsproto.HandshakeError {
	if errors.Is(err, netpoll.ErrNoDescriptor) {
		return &wsproto.HandshakeError{Status: http.StatusInternalServerError, Reason: "this listener cannot hold WebSocket connections"}
	}
	return &wsproto.HandshakeError{Status: http.StatusServiceUnavailable, Reason: "the server cannot take more connections now"}
}

// headFailed handles a connection that ended or stalled before sending a
// whole request head.
func (s *Server) headFailed(nc net.Conn, n int, err error) {
	nc.Close()
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.hsResults[wsproto.ResultTimeout].Inc()
		s.log.Debug("handshake timed out", "remote", nc.RemoteAddr(), "bytes", n)
	case n == 0 && errors.Is(err, io.ErrUnexpectedEOF):
		// Connected and left without a byte: a TCP health check.
	default:
		s.hsResults[wsproto.ResultBadRequest].Inc()
		s.log.Debug("handshake aborted", "remote", nc.RemoteAddr(), "err", err)
	}
}

// refuse records a refused upgrade (its response is already written) and
// closes the connection.
func (s *Server) refuse(nc net.Conn, err error) {
	var he *wsproto.HandshakeError
	switch {
	case errors.As(err, &he):
		s.hsResults[he.Result()].Inc()
		s.log.Debug("upgrade refused", "remote", nc.RemoteAddr(), "status", he.Status, "reason", he.Reason)
		lingerClose(nc)
		return
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.hsResults[wsproto.ResultTimeout].Inc()
	}
	s.log.Debug("upgrade failed", "remote", nc.RemoteAddr(), "err", err)
	nc.Close()
}

// lingerClose ends a refused connection without a reset. Closing a socket
// with input still unread (the rest of an oversized head, say) makes the
// kernel send RST, which can destroy the response before the client reads
// it. So: half-close, drain what the client still sends (bounded by the
// handshake deadline already set and by 64 KiB), then close.
func lingerClose(nc net.Conn) {
	if hc, ok := nc.(interface{ CloseWrite() error }); ok && hc.CloseWrite() == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(nc, 64<<10))
	}
	nc.Close()
}

// open registers an upgraded connection and serves what it already sent.
func (s *Server) open(fd int, ep endpoint, hs wsproto.Handshake, query, pending []byte) {
	c := &Conn{srv: s, fd: int32(fd), ep: ep, compression: hs.Compression}
	now := s.now()
	c.seen.Store(now)
	c.wroteAt.Store(now)
	c.msgs.fill(s.msgRate, now)
	c.bytesIn.fill(s.byteRate, now)
	c.setFlag(flagReading, true) // this goroutine serves the first read
	s.conns.put(fd, c)
	s.m.ConnectionsOpen.Inc()
	s.transport[ep].open.Inc()
	s.m.ConnectionsAccepted.Inc()
	c.serve(pending, func() bool {
		s.handlers[ep].Open(c, hs, query)
		if err := s.readPoller.Add(fd, netpoll.Read, c.onReadable); err != nil {
			s.log.Error("registering connection with the poller", "err", err)
			c.finalize(ReasonInternal)
			return false
		}
		if s.draining.Load() {
			c.Close(ReasonShutdown, "server shutting down")
		}
		return true
	})
}

// connQueue is a net.Listener fed by the public listeners with the
// connections that carry plain HTTP requests.
type connQueue struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnQueue() *connQueue {
	return &connQueue{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) push(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return &net.TCPAddr{} }
