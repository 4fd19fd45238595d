package protocol

import (
	"bytes"
	"compress/flate"
	"sync"
)

// A gzip-encoded event stream (SSEGzip) costs a stream no compressor:
// every event is deflated on its own, once per publication like every
// other encoding, by a pooled compressor reset for each. No event refers
// back to another, so the events of any stream, in any order, make one
// valid deflate stream. What a stream adds itself (its id lines,
// heartbeat comments) goes in stored blocks, as do envelopes under
// CompressMin. Every event ends with a sync flush (an empty stored
// block), so that a reader hands it out at once. The gzip trailer never
// comes: the stream ends when the connection does.
//
// A compressed event starts with a stored block holding its first bytes,
// through the envelope's `,"data":`, so that a stream can read the
// position it moves (EventEnvelope, ReadPosition) without inflating it.

// GzipHeader starts a gzip-encoded stream's body: deflate, no name, no
// time, unknown OS.
var GzipHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}

// StoredHeaderLen is the size of a stored block's header.
const StoredHeaderLen = 5

// PutStoredHeader writes, in b's first StoredHeaderLen bytes, the header
// of a stored block holding the rest of b (at most 65,535 bytes: an id
// line is at most MaxEventIDLen).
func PutStoredHeader(b []byte) {
	n := len(b) - StoredHeaderLen
	b[0], b[1], b[2], b[3], b[4] = 0, byte(n), byte(n>>8), ^byte(n), ^byte(n>>8)
}

// AppendStored appends p as non-final stored deflate blocks (a 5-byte
// header each, 65,535 bytes at most). The stream must be at a byte
// boundary, as it is after GzipHeader, a sync flush or another stored
// block.
func AppendStored(dst, p []byte) []byte {
	for {
		n := min(len(p), 0xffff)
		at := len(dst)
		dst = append(append(dst, make([]byte, StoredHeaderLen)...), p[:n]...)
		PutStoredHeader(dst[at:])
		if p = p[n:]; len(p) == 0 {
			return dst
		}
	}
}

// syncMarker is an empty stored block: a reader hands out what it holds
// when it reads one (Go's flate keeps stored data in its window until
// then; zlib does not).
var syncMarker = []byte{0, 0, 0, 0xff, 0xff}

// AppendStoredEvent appends p, a whole event or comment, as stored blocks
// and the sync marker that makes a reader hand it out.
func AppendStoredEvent(dst, p []byte) []byte {
	return append(AppendStored(dst, p), syncMarker...)
}

var compressors = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestSpeed) // the level is valid: no error
	return w
}}

// appendDeflated appends p deflated with no context and sync-flushed.
func appendDeflated(dst, p []byte) []byte {
	b := bytes.NewBuffer(dst)
	w := compressors.Get().(*flate.Writer)
	w.Reset(b)
	_, _ = w.Write(p) // writes to a bytes.Buffer cannot fail
	_ = w.Flush()
	w.Reset(nil)
	compressors.Put(w)
	return b.Bytes()
}

// dataField ends the part of an event a compressed one keeps stored.
var dataField = []byte(`,"data":`)

// encodeSSEGzip is the SSEGzip encoding of env.
func encodeSSEGzip(env []byte) []byte {
	ev := AppendSSEData(make([]byte, 0, sseSize(len(env))), env)
	if len(env) < CompressMin {
		return AppendStoredEvent(make([]byte, 0, len(ev)+10), ev)
	}
	k := bytes.Index(ev, dataField)
	if k < 0 || k > 512 {
		k = 0
	} else {
		k += len(dataField)
	}
	out := AppendStored(make([]byte, 0, k+5+len(ev)/2), ev[:k])
	return appendDeflated(out, ev[k:])
}

// EventEnvelope returns the start of the envelope in an event encoded as
// SSE or SSEGzip (for a compressed one, as far as its stored start
// reaches: enough for ReadPosition), or false when it has none to read.
func EventEnvelope(event []byte) ([]byte, bool) {
	if len(event) >= 5 && event[0] == 0 {
		n := int(event[1]) | int(event[2])<<8
		if 5+n > len(event) {
			return nil, false
		}
		event = event[5 : 5+n]
	}
	return SSEEnvelope(event)
}
