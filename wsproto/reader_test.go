package wsproto_test

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/wsproto"
)

// recorder is a Handler that writes down what it gets.
type recorder struct{ events []string }

func (r *recorder) HandleMessage(op ws.OpCode, p []byte) error {
	r.events = append(r.events, fmt.Sprintf("msg %d %q", op, p))
	return nil
}

func (r *recorder) HandleControl(op ws.OpCode, p []byte) error {
	r.events = append(r.events, fmt.Sprintf("ctl %d %q", op, p))
	return nil
}

// feed runs input through a fresh Reader in pieces cut at the given
// offsets and returns the events and the close code of the error (0 if
// none).
func feed(t testing.TB, input []byte, o wsproto.Options, cuts ...int) ([]string, ws.StatusCode) {
	t.Helper()
	in := bytes.Clone(input)
	var r wsproto.Reader
	var rec recorder
	prev := 0
	for _, cut := range append(cuts, len(in)) {
		if err := r.Feed(in[prev:cut], o, &rec); err != nil {
			var ce *wsproto.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *CloseError", err)
			}
			return rec.events, ce.Code
		}
		prev = cut
	}
	return rec.events, 0
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func msg(op ws.OpCode, p string) string { return fmt.Sprintf("msg %d %q", op, p) }
func ctl(op ws.OpCode, p string) string { return fmt.Sprintf("ctl %d %q", op, p) }

func deflate(t testing.TB, p []byte) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestCompression)
	w.Write(p)
	w.Flush()
	return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
}

