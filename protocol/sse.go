package protocol

import (
	"bytes"
	"errors"
	"strconv"
)

// Server-Sent Events (the HTML standard's text/event-stream) carry the
// same envelopes as WebSocket: each is an event whose data is the JSON
// envelope, dispatched as a plain "message" event, so that a bare
// EventSource's onmessage sees every envelope and tells them apart by
// "type". Events that move the stream's position (a message, a subscribed
// reply) also carry an id naming where the stream stands in every channel
// it follows; a browser reconnecting sends the last one back as
// Last-Event-ID, and the gateway recovers each channel from it.
//
// An event id is a list of positions, ';' between them, each
// "<channel>,<epoch>,<offset>":
//
//	id: news,3f9a0c1e22b47d5a-1,42;#alice,3f9a0c1e22b47d5a-2,7
//
// Channel names, epochs and offsets need no escaping there: none holds
// ',', ';', a line break or a NUL (see nameChar, and epochs below).

// SSEHead is the start of a stream's response after its status line: the
// headers every stream has. The caller adds its own (CORS) and the blank
// line.
const SSEHead = "Content-Type: text/event-stream; charset=utf-8\r\n" +
	"Cache-Control: no-cache, no-store\r\n" +
	"X-Accel-Buffering: no\r\n" + // nginx: do not buffer the stream
	"Connection: close\r\n"

// SSERetry is the first bytes of every stream's body: how long a browser
// waits before it reconnects a stream that ended (its default is about
// 3 s), as an event without data, which dispatches nothing.
const SSERetry = "retry: 2000\n\n"

// SSEComment is the heartbeat written to an idle stream: a comment line,
// which clients ignore and proxies see as traffic.
const SSEComment = ":\n"

// MaxEventIDLen bounds an event id: positions that would make it longer
// are left out of it (those channels are subscribed again without
// recovery after a reconnect, and told recovered:false). With the default
// 8 KiB request head it leaves room for the rest of the request.
const MaxEventIDLen = 4096

// maxEpochLen bounds an epoch read from an event id.
const maxEpochLen = 64

// sseSize is what the SSE encoding of an envelope of n bytes takes when it
// holds no line break: "data: ", the envelope, "\n\n".
func sseSize(n int) int { return 8 + n }

// AppendSSEData appends env as the data lines of one event and the blank
// line that dispatches it. A line break in env (JSON whitespace in a
// publication's data: CRLF, CR or LF) starts a new data line; a client
// joins them with LF, which is whitespace to JSON too.
func AppendSSEData(dst, env []byte) []byte {
	for {
		dst = append(dst, "data: "...)
		i := bytes.IndexAny(env, "\r\n")
		if i < 0 {
			dst = append(dst, env...)
			return append(dst, '\n', '\n')
		}
		dst = append(dst, env[:i]...)
		dst = append(dst, '\n')
		if env[i] == '\r' && i+1 < len(env) && env[i+1] == '\n' {
			i++
		}
		env = env[i+1:]
	}
}

// SSEPosition is where a stream stands in one channel: the last offset it
// was sent (or the offset its subscribed reply named) in an epoch.
type SSEPosition struct {
	Channel string
	Epoch   string
	Offset  uint64
}

// AppendEventID appends the "id: …\n" line naming positions, leaving out
// those that would take it past MaxEventIDLen.
func AppendEventID(dst []byte, positions []SSEPosition) []byte {
	dst = append(dst, "id: "...)
	start := len(dst)
	for _, p := range positions {
		n := len(p.Channel) + len(p.Epoch) + 23 // separators and 20 digits
		if len(dst)-start+n > MaxEventIDLen {
			continue
		}
		if len(dst) > start {
			dst = append(dst, ';')
		}
		dst = append(dst, p.Channel...)
		dst = append(dst, ',')
		dst = append(dst, p.Epoch...)
		dst = append(dst, ',')
		dst = strconv.AppendUint(dst, p.Offset, 10)
	}
	return append(dst, '\n')
}

// ErrEventID is a Last-Event-ID the gateway did not write.
var ErrEventID = errors.New("protocol: malformed event id: want <channel>,<epoch>,<offset> joined by ';'")

