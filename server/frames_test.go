package server_test

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/server"
)

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestEchoFragmentsWithControlFrames(t *testing.T) {
	g := start(t, echo())
	c, _ := wstest.Dial(t, g.addr, "/echo")
	c.Write(cat(
		wstest.Frame(false, 0, ws.OpText, []byte("frag")),
		wstest.Frame(true, 0, ws.OpPing, []byte("between")),
		wstest.Frame(false, 0, ws.OpContinuation, []byte("men")),
		wstest.Frame(true, 0, ws.OpPong, []byte("unsolicited")),
		wstest.Frame(true, 0, ws.OpContinuation, []byte("ted")),
	))
	c.ExpectMessage(ws.OpPong, []byte("between"))
	c.ExpectMessage(ws.OpText, []byte("fragmented"))

	// The same message a byte per write.
	msg := cat(wstest.Frame(false, 0, ws.OpBinary, []byte{1, 2}), wstest.Frame(true, 0, ws.OpContinuation, []byte{3}))
	for _, b := range msg {
		c.Write([]byte{b})
	}
	c.ExpectMessage(ws.OpBinary, []byte{1, 2, 3})
}

// TestViolations sends each protocol violation after a good message and
// checks the close code, the reason counter, and that the TCP connection
// is then closed.
func TestViolations(t *testing.T) {
	g := start(t, server.Config{Echo: true, MaxMessageSize: 1000})
	for _, tc := range []struct {
		name   string
		frames []byte
		code   ws.StatusCode
		reason string
	}{
		{"rsv1 without extension", wstest.Frame(true, 0x40, ws.OpText, []byte("x")), 1002, "protocol_error"},
		{"rsv2", wstest.Frame(true, 0x20, ws.OpBinary, nil), 1002, "protocol_error"},
		{"rsv3", wstest.Frame(true, 0x10, ws.OpBinary, nil), 1002, "protocol_error"},
		{"opcode 3", wstest.Frame(true, 0, 3, nil), 1002, "protocol_error"},
		{"opcode 0xF", wstest.Frame(true, 0, 0xF, nil), 1002, "protocol_error"},
		{"unmasked", []byte{0x81, 0x02, 'h', 'i'}, 1002, "protocol_error"},
		{"ping over 125 bytes", wstest.Frame(true, 0, ws.OpPing, make([]byte, 126)), 1002, "protocol_error"},
		{"fragmented ping", wstest.Frame(false, 0, ws.OpPing, nil), 1002, "protocol_error"},
		{"continuation without a start", wstest.Frame(true, 0, ws.OpContinuation, []byte("x")), 1002, "protocol_error"},
		{"new message inside a fragmented one", cat(wstest.Frame(false, 0, ws.OpText, []byte("a")), wstest.Text("b")), 1002, "protocol_error"},
		{"close with one byte", wstest.Frame(true, 0, ws.OpClose, []byte{0x03}), 1002, "protocol_error"},
		{"invalid UTF-8", wstest.Text("caf\xc3"), 1007, "invalid_data"},
		{"close reason not UTF-8", wstest.Frame(true, 0, ws.OpClose, wstest.ClosePayload(1000, "\xff")), 1007, "invalid_data"},
		{"message over the limit", wstest.Frame(true, 0, ws.OpBinary, make([]byte, 1001)), 1009, "too_big"},
		{"fragments over the limit", cat(wstest.Frame(false, 0, ws.OpBinary, make([]byte, 600)), wstest.Frame(true, 0, ws.OpContinuation, make([]byte, 401))), 1009, "too_big"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := count(g.m.ConnectionsClosed(tc.reason))
			c, _ := wstest.Dial(t, g.addr, "/echo")
			c.Write(wstest.Text("fine so far"))
			c.ExpectMessage(ws.OpText, []byte("fine so far"))
			c.Write(tc.frames)
			c.ExpectClose(tc.code)
			c.ExpectEOF()
			c.Conn.Close() // as a client does once the server has closed
			wstest.Eventually(t, "the close counted", func() bool { return count(g.m.ConnectionsClosed(tc.reason)) == before+1 })
		})
	}
}