// incompressible is n bytes that deflate cannot shrink.
func incompressible(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

var readerCases = []struct {
	name  string
	in    []byte
	opts  wsproto.Options
	want  []string
	close ws.StatusCode
}{
	{name: "text", in: wstest.Text("hello"), want: []string{msg(ws.OpText, "hello")}},
	{name: "empty text", in: wstest.Text(""), want: []string{msg(ws.OpText, "")}},
	{name: "binary 126 bytes", in: wstest.Frame(true, 0, ws.OpBinary, bytes.Repeat([]byte{0xff}, 126)),
		want: []string{msg(ws.OpBinary, strings.Repeat("\xff", 126))}},
	{name: "binary 65536 bytes", in: wstest.Frame(true, 0, ws.OpBinary, bytes.Repeat([]byte{7}, 65536)),
		want: []string{msg(ws.OpBinary, strings.Repeat("\x07", 65536))}},
	{name: "two messages", in: cat(wstest.Text("a"), wstest.Frame(true, 0, ws.OpBinary, []byte("b"))),
		want: []string{msg(ws.OpText, "a"), msg(ws.OpBinary, "b")}},
	{name: "fragments with interleaved ping and pong",
		in: cat(wstest.Frame(false, 0, ws.OpText, []byte("Hel")), wstest.Frame(true, 0, ws.OpPing, []byte("p")),
			wstest.Frame(false, 0, ws.OpContinuation, []byte("lo, ")), wstest.Frame(true, 0, ws.OpPong, nil),
			wstest.Frame(true, 0, ws.OpContinuation, []byte("wörld"))),
		want: []string{ctl(ws.OpPing, "p"), ctl(ws.OpPong, ""), msg(ws.OpText, "Hello, wörld")}},
	{name: "empty fragments", in: cat(wstest.Frame(false, 0, ws.OpBinary, nil), wstest.Frame(false, 0, ws.OpContinuation, nil),
		wstest.Frame(true, 0, ws.OpContinuation, []byte("x"))), want: []string{msg(ws.OpBinary, "x")}},
	{name: "rune split across fragments", in: cat(wstest.Frame(false, 0, ws.OpText, []byte("\xe2\x82")),
		wstest.Frame(true, 0, ws.OpContinuation, []byte("\xac"))), want: []string{msg(ws.OpText, "€")}},
	{name: "ping 125 bytes", in: wstest.Frame(true, 0, ws.OpPing, bytes.Repeat([]byte("p"), 125)),
		want: []string{ctl(ws.OpPing, strings.Repeat("p", 125))}},
	{name: "close empty", in: wstest.Frame(true, 0, ws.OpClose, nil), want: []string{ctl(ws.OpClose, "")}},
	{name: "close with reason", in: wstest.Frame(true, 0, ws.OpClose, wstest.ClosePayload(1000, "bye")),
		want: []string{ctl(ws.OpClose, "\x03\xe8bye")}},
	{name: "close 4999", in: wstest.Frame(true, 0, ws.OpClose, wstest.ClosePayload(4999, "")),
		want: []string{ctl(ws.OpClose, "\x13\x87")}},
	{name: "compressed text", opts: wsproto.Options{Compression: true},
		in:   wstest.Frame(true, 0x40, ws.OpText, deflate(nil, []byte("hello hello hello"))),
		want: []string{msg(ws.OpText, "hello hello hello")}},
	{name: "compressed in fragments", opts: wsproto.Options{Compression: true},
		in: func() []byte {
			z := deflate(nil, []byte("fragmented and compressed"))
			return cat(wstest.Frame(false, 0x40, ws.OpBinary, z[:3]), wstest.Frame(true, 0, ws.OpContinuation, z[3:]))
		}(),
		want: []string{msg(ws.OpBinary, "fragmented and compressed")}},
	{name: "uncompressed message with compression on", opts: wsproto.Options{Compression: true},
		in: wstest.Text("plain"), want: []string{msg(ws.OpText, "plain")}},

	{name: "rsv1 without extension", in: wstest.Frame(true, 0x40, ws.OpText, []byte("x")), close: 1002},
	{name: "rsv2", in: wstest.Frame(true, 0x20, ws.OpText, []byte("x")), close: 1002},
	{name: "rsv3", in: wstest.Frame(true, 0x10, ws.OpText, []byte("x")), close: 1002},
	{name: "rsv1 on continuation", opts: wsproto.Options{Compression: true},
		in: cat(wstest.Frame(false, 0x40, ws.OpText, deflate(nil, []byte("a"))), wstest.Frame(true, 0x40, ws.OpContinuation, nil)), close: 1002},
	{name: "rsv1 on ping", opts: wsproto.Options{Compression: true}, in: wstest.Frame(true, 0x40, ws.OpPing, nil), close: 1002},
	{name: "opcode 3", in: wstest.Frame(true, 0, 3, nil), close: 1002},
	{name: "opcode 0xB", in: wstest.Frame(true, 0, 0xB, nil), close: 1002},
	{name: "unmasked", in: []byte{0x81, 0x01, 'x'}, close: 1002},
	{name: "fragmented ping", in: wstest.Frame(false, 0, ws.OpPing, nil), close: 1002},
	{name: "ping 126 bytes", in: wstest.Frame(true, 0, ws.OpPing, make([]byte, 126)), close: 1002},
	{name: "continuation without start", in: wstest.Frame(true, 0, ws.OpContinuation, []byte("x")), close: 1002},
	{name: "text inside fragmented message", in: cat(wstest.Frame(false, 0, ws.OpText, []byte("a")), wstest.Text("b")), close: 1002},
	{name: "length top bit", in: []byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}, close: 1002},
	{name: "close one byte", in: wstest.Frame(true, 0, ws.OpClose, []byte{3}), close: 1002},
	{name: "close reason not UTF-8", in: wstest.Frame(true, 0, ws.OpClose, wstest.ClosePayload(1000, "\xff")), close: 1007},
	{name: "invalid UTF-8", in: wstest.Text("a\xffb"), close: 1007},
	{name: "surrogate", in: wstest.Text("\xed\xa0\x80"), close: 1007},
	{name: "invalid UTF-8 in second fragment", in: cat(wstest.Frame(false, 0, ws.OpText, []byte("ok")),
		wstest.Frame(true, 0, ws.OpContinuation, []byte("\xc0\xaf"))), close: 1007},
	{name: "message ends mid-rune", in: cat(wstest.Frame(false, 0, ws.OpText, []byte("\xe2\x82")),
		wstest.Frame(true, 0, ws.OpContinuation, nil)), close: 1007},
	{name: "too big", opts: wsproto.Options{MaxMessageSize: 10}, in: wstest.Text("01234567890"), close: 1009},
	{name: "fragments too big", opts: wsproto.Options{MaxMessageSize: 10},
		in: cat(wstest.Frame(false, 0, ws.OpText, []byte("012345")), wstest.Frame(true, 0, ws.OpContinuation, []byte("67890"))), close: 1009},
	{name: "at the limit", opts: wsproto.Options{MaxMessageSize: 10}, in: wstest.Text("0123456789"),
		want: []string{msg(ws.OpText, "0123456789")}},
	{name: "incompressible message at the limit", opts: wsproto.Options{Compression: true, MaxMessageSize: 100},
		in:   wstest.Frame(true, 0x40, ws.OpBinary, deflate(nil, incompressible(100))),
		want: []string{msg(ws.OpBinary, string(incompressible(100)))}},
	{name: "inflates past the limit", opts: wsproto.Options{Compression: true, MaxMessageSize: 100},
		in: wstest.Frame(true, 0x40, ws.OpBinary, deflate(nil, make([]byte, 101))), close: 1009},
	// A compressed frame may pass the limit by deflate's worst growth,
	// 100/16 + 64 = 70 bytes here; one byte more is refused by its header.
	{name: "compressed frame at the wire bound", opts: wsproto.Options{Compression: true, MaxMessageSize: 100},
		in: wstest.Frame(true, 0x40, ws.OpBinary, make([]byte, 170))[:8]},
	{name: "compressed frame past the wire bound", opts: wsproto.Options{Compression: true, MaxMessageSize: 100},
		in: wstest.Frame(true, 0x40, ws.OpBinary, make([]byte, 171))[:8], close: 1009},
	{name: "compression bomb past the ratio", opts: wsproto.Options{Compression: true, MaxMessageSize: 1 << 20, MaxInflateRatio: 100},
		in: wstest.Frame(true, 0x40, ws.OpBinary, deflate(nil, make([]byte, 1<<20))), close: 1008},
	{name: "highly compressible under the ratio floor", opts: wsproto.Options{Compression: true, MaxInflateRatio: 100},
		in:   wstest.Frame(true, 0x40, ws.OpBinary, deflate(nil, make([]byte, wsproto.InflateRatioFloor))),
		want: []string{msg(ws.OpBinary, string(make([]byte, wsproto.InflateRatioFloor)))}},
	{name: "ratio off", opts: wsproto.Options{Compression: true, MaxMessageSize: 1 << 20},
		in:   wstest.Frame(true, 0x40, ws.OpBinary, deflate(nil, make([]byte, 64<<10))),
		want: []string{msg(ws.OpBinary, string(make([]byte, 64<<10)))}},
	{name: "bad compressed data", opts: wsproto.Options{Compression: true},
		in: wstest.Frame(true, 0x40, ws.OpBinary, []byte{0xff, 0xff, 0xff}), close: 1007},
	{name: "compressed invalid UTF-8", opts: wsproto.Options{Compression: true},
		in: wstest.Frame(true, 0x40, ws.OpText, deflate(nil, []byte("\xff"))), close: 1007},
}

