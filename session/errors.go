package session

import (
	"strconv"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/wsproto"
)

// Error codes of {"type":"error"} replies.
const (
	codeBadRequest        = "bad_request"        // not a valid op
	codeInvalidChannel    = "invalid_channel"    // the channel name breaks the rules
	codeForbidden         = "forbidden"          // not permitted for this connection
	codeAlreadySubscribed = "already_subscribed" //
	codeNotSubscribed     = "not_subscribed"     //
	codeTooManyChannels   = "too_many_channels"  // the per-connection limit
	codeOverloaded        = "overloaded"         // too many publications in flight
	codeUnavailable       = "unavailable"        // shutting down, or the broker is down
	codeInvalidToken      = "invalid_token"      // a refresh token that does not verify
	codeRateLimited       = "rate_limited"       // a message over the connection's message rate, dropped
	codeChannelLimit      = "channel_limit"      // the node holds its maximum number of channels
)

const msgInvalidChannel = "channel names are 1-128 characters of A-Z a-z 0-9 _ - . : @ + =, or #<user>"

// appendRefreshed encodes {"type":"refreshed","expires":<unix seconds>}
// (0: the token does not expire) as a frame.
func appendRefreshed(expires int64) []byte {
	p := strconv.AppendInt([]byte(`{"type":"refreshed","expires":`), expires, 10)
	p = append(p, '}')
	return wsproto.AppendFrame(make([]byte, 0, wsproto.HeaderSize(len(p))+len(p)), ws.OpText, p)
}

// reply sends an error reply, in order with the hub's replies. code and message are constants and channel a
// valid name, so none needs JSON escaping.
func (h *Handler) reply(s *session, code, message, channel string) {
	p := make([]byte, 0, 64+len(message)+len(channel))
	p = append(p, `{"type":"error","code":"`...)
	p = append(p, code...)
	p = append(p, `","message":"`...)
	p = append(p, message...)
	if channel != "" {
		p = append(p, `","channel":"`...)
		p = append(p, channel...)
	}
	p = append(p, `"}`...)
	h.hub.Reply(s.m, wsproto.AppendFrame(make([]byte, 0, wsproto.HeaderSize(len(p))+len(p)), ws.OpText, p))
	h.log.Debug("refused client op", "code", code, "channel", channel)
}
