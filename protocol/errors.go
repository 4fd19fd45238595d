package protocol

// Code is the code of an {"type":"error"} reply: what a client program
// switches on (the message is for people).
type Code string

// Error codes.
const (
	CodeBadRequest        Code = "bad_request"        // not a valid op
	CodeInvalidChannel    Code = "invalid_channel"    // the channel name breaks the rules
	CodeForbidden         Code = "forbidden"          // not permitted for this connection
	CodeAlreadySubscribed Code = "already_subscribed" //
	CodeNotSubscribed     Code = "not_subscribed"     //
	CodeTooManyChannels   Code = "too_many_channels"  // the per-connection limit
	CodeOverloaded        Code = "overloaded"         // too many publications in flight
	CodeUnavailable       Code = "unavailable"        // shutting down, or the broker is down
	CodeInvalidToken      Code = "invalid_token"      // a refresh token that does not verify
	CodeRateLimited       Code = "rate_limited"       // a message over the connection's message rate, dropped
	CodeChannelLimit      Code = "channel_limit"      // the node holds its maximum number of channels
	CodePresenceOff       Code = "presence_off"       // presence is not kept for this channel
	CodePresenceLagging   Code = "presence_lagging"   // join/leave events of the channel over their rate were dropped
)

// MsgInvalidChannel is the message of CodeInvalidChannel.
const MsgInvalidChannel = "channel names are 1-128 characters of A-Z a-z 0-9 _ - . : @ + =, or #<user>"
