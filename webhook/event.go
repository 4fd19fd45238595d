package webhook

import (
	"strconv"
	"unicode/utf8"
)

// Event types.
const (
	UserOnline      = "user_online"
	UserOffline     = "user_offline"
	ChannelOccupied = "channel_occupied"
	ChannelVacated  = "channel_vacated"
)

// Event is one webhook event. User events carry User, channel events
// Channel.
type Event struct {
	Type string `json:"type"`
	// Time is when the gateway saw the event, in Unix milliseconds.
	Time int64  `json:"time"`
	Node string `json:"node"`
	// Seq orders the events of one user or one channel across the
	// cluster: of two events about the same user (or channel), the later
	// has the larger seq (the revision of the cluster's agreement about
	// it). Compare seq, not time, whose clocks differ between nodes.
	Seq     uint64 `json:"seq"`
	User    string `json:"user,omitempty"`
	Channel string `json:"channel,omitempty"`
}

// Batch is the body of one POST, for backends to decode.
type Batch struct {
	Events []Event `json:"events"`
}

// The body of a POST is batchHead, the events' objects joined by commas,
// and batchTail.
const (
	batchHead = `{"events":[`
	batchTail = `]}`
)

// appendJSON appends the event's JSON object, as encoding/json would write
// it (without its HTML escaping), and exactly encodedLen bytes long. It is
// written out so that Send allocates only the encoding, sized once.
func (ev *Event) appendJSON(b []byte) []byte {
	b = append(b, `{"type":`...)
	b = appendString(b, ev.Type)
	b = append(b, `,"time":`...)
	b = strconv.AppendInt(b, ev.Time, 10)
	b = append(b, `,"node":`...)
	b = appendString(b, ev.Node)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, ev.Seq, 10)
	if ev.User != "" {
		b = append(b, `,"user":`...)
		b = appendString(b, ev.User)
	}
	if ev.Channel != "" {
		b = append(b, `,"channel":`...)
		b = appendString(b, ev.Channel)
	}
	return append(b, '}')
}

// encodedLen is the length appendJSON appends.
func (ev *Event) encodedLen() int {
	n := len(`{"type":`) + stringLen(ev.Type) +
		len(`,"time":`) + intLen(ev.Time) +
		len(`,"node":`) + stringLen(ev.Node) +
		len(`,"seq":`) + uintLen(ev.Seq) + len(`}`)
	if ev.User != "" {
		n += len(`,"user":`) + stringLen(ev.User)
	}
	if ev.Channel != "" {
		n += len(`,"channel":`) + stringLen(ev.Channel)
	}
	return n
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 bytes become
// U+FFFD each, as encoding/json does, so that strict parsers accept the
// body.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0 // s[start:i] is still to copy verbatim
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// stringLen is the length appendString appends.
func stringLen(s string) int {
	n := 2 // quotes
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c >= 0x20 && c != '"' && c != '\\':
				n++
			case c == '"', c == '\\', c == '\n', c == '\r', c == '\t':
				n += 2
			default:
				n += len(`\u0000`)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			n += len(`\ufffd`)
			i++
			continue
		}
		n += size
		i += size
	}
	return n
}

// intLen is the length of v in decimal.
func intLen(v int64) int {
	if v < 0 {
		return 1 + uintLen(-uint64(v))
	}
	return uintLen(uint64(v))
}

// uintLen is the length of u in decimal.
func uintLen(u uint64) int {
	n := 1
	for u >= 10 {
		u /= 10
		n++
	}
	return n
}
