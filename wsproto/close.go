package wsproto

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Close codes pushgate sends (RFC 6455 section 7.4.1 and the IANA registry).
const (
	CloseNormal        ws.StatusCode = 1000
	CloseGoingAway     ws.StatusCode = 1001
	CloseProtocolError ws.StatusCode = 1002
	CloseInvalidData   ws.StatusCode = 1007
	ClosePolicy        ws.StatusCode = 1008
	CloseTooBig        ws.StatusCode = 1009
	CloseInternal      ws.StatusCode = 1011
	CloseTryAgainLater ws.StatusCode = 1013
	// Private-use codes (4000-4999) of the pushgate.v1 protocol.
	CloseTokenExpired     ws.StatusCode = 4001 // reconnect with a new token
	CloseDisconnected     ws.StatusCode = 4002 // disconnected by the server; may reconnect
	CloseDisconnectedHard ws.StatusCode = 4003 // disconnected by the server; do not reconnect
)

// CloseError is a reason to close a WebSocket connection: the close code and
// a short reason, both sent to the peer in the close frame.
type CloseError struct {
	Code   ws.StatusCode
	Reason string
}

func (e *CloseError) Error() string {
	return "wsproto: close " + strconv.Itoa(int(e.Code)) + ": " + e.Reason
}

func protocolError(reason string) *CloseError {
	return &CloseError{Code: CloseProtocolError, Reason: reason}
}

// Errors the frame reader reports. Each carries the close code to send.
var (
	ErrReservedBits       = protocolError("reserved bits set")
	ErrReservedOpcode     = protocolError("reserved opcode")
	ErrUnmasked           = protocolError("client frame not masked")
	ErrControlFragmented  = protocolError("fragmented control frame")
	ErrControlTooLong     = protocolError("control frame payload over 125 bytes")
	ErrBadLength          = protocolError("frame length has its top bit set")
	ErrContinuation       = protocolError("continuation frame without a message")
	ErrExpectContinuation = protocolError("new data frame inside a fragmented message")
	ErrCloseOneByte       = protocolError("close frame payload of one byte")
	ErrCloseCode          = protocolError("invalid close code")
	ErrCloseReasonUTF8    = &CloseError{Code: CloseInvalidData, Reason: "close reason is not UTF-8"}
	ErrInvalidUTF8        = &CloseError{Code: CloseInvalidData, Reason: "text message is not UTF-8"}
	ErrTooBig             = &CloseError{Code: CloseTooBig, Reason: "message too big"}
	ErrBadCompression     = &CloseError{Code: CloseInvalidData, Reason: "invalid compressed data"}
	ErrInflateRatio       = &CloseError{Code: ClosePolicy, Reason: "compressed message inflates too much"}
)

// ValidCloseCode reports whether a peer may send code in a close frame:
// 1000-1003 and 1007-1014 from the protocol range (1004-1006 and 1015 are
// reserved, the rest unassigned) and 3000-4999 for libraries and
// applications.
func ValidCloseCode(code ws.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// CheckClosePayload validates the payload of a received close frame: empty,
// or a valid code followed by a UTF-8 reason.
func CheckClosePayload(p []byte) error {
	switch {
	case len(p) == 0:
		return nil
	case len(p) == 1:
		return ErrCloseOneByte
	case !ValidCloseCode(ws.StatusCode(binary.BigEndian.Uint16(p))):
		return ErrCloseCode
	case !utf8.Valid(p[2:]):
		return ErrCloseReasonUTF8
	}
	return nil
}

// ParseClosePayload returns the code and reason of a validated close
// payload; an empty payload has code 0 (RFC 6455: "no status received").
func ParseClosePayload(p []byte) (ws.StatusCode, []byte) {
	if len(p) < 2 {
		return 0, nil
	}
	return ws.StatusCode(binary.BigEndian.Uint16(p)), p[2:]
}
