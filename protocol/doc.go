// Package protocol owns pushgate's wire protocol, pushgate.v1: the client
// ops and their decoding, the server's envelopes, error codes, the naming
// rules of channels and users, and the encodings that carry envelopes on
// each transport. Every other package builds and reads the protocol
// through it.
//
// Client to server, JSON:
//
//	{"op":"subscribe","channel":"news"}
//	{"op":"subscribe","channel":"news","since":42,"epoch":"..."}
//	{"op":"unsubscribe","channel":"news"}
//	{"op":"publish","channel":"chat:lobby","data":<any JSON>}
//	{"op":"refresh","token":"<JWT>"}
//	{"op":"presence","channel":"chat:lobby"}
//	{"op":"pong"}
//
// Server to client:
//
//	{"type":"message","channel":"news","offset":43,"data":<JSON>}
//	{"type":"subscribed","channel":"news","offset":43,"epoch":"...","recovered":true}
//	{"type":"unsubscribed","channel":"news"}
//	{"type":"error","code":"forbidden","message":"...","channel":"news"}
//	{"type":"refreshed","expires":<unix seconds>}
//	{"type":"presence","channel":"chat:lobby","clients":[{"client":"...","user":"alice","info":{...}}]}
//	{"type":"join","channel":"chat:lobby","client":"...","user":"alice","info":{...}}
//	{"type":"leave","channel":"chat:lobby","client":"...","user":"alice","info":{...}}
//	{"type":"ping"}
//	{"type":"close","code":1001,"reason":"..."} (event streams: their last event)
//	{"type":"connected","client":"...","key":"..."} (event streams: their first event)
//
// An event stream's client sends its ops by POST /events/commands, as
// {"client":"...","key":"...","ops":[<op>,...]} (CommandRequest); their
// replies come on the stream.
//
// # Encodings
//
// An envelope is built once, into a Buffer, and encoded once per Encoding
// its receivers take (Wire): a WebSocket text frame, written in the
// envelope's own headroom, a permessage-deflate frame for connections
// that negotiated it, and a Server-Sent Events event's data lines
// (sse.go: the stream format, and event ids that name a stream's position
// in each of its channels), deflated on its own for gzip-encoded streams
// (ssegzip.go). The fan-out hands each connection the bytes
// of its encoding and never frames anything itself.
//
// # Names
//
// Channel and user names are 1-128 (users 1-127) bytes of A-Z a-z 0-9 and
// _ - . : @ + =, none of which needs escaping in JSON or a URL query, so
// names are copied into envelopes as they are. "#<user>" is user's
// personal channel. Patterns (a name, or a prefix ending in *) grant
// channels.
package protocol
