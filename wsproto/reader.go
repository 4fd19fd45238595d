package wsproto

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// DefaultMaxMessageSize is the message size limit when Options leave it 0:
// a push gateway's clients send little (ops, chat lines), so a larger
// message is more likely an attack on memory than a need.
const DefaultMaxMessageSize = 64 << 10

// Options are the facts of one connection that its frames are checked
// against.
type Options struct {
	// MaxMessageSize bounds a message, reassembled from its fragments and,
	// when compressed, after decompression (its compressed form may exceed
	// it by 1/16 plus 64 bytes, which deflate's growth of incompressible
	// data stays under whatever the encoder's settings). Default 64 KiB.
	MaxMessageSize int
	// Compression reports that permessage-deflate was negotiated, which
	// gives RSV1 its meaning on the first frame of a message.
	Compression bool
	// MaxInflateRatio, when positive, bounds how many times larger than
	// its compressed form a message may inflate, once it inflates past
	// InflateRatioFloor: a compression bomb is refused (1008) as soon as
	// it passes the ratio, before it is inflated whole.
	MaxInflateRatio int
}

// InflateRatioFloor is the inflated size below which MaxInflateRatio does
// not apply: small messages compress far (a run of spaces) and cost little.
const InflateRatioFloor = 16 << 10

func (o Options) limit() int64 {
	if o.MaxMessageSize <= 0 {
		return DefaultMaxMessageSize
	}
	return int64(o.MaxMessageSize)
}

// Handler receives what a Reader decodes. Payload slices are only valid
// during the call. An error returned by a Handler stops the Reader and is
// returned by Feed.
type Handler interface {
	// HandleMessage receives a complete text or binary message: reassembled,
	// decompressed and, for text, checked to be UTF-8.
	HandleMessage(op ws.OpCode, payload []byte) error
	// HandleControl receives a ping, pong or close frame. A close payload
	// has been checked with CheckClosePayload.
	HandleControl(op ws.OpCode, payload []byte) error
}

// Reader decodes the frames a client sends, exactly per RFC 6455, from bytes
// fed to it as they arrive: a frame or message may be split anywhere. It
// unmasks payloads in place and hands a single-frame message that arrived in
// one piece straight to the Handler, without copying. Only a frame or message
// that spans several Feed calls is copied into the Reader, so a connection
// needs a Reader only while it has something partial (see Idle).
//
// The zero value is ready to use; a Reader is not safe for concurrent use.
type Reader struct {
	// The frame being read.
	inFrame bool
	fin     bool
	op      ws.OpCode
	mask    [4]byte
	pos     int   // payload bytes of the frame already read
	remain  int64 // payload bytes of the frame still to come
	hdr     [ws.MaxHeaderSize]byte
	nhdr    int // bytes of a split header gathered in hdr

	// The data message being read; msgOp is 0 between messages.
	msgOp      ws.OpCode
	compressed bool
	msg        []byte
	utf8       UTF8Validator

	// The control frame being read.
	ctl  [ws.MaxControlFramePayloadSize]byte
	nctl int
}

// Idle reports whether the Reader holds nothing partial: it stands between
// messages and between frames.
func (r *Reader) Idle() bool {
	return !r.inFrame && r.nhdr == 0 && r.msgOp == 0
}

// Held is the memory the Reader holds for a message in progress: its
// message buffer's capacity, which Reset keeps when small.
func (r *Reader) Held() int { return cap(r.msg) }

// Reset returns the Reader to its zero state. It keeps a small message
// buffer for reuse and drops a large one.
func (r *Reader) Reset() {
	msg := r.msg[:0]
	if cap(msg) > 4096 {
		msg = nil
	}
	*r = Reader{msg: msg}
}

// Feed decodes p, which it modifies (payloads are unmasked in place). It
// returns the first protocol violation as a *CloseError, or the first error a
// Handler returns; the Reader must not be fed again after an error.
func (r *Reader) Feed(p []byte, o Options, h Handler) error {
	for len(p) > 0 {
		if !r.inFrame {
			var err error
			if p, err = r.readHeader(p, o); err != nil || !r.inFrame {
				return err
			}
			if r.remain == 0 {
				if err := r.endFrame(nil, o, h); err != nil {
					return err
				}
				continue
			}
		}
		n := len(p)
		if int64(n) > r.remain {
			n = int(r.remain)
		}
		whole := r.pos == 0 && int64(n) == r.remain
		chunk := p[:n]
		p = p[n:]
		ws.Cipher(chunk, r.mask, r.pos)
		r.pos += n
		r.remain -= int64(n)
		if err := r.payload(chunk, whole, o, h); err != nil {
			return err
		}
	}
	return nil
}

