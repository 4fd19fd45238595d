package session_test

import (
	"bytes"
	"compress/flate"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pushgate/pushgate/internal/wstest"
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
	pad := wstest.Text(`{"op":"pad","x":"` + strings.Repeat("x", 60<<10) + `"}`)
	heavy.Write(bytes.Repeat(pad, 4)) // 240 KiB: about 1 s over the budget
	for range 4 {
		heavy.ExpectMsg("error", "bad_request")
	}
	if n := testutil.ToFloat64(g.m.ReadThrottles); n < 1 {
		t.Fatal("the heavy client's reading never paused")
	}
	heavy.Send(`{"op":"subscribe","channel":"news"}`)
	heavy.ExpectMsg("subscribed", "")
}

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
