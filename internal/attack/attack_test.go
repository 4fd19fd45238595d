package attack

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/wsproto"
)

// messages collects what a wsproto.Reader decodes.
type messages struct{ got [][]byte }

func (m *messages) HandleMessage(_ ws.OpCode, p []byte) error {
	m.got = append(m.got, bytes.Clone(p))
	return nil
}
func (m *messages) HandleControl(ws.OpCode, []byte) error { return nil }

// The attacks' frames are what the gateway's reader decodes: masked, and
// compressed as permessage-deflate when they say so.
func TestFramesDecode(t *testing.T) {
	bomb := BombPayload(64<<10, 0)
	var stream []byte
	stream = AppendFrame(stream, true, 0, ws.OpText, []byte(InvalidOp))
	stream = AppendFrame(stream, false, 0, ws.OpText, []byte("frag"))
	stream = AppendFrame(stream, true, 0, ws.OpContinuation, []byte("ment"))
	stream = AppendFrame(stream, true, 0x40, ws.OpText, Deflate(bomb))
	var r wsproto.Reader
	var m messages
	if err := r.Feed(stream, wsproto.Options{Compression: true, MaxMessageSize: 1 << 20}, &m); err != nil {
		t.Fatal(err)
	}
	want := [][]byte{[]byte(InvalidOp), []byte("fragment"), bomb}
	if len(m.got) != len(want) {
		t.Fatalf("decoded %d messages, want %d", len(m.got), len(want))
	}
	for i := range want {
		if !bytes.Equal(m.got[i], want[i]) {
			t.Errorf("message %d: %.40q, want %.40q", i, m.got[i], want[i])
		}
	}
}

// A bomb is a JSON op of the size asked for, which deflates about as far
// as asked: within a factor of two below the ratio, never above it.
func TestBombPayload(t *testing.T) {
	for _, tc := range []struct{ size, ratio int }{{1 << 20, 100}, {64 << 10, 20}, {1 << 20, 0}} {
		p := BombPayload(tc.size, tc.ratio)
		var op struct{ Op, Pad string }
		if err := json.Unmarshal(p, &op); err != nil || op.Op != "nope" {
			t.Fatalf("%d bytes at ratio %d: %v, op %q", tc.size, tc.ratio, err, op.Op)
		}
		if len(p) != tc.size {
			t.Errorf("%d bytes, want %d", len(p), tc.size)
		}
		d := Deflate(p)
		inflated, err := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(d), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}))))
		if err != nil || !bytes.Equal(inflated, p) {
			t.Fatalf("deflated bomb does not inflate back: %v", err)
		}
		ratio := len(p) / len(d)
		switch {
		case tc.ratio == 0 && ratio < 500:
			t.Errorf("a bomb as far as it goes inflates only %d times", ratio)
		case tc.ratio > 0 && (ratio > tc.ratio || ratio < tc.ratio/2):
			t.Errorf("ratio %d asked, %d made", tc.ratio, ratio)
		}
	}
}

// Percentiles are of the sorted samples, p99 of a hundred the 99th.
func TestSummarise(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	l := Summarise(ds, 3)
	if l.N != 100 || l.Lost != 3 || l.P50 != 50*time.Millisecond || l.P99 != 99*time.Millisecond || l.Max != 100*time.Millisecond {
		t.Fatalf("%+v", l)
	}
	if l := Summarise(nil, 0); l.N != 0 || l.P99 != 0 {
		t.Fatalf("%+v", l)
	}
}
