// Package session serves the pushgate.v1 client protocol: it turns a
// connection's JSON ops into calls on the broadcast hub and checks each
// against the connection's permissions.
//
// The ops and envelopes are package protocol's. The handler is written
// against Conn, not a WebSocket: ws.go adapts it to server.Handler, and
// sse.go to event streams (Events: Server-Sent Events, whose event ids
// name the stream's position in each channel, recovered from
// Last-Event-ID); other transports can drive a Session the same way
// (Start, Handle, End).
// A Session's lock makes it the one owner of its hub Member, so commands
// may reach it from any goroutine.
//
// The upgrade query may subscribe at connect (channels=a,b). A connection
// whose token names a user (sub) is subscribed at connect to its personal
// channel "#<user>", which carries what is published to that user; the
// query's user_since and user_epoch recover it after a reconnect.
//
// Permissions: without authentication any public channel may be
// subscribed; with it, the token's channels patterns say which. Client
// publishing is allowed on channels matching Config.ClientPublish or the
// token's publish patterns, never on personal channels. A refused op gets
// an error reply; the connection stays open, but past the message rate
// (1008) or the op backlog (1013). Replies (subscribed,
// unsubscribed, refreshed, error) arrive in the order of the ops they answer.
//
// Expiry: a connection opened with a token that has exp is closed with
// 4001 once exp plus the verifier's leeway has passed (server.Conn's
// SetExpiry, checked by the heartbeat), unless a refresh op brought a
// valid token for the same user first.
//
// Presence (presence.go): on channels the registry keeps presence for, a
// subscribe joins the channel's presence and tells its subscribers, and
// an unsubscribe, a close or a server's disconnect leaves it; a Peers
// (package control) carries those events to the other nodes of a cluster.
//
// The server's commands (control.go): Disconnect (4002, or 4003 for good),
// Subscribe and Unsubscribe act on a user's connections or one client's,
// from any goroutine, under each target session's lock. A client id is
// "<node>.<n>" (index.go): sessions are found by it through the server's
// own table of connections, and by user through a sharded index of the
// connections that have one.
package session