// TestInvalidUTF8FailsFast checks that the server closes on a bad byte in
// the first fragment, before the message is complete.
func TestInvalidUTF8FailsFast(t *testing.T) {
	g := start(t, echo())
	for name, frames := range map[string][]byte{
		"first fragment":        wstest.Frame(false, 0, ws.OpText, []byte("ok \xf4\x90")),
		"first part of a frame": wstest.Frame(true, 0, ws.OpText, []byte("\xed\xa0\x80"+strings.Repeat("x", 500)))[:12],
	} {
		t.Run(name, func(t *testing.T) {
			c, _ := wstest.Dial(t, g.addr, "/echo")
			c.Write(frames) // and never the rest of the message
			c.ExpectClose(1007)
		})
	}
}

func TestCloseHandshake(t *testing.T) {
	g := start(t, echo())
	valid := []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999}
	for _, code := range valid {
		t.Run(fmt.Sprintf("code %d", code), func(t *testing.T) {
			c, _ := wstest.Dial(t, g.addr, "/echo")
			c.Write(wstest.Frame(true, 0, ws.OpClose, wstest.ClosePayload(code, "bye")))
			c.ExpectClose(ws.StatusCode(code))
			c.ExpectEOF()
		})
	}
	invalid := []uint16{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}
	for _, code := range invalid {
		t.Run(fmt.Sprintf("invalid code %d", code), func(t *testing.T) {
			c, _ := wstest.Dial(t, g.addr, "/echo")
			c.Write(wstest.Frame(true, 0, ws.OpClose, wstest.ClosePayload(code, "")))
			c.ExpectClose(1002)
			c.ExpectEOF()
		})
	}
	t.Run("empty close", func(t *testing.T) {
		c, _ := wstest.Dial(t, g.addr, "/echo")
		c.Write(wstest.Frame(true, 0, ws.OpClose, nil))
		c.ExpectClose(0)
		c.ExpectEOF()
	})
	t.Run("data after close is ignored", func(t *testing.T) {
		c, _ := wstest.Dial(t, g.addr, "/echo")
		c.Write(cat(wstest.Frame(true, 0, ws.OpClose, wstest.ClosePayload(1000, "")), wstest.Text("too late")))
		c.ExpectClose(1000)
		c.ExpectEOF()
	})
	t.Run("close in the middle of a fragmented message", func(t *testing.T) {
		c, _ := wstest.Dial(t, g.addr, "/echo")
		c.Write(cat(wstest.Frame(false, 0, ws.OpText, []byte("half")), wstest.Frame(true, 0, ws.OpClose, wstest.ClosePayload(1001, ""))))
		c.ExpectClose(1001)
		c.ExpectEOF()
	})
}

func TestPingPong(t *testing.T) {
	g := start(t, echo())
	c, _ := wstest.Dial(t, g.addr, "/echo")
	for _, p := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte{0xfe}, 125)} {
		c.Write(wstest.Frame(true, 0, ws.OpPing, p))
		c.ExpectMessage(ws.OpPong, p)
	}
	c.Write(wstest.Frame(true, 0, ws.OpPong, []byte("nobody asked")))
	c.Write(wstest.Text("still here"))
	c.ExpectMessage(ws.OpText, []byte("still here"))
}

func TestDeflate(t *testing.T) {
	g := start(t, server.Config{Echo: true, Compression: true})
	c, resp := wstest.Dial(t, g.addr, "/echo", "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.HasPrefix(ext, "permessage-deflate") {
		t.Fatalf("extension not negotiated: %q", ext)
	}
	text := strings.Repeat("compress me, ", 100)
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.BestSpeed)
	io.WriteString(w, text)
	w.Flush()
	c.Write(wstest.Frame(true, 0x40, ws.OpText, bytes.TrimSuffix(z.Bytes(), []byte{0, 0, 0xff, 0xff})))
	h, p := c.ReadFrame()
	if h.Rsv != 4 || h.OpCode != ws.OpText {
		t.Fatalf("reply rsv=%d op=%v, want a compressed text frame", h.Rsv, h.OpCode)
	}
	got, err := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}))))
	if err != nil || string(got) != text {
		t.Fatalf("inflated %d bytes (%v), want the %d sent", len(got), err, len(text))
	}
	// Without the extension, RSV1 is a protocol error.
	plain, _ := wstest.Dial(t, g.addr, "/echo")
	plain.Write(wstest.Frame(true, 0x40, ws.OpText, []byte("x")))
	plain.ExpectClose(1002)
}
