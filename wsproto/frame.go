package wsproto

import (
	"encoding/binary"

	"github.com/gobwas/ws"
)

// rsv1 is the RSV1 bit in the first header byte: "compressed" under
// permessage-deflate (RFC 7692).
const rsv1 = 0x40

// HeaderSize is the size of the header of an unmasked frame carrying n bytes.
func HeaderSize(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xFFFF:
		return 4
	}
	return 10
}

// AppendHeader appends the header of a final, unmasked (server to client)
// frame carrying n payload bytes.
func AppendHeader(dst []byte, op ws.OpCode, compressed bool, n int) []byte {
	b0 := 0x80 | byte(op)
	if compressed {
		b0 |= rsv1
	}
	return appendHeader(dst, b0, 0, n)
}

// appendHeader appends the first byte b0, the mask bit, and the length n
// in the shortest form that holds it.
func appendHeader(dst []byte, b0, masked byte, n int) []byte {
	switch {
	case n <= 125:
		return append(dst, b0, masked|byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(dst, b0, masked|126), uint16(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, b0, masked|127), uint64(n))
}

// AppendMaskedFrame appends a frame as a client sends it, masked with
// mask. fin false makes it a fragment; rsv holds the RSV1-3 bits as in the
// first header byte (0x40, RSV1, marks a compressed message's first
// frame). The gateway never sends one: its test clients and the attack
// tools do.
func AppendMaskedFrame(dst []byte, fin bool, rsv byte, op ws.OpCode, mask [4]byte, payload []byte) []byte {
	b0 := rsv&0x70 | byte(op)&0x0F
	if fin {
		b0 |= 0x80
	}
	dst = append(appendHeader(dst, b0, 0x80, len(payload)), mask[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	ws.Cipher(dst[start:], mask, 0)
	return dst
}

// Payload is the payload of an unmasked frame: what follows the header its
// second byte says it has.
func Payload(frame []byte) []byte {
	switch frame[1] & 0x7F {
	case 126:
		return frame[4:]
	case 127:
		return frame[10:]
	}
	return frame[2:]
}

// AppendFrame appends a final, unmasked frame carrying payload. pushgate
// never fragments what it sends: each message is one frame, so a frame in an
// outbound queue can be written, or dropped, whole.
func AppendFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	return append(AppendHeader(dst, op, false, len(payload)), payload...)
}

// AppendCloseFrame appends a close frame with code and reason. The reason is
// cut to fit the 125-byte control frame limit, on a rune boundary.
func AppendCloseFrame(dst []byte, code ws.StatusCode, reason string) []byte {
	const maxReason = ws.MaxControlFramePayloadSize - 2
	if len(reason) > maxReason {
		cut := maxReason
		for cut > 0 && reason[cut]&0xC0 == 0x80 {
			cut--
		}
		reason = reason[:cut]
	}
	dst = AppendHeader(dst, ws.OpClose, false, 2+len(reason))
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	return append(dst, reason...)
}

// PingFrame is the empty ping the heartbeat sends; it is shared and must not
// be modified.
var PingFrame = AppendFrame(nil, ws.OpPing, nil)
