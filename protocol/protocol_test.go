package protocol_test

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/protocol"
)

// decode reads one server frame as a client does: the header parsed, the
// payload inflated when RSV1 marks it compressed.
func decode(t *testing.T, frame []byte) (payload []byte, compressed bool) {
	t.Helper()
	r := bytes.NewReader(frame)
	h, err := ws.ReadHeader(r)
	if err != nil || !h.Fin || h.OpCode != ws.OpText || h.Masked || int64(r.Len()) != h.Length {
		t.Fatalf("bad frame header %+v (%v) with %d bytes after it", h, err, r.Len())
	}
	payload = frame[len(frame)-r.Len():]
	if h.Rsv1() {
		fr := flate.NewReader(io.MultiReader(bytes.NewReader(payload), bytes.NewReader([]byte{0, 0, 0xff, 0xff})))
		out, err := io.ReadAll(fr)
		if err != nil && err != io.ErrUnexpectedEOF {
			t.Fatalf("compressed frame does not inflate: %v", err)
		}
		return out, true
	}
	return payload, false
}

func TestWireEncodings(t *testing.T) {
	for _, size := range []int{1, 100, 124, 125, 126, 511, 512, 513, 65535, 65536, 70000} {
		data := []byte(`"` + strings.Repeat("x", size) + `"`)
		env, field := protocol.AppendMessage(protocol.Buffer(protocol.MessageSize("news", data)), "news", 7, data)
		if !bytes.Equal(field, data) {
			t.Fatalf("data field %q", field)
		}
		w := protocol.NewWire(env)
		var msg struct {
			Type    string          `json:"type"`
			Channel string          `json:"channel"`
			Offset  uint64          `json:"offset"`
			Data    json.RawMessage `json:"data"`
		}
		for _, e := range []protocol.Encoding{protocol.WebSocket, protocol.WebSocketDeflate} {
			got, compressed := decode(t, w.Encoded(e, nil))
			if err := json.Unmarshal(got, &msg); err != nil || msg.Type != "message" || msg.Channel != "news" || msg.Offset != 7 || !bytes.Equal(msg.Data, data) {
				t.Fatalf("%d bytes, encoding %d: decoded %+v (%v)", size, e, msg, err)
			}
			wantCompressed := e == protocol.WebSocketDeflate && len(w.Envelope()) >= protocol.CompressMin
			if compressed != wantCompressed {
				t.Fatalf("%d-byte envelope, encoding %d: compressed %v", len(w.Envelope()), e, compressed)
			}
		}
		if f := w.Frame(); &f[0] != &w.Encoded(protocol.WebSocket, nil)[0] {
			t.Fatal("Frame is not the WebSocket encoding")
		}
		// Built once each: the same bytes every time.
		if a, b := w.Encoded(protocol.WebSocketDeflate, nil), w.Encoded(protocol.WebSocketDeflate, nil); &a[0] != &b[0] {
			t.Fatal("compressed copy built twice")
		}
		want := len(w.Encoded(protocol.WebSocket, nil))
		if len(w.Envelope()) >= protocol.CompressMin {
			want += len(w.Encoded(protocol.WebSocketDeflate, nil))
		}
		if w.Size() != want {
			t.Fatalf("Size %d, want %d", w.Size(), want)
		}
	}
}

func TestWireStoreHook(t *testing.T) {
	data := []byte(`"` + strings.Repeat("compress me ", 100) + `"`)
	env, _ := protocol.AppendMessage(protocol.Buffer(protocol.MessageSize("c", data)), "c", 1, data)
	w := protocol.NewWire(env)
	before, calls := w.Size(), 0
	w.Encoded(protocol.WebSocketDeflate, func(set func()) {
		calls++
		if w.Size() != before {
			t.Fatal("stored before set ran")
		}
		set()
	})
	w.Encoded(protocol.WebSocketDeflate, func(func()) { calls++ })
	if calls != 1 || w.Size() <= before {
		t.Fatalf("store called %d times, size %d -> %d", calls, before, w.Size())
	}
}

