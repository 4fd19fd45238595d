package attack

import (
	"context"
	"net/url"
	"strings"
	"time"

	"github.com/gobwas/ws"
)

// Attacks on presence (the gateway's --presence channels): every join and
// leave is an event fanned out to the channel's subscribers, and a
// presence op answers with up to --presence-max-list clients and their
// info, so a client that comes and goes, or asks, makes the gateway send
// to everyone else.

// Churn: each connection upgrades with query (channels=<a presence
// channel>, and an info) and closes at once, again and again as fast as
// the gateway upgrades it: a reconnect storm on one channel, each
// upgrade a join and each close a leave.
func (t *Target) Churn(ctx context.Context, n int, query string, st *Stats) {
	t.swarm(ctx, n, st, dialOpts{query: query}, func(context.Context, *Conn, int) {}) // swarm closes it
}

// Resubscribe: each connection subscribes to channel and unsubscribes
// again, as fast as the gateway reads, reading the replies, and
// reconnects when closed (for its message rate): a join and a leave per
// pair of ops.
func (t *Target) Resubscribe(ctx context.Context, n int, channel, query string, st *Stats) {
	pair := append(Text(`{"op":"subscribe","channel":"`+channel+`"}`), Text(`{"op":"unsubscribe","channel":"`+channel+`"}`)...)
	batch, k := repeat(pair)
	t.swarm(ctx, n, st, dialOpts{query: query}, func(ctx context.Context, c *Conn, _ int) {
		c.pump(ctx, st, func(context.Context) ([]byte, int) { return batch, 2 * k })
	})
}

// Members: each connection upgrades with query (channels=<a presence
// channel>, and an info) and stays, reading what the gateway sends (and
// counting its bytes in st.Received). With op set it sends op rate
// times a second, or, with rate 0, as fast as the gateway reads. It
// reconnects when closed.
func (t *Target) Members(ctx context.Context, n int, query, op string, rate float64, st *Stats) {
	o := dialOpts{query: query}
	switch {
	case op == "":
		t.swarm(ctx, n, st, o, func(ctx context.Context, c *Conn, _ int) {
			c.pump(ctx, st, func(context.Context) ([]byte, int) { return nil, 0 })
		})
	case rate <= 0:
		batch, k := repeat(Text(op))
		t.swarm(ctx, n, st, o, func(ctx context.Context, c *Conn, _ int) {
			c.pump(ctx, st, func(context.Context) ([]byte, int) { return batch, k })
		})
	default:
		frame := Text(op)
		every := time.Duration(float64(time.Second) / rate)
		t.swarm(ctx, n, st, o, func(ctx context.Context, c *Conn, _ int) {
			c.pump(ctx, st, func(ctx context.Context) ([]byte, int) {
				sleep(ctx, every)
				return frame, 1
			})
		})
	}
}

// Info is an info=<JSON object> query parameter (open mode's own info)
// whose object is size bytes compact: {"name":"nnn…"}.
func Info(size int) string {
	return "info=" + url.QueryEscape(`{"name":"`+strings.Repeat("n", max(0, size-11))+`"}`)
}

// PresenceOp is the presence op for channel.
func PresenceOp(channel string) string { return `{"op":"presence","channel":"` + channel + `"}` }

// frameBytes is what one server frame of header h took on the wire.
func frameBytes(h ws.Header) int64 {
	n := int64(2) + h.Length
	switch {
	case h.Length > 0xffff:
		n += 8
	case h.Length > 125:
		n += 2
	}
	return n
}
