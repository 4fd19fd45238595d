package protocol

import (
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"
	"time"
)

// Events encoded one by one (stored or deflated, each on its own) and a
// stream's own stored bytes, in any order, read back through gzip as the
// plain stream would have been; each event's position is readable
// without inflating it.
func TestSSEGzipStream(t *testing.T) {
	big, _ := AppendMessage(Buffer(4096), "news", 7, []byte(`{"text":"`+strings.Repeat("compressible ", 300)+`"}`))
	small, _ := AppendMessage(Buffer(64), "news", 8, []byte(`"hi"`))
	lines, _ := AppendMessage(Buffer(4096), "news", 9, []byte("{\n\"a\":\r\n\""+strings.Repeat("x", 600)+"\"}"))
	var gz, plain bytes.Buffer
	gz.Write(GzipHeader)
	add := func(stored []byte, env []byte) {
		if stored != nil {
			gz.Write(AppendStored(nil, stored))
			plain.Write(stored)
			return
		}
		e := Frame(SSEGzip, env)
		gz.Write(e)
		plain.Write(Frame(SSE, bytes.Clone(env)))
		head, ok := EventEnvelope(e)
		if p := ReadPosition(head); !ok || p.Kind != EnvelopeMessage || string(p.Channel) != "news" || p.Offset == 0 {
			t.Errorf("position of %.40q: %+v %v", e, p, ok)
		}
	}
	add([]byte(SSERetry), nil)
	add(nil, bytes.Clone(big))
	add([]byte("id: news,e,8\n"), nil)
	add(nil, bytes.Clone(small))
	add([]byte(SSEComment), nil)
	add(nil, bytes.Clone(lines))
	if n := len(Frame(SSEGzip, bytes.Clone(big))); n > len(big)/4 {
		t.Errorf("a compressible event of %d bytes took %d", len(big), n)
	}
	// No trailer: the reader has everything, then an unexpected EOF.
	r, err := gzip.NewReader(&gz)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != io.ErrUnexpectedEOF || string(got) != plain.String() {
		t.Fatalf("read %d bytes (%v), want the %d of the plain stream", len(got), err, plain.Len())
	}
}

// A reader inflating a gzip-encoded stream as it arrives (Go's, here; a
// browser's zlib is readier) gets each event whole before the next is
// written: every event ends with a sync flush.
func TestSSEGzipEventsArriveWhole(t *testing.T) {
	pr, pw := io.Pipe()
	big, _ := AppendMessage(Buffer(4096), "news", 1, []byte(`"`+strings.Repeat("abc ", 400)+`"`))
	small, _ := AppendMessage(Buffer(64), "news", 2, []byte(`"hi"`))
	events := [][]byte{Frame(SSEGzip, big), Frame(SSEGzip, small), AppendStoredEvent(nil, []byte(SSEComment))}
	want := []string{string(Frame(SSE, bytes.Clone(big))), string(Frame(SSE, bytes.Clone(small))), SSEComment}
	read := make(chan string)
	go func() {
		defer close(read)
		r, err := gzip.NewReader(pr)
		if err != nil {
			return
		}
		buf := make([]byte, 8192)
		got := ""
		for _, w := range want {
			for len(got) < len(w) {
				n, err := r.Read(buf)
				got += string(buf[:n])
				if err != nil {
					return
				}
			}
			read <- got[:len(w)]
			got = got[len(w):]
		}
	}()
	next := make(chan struct{})
	go func() {
		_, _ = pw.Write(GzipHeader)
		for _, e := range events {
			_, _ = pw.Write(e) // returns once the reader took it all
			if _, ok := <-next; !ok {
				break
			}
		}
		pw.Close()
	}()
	defer close(next)
	for i, w := range want {
		// Nothing more is written until this event is read: a reader
		// that held it back would wait for the next one forever.
		select {
		case got := <-read:
			if got != w {
				t.Fatalf("event %d: read %.60q, want %.60q", i, got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d was not handed out before the next one came", i)
		}
		if i < len(want)-1 {
			next <- struct{}{}
		}
	}
}
