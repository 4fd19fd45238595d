package webhook

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"testing"
)

func TestEventJSON(t *testing.T) {
	for _, ev := range []Event{
		{Type: UserOnline, Time: 1700000000000, Node: "gw-1", Seq: 17, User: "alice"},
		{Type: ChannelVacated, Time: 0, Node: "", Seq: 0, Channel: "chat:42"},
		{Type: UserOffline, Time: -1, Node: "n", Seq: 9, User: "quote\" backslash\\ nl\n tab\t nul\x00 del\x7f é ☃ 😀"},
		{Type: "odd", Time: math.MinInt64, Seq: math.MaxUint64, User: "invalid \xff\xfe utf-8 \xe2\x82"},
		{Type: ChannelOccupied, Time: math.MaxInt64, Seq: 10, Channel: "<html> & \u2028"},
	} {
		checkEventJSON(t, ev)
	}
}

// FuzzEventJSON checks that an event's hand-written encoding has the
// length reserved for it and decodes as encoding/json's does.
func FuzzEventJSON(f *testing.F) {
	f.Add("user_online", int64(1700000000000), "gw-1", uint64(17), "alice", "")
	f.Add("channel_vacated", int64(-5), "", uint64(0), "", "chat:\"42\"\n")
	f.Add("x", int64(0), "\xff", uint64(math.MaxUint64), "\x00\x1f", "\xe2\x82")
	f.Fuzz(func(t *testing.T, typ string, ms int64, node string, seq uint64, user, channel string) {
		checkEventJSON(t, Event{Type: typ, Time: ms, Node: node, Seq: seq, User: user, Channel: channel})
	})
}

func checkEventJSON(t *testing.T, ev Event) {
	t.Helper()
	got := ev.appendJSON(nil)
	if len(got) != ev.encodedLen() {
		t.Fatalf("%+v: encoded %d bytes, encodedLen %d: %s", ev, len(got), ev.encodedLen(), got)
	}
	want, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var a, b Event
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatalf("%+v: %s: %v", ev, got, err)
	}
	if err := json.Unmarshal(want, &b); err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatalf("%s decodes as %+v, encoding/json's %s as %+v", got, a, want, b)
	}
	if g, w := keys(t, got), keys(t, want); !slices.Equal(g, w) {
		t.Fatalf("%s has the fields %q, encoding/json's %s %q", got, g, want, w)
	}
}

// keys returns the keys of the JSON object obj, in order.
func keys(t *testing.T, obj []byte) []string {
	t.Helper()
	var raw []string
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil { // {
		t.Fatal(err)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, k.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	return raw
}
