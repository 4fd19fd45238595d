package server

import (
	"time"

	"github.com/pushgate/pushgate/wsproto"
)

// The heartbeat is one goroutine for all connections, not a timer each. On
// every tick it advances a coarse clock (milliseconds since start, wrapping
// every 49 days; all comparisons are differences) and sweeps the
// connection table:
//
//   - a connection silent for PingInterval gets a ping (and AppPing, if
//     it asked: Conn.WantAppPing); one that asked for AppPing and was
//     sent nothing for PingInterval gets AppPing, however much it sends;
//   - one still silent PongTimeout after its ping is closed (1001) and
//     kicked: a dead peer or a half-open TCP connection. One whose queue
//     the socket goes on taking bytes of is a peer that reads, with its
//     ping perhaps behind those bytes: its time runs from when the queue
//     empties or the socket stops taking bytes;
//   - one whose closing handshake outlived CloseTimeout is kicked;
//   - one whose token expired (SetExpiry) is closed with 4001;
//   - one that began a message MessageTimeout ago and has not finished it
//     is closed with 1008;
//   - one whose reading paused for its byte rate is resumed once its debt
//     is paid (limits.go);
//   - one whose socket has taken nothing for PongTimeout while more than
//     OutboundQueueBytes waits for it (paced replays included, which the
//     bound does not count while the socket takes them) is closed with
//     1013 as a slow consumer;
//   - an event stream (stream.go), which cannot answer a ping, is sent a
//     comment (or a ping event) once it was sent nothing for
//     PingInterval; the kernel finds its peer gone.

// now is the coarse clock.
func (s *Server) now() uint32 { return s.clock.Load() }

// ms converts a duration to clock units.
func ms(d time.Duration) uint32 { return uint32(d / time.Millisecond) }

// heartbeatTick is the sweep period: fine enough for the shortest timeout.
func heartbeatTick(c Config) time.Duration {
	t := min(c.PingInterval, c.PongTimeout, c.CloseTimeout, c.MessageTimeout) / 4
	return min(max(t, 10*time.Millisecond), time.Second)
}

func (s *Server) runHeartbeat() {
	defer s.wg.Done()
	start := time.Now()
	t := time.NewTicker(heartbeatTick(s.cfg))
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			now := uint32(time.Since(start)/time.Millisecond) + 1
			if now == 0 {
				now = 1 // 0 means "never" in pingAt
			}
			s.clock.Store(now)
			wall := uint32(time.Now().Unix())
			s.conns.each(func(c *Conn) { c.heartbeat(now, wall) })
		}
	}
}

func (c *Conn) heartbeat(now, wall uint32) {
	s := c.srv
	flags := c.flags.Load()
	if flags&flagThrottled != 0 {
		c.resumeIfPaid(now)
	}
	expired, overdue, stuck, quiet := false, false, false, false
	switch c.state.Load() {
	case stateClosed:
		return
	case stateOpen:
		exp := c.expires.Load()
		expired = exp != 0 && wall >= exp
		if expired && s.cfg.Expired != nil {
			// The handler may renew it (its own call to SetExpiry later);
			// a SetExpiry that came first is looked at next tick.
			expired = c.expires.CompareAndSwap(exp, 0) && !s.cfg.Expired(c)
		}
		pa := c.partialAt.Load()
		overdue = pa != 0 && now-pa >= s.msgTimeoutMs && !c.hasFlag(flagThrottled) // resumeIfPaid may have cleared it
		wrote := now - c.wroteAt.Load()
		stuck = flags&flagBehind != 0 && wrote >= s.pongMs
		if c.ep == endpointEvents {
			// A stream is never pinged for an answer: only kept busy.
			quiet = flags&flagBehind == 0 && wrote >= s.pingMs
			if !expired && !stuck && !quiet {
				return
			}
			break
		}
		quiet = flags&(flagAppPing|flagBehind) == flagAppPing && wrote >= s.pingMs
		if !expired && !overdue && !stuck && !quiet && now-c.seen.Load() < s.pingMs && c.pingAt.Load() == 0 {
			return // the common case, without a lock
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state.Load() {
	case stateOpen:
		if expired {
			c.startCloseLocked(ReasonTokenExpired, "token expired")
			return
		}
		if overdue {
			// Its reader is dropped by the next read, or when the close
			// timeout kicks the socket.
			c.startCloseLocked(ReasonMessageTimeout, "message not completed in time")
			return
		}
		if stuck && c.out != nil && c.out.size > s.cfg.OutboundQueueBytes {
			// Its socket has taken nothing for PongTimeout while more than
			// the bound waits, paced replays included: it has stopped
			// reading, and must not keep what it asked for queued.
			_ = c.slowLocked(0)
			return
		}
		if c.ep == endpointEvents {
			if c.out == nil && now-c.wroteAt.Load() >= s.pingMs {
				s.m.HeartbeatPings.Inc()
				if c.hasFlag(flagAppPing) {
					_ = c.sendLocked(streamPing[c.Encoding()])
				} else {
					_ = c.sendLocked(streamComment[c.Encoding()])
				}
			}
			return
		}
		seen, at := c.seen.Load(), c.pingAt.Load()
		if at != 0 && int32(seen-at) >= 0 {
			// Bytes came after the ping: it was answered, whenever this
			// sweep runs. (Waiting for a sweep within PingInterval of the
			// answer would evict a client that answered if sweeps lag.)
			at = 0
			c.pingAt.Store(0)
		}
		if now-seen < s.pingMs {
			c.pingAt.Store(0)
			if quiet && s.cfg.AppPing != nil {
				// It talks but is sent nothing: its application, which
				// cannot see our silence from a dead link, gets a ping.
				_ = c.sendLocked(s.cfg.AppPing)
			}
			return
		}
		if at == 0 {
			c.pingAt.Store(now)
			s.m.HeartbeatPings.Inc()
			if c.sendLocked(wsproto.PingFrame) == nil && c.hasFlag(flagAppPing) && s.cfg.AppPing != nil {
				_ = c.sendLocked(s.cfg.AppPing)
			}
			return
		}
		if c.out != nil && now-c.wroteAt.Load() < s.pongMs {
			// The socket took bytes of its queue within PongTimeout: the
			// peer reads (its window opens), and its ping may wait
			// behind those bytes, which it must read before it can
			// answer. Alive; its pong's time runs from when the queue
			// empties or the socket stops taking bytes. (A dead peer's
			// socket stops once its buffers are full:
			// TestHeartbeatEvictsStalledReader.)
			c.pingAt.Store(now)
			return
		}
		if now-at >= s.pongMs {
			s.m.Evictions.Inc()
			c.startCloseLocked(ReasonHeartbeat, "ping timeout")
			c.kickLocked()
		}
	case stateClosing:
		if now-c.closeAt >= s.closeMs {
			c.kickLocked()
		}
	}
}
