package session_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestCompressedBroadcastSizes subscribes a client that negotiated
// permessage-deflate (coder/websocket, which inflates what it reads) and
// publishes envelopes of every size around the frame header's length
// boundaries: each must arrive as the JSON that was published.
func TestCompressedBroadcastSizes(t *testing.T) {
	g := start(t, options{compress: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+g.addr+"/ws?channels=sizes", &websocket.DialOptions{
		Subprotocols:    []string{"pushgate.v1"},
		CompressionMode: websocket.CompressionNoContextTakeover,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if resp.Header.Get("Sec-WebSocket-Extensions") == "" {
		t.Fatal("permessage-deflate not negotiated")
	}
	c.SetReadLimit(1 << 20)
	type envelope struct {
		Type   string          `json:"type"`
		Offset uint64          `json:"offset"`
		Data   json.RawMessage `json:"data"`
	}
	read := func() (envelope, int) {
		t.Helper()
		_, p, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var e envelope
		if err := json.Unmarshal(p, &e); err != nil {
			t.Fatalf("%d bytes of invalid JSON: %v", len(p), err)
		}
		return e, len(p)
	}
	if e, _ := read(); e.Type != "subscribed" {
		t.Fatalf("got %+v", e)
	}
	overhead := len(`{"type":"message","channel":"sizes","offset":1,"data":""}`)
	for i, size := range []int{125, 126, 512, 65533, 65534, 65535, 65536, 65537} {
		data := `"` + strings.Repeat("y", size-overhead) + `"`
		g.publish(t, "sizes", data)
		e, n := read()
		if e.Type != "message" || e.Offset != uint64(i+1) || string(e.Data) != data || n != size {
			t.Fatalf("envelope of %d bytes: got %s offset %d, %d bytes", size, e.Type, e.Offset, n)
		}
	}
}