// ParseEventID reads an event id written by AppendEventID. The empty id
// (a stream that had no position yet) has no positions.
func ParseEventID(id string) ([]SSEPosition, error) {
	if id == "" {
		return nil, nil
	}
	if len(id) > MaxEventIDLen {
		return nil, ErrEventID
	}
	var out []SSEPosition
	for len(id) > 0 {
		entry := id
		if i := indexByte(id, ';'); i >= 0 {
			entry, id = id[:i], id[i+1:]
			if id == "" {
				return nil, ErrEventID // a trailing ';'
			}
		} else {
			id = ""
		}
		name, rest, ok1 := cut(entry, ',')
		epoch, offset, ok2 := cut(rest, ',')
		if !ok1 || !ok2 || !validEventChannel(name) || !validEpoch(epoch) {
			return nil, ErrEventID
		}
		off, err := strconv.ParseUint(offset, 10, 64)
		if err != nil || strconv.FormatUint(off, 10) != offset {
			return nil, ErrEventID
		}
		out = append(out, SSEPosition{Channel: name, Epoch: epoch, Offset: off})
	}
	return out, nil
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func cut(s string, sep byte) (before, after string, ok bool) {
	if i := indexByte(s, sep); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// validEventChannel accepts a channel name or a personal channel.
func validEventChannel(s string) bool {
	if user, ok := Personal(s); ok {
		return validName(user, MaxChannelLen-1)
	}
	return validName(s, MaxChannelLen)
}

// validEpoch accepts what the gateway's epochs are made of: letters,
// digits and '-' (hex, then a base-36 generation), or nothing (a channel
// that has had no message in a cluster).
func validEpoch(s string) bool {
	if len(s) > maxEpochLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
			return false
		}
	}
	return true
}

// Envelope kinds ReadPosition tells apart.
const (
	EnvelopeOther = iota
	EnvelopeMessage
	EnvelopeSubscribed
	EnvelopeUnsubscribed
)

// EnvelopePosition is what an envelope says of its channel's position.
type EnvelopePosition struct {
	Kind      int
	Channel   []byte
	Offset    uint64 // message and subscribed
	Epoch     []byte // subscribed
	Recovered bool   // subscribed
}

// SSEEnvelope returns the envelope in an event built by the SSE encoding,
// from its start to the event's end (its first line is the envelope's
// start).
func SSEEnvelope(event []byte) ([]byte, bool) {
	return bytes.CutPrefix(event, []byte("data: "))
}

// ReadPosition reads, from an envelope built by AppendMessage,
// AppendSubscribed or AppendUnsubscribed, which it is and the position it
// moves its channel to; any other envelope is EnvelopeOther. It reads the
// fixed prefixes those write, not JSON: env may run on past the envelope
// (an SSE event's data lines, see SSEEnvelope).
func ReadPosition(env []byte) (p EnvelopePosition) {
	const (
		msg   = `{"type":"message","channel":"`
		sub   = `{"type":"subscribed","channel":"`
		unsub = `{"type":"unsubscribed","channel":"`
	)
	switch {
	case bytes.HasPrefix(env, []byte(msg)):
		p.Kind, env = EnvelopeMessage, env[len(msg):]
	case bytes.HasPrefix(env, []byte(sub)):
		p.Kind, env = EnvelopeSubscribed, env[len(sub):]
	case bytes.HasPrefix(env, []byte(unsub)):
		p.Kind, env = EnvelopeUnsubscribed, env[len(unsub):]
	default:
		return EnvelopePosition{}
	}
	i := bytes.IndexByte(env, '"')
	if i < 0 {
		return EnvelopePosition{}
	}
	p.Channel, env = env[:i], env[i+1:]
	if p.Kind == EnvelopeUnsubscribed {
		return p
	}
	env, ok := bytes.CutPrefix(env, []byte(`,"offset":`))
	if !ok {
		return EnvelopePosition{}
	}
	n := 0
	for n < len(env) && env[n] >= '0' && env[n] <= '9' {
		p.Offset = p.Offset*10 + uint64(env[n]-'0')
		n++
	}
	if p.Kind == EnvelopeSubscribed {
		rest, ok := bytes.CutPrefix(env[n:], []byte(`,"epoch":"`))
		j := bytes.IndexByte(rest, '"')
		if !ok || j < 0 {
			return EnvelopePosition{}
		}
		p.Epoch = rest[:j]
		p.Recovered = bytes.HasPrefix(rest[j:], []byte(`","recovered":true}`))
	}
	return p
}
