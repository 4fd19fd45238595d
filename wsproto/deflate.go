package wsproto

import (
	"bytes"
	"compress/flate"
	"io"
	"sync"
	"unicode/utf8"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
)

// pushgate runs permessage-deflate (RFC 7692) without context takeover in
// either direction: every message is compressed on its own, so an idle
// connection keeps no compression window (a flate writer alone is hundreds of
// KiB) and one compressed broadcast frame suits every subscriber.
var deflateAccept = wsflate.Parameters{
	ServerNoContextTakeover: true,
	ClientNoContextTakeover: true,
}.Option()

// deflateNegotiator accepts the first permessage-deflate offer pushgate can
// honour and declines the others; a malformed offer is declined, not fatal
// (RFC 7692 section 5).
type deflateNegotiator struct{ accepted bool }

func (n *deflateNegotiator) negotiate(opt httphead.Option) (httphead.Option, error) {
	if n.accepted || !bytes.Equal(opt.Name, wsflate.ExtensionNameBytes) {
		return httphead.Option{}, nil
	}
	var p wsflate.Parameters
	if err := p.Parse(opt); err != nil {
		return httphead.Option{}, nil
	}
	// compress/flate always uses a 32 KiB window; a client that wants the
	// server to use a smaller one gets no compression.
	if p.ServerMaxWindowBits.Defined() && p.ServerMaxWindowBits < 15 {
		return httphead.Option{}, nil
	}
	n.accepted = true
	return deflateAccept, nil
}

var (
	inflaters = sync.Pool{New: func() any {
		return wsflate.NewReader(nil, func(r io.Reader) wsflate.Decompressor {
			return inflater{flate.NewReader(r)}
		})
	}}
	deflaters = sync.Pool{New: func() any {
		return wsflate.NewWriter(nil, func(w io.Writer) wsflate.Compressor {
			fw, _ := flate.NewWriter(w, flate.BestSpeed) // level is valid: no error
			return fw
		})
	}}
	inflateBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

// deflateBound is the most a message of n bytes may take compressed: the
// size limit applies to the inflated message, so the compressed one must
// be let through even when compression made it larger. Incompressible
// data grows by 5 bytes per stored block, and zlib cuts blocks at its
// literal buffer, 2^(memLevel+6) bytes: 4% at memLevel 1, 0.25% at
// Python websockets' memLevel 5 (where zlib's own deflateBound, which
// assumes 64 KiB blocks, is too small). n/16 covers every setting, and 64
// the block a sync flush adds.
func deflateBound(n int64) int64 {
	return n + n>>4 + 64
}

// decompressMessage inflates a compressed message and hands it to h. It
// stops inflating as soon as the message passes the size limit or the
// inflate ratio, so a bomb costs no more than the bound it breaks.
func decompressMessage(op ws.OpCode, p []byte, o Options, h Handler) error {
	limit, ratioErr := o.limit(), error(nil)
	if o.MaxInflateRatio > 0 {
		if r := max(InflateRatioFloor, int64(o.MaxInflateRatio)*int64(len(p))); r < limit {
			limit, ratioErr = r, ErrInflateRatio
		}
	}
	fr := inflaters.Get().(*wsflate.Reader)
	defer inflaters.Put(fr)
	buf := inflateBufs.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 64<<10 {
			buf.Reset()
			inflateBufs.Put(buf)
		}
	}()
	fr.Reset(bytes.NewReader(p))
	n, err := buf.ReadFrom(io.LimitReader(fr, limit+1))
	if err != nil {
		return ErrBadCompression
	}
	if n > limit {
		if ratioErr != nil {
			return ratioErr
		}
		return ErrTooBig
	}
	out := buf.Bytes()
	if op == ws.OpText && !utf8.Valid(out) {
		return ErrInvalidUTF8
	}
	return h.HandleMessage(op, out)
}

// AppendCompressedFrame appends a final frame carrying payload compressed
// with permessage-deflate (RSV1 set).
func AppendCompressedFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	var body bytes.Buffer
	fw := deflaters.Get().(*wsflate.Writer)
	fw.Reset(&body)
	// Writes to a bytes.Buffer cannot fail.
	_, _ = fw.Write(payload)
	_ = fw.Flush()
	_ = fw.Close()
	deflaters.Put(fw)
	dst = AppendHeader(dst, op, true, body.Len())
	return append(dst, body.Bytes()...)
}

// inflater lets wsflate.Reader reuse a flate reader: flate's Reset takes a
// dictionary argument that wsflate's ReadResetter does not.
type inflater struct{ io.ReadCloser }

func (f inflater) Reset(r io.Reader) { _ = f.ReadCloser.(flate.Resetter).Reset(r, nil) }