func init() {
	for _, code := range []uint16{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		readerCases = append(readerCases, struct {
			name  string
			in    []byte
			opts  wsproto.Options
			want  []string
			close ws.StatusCode
		}{name: fmt.Sprintf("close code %d", code), in: wstest.Frame(true, 0, ws.OpClose, wstest.ClosePayload(code, "")), close: 1002})
	}
}

func TestReader(t *testing.T) {
	for _, tc := range readerCases {
		t.Run(tc.name, func(t *testing.T) {
			events, code := feed(t, tc.in, tc.opts)
			if code != tc.close || strings.Join(events, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("got %v close %d, want %v close %d", events, code, tc.want, tc.close)
			}
		})
	}
}

// TestReaderSplit feeds every case in two pieces cut at every position,
// and byte by byte: the result must not depend on how bytes arrive.
func TestReaderSplit(t *testing.T) {
	for _, tc := range readerCases {
		if len(tc.in) > 300 {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			want, wantCode := feed(t, tc.in, tc.opts)
			for cut := 1; cut < len(tc.in); cut++ {
				got, code := feed(t, tc.in, tc.opts, cut)
				if code != wantCode || strings.Join(got, "|") != strings.Join(want, "|") {
					t.Fatalf("cut at %d: got %v close %d, want %v close %d", cut, got, code, want, wantCode)
				}
			}
			every := make([]int, 0, len(tc.in))
			for i := 1; i < len(tc.in); i++ {
				every = append(every, i)
			}
			if got, code := feed(t, tc.in, tc.opts, every...); code != wantCode || strings.Join(got, "|") != strings.Join(want, "|") {
				t.Fatalf("byte by byte: got %v close %d, want %v close %d", got, code, want, wantCode)
			}
		})
	}
}

