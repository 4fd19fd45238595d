// Package streamapi serves POST /events/commands: the ops of clients whose
// messages arrive on an event stream (GET /events) and who cannot send on
// it. The body is {"client":…,"key":…,"ops":[…]} (protocol.CommandRequest),
// client and key from the stream's connected event, each op what a
// WebSocket client would send; the ops run in the stream's session, on
// whichever node holds it (a Commander forwards them there), and their
// replies come on the stream. The answer says how many ran:
//
//	200 {"ran":2}                       all ran
//	400 {"code":"bad_request",…}        malformed body, no ops, too many
//	403 {"code":"forbidden",…}          the key is not the stream's, or an Origin not allowed
//	404 {"code":"not_found",…}          no such stream (closed, or its node gone)
//	405                                 not POST (or OPTIONS, a CORS preflight)
//	413 {"code":"too_large",…}          body over MaxBodyBytes
//	429 {"code":"rate_limited","ran":1} some were over the stream's message rate
//	503 {"code":"unavailable",…}        the stream's node did not answer in time
//
// A page of another origin may post (text/plain is a simple request, no
// preflight) when the Origin allow-list allows it, as for the stream.
//
// The gateway's tests post to it over real sockets, one node and two
// (cmd/gateway: TestStreamCommands, TestClusterStreamCommands).
package streamapi
