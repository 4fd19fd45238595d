package session_test

import (
	"bytes"
	"compress/flate"
	"strings"
	"sync"
	"testing"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/server"
)

// A client over its message rate gets rate_limited errors for what it
// sent too fast (in order with its other replies), and after ten in a
// row is closed with 1008; another client is served all along.
func TestMessageRate(t *testing.T) {
	g := start(t, options{tune: func(c *server.Config) { c.ClientMessageRate, c.ClientMessageBurst = 10, 20 }})
	other := g.dial(t, "")
	flood := g.dial(t, "")
	flood.Write(bytes.Repeat(wstest.Text(`{"op":"nope"}`), 100))
	for range 20 {
		flood.ExpectMsg("error", "bad_request")
	}
	for range server.MaxRateStrikes {
		if m := flood.ExpectMsg("error", "rate_limited"); m.Message == "" {
			t.Fatal("rate_limited without a message")
		}
	}
	if reason := flood.ExpectClose(1008); reason != "rate limit exceeded" {
		t.Fatalf("close reason %q", reason)
	}
	other.Send(`{"op":"subscribe","channel":"news"}`)
	other.ExpectMsg("subscribed", "")
	// Past its strikes the connection is only closed: the 69 messages it
	// sent after are not handled (each used to queue another close on its
	// shard, so a flood grew the gateway's memory by 180 MiB in seconds).
	if n := testutil.ToFloat64(g.m.RateLimited); n != server.MaxRateStrikes+1 {
		t.Fatalf("rate_limited_messages_total %v, want %d", n, server.MaxRateStrikes+1)
	}
}

// A client over its byte rate is not read until its budget refills: what
// it sent is answered, later, and nothing is refused or lost.
func TestBytesRateThrottles(t *testing.T) {
	g := start(t, options{tune: func(c *server.Config) { c.ClientBytesRate = 128 << 10 }})
	heavy := g.dial(t, "")
	heavy.Write(bytes.Repeat(pad60k, 3)) // 180 KiB: about 0.4 s over the budget
	for range 3 {
		heavy.ExpectMsg("error", "bad_request")
	}
	// The read task counts the pause after handling what it read, so
	// the replies may arrive first.
	wstest.Eventually(t, "the heavy client's reading paused", func() bool {
		return testutil.ToFloat64(g.m.ReadThrottles) >= 1
	})
	heavy.Send(`{"op":"subscribe","channel":"news"}`)
	heavy.ExpectMsg("subscribed", "")
}

// pad60k is a 60 KiB op the session refuses (bad_request).
var pad60k = wstest.Text(`{"op":"pad","x":"` + strings.Repeat("x", 60<<10) + `"}`)

// The byte budget starts with one second's worth when that is more than
// two messages' worth: a burst within it is read without a pause.
func TestBytesRateBurst(t *testing.T) {
	g := start(t, options{tune: func(c *server.Config) { c.ClientBytesRate = 512 << 10 }})
	c := g.dial(t, "")
	c.Write(bytes.Repeat(pad60k, 6)) // 360 KiB: under 512, past 2 × 64
	for range 6 {
		c.ExpectMsg("error", "bad_request")
	}
	if n := testutil.ToFloat64(g.m.ReadThrottles); n != 0 {
		t.Fatalf("reading paused %v times within the burst", n)
	}
}

// A connection whose ops wait on its delivery shard past MaxBacklog is
// closed with 1013, without a reply for what it sent after; another
// connection on that shard is served once the shard runs again.
func TestOpBacklog(t *testing.T) {
	g := start(t, options{hub: broadcast.Config{Shards: 1}, backlog: 8, tune: func(c *server.Config) { c.ClientMessageRate = -1 }})
	other := g.dial(t, "")
	flood := g.dial(t, "")
	// Hold the only shard, so every reply the flood asks for waits on it.
	blocker := g.hub.Join(discard{})
	held, gate := make(chan struct{}), make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release) // before the hub closes, should the test fail
	g.hub.After(blocker, func() { close(held); <-gate })
	<-held
	flood.Write(bytes.Repeat(wstest.Text(`{"op":"nope"}`), 20))
	if reason := flood.ExpectClose(1013); reason != "too many ops in flight" {
		t.Fatalf("close reason %q", reason)
	}
	release()
	g.hub.Leave(blocker)
	other.Send(`{"op":"subscribe","channel":"news"}`)
	other.ExpectMsg("subscribed", "")
	flood.Conn.Close()
	closed := g.m.ConnectionsClosed("overloaded")
	wstest.Eventually(t, "closed{reason=overloaded} 1", func() bool { return testutil.ToFloat64(closed) == 1 })
}

// discard is a subscriber that takes every frame and keeps none.
type discard struct{}

func (discard) Send([]byte) error           { return nil }
func (discard) Encoding() protocol.Encoding { return protocol.WebSocket }

// A compressed message that inflates to more than MaxInflateRatio times
// its size (a compression bomb) closes the connection with 1008, before
// it is inflated whole.
func TestCompressionBomb(t *testing.T) {
	g := start(t, options{compress: true})
	bomb := g.dial(t, "", "Sec-WebSocket-Extensions: permessage-deflate")
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestCompression)
	_, _ = w.Write([]byte(`{"op":"publish","channel":"x","data":"` + strings.Repeat(" ", 60<<10) + `"}`))
	_ = w.Flush()
	payload := bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
	bomb.Write(wstest.Frame(true, 0x40, ws.OpText, payload))
	if reason := bomb.ExpectClose(1008); reason != "compressed message inflates too much" {
		t.Fatalf("%d bytes inflating to 60 KiB: close reason %q", len(payload), reason)
	}
}
