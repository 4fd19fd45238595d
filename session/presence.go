package session

import (
	"github.com/pushgate/pushgate/presence"
	"github.com/pushgate/pushgate/protocol"
)

// Presence: a connection subscribed to a channel that keeps presence
// (Config.Presence) is listed in it, and the channel's subscribers are
// told when it joins and leaves (unsubscribe, close, eviction), within the
// registry's event rate.

// Peers carries this node's presence events to the other nodes of a
// cluster (package control).
type Peers interface {
	// PresenceEvent hands an event (join, leave or notice) sent to
	// channel's subscribers here to the other nodes' subscribers. env
	// is only valid during the call.
	PresenceEvent(channel string, env []byte)
}

// SetPeers makes h relay its presence events to peers. Call it before the
// first connection.
func (h *Handler) SetPeers(p Peers) { h.peers = p }

// event sends env to channel's subscribers, here and on the other nodes.
func (h *Handler) event(channel string, env []byte) {
	if h.peers != nil {
		h.peers.PresenceEvent(channel, env[protocol.Headroom:])
	}
	h.hub.Event(channel, env)
}

// client is s as presence shows it. s.mu is held.
func (h *Handler) client(s *Session) protocol.Client {
	c := protocol.Client{Client: h.index.clientID(s), User: s.user()}
	if s.claims != nil {
		c.Info = s.claims.Info
	}
	return c
}

// joined records that s subscribed to name. s.mu is held.
func (h *Handler) joined(s *Session, name string) {
	if !h.presence.On(name) {
		return
	}
	c := h.client(s)
	h.announce(protocol.EventJoin, name, &c, h.presence.Join(name, c))
}

// left records that s is no longer subscribed to name. s.mu is held.
func (h *Handler) left(s *Session, name string) {
	if !h.presence.On(name) {
		return
	}
	if c, d, ok := h.presence.Leave(name, h.index.clientID(s)); ok {
		h.announce(protocol.EventLeave, name, &c, d)
	}
}

// announce sends a join or leave event to the channel's subscribers on
// this node, as the registry decided.
func (h *Handler) announce(event, channel string, c *protocol.Client, d presence.Decision) {
	switch d {
	case presence.Send:
		h.m.PresenceEvents(event).Inc()
		h.event(channel, protocol.AppendPresenceEvent(protocol.Buffer(64+len(channel)+protocol.ClientSize(c)), event, channel, c))
	case presence.Notice:
		h.m.PresenceEvents("dropped").Inc()
		h.event(channel, protocol.AppendError(protocol.Buffer(200), protocol.CodePresenceLagging,
			"join and leave events of this channel are over their rate: some are dropped; ask for presence again", channel))
	default:
		h.m.PresenceEvents("dropped").Inc()
	}
}

// presenceOp answers {"op":"presence"}: the channel's clients, up to the
// registry's cap ("truncated" past it), at most a second old while clients
// come and go (presence.Registry.Answer). The connection must be
// subscribed.
func (h *Handler) presenceOp(s *Session, name string) {
	switch {
	case !protocol.ValidName(name):
		h.reply(s, protocol.CodeInvalidChannel, protocol.MsgInvalidChannel, "")
	case !h.presence.On(name):
		h.reply(s, protocol.CodePresenceOff, "this channel does not keep presence", name)
	case !s.m.Subscribed(name):
		h.reply(s, protocol.CodeNotSubscribed, "subscribe to the channel to see its presence", name)
	default:
		encode := func(list []protocol.Client, total int) *protocol.Wire {
			size := 64 + len(name)
			for i := range list {
				size += protocol.ClientSize(&list[i])
			}
			return protocol.NewWire(protocol.AppendPresence(protocol.Buffer(size), name, list, total > len(list)))
		}
		w := h.presence.Answer(name, encode)
		if w == nil { // not listed: subscribed while its presence was off
			w = encode(nil, 0)
		}
		h.hub.ReplyWire(s.m, w)
	}
}
