package session

import (
	"context"
	"errors"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/server"
)

// The server's commands: the backend acting on live connections (the
// admin API's disconnect, subscribe and unsubscribe). They are safe from
// any goroutine: each runs under the target session's lock, as that
// connection's own ops do. Their context is for implementations that ask
// other nodes; on one node they never wait.

// Target names the connections a command acts on: all of a user's on this
// node, or one client's.
type Target struct {
	User   string
	Client string
}

// Errors of the commands.
var (
	ErrTarget = errors.New("session: name exactly one of a user and a client")
)

func (h *Handler) sessions(t Target) ([]*Session, error) {
	switch {
	case (t.User == "") == (t.Client == ""):
		return nil, ErrTarget
	case t.User != "":
		if !protocol.ValidUser(t.User) {
			return nil, protocol.ErrUserName
		}
		return h.index.user(t.User), nil
	}
	if s := h.index.client(t.Client); s != nil {
		return []*Session{s}, nil
	}
	return nil, nil
}

// Disconnect closes the target's connections, after everything already
// queued for them: with 4002 when they may reconnect, 4003 when they must
// not. reason is the close frame's text (cut to fit). It returns how many
// connections it closed.
func (h *Handler) Disconnect(_ context.Context, t Target, reconnect bool, reason string) (int, error) {
	list, err := h.sessions(t)
	if err != nil {
		return 0, err
	}
	why := server.ReasonDisconnectedHard
	if reconnect {
		why = server.ReasonDisconnected
	}
	if reason == "" {
		reason = "disconnected by the server"
	}
	n := 0
	for _, s := range list {
		s.mu.Lock()
		if !s.is(ended) && !s.is(kicked) {
			s.set(kicked)
			c := s.conn()
			h.hub.After(s.m, func() { c.Close(why, reason) })
			n++
		}
		s.mu.Unlock()
	}
	return n, nil
}

// Subscribe subscribes the target's connections to channel as if each had
// asked without a position: each is sent "subscribed", then the channel's
// messages. The connection's token need not grant the channel: the backend
// does. It returns how many connections it subscribed; one already
// subscribed is not counted, one that cannot be (its channel limit, the
// node's) is sent the error a client op would get.
func (h *Handler) Subscribe(_ context.Context, t Target, channel string) (int, error) {
	return h.onChannel(t, channel, func(s *Session) bool { return h.join(s, channel, nil, true) })
}

// Unsubscribe ends the target's connections' subscriptions to channel:
// each is sent "unsubscribed", after which no message of the channel
// follows. It returns how many were subscribed.
func (h *Handler) Unsubscribe(_ context.Context, t Target, channel string) (int, error) {
	return h.onChannel(t, channel, func(s *Session) bool {
		if h.hub.Unsubscribe(s.m, channel) != nil {
			return false
		}
		h.left(s, channel)
		return true
	})
}

// onChannel runs do on each of the target's live sessions, with its lock
// held, and counts those it acted on.
func (h *Handler) onChannel(t Target, channel string, do func(*Session) bool) (int, error) {
	if !protocol.ValidName(channel) {
		return 0, protocol.ErrChannelName
	}
	list, err := h.sessions(t)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range list {
		s.mu.Lock()
		if !s.is(ended) && !s.is(kicked) && do(s) {
			n++
		}
		s.mu.Unlock()
	}
	return n, nil
}

// Node is this node's name, the first part of its client ids.
func (h *Handler) Node() string { return h.index.node }

// ErrPresenceOff is a presence request for a channel that keeps none.
var ErrPresenceOff = errors.New("session: this channel does not keep presence")

// PresenceList is a channel's clients, as many as the cap allows, and how
// many it has in all.
type PresenceList struct {
	Clients []protocol.Client
	Total   int
}

// Presence lists channel's clients on this node (at most the registry's
// MaxList).
func (h *Handler) Presence(_ context.Context, channel string) (PresenceList, error) {
	if err := h.presenceChannel(channel); err != nil {
		return PresenceList{}, err
	}
	clients, total := h.presence.List(channel, 0)
	return PresenceList{Clients: clients, Total: total}, nil
}

// PresenceStats counts a channel's clients and its distinct users.
type PresenceStats struct {
	Clients int
	Users   int
	// UserNames are the users, for a cluster's union: set only when asked
	// (withUsers).
	UserNames []string
}

// PresenceStats counts channel's clients and users on this node.
func (h *Handler) PresenceStats(_ context.Context, channel string) (PresenceStats, error) {
	if err := h.presenceChannel(channel); err != nil {
		return PresenceStats{}, err
	}
	clients, _, users := h.presence.Stats(channel, false)
	return PresenceStats{Clients: clients, Users: users}, nil
}

func (h *Handler) presenceChannel(channel string) error {
	switch {
	case !protocol.ValidName(channel):
		return protocol.ErrChannelName
	case !h.presence.On(channel):
		return ErrPresenceOff
	}
	return nil
}

// ChannelPage is a page of channels in name order; Next, when not empty,
// is the cursor of the next page.
type ChannelPage struct {
	Channels []broadcast.ChannelInfo
	Next     string
}

// Channels lists this node's channels starting with prefix, after
// cursor, at most limit (broadcast.MaxListChannels).
func (h *Handler) Channels(_ context.Context, prefix, cursor string, limit int) (ChannelPage, error) {
	list, more := h.hub.Channels(prefix, cursor, limit)
	p := ChannelPage{Channels: list}
	if more {
		p.Next = list[len(list)-1].Name
	}
	return p, nil
}