func TestEnvelopesAreJSON(t *testing.T) {
	for _, env := range [][]byte{
		protocol.AppendSubscribed(nil, "news", 42, "e1-2", true),
		protocol.AppendUnsubscribed(nil, "news"),
		protocol.AppendError(nil, protocol.CodeForbidden, "quote \" backslash \\ newline \n é", "news"),
		protocol.AppendError(nil, protocol.CodeBadRequest, "no channel", ""),
		protocol.AppendRefreshed(nil, 1700000000),
	} {
		var v map[string]any
		if err := json.Unmarshal(env, &v); err != nil {
			t.Fatalf("%s: %v", env, err)
		}
		if _, ok := v["type"].(string); !ok {
			t.Fatalf("%s: no type", env)
		}
	}
	var e struct{ Type, Code, Message, Channel string }
	_ = json.Unmarshal(protocol.AppendError(nil, protocol.CodeForbidden, "a \"b\"\n", "x"), &e)
	if e != (struct{ Type, Code, Message, Channel string }{"error", "forbidden", "a \"b\"\n", "x"}) {
		t.Fatalf("error envelope decodes to %+v", e)
	}
}

func TestFrameOneOff(t *testing.T) {
	big := strings.Repeat("y", 600)
	for _, e := range []protocol.Encoding{protocol.WebSocket, protocol.WebSocketDeflate} {
		got, _ := decode(t, protocol.Frame(e, protocol.AppendError(protocol.Buffer(16), protocol.CodeBadRequest, big, "")))
		var v struct{ Message string }
		if err := json.Unmarshal(got, &v); err != nil || v.Message != big {
			t.Fatalf("encoding %d: %v", e, err)
		}
	}
}

func TestNames(t *testing.T) {
	long := strings.Repeat("a", protocol.MaxChannelLen)
	for _, c := range []struct {
		name               string
		channel, user, any bool
	}{
		{"news", true, true, true},
		{"chat:lobby@x+y=z_-.", true, true, true},
		{"", false, false, false},
		{long, true, false, true},
		{long + "a", false, false, false},
		{"#alice", false, false, true},
		{"#", false, false, false},
		{"#" + long, false, false, false},
		{"a b", false, false, false},
		{`a"b`, false, false, false},
		{"é", false, false, false},
	} {
		if protocol.ValidChannel(c.name) != c.channel || protocol.ValidUser(c.name) != c.user || protocol.ValidName(c.name) != c.any {
			t.Errorf("%q: channel %v user %v name %v", c.name, protocol.ValidChannel(c.name), protocol.ValidUser(c.name), protocol.ValidName(c.name))
		}
	}
}

func TestPatterns(t *testing.T) {
	p, err := protocol.ParsePatterns(" chat:* , news,,")
	if err != nil || len(p) != 2 {
		t.Fatalf("%v %v", p, err)
	}
	for name, want := range map[string]bool{"chat:a": true, "chat:": true, "news": true, "newsy": false, "#chat:a": false, "x": false} {
		if p.Match(name) != want {
			t.Errorf("%q matched %v", name, !want)
		}
	}
	all, _ := protocol.ParsePatterns("*")
	if !all.Match("anything") || all.Match("#alice") {
		t.Error("* must match every public channel and no personal one")
	}
	for _, bad := range []string{"a b*", "**", "a*b", "#x"} {
		if _, err := protocol.ParsePatterns(bad); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
}

// Valid names never need escaping: they survive a JSON round trip and a
// URL query as they are.
func FuzzNames(f *testing.F) {
	f.Add("news")
	f.Add("#alice")
	f.Add("a\"b")
	f.Fuzz(func(t *testing.T, name string) {
		if !protocol.ValidName(name) {
			return
		}
		env := protocol.AppendUnsubscribed(nil, name)
		var v struct{ Channel string }
		if err := json.Unmarshal(env, &v); err != nil || v.Channel != name {
			t.Fatalf("%q: %s (%v)", name, env, err)
		}
	})
}
