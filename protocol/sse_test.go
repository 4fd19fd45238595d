package protocol_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/pushgate/pushgate/internal/ssetest"
	"github.com/pushgate/pushgate/protocol"
)

// sseEvents reads b as an EventSource does.
func sseEvents(t *testing.T, b []byte) []ssetest.Event {
	t.Helper()
	p := ssetest.NewParser(bytes.NewReader(b))
	var out []ssetest.Event
	for {
		e, err := p.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
}

func TestSSEEncoding(t *testing.T) {
	data := []byte(`{"text":"hi"}`)
	env, _ := protocol.AppendMessage(protocol.Buffer(protocol.MessageSize("news", data)), "news", 7, data)
	w := protocol.NewWire(env)
	got := w.Encoded(protocol.SSE, nil)
	want := `data: {"type":"message","channel":"news","offset":7,"data":{"text":"hi"}}` + "\n\n"
	if string(got) != want {
		t.Fatalf("SSE encoding %q, want %q", got, want)
	}
	if string(w.Frame()[2:]) != string(w.Envelope()) {
		t.Fatalf("the WebSocket frame changed under the SSE encoding: %q", w.Frame())
	}
	if e := sseEvents(t, got); len(e) != 1 || e[0].Type != "message" || e[0].Data != string(w.Envelope()) {
		t.Fatalf("an EventSource reads %v", e)
	}
	// Large envelopes are never compressed for SSE.
	big := []byte(`"` + strings.Repeat("x", 4096) + `"`)
	env, _ = protocol.AppendMessage(protocol.Buffer(protocol.MessageSize("news", big)), "news", 8, big)
	if e := sseEvents(t, protocol.NewWire(env).Encoded(protocol.SSE, nil)); len(e) != 1 || e[0].Data != string(env[protocol.Headroom:]) {
		t.Fatalf("a 4 KiB envelope reads back as %d events", len(e))
	}
}

// TestSSEMultiLineData: a publication's JSON may hold line breaks between
// tokens; each becomes a data line, and the event's data parses to the
// same JSON value.
func TestSSEMultiLineData(t *testing.T) {
	data := []byte("{\r\n \"a\": 1,\n \"b\": [2,\r3],\r\n\n \"c\": \"x\"\n}")
	env, _ := protocol.AppendMessage(protocol.Buffer(protocol.MessageSize("news", data)), "news", 1, data)
	got := protocol.Frame(protocol.SSE, env)
	if bytes.ContainsAny(bytes.TrimSuffix(got, []byte("\n\n")), "\r") || bytes.Contains(bytes.TrimSuffix(got, []byte("\n\n")), []byte("\n\n")) {
		t.Fatalf("a line break in the data ended the event or kept a CR: %q", got)
	}
	events := sseEvents(t, got)
	if len(events) != 1 {
		t.Fatalf("%d events from %q", len(events), got)
	}
	var msg struct {
		Type string
		Data struct {
			A int
			B []int
			C string
		}
	}
	if err := json.Unmarshal([]byte(events[0].Data), &msg); err != nil {
		t.Fatalf("the event's data is not JSON: %v: %q", err, events[0].Data)
	}
	if msg.Type != "message" || msg.Data.A != 1 || !reflect.DeepEqual(msg.Data.B, []int{2, 3}) || msg.Data.C != "x" {
		t.Fatalf("decoded %+v", msg)
	}
}

func TestEventID(t *testing.T) {
	pos := []protocol.SSEPosition{
		{Channel: "news", Epoch: "3f9a0c1e22b47d5a-1", Offset: 42},
		{Channel: "#alice", Epoch: "3f9a0c1e22b47d5a-2", Offset: 7},
		{Channel: "chat:lobby", Epoch: "", Offset: 0},
	}
	line := protocol.AppendEventID(nil, pos)
	if want := "id: news,3f9a0c1e22b47d5a-1,42;#alice,3f9a0c1e22b47d5a-2,7;chat:lobby,,0\n"; string(line) != want {
		t.Fatalf("id line %q, want %q", line, want)
	}
	events := sseEvents(t, append(line, "data: x\n\n"...))
	if len(events) != 1 || !events[0].HasID {
		t.Fatalf("events %v", events)
	}
	back, err := protocol.ParseEventID(events[0].LastEventID)
	if err != nil || !reflect.DeepEqual(back, pos) {
		t.Fatalf("ParseEventID(%q) = %v, %v", events[0].LastEventID, back, err)
	}
	if p, err := protocol.ParseEventID(""); err != nil || p != nil {
		t.Fatalf("the empty id: %v %v", p, err)
	}
}

func TestEventIDBound(t *testing.T) {
	var pos []protocol.SSEPosition
	for i := range 40 {
		pos = append(pos, protocol.SSEPosition{Channel: strings.Repeat("c", 120) + string(rune('A'+i%26)) + string(rune('a'+i/26)), Epoch: "3f9a0c1e22b47d5a-1", Offset: 18446744073709551615})
	}
	line := protocol.AppendEventID(nil, pos)
	id := strings.TrimSuffix(strings.TrimPrefix(string(line), "id: "), "\n")
	if len(id) > protocol.MaxEventIDLen {
		t.Fatalf("id of %d bytes, bound %d", len(id), protocol.MaxEventIDLen)
	}
	back, err := protocol.ParseEventID(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) == 0 || len(back) == len(pos) || !reflect.DeepEqual(back, pos[:len(back)]) {
		t.Fatalf("kept %d of %d positions, want the first that fit", len(back), len(pos))
	}
}

func TestParseEventIDRefuses(t *testing.T) {
	for _, id := range []string{
		"news", "news,e", "news,e,", "news,e,x", "news,e,01", "news,e,-1", "news,e,1;", ";news,e,1",
		"bad channel,e,1", "news,e e,1", "news,e;1", "news,e,1,2", "#,e,1", "news,e,18446744073709551616",
		"news," + strings.Repeat("e", 65) + ",1", strings.Repeat("a", protocol.MaxEventIDLen+1),
	} {
		if p, err := protocol.ParseEventID(id); err == nil {
			t.Errorf("ParseEventID(%q) = %v, want an error", id, p)
		}
	}
}

func FuzzParseEventID(f *testing.F) {
	f.Add("news,3f9a0c1e22b47d5a-1,42;#alice,3f9a0c1e22b47d5a-2,7")
	f.Add("chat:lobby,,0")
	f.Fuzz(func(t *testing.T, id string) {
		pos, err := protocol.ParseEventID(id)
		if err != nil {
			return
		}
		// What it accepts, it writes back the same.
		line := protocol.AppendEventID(nil, pos)
		if got := strings.TrimSuffix(strings.TrimPrefix(string(line), "id: "), "\n"); got != id {
			t.Fatalf("ParseEventID(%q) writes back as %q", id, got)
		}
	})
}

func TestReadPosition(t *testing.T) {
	msg, _ := protocol.AppendMessage(nil, "news", 43, []byte(`{"offset":1}`))
	cases := []struct {
		env  []byte
		want protocol.EnvelopePosition
	}{
		{msg, protocol.EnvelopePosition{Kind: protocol.EnvelopeMessage, Channel: []byte("news"), Offset: 43}},
		{protocol.AppendSubscribed(nil, "#alice", 9, "abc-1", true),
			protocol.EnvelopePosition{Kind: protocol.EnvelopeSubscribed, Channel: []byte("#alice"), Offset: 9, Epoch: []byte("abc-1"), Recovered: true}},
		{protocol.AppendSubscribed(nil, "news", 0, "", false),
			protocol.EnvelopePosition{Kind: protocol.EnvelopeSubscribed, Channel: []byte("news"), Epoch: []byte("")}},
		{protocol.AppendUnsubscribed(nil, "news"), protocol.EnvelopePosition{Kind: protocol.EnvelopeUnsubscribed, Channel: []byte("news")}},
		{protocol.AppendError(nil, protocol.CodeForbidden, "no", "news"), protocol.EnvelopePosition{}},
		{[]byte(protocol.Ping), protocol.EnvelopePosition{}},
	}
	for _, c := range cases {
		// As the SSE encoding carries it: the reader sees the event.
		env, ok := protocol.SSEEnvelope(protocol.AppendSSEData(nil, c.env))
		if got := protocol.ReadPosition(env); !ok || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ReadPosition(%s) = %+v, want %+v", c.env, got, c.want)
		}
	}
}