// TestReaderFailsFast checks that violations are reported as soon as the
// bytes that show them arrive, not when the frame or message is complete.
func TestReaderFailsFast(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		code ws.StatusCode
	}{
		{"unmasked header", []byte{0x81, 0x7E}, 1002},
		{"reserved opcode", []byte{0x83, 0x80}, 1002},
		{"invalid UTF-8 in a frame's first bytes", wstest.Frame(true, 0, ws.OpText, []byte("ab\xff"+strings.Repeat("x", 500)))[:8+3], 1007},
		{"invalid UTF-8 in a first fragment", wstest.Frame(false, 0, ws.OpText, []byte("ab\xc3\x28")), 1007},
		{"surrogate prefix", wstest.Frame(true, 0, ws.OpText, []byte("\xed\xa0\x80zzzzzzzz"))[:8], 1007},
		{"above U+10FFFF prefix", wstest.Frame(true, 0, ws.OpText, []byte("\xf4\x90\x80\x80zzzzzz"))[:8], 1007},
		{"frame too big", wstest.Frame(true, 0, ws.OpBinary, make([]byte, 2000))[:8], 1009},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, code := feed(t, tc.in, wsproto.Options{MaxMessageSize: 1000})
			if code != tc.code {
				t.Fatalf("close %d, want %d", code, tc.code)
			}
		})
	}
}

func TestReaderIdle(t *testing.T) {
	frag := wstest.Frame(false, 0, ws.OpText, []byte("abc"))
	full := wstest.Text("hello")
	for _, tc := range []struct {
		name string
		in   []byte
		idle bool
	}{
		{"complete message", full, true},
		{"one header byte", full[:1], false},
		{"header without mask", full[:2], false},
		{"half a payload", full[:9], false},
		{"first fragment only", frag, false},
		{"control frame", wstest.Frame(true, 0, ws.OpPing, nil), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r wsproto.Reader
			if err := r.Feed(bytes.Clone(tc.in), wsproto.Options{}, &recorder{}); err != nil {
				t.Fatal(err)
			}
			if r.Idle() != tc.idle {
				t.Fatalf("Idle() = %v, want %v", r.Idle(), tc.idle)
			}
		})
	}
}

// aliasing is a Handler that records where payloads live.
type aliasing struct{ ptr uintptr }

func (a *aliasing) HandleMessage(_ ws.OpCode, p []byte) error {
	a.ptr = uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	return nil
}
func (a *aliasing) HandleControl(ws.OpCode, []byte) error { return nil }

// TestReaderZeroCopy checks that a message that arrives whole is handed
// over in place, unmasked in the input buffer.
func TestReaderZeroCopy(t *testing.T) {
	in := wstest.Text("in place")
	var r wsproto.Reader
	var a aliasing
	if err := r.Feed(in, wsproto.Options{}, &a); err != nil {
		t.Fatal(err)
	}
	if want := uintptr(unsafe.Pointer(&in[6])); a.ptr != want {
		t.Fatalf("payload at %#x, want %#x in the input buffer", a.ptr, want)
	}
}

// TestReaderHandlerError checks that a Handler's error stops the Reader.
func TestReaderHandlerError(t *testing.T) {
	stop := errors.New("stop")
	var r wsproto.Reader
	var got int
	h := handlerFunc(func() error { got++; return stop })
	err := r.Feed(cat(wstest.Text("a"), wstest.Text("b")), wsproto.Options{}, h)
	if !errors.Is(err, stop) || got != 1 {
		t.Fatalf("err %v after %d messages, want stop after 1", err, got)
	}
}

type handlerFunc func() error

func (f handlerFunc) HandleMessage(ws.OpCode, []byte) error { return f() }
func (f handlerFunc) HandleControl(ws.OpCode, []byte) error { return f() }

func BenchmarkReaderFeed(b *testing.B) {
	for _, size := range []int{16, 128, 1024, 16 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			// With an all-zero mask, unmasking in place leaves the input as
			// it was, so one buffer serves every iteration.
			frame := zeroMask(size)
			in := bytes.Repeat(frame, max(1, 64<<10/len(frame)))
			h := handlerFunc(func() error { return nil })
			var r wsproto.Reader
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				if err := r.Feed(in, wsproto.Options{}, h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// zeroMask is a masked binary frame of n bytes whose mask is all zeros.
func zeroMask(n int) []byte {
	f := wstest.Frame(true, 0, ws.OpBinary, make([]byte, n))
	hl := len(f) - n - 4
	clear(f[hl : hl+4])
	copy(f[hl+4:], bytes.Repeat([]byte{'x'}, n))
	return f
}

func BenchmarkAppendFrame(b *testing.B) {
	payload := bytes.Repeat([]byte{'x'}, 100)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = wsproto.AppendFrame(buf[:0], ws.OpText, payload)
	}
}