// readHeader consumes a frame header from p, gathering a split header in
// r.hdr, and starts the frame. It returns what is left of p; r.inFrame is
// false if the header is still incomplete.
func (r *Reader) readHeader(p []byte, o Options) ([]byte, error) {
	if r.nhdr == 0 && len(p) >= 2 {
		if err := checkStart(p[0], p[1], r, o); err != nil {
			return nil, err
		}
		if n := headerLen(p[1]); len(p) >= n {
			return p[n:], r.startFrame(p[:n], o)
		}
	}
	for len(p) > 0 {
		need := 2
		if r.nhdr >= 2 {
			need = headerLen(r.hdr[1])
		}
		c := copy(r.hdr[r.nhdr:need], p)
		r.nhdr += c
		p = p[c:]
		if r.nhdr == 2 && need == 2 {
			// Fail fast: the first two bytes tell most violations.
			if err := checkStart(r.hdr[0], r.hdr[1], r, o); err != nil {
				return nil, err
			}
			continue
		}
		if r.nhdr == need {
			r.nhdr = 0
			return p, r.startFrame(r.hdr[:need], o)
		}
	}
	return p, nil
}

// headerLen is the size of a masked client frame's header, from its second
// byte.
func headerLen(b1 byte) int {
	n := 2 + 4
	switch b1 & 0x7F {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	return n
}

// checkStart checks what the first two header bytes tell.
func checkStart(b0, b1 byte, r *Reader, o Options) error {
	op := ws.OpCode(b0 & 0x0F)
	fin := b0&0x80 != 0
	switch {
	case b0&0x30 != 0:
		return ErrReservedBits
	case b0&rsv1 != 0 && !(o.Compression && (op == ws.OpText || op == ws.OpBinary)):
		return ErrReservedBits
	case op.IsReserved():
		return ErrReservedOpcode
	case b1&0x80 == 0:
		return ErrUnmasked
	}
	if op.IsControl() {
		if !fin {
			return ErrControlFragmented
		}
		if b1&0x7F > ws.MaxControlFramePayloadSize {
			return ErrControlTooLong
		}
		return nil
	}
	switch {
	case op == ws.OpContinuation && r.msgOp == 0:
		return ErrContinuation
	case op != ws.OpContinuation && r.msgOp != 0:
		return ErrExpectContinuation
	}
	return nil
}

// startFrame parses a complete header already checked by checkStart.
func (r *Reader) startFrame(hb []byte, o Options) error {
	b0, b1 := hb[0], hb[1]
	length := int64(b1 & 0x7F)
	i := 2
	switch length {
	case 126:
		length = int64(binary.BigEndian.Uint16(hb[2:]))
		i = 4
	case 127:
		u := binary.BigEndian.Uint64(hb[2:])
		if u>>63 != 0 {
			return ErrBadLength
		}
		length = int64(u)
		i = 10
	}
	op := ws.OpCode(b0 & 0x0F)
	limit := o.limit()
	if r.compressed || (b0&rsv1 != 0 && op != ws.OpContinuation) {
		limit = deflateBound(limit)
	}
	if !op.IsControl() && int64(len(r.msg))+length > limit {
		return ErrTooBig
	}
	r.inFrame = true
	r.fin = b0&0x80 != 0
	r.op = op
	copy(r.mask[:], hb[i:i+4])
	r.pos = 0
	r.remain = length
	if op == ws.OpText || op == ws.OpBinary {
		r.msgOp = op
		r.compressed = b0&rsv1 != 0
		r.utf8.Reset()
	}
	return nil
}

// payload takes an unmasked chunk of the current frame; whole reports that
// the chunk is the entire payload of the frame.
func (r *Reader) payload(chunk []byte, whole bool, o Options, h Handler) error {
	if r.op.IsControl() {
		r.nctl += copy(r.ctl[r.nctl:], chunk)
	} else if whole && r.fin && len(r.msg) == 0 {
		// A single-frame message that arrived in one piece: no copy.
		return r.endFrame(chunk, o, h)
	} else {
		if r.msgOp == ws.OpText && !r.compressed && !r.utf8.Write(chunk) {
			return ErrInvalidUTF8
		}
		r.msg = append(r.msg, chunk...)
	}
	if r.remain > 0 {
		return nil
	}
	return r.endFrame(nil, o, h)
}

// endFrame finishes the current frame. direct, when not nil, is the whole
// payload of a single-frame message.
func (r *Reader) endFrame(direct []byte, o Options, h Handler) error {
	r.inFrame = false
	if r.op.IsControl() {
		p := r.ctl[:r.nctl]
		r.nctl = 0
		if r.op == ws.OpClose {
			if err := CheckClosePayload(p); err != nil {
				return err
			}
		}
		return h.HandleControl(r.op, p)
	}
	if !r.fin {
		return nil
	}
	op, compressed, msg := r.msgOp, r.compressed, r.msg
	if direct != nil {
		msg = direct
	}
	r.msgOp = 0
	r.msg = r.msg[:0]
	if compressed {
		return decompressMessage(op, msg, o, h)
	}
	if op == ws.OpText {
		if direct != nil {
			if !utf8.Valid(msg) {
				return ErrInvalidUTF8
			}
		} else if !r.utf8.Complete() {
			return ErrInvalidUTF8
		}
	}
	return h.HandleMessage(op, msg)
}
