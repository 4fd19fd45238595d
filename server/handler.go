package server

import (
	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/wsproto"
)

// Handler serves the connections of an endpoint. Its methods run on worker
// goroutines (Open on the handshake goroutine), never two at once for the
// same connection, and must not block: to reply, call Conn.Send or
// Conn.SendMessage, which never wait for the socket. A panic in a method
// closes that connection with 1011 and is logged; others are unaffected.
type Handler interface {
	// Open is called once the connection is registered, before any of its
	// messages. query is the raw query of the upgrade request.
	Open(c *Conn, hs wsproto.Handshake, query []byte)
	// Message is called with each text or binary message; payload is only
	// valid during the call.
	Message(c *Conn, op ws.OpCode, payload []byte)
	// Closed is called once, after the connection is closed.
	Closed(c *Conn)
}

// echoHandler is the RFC 6455 echo service: every message comes back
// unchanged, as one message.
type echoHandler struct{}

func (echoHandler) Open(*Conn, wsproto.Handshake, []byte) {}
func (echoHandler) Closed(*Conn)                          {}
func (echoHandler) Message(c *Conn, op ws.OpCode, payload []byte) {
	_ = c.SendMessage(op, payload) // a failed send closes the connection
}

// unsupportedHandler serves /ws when no Handler is configured: connections
// are held and kept alive, and every message gets an error reply.
type unsupportedHandler struct{}

var errUnknownOp = protocol.Frame(protocol.WebSocket,
	protocol.AppendError(protocol.Buffer(64), protocol.CodeBadRequest, "unknown op", ""))

func (unsupportedHandler) Open(*Conn, wsproto.Handshake, []byte) {}
func (unsupportedHandler) Closed(*Conn)                          {}
func (unsupportedHandler) Message(c *Conn, _ ws.OpCode, _ []byte) {
	_ = c.Send(errUnknownOp)
}
