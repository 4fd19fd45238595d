package session

import (
	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/wsproto"
)

// The Handler serves /ws: this is all of it that knows WebSocket.

var (
	_ server.Handler          = (*Handler)(nil)
	_ server.RateLimitHandler = (*Handler)(nil)
	_ Conn                    = (*server.Conn)(nil)
)

// AppPing is the app-level ping as a WebSocket frame, for
// server.Config.AppPing.
var AppPing = protocol.Frame(protocol.WebSocket, append(protocol.Buffer(len(protocol.Ping)), protocol.Ping...))

// Open starts the session of a WebSocket connection; the upgrade's
// authorizer left the token's claims, if any, in hs.State.
func (h *Handler) Open(c *server.Conn, hs wsproto.Handshake, query []byte) {
	claims, serial := stateClaims(hs.State)
	h.start(c, claims, serial, query) // which stores the session in c (SetData)
}

// Message runs one client op; pushgate.v1 ops are JSON text frames.
func (h *Handler) Message(c *server.Conn, op ws.OpCode, payload []byte) {
	s := c.Data().(*Session)
	if op != ws.OpText {
		s.mu.Lock()
		defer s.mu.Unlock()
		h.reply(s, protocol.CodeBadRequest, "pushgate.v1 messages are JSON text frames", "")
		return
	}
	h.Handle(s, payload)
}

// RateLimited answers a message the connection sent over its message rate
// (server.Config.ClientMessageRate): the op was not run. Past
// server.MaxRateStrikes in a row it closes the connection with 1008, after
// the replies already queued.
func (h *Handler) RateLimited(c *server.Conn, strikes int) {
	s, ok := c.Data().(*Session)
	if !ok {
		return
	}
	if strikes > server.MaxRateStrikes {
		h.hub.After(s.m, func() { c.Close(server.ReasonRateLimited, "rate limit exceeded") })
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h.reply(s, protocol.CodeRateLimited, "too many messages: this one was dropped; slow down or the connection is closed (1008)", "")
}

// Closed ends the connection's session.
func (h *Handler) Closed(c *server.Conn) {
	if s, ok := c.Data().(*Session); ok {
		h.End(s)
	}
}
