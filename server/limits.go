package server

import (
	"errors"

	"github.com/pushgate/pushgate/netpoll"
)

// Limits on what one client may make the server hold or do, each checked
// where the work happens, with no goroutine, timer or buffer per connection:
//
//   - Message rate (Config.ClientMessageRate, /ws and the ops an event
//     stream's client posts: AdmitCommand): a token bucket of messages. A message over it is dropped and the Handler told
//     (RateLimitHandler: pushgate.v1 answers "rate_limited"); after
//     MaxRateStrikes such messages in a row the connection is closed (1008)
//     and nothing more it sends is handled: its read ends there, as after
//     a protocol error.
//   - Byte rate (Config.ClientBytesRate, /ws only): a token bucket of
//     message bytes after decompression, which may go into debt by one
//     read's messages. A connection in debt is not read (its read task
//     ends without re-arming the poller, so TCP pushes back on the client)
//     until the heartbeat finds its debt paid and re-arms it.
//   - Work per read task (maxWorkPerTask): a task stops reading after that
//     many message bytes and re-arms, so the poller queues the connection
//     behind the others: a client that sends a lot, or compressed bombs,
//     shares the workers instead of holding one.
//   - Partial messages: every byte a frame reader holds for a message in
//     progress counts against Config.MaxPartialBytes, node-wide; the
//     connection whose message would pass it is closed (1013). A message
//     begun must be finished within Config.MessageTimeout (1008).

// MaxRateStrikes is how many messages in a row a connection may send over
// its message rate, each refused, before it is closed.
const MaxRateStrikes = 10

// maxWorkPerTask bounds the message bytes (after decompression) one read
// task handles before it yields the worker.
const maxWorkPerTask = 256 << 10

// RateLimitHandler is a Handler told of each message a connection sent
// over its message rate (the message is dropped), with how many in a row
// it refused, so that it can answer in order with its other replies. Past
// MaxRateStrikes it must close the connection with ReasonRateLimited, after
// those replies. Without it the server closes the connection itself past
// MaxRateStrikes, and drops the messages before that but for the metric.
type RateLimitHandler interface {
	RateLimited(c *Conn, strikes int)
}

// bucket is a token bucket on the server's coarse clock (milliseconds): 8
// bytes, no lock (one owner at a time), no timer. Tokens may go negative:
// a debt paid back as the bucket refills.
type bucket struct {
	tokens int32
	at     uint32 // clock of the last refill
}

// rate is a bucket's refill rate per second and its size; a rate of 0 or
// less means no limit.
type rate struct {
	perSecond int64
	burst     int32
}

func (r rate) on() bool { return r.perSecond > 0 }

// fill starts b full at now.
func (b *bucket) fill(r rate, now uint32) {
	b.tokens, b.at = r.burst, now
}

// refill adds what accrued since the last refill, keeping the remainder
// of a token for next time, and returns the tokens.
func (b *bucket) refill(r rate, now uint32) int32 {
	elapsed := int64(now - b.at)
	gained := elapsed * r.perSecond / 1000
	if gained == 0 {
		return b.tokens
	}
	if t := int64(b.tokens) + gained; t < int64(r.burst) {
		b.tokens = int32(t)
		b.at += uint32(gained * 1000 / r.perSecond)
	} else {
		b.tokens, b.at = r.burst, now
	}
	return b.tokens
}

// take takes n tokens if the bucket holds them.
func (b *bucket) take(r rate, now uint32, n int32) bool {
	if b.refill(r, now) < n {
		return false
	}
	b.tokens -= n
	return true
}

// spend takes n tokens whatever the bucket holds, and reports whether it
// is in debt after.
func (b *bucket) spend(r rate, now uint32, n int32) (inDebt bool) {
	b.refill(r, now)
	b.tokens = max(b.tokens-n, -r.burst)
	return b.tokens < 0
}

// errRateClosed stops the frame reader of a connection closed for its
// message rate: what it sent after is not handled (a flood would
// otherwise have each of its messages refused, and answered, in turn).
var errRateClosed = errors.New("server: closed for its message rate")

// admitMessage applies the message and byte rates to a message of n bytes
// on /ws, in the read task. It reports whether the message is to be
// handled; a refused one has been answered or has closed the connection.
func (c *Conn) admitMessage(n int) bool {
	s := c.srv
	if c.ep != endpointWS {
		return true
	}
	now := s.now()
	if s.msgRate.on() && !c.msgs.take(s.msgRate, now, 1) {
		s.m.RateLimited.Inc()
		c.strikes = min(c.strikes+1, MaxRateStrikes+1)
		if h, ok := s.handlers[c.ep].(RateLimitHandler); ok {
			h.RateLimited(c, int(c.strikes))
		} else if c.strikes > MaxRateStrikes {
			c.Close(ReasonRateLimited, "rate limit exceeded")
		}
		return false
	}
	c.strikes = 0
	if s.byteRate.on() && c.bytesIn.spend(s.byteRate, now, int32(min(n, 1<<30))) {
		setBit(&c.rbits, rThrottle, true) // stop reading after this read
	}
	return true
}

// AdmitCommand applies the message rate to an op an event stream's
// client sent by POST (its stream itself takes no input, so its bucket is
// free for them). It reports whether the op is to be run and, when not,
// how many in a row were refused: past MaxRateStrikes the stream's
// handler closes it, as a WebSocket's. It is false on other connections.
func (c *Conn) AdmitCommand() (ok bool, strikes int) {
	s := c.srv
	if c.ep != endpointEvents {
		return false, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !s.msgRate.on() || c.msgs.take(s.msgRate, s.now(), 1) {
		c.strikes = 0
		return true, 0
	}
	s.m.RateLimited.Inc()
	c.strikes = min(c.strikes+1, MaxRateStrikes+1)
	return false, int(c.strikes)
}

// holdPartial accounts for what the connection's frame reader holds after
// a read, against the node-wide budget, and closes the connection when
// the budget is spent. The read task calls it.
func (c *Conn) holdPartial() {
	s := c.srv
	held := 0
	if c.rs != nil {
		held = c.rs.Held()
	}
	grew := held - int(c.held)
	if grew == 0 {
		return
	}
	c.held = uint32(held)
	total := s.partialBytes.Add(int64(grew))
	if grew > 0 && total > int64(s.cfg.MaxPartialBytes) {
		s.log.Warn("partial messages are over --max-partial-bytes; closing the connection that would grow them",
			"fd", c.fd, "held", held, "total", total)
		setBit(&c.rbits, rReadDead, true)
		c.releaseReader(c.rs)
		c.Close(ReasonPartialBudget, "server busy: too many partial messages")
	}
}

// releaseHeld gives back what the connection's reader held.
func (c *Conn) releaseHeld() {
	if c.held > 0 {
		c.srv.partialBytes.Add(-int64(c.held))
		c.held = 0
	}
}

// resumeIfPaid re-arms a connection whose reading paused for its byte rate
// once its debt is paid; the heartbeat calls it. While paused no read task
// exists, and reading stays held, so the heartbeat is the only one to
// touch the bucket.
func (c *Conn) resumeIfPaid(now uint32) {
	s := c.srv
	if c.bytesIn.refill(s.byteRate, now) < 0 {
		return
	}
	if c.partialAt.Load() != 0 {
		// The time it was not read does not count against its message.
		c.partialAt.Store(max(now, 1))
	}
	c.setFlag(flagThrottled, false)
	c.setFlag(flagReading, false)
	// A failure means the poller is closed: Shutdown closes the rest.
	_ = s.readPoller.Rearm(int(c.fd), netpoll.Read)
}
