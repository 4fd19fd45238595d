package protocol

import (
	"encoding/json"
	"strconv"
)

// The server's envelopes, built into Buffer (see Encoding). Channel and
// user names, epochs and client ids need no escaping in JSON (see
// nameChar); messages are escaped; data and info are JSON already.

// AppendMessage appends
// {"type":"message","channel":<channel>,"offset":<offset>,"data":<data>}
// and returns it with the data field's place in it.
func AppendMessage(dst []byte, channel string, offset uint64, data []byte) (env, dataField []byte) {
	dst = append(dst, `{"type":"message","channel":"`...)
	dst = append(dst, channel...)
	dst = append(dst, `","offset":`...)
	dst = strconv.AppendUint(dst, offset, 10)
	dst = append(dst, `,"data":`...)
	start := len(dst)
	dst = append(dst, data...)
	end := len(dst)
	dst = append(dst, '}')
	return dst, dst[start:end:end]
}

// MessageSize is the most AppendMessage's envelope takes: 49 bytes of
// JSON around the channel and the data, and an offset of up to 20 digits.
func MessageSize(channel string, data []byte) int { return 69 + len(channel) + len(data) }

// AppendSubscribed appends
// {"type":"subscribed","channel":…,"offset":…,"epoch":…,"recovered":…}.
func AppendSubscribed(dst []byte, channel string, offset uint64, epoch string, recovered bool) []byte {
	dst = append(dst, `{"type":"subscribed","channel":"`...)
	dst = append(dst, channel...)
	dst = append(dst, `","offset":`...)
	dst = strconv.AppendUint(dst, offset, 10)
	dst = append(dst, `,"epoch":"`...)
	dst = append(dst, epoch...)
	dst = append(dst, `","recovered":`...)
	dst = strconv.AppendBool(dst, recovered)
	return append(dst, '}')
}

// AppendUnsubscribed appends {"type":"unsubscribed","channel":…}.
func AppendUnsubscribed(dst []byte, channel string) []byte {
	dst = append(dst, `{"type":"unsubscribed","channel":"`...)
	dst = append(dst, channel...)
	return append(dst, `"}`...)
}

// AppendError appends {"type":"error","code":…,"message":…,"channel":…}
// (no channel when empty).
func AppendError(dst []byte, code Code, message, channel string) []byte {
	dst = append(dst, `{"type":"error","code":"`...)
	dst = append(dst, code...)
	dst = append(dst, `","message":`...)
	dst = appendString(dst, message)
	if channel != "" {
		dst = append(dst, `,"channel":"`...)
		dst = append(dst, channel...)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// AppendRefreshed appends {"type":"refreshed","expires":<unix seconds>}
// (0: the token does not expire).
func AppendRefreshed(dst []byte, expires int64) []byte {
	dst = append(dst, `{"type":"refreshed","expires":`...)
	dst = strconv.AppendInt(dst, expires, 10)
	return append(dst, '}')
}

// AppendClose appends {"type":"close","code":…,"reason":…}: the last
// envelope of a transport that has no close frame of its own (an event
// stream), with the code and reason a WebSocket would have been closed
// with. The client reconnects unless the code is 4003.
func AppendClose(dst []byte, code int, reason string) []byte {
	dst = append(dst, `{"type":"close","code":`...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, `,"reason":`...)
	dst = appendString(dst, reason)
	return append(dst, '}')
}

// AppendConnected appends {"type":"connected","client":…,"key":…}: the
// first envelope of an event stream, naming its client id and the key
// that lets its client send ops for it (POST /events/commands).
func AppendConnected(dst []byte, client, key string) []byte {
	dst = append(dst, `{"type":"connected","client":`...)
	dst = appendString(dst, client)
	dst = append(dst, `,"key":`...)
	dst = appendString(dst, key)
	return append(dst, '}')
}

// appendString appends s as a JSON string.
func appendString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return append(dst, b...)
}

// Client is a connection as presence shows it.
type Client struct {
	Client string          `json:"client"`
	User   string          `json:"user,omitempty"`
	Info   json.RawMessage `json:"info,omitempty"`
}

// appendClientFields appends "client":…,"user":…,"info":… (user and info
// when set).
func appendClientFields(dst []byte, c *Client) []byte {
	dst = append(dst, `"client":"`...)
	dst = append(dst, c.Client...)
	dst = append(dst, '"')
	if c.User != "" {
		dst = append(dst, `,"user":"`...)
		dst = append(dst, c.User...)
		dst = append(dst, '"')
	}
	if len(c.Info) > 0 {
		dst = append(dst, `,"info":`...)
		dst = append(dst, c.Info...)
	}
	return dst
}

// ClientSize is about what c takes in an envelope.
func ClientSize(c *Client) int { return 40 + len(c.Client) + len(c.User) + len(c.Info) }

// AppendPresence appends
// {"type":"presence","channel":…,"clients":[…]}, with "truncated":true
// when clients are not all the channel's.
func AppendPresence(dst []byte, channel string, clients []Client, truncated bool) []byte {
	dst = append(dst, `{"type":"presence","channel":"`...)
	dst = append(dst, channel...)
	dst = append(dst, `","clients":[`...)
	for i := range clients {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		dst = appendClientFields(dst, &clients[i])
		dst = append(dst, '}')
	}
	dst = append(dst, ']')
	if truncated {
		dst = append(dst, `,"truncated":true`...)
	}
	return append(dst, '}')
}

// Presence events.
const (
	EventJoin  = "join"
	EventLeave = "leave"
)

// AppendPresenceEvent appends {"type":"join"|"leave","channel":…,
// "client":…,"user":…,"info":…}.
func AppendPresenceEvent(dst []byte, event, channel string, c *Client) []byte {
	dst = append(dst, `{"type":"`...)
	dst = append(dst, event...)
	dst = append(dst, `","channel":"`...)
	dst = append(dst, channel...)
	dst = append(dst, `",`...)
	dst = appendClientFields(dst, c)
	return append(dst, '}')
}

// Ping is the app-level ping envelope: browsers cannot see WebSocket
// pings, so a client that gets no frame for a while can tell a dead link.
const Ping = `{"type":"ping"}`
