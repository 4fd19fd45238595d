package session

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"

	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/server"
)

// An event stream only receives. Its client sends ops by POST (package
// streamapi: POST /events/commands) with the stream's client id and key,
// both in the stream's first event ({"type":"connected"}); they run in
// the stream's session as a WebSocket's messages do, under its message
// rate, and their replies come on the stream.
//
// The key is an HMAC of the client id under a secret of this process, so
// a stream costs nothing more for it, and only the node holding the
// stream can check it: a POST that lands on another node is forwarded
// there (the control plane, in a cluster).

// Errors of Command.
var (
	ErrNoStream     = errors.New("no such event stream: it has closed, or its node is gone; reconnect it")
	ErrStreamKey    = errors.New("the key is not the event stream's")
	ErrRateLimited  = errors.New("ops over the stream's message rate were dropped; slow down, or the stream is closed (1008)")
	errSecretFailed = errors.New("session: no randomness for stream keys")
)

// keySecret is made once per process: a key does not outlive the stream,
// which does not outlive the process.
var keySecret = func() []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(errSecretFailed)
	}
	return b
}()

// streamKey is the key of the stream with client id.
func streamKey(client string) string {
	m := hmac.New(sha256.New, keySecret)
	m.Write([]byte(client))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// Command runs ops, each a client op as a WebSocket client would send it,
// for the event stream client on this node, if key is its key. It returns
// how many ran: those over the stream's message rate are dropped, each
// answered on the stream with rate_limited (ErrRateLimited).
func (h *Handler) Command(_ context.Context, client, key string, ops []json.RawMessage) (int, error) {
	s := h.index.client(client)
	if s == nil {
		return 0, ErrNoStream
	}
	stream, ok := s.conn().(*eventConn)
	if !ok {
		return 0, ErrNoStream // a WebSocket sends its own ops
	}
	if !hmac.Equal([]byte(key), []byte(streamKey(client))) {
		return 0, ErrStreamKey
	}
	ran, dropped := 0, false
	for _, op := range ops {
		if ok, strikes := stream.AdmitCommand(); !ok {
			h.RateLimited(stream.Conn, strikes)
			dropped = true
			if strikes > server.MaxRateStrikes {
				break // closing: the rest would not run either
			}
			continue
		}
		if h.handle(s, op) {
			ran++
		}
	}
	if dropped {
		return ran, ErrRateLimited
	}
	return ran, nil
}

// connected sends a stream its first event, naming its client id and key.
// s.mu is held.
func (h *Handler) connected(s *Session) {
	client := h.index.clientID(s)
	h.hub.Reply(s.m, protocol.AppendConnected(protocol.Buffer(64+len(client)), client, streamKey(client)))
}
