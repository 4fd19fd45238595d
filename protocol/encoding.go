package protocol

import (
	"sync"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/wsproto"
)

// Encoding is how a transport carries envelopes on the wire. A publication
// is encoded once per encoding its subscribers take (Wire), and every
// subscriber of that encoding is handed the same bytes.
type Encoding uint8

// Encodings.
const (
	// WebSocket is a text frame carrying the envelope.
	WebSocket Encoding = iota
	// WebSocketDeflate is a text frame compressed with permessage-deflate,
	// for connections that negotiated it; envelopes below CompressMin go
	// as WebSocket frames (RSV1 clear is always allowed).
	WebSocketDeflate
	// SSE is a Server-Sent Events event: the envelope as its data lines
	// and the blank line that dispatches it (sse.go). A stream adds each
	// event's id itself, in front of these shared bytes.
	SSE
	// SSEGzip is an SSE event in a gzip-encoded stream: deflated on its
	// own, or stored when small (ssegzip.go).
	SSEGzip
	NumEncodings
)

// CompressMin is the smallest envelope worth compressing: below it deflate
// saves too little to pay for itself.
const CompressMin = 512

// For returns the encoding an envelope of n bytes is carried in to a
// connection that takes e: connections share one encoded copy of each
// envelope per encoding.
func (e Encoding) For(n int) Encoding {
	if e == WebSocketDeflate && n < CompressMin {
		return WebSocket
	}
	return e
}

// Headroom is the room left in front of an envelope for the longest frame
// header, so that its plain WebSocket frame shares the envelope's memory:
// envelopes built into Buffer are framed in place.
const Headroom = 10

// Buffer returns an empty buffer for an envelope of about n bytes, with
// Headroom in front.
func Buffer(n int) []byte { return make([]byte, Headroom, Headroom+n) }

// encode returns the envelope in buf[Headroom:] encoded as e. The
// WebSocket frame is written in place, in buf's headroom: call it once per
// buffer and encoding.
func encode(e Encoding, buf []byte) []byte {
	env := buf[Headroom:]
	switch e {
	case WebSocketDeflate:
		return wsproto.AppendCompressedFrame(nil, ws.OpText, env)
	case SSE:
		return AppendSSEData(make([]byte, 0, sseSize(len(env))), env)
	case SSEGzip:
		return encodeSSEGzip(env)
	default:
		h := wsproto.HeaderSize(len(env))
		wsproto.AppendHeader(buf[Headroom-h:Headroom-h], ws.OpText, false, len(env))
		return buf[Headroom-h:]
	}
}

// Frame returns the one-off envelope in buf (built into Buffer) as e
// carries it, writing into buf's headroom: for a reply to one connection.
func Frame(e Encoding, buf []byte) []byte { return encode(e.For(len(buf)-Headroom), buf) }

// Wire is an envelope and its encodings, each built on first need and then
// shared by every connection it is sent to: a publication, or a reply to
// all of a channel's subscribers. The zero Wire is empty; Init fills it.
type Wire struct {
	buf  []byte // Headroom, then the envelope
	enc  [NumEncodings][]byte
	once [NumEncodings]sync.Once
}

// NewWire returns the Wire of the envelope in buf, built into Buffer.
func NewWire(buf []byte) *Wire {
	w := new(Wire)
	w.Init(buf)
	return w
}

// Init makes w the Wire of the envelope in buf, built into Buffer, and
// builds its WebSocket frame, which nearly every publication needs.
func (w *Wire) Init(buf []byte) {
	w.buf = buf
	w.once[WebSocket].Do(func() { w.enc[WebSocket] = encode(WebSocket, buf) })
}

// Frame returns the envelope's WebSocket frame, built by Init: the bytes
// nearly every connection is sent, without Encoded's checks.
func (w *Wire) Frame() []byte { return w.enc[WebSocket] }

// Envelope returns the JSON envelope; it must not be modified.
func (w *Wire) Envelope() []byte { return w.buf[Headroom:] }

// Encoded returns the envelope as a connection taking e is sent it. The
// first call for an encoding builds it: store, when set, stores it by
// running set (by default set runs alone), so that a holder that counts
// what w weighs (Size) can do it under its own lock.
func (w *Wire) Encoded(e Encoding, store func(set func())) []byte {
	e = e.For(len(w.buf) - Headroom)
	w.once[e].Do(func() {
		b := encode(e, w.buf)
		set := func() { w.enc[e] = b }
		if store != nil {
			store(set)
		} else {
			set()
		}
	})
	return w.enc[e]
}

// Size is what w's encodings built so far weigh, in bytes (the WebSocket
// frame holds the envelope). Read it where the encodings are stored (see
// Encoded).
func (w *Wire) Size() int {
	n := 0
	for _, b := range w.enc {
		n += len(b)
	}
	return n
}
