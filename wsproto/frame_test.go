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

// A masked frame reads back, with gobwas/ws's reader, as the header and
// payload it was given, at every length encoding.
func TestAppendMaskedFrame(t *testing.T) {
	mask := [4]byte{1, 2, 3, 4}
	for _, n := range []int{0, 125, 126, 0xFFFF, 0x10000} {
		payload := bytes.Repeat([]byte{'p'}, n)
		frame := wsproto.AppendMaskedFrame([]byte("before"), false, 0x40, ws.OpText, mask, payload)
		r := bytes.NewReader(frame[len("before"):])
		h, err := ws.ReadHeader(r)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if h.Fin || h.Rsv != 0b100 || h.OpCode != ws.OpText || !h.Masked || h.Mask != mask || h.Length != int64(n) {
			t.Fatalf("%d bytes: header %+v", n, h)
		}
		got := frame[len(frame)-r.Len():]
		ws.Cipher(got, h.Mask, 0)
		if !bytes.Equal(got, payload) {
			t.Fatalf("%d bytes: payload differs once unmasked", n)
		}
	}
}
