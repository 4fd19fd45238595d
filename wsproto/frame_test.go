package wsproto_test

import (
	"bytes"
	"testing"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/wsproto"
)

// Payload finds where the header ends on each side of every length
// encoding's boundary.
func TestPayload(t *testing.T) {
	for _, n := range []int{0, 125, 126, 127, 0xFFFF, 0x10000} {
		payload := bytes.Repeat([]byte{'p'}, n)
		got := wsproto.Payload(wsproto.AppendFrame(nil, ws.OpText, payload))
		if !bytes.Equal(got, payload) {
			t.Fatalf("%d-byte payload: got %d bytes", n, len(got))
		}
	}
}
