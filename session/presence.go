package session

import (
	"context"
	"time"

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
	// is only valid during the call. It must not block.
	PresenceEvent(channel string, env []byte)
	// Presence lists channel's clients on every node.
	Presence(ctx context.Context, channel string) (PresenceList, error)
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
	h.presence.Join(name, c, func(d presence.Decision) { h.announce(protocol.EventJoin, name, &c, d) })
}

// left records that s is no longer subscribed to name. s.mu is held.
func (h *Handler) left(s *Session, name string) {
	if !h.presence.On(name) {
		return
	}
	h.presence.Leave(name, h.index.clientID(s), func(c protocol.Client, d presence.Decision) {
		h.announce(protocol.EventLeave, name, &c, d)
	})
}

// announce sends a join or leave event to the channel's subscribers, as
// the registry decided; it runs under the registry's lock (see
// presence.Registry.Join).
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

// A connection asks for presence at most presenceBurst times at once and
// once per presenceEvery after that: an answer may be a megabyte (1,000
// clients with their info), and it is written as the socket drains.
const (
	presenceEvery = 5 // ticks of 100 ms: two a second
	presenceBurst = 4
)

// presenceAllowed takes a presence op from s's budget: a generic cell
// rate algorithm whose one state is the time its next op is due, in 100 ms
// ticks mod 2^16 (a Session's size is what an idle connection costs). s.mu
// is held.
func (s *Session) presenceAllowed(now time.Time) bool {
	tick := presenceTick(now)
	const limit = presenceEvery * (presenceBurst - 1)
	due := int16(s.presenceAt - tick)
	if due < 0 || due > limit+presenceEvery { // idle, or a due time from a wrap ago
		s.presenceAt, due = tick, 0
	}
	if due > limit {
		return false
	}
	s.presenceAt += presenceEvery
	return true
}

// presenceTick is the clock of presenceAllowed. (After 109 minutes idle
// the due time may look ahead once: a burst is then a little smaller.)
func presenceTick(now time.Time) uint16 { return uint16(now.UnixMilli() / 100) }

// maxPresenceBacklog bounds what may wait for a connection's socket when
// it asks for presence: answers are paced, not counted against the
// outbound bound, so a reader that trickles must not pile them up.
const maxPresenceBacklog = 1 << 20

// presenceOp answers {"op":"presence"}: the channel's clients, up to the
// registry's cap ("truncated" past it). The connection must be subscribed.
// On one node the answer is built after every join and leave event the
// connection was sent before it; a big channel builds one at most twice a
// second for all who ask (presence.Registry.Answer). In a cluster it
// merges every node's (see presenceCluster).
func (h *Handler) presenceOp(s *Session, name string) {
	switch {
	case !protocol.ValidName(name):
		h.reply(s, protocol.CodeInvalidChannel, protocol.MsgInvalidChannel, "")
		return
	case !h.presence.On(name):
		h.reply(s, protocol.CodePresenceOff, "this channel does not keep presence", name)
		return
	case !s.m.Subscribed(name):
		h.reply(s, protocol.CodeNotSubscribed, "subscribe to the channel to see its presence", name)
		return
	case !s.presenceAllowed(time.Now()):
		h.m.PresenceAsksRefused("rate").Inc()
		h.reply(s, protocol.CodeRateLimited, "presence: at most 2 a second, in bursts of 4; this one was dropped", name)
		return
	case s.conn().Waiting() > maxPresenceBacklog:
		h.m.PresenceAsksRefused("backlog").Inc()
		h.reply(s, protocol.CodeRateLimited, msgBacklog, name)
		return
	}
	m, conn := s.m, s.conn()
	deliver := func(w *protocol.Wire) {
		if conn.Waiting() > maxPresenceBacklog { // it grew while the ask waited
			h.m.PresenceAsksRefused("backlog").Inc()
			h.hub.Reply(m, protocol.AppendError(protocol.Buffer(64+len(msgBacklog)+len(name)), protocol.CodeRateLimited, msgBacklog, name))
			return
		}
		h.hub.ReplyWire(m, w)
	}
	if h.peers != nil {
		h.presenceCluster(s, name, deliver)
		return
	}
	switch h.presence.Answer(name, s, func(list []protocol.Client, total int) *protocol.Wire {
		return presenceWire(name, list, total)
	}, deliver) {
	case presence.Pending:
		h.m.PresenceAsksRefused("rate").Inc()
		h.reply(s, protocol.CodeRateLimited, "presence: your last ask of this channel waits for its answer; this one was dropped", name)
	case presence.Full:
		h.m.PresenceAsksRefused("overloaded").Inc()
		h.reply(s, protocol.CodeOverloaded, "too many presence asks of this channel, try again", name)
	}
}

const msgBacklog = "presence: more than 1 MiB still waits for your socket; this one was dropped"

// presenceWire encodes a presence answer.
func presenceWire(name string, list []protocol.Client, total int) *protocol.Wire {
	size := 64 + len(name)
	for i := range list {
		size += protocol.ClientSize(&list[i])
	}
	return protocol.NewWire(protocol.AppendPresence(protocol.Buffer(size), name, list, total > len(list)))
}

// maxClusterAsks bounds the presence ops a node waits on other nodes for
// at once; past it the op is answered "overloaded".
const maxClusterAsks = 256

// presenceCluster answers a presence op with every node's clients (Peers).
// The asks of one channel that arrive while its nodes are being asked
// share that answer, and a channel of more than presence.AnswerBatchMin
// clients keeps it for presence.AnswerInterval, for the asks that follow:
// a big channel costs the cluster at most about one call a second. It is
// sent when the nodes have answered, possibly after the replies to later
// ops, and events (this node's too) may cross it. s.mu is held.
func (h *Handler) presenceCluster(s *Session, name string, deliver func(*protocol.Wire)) {
	if w := h.recentAnswer(name); w != nil {
		deliver(w)
		return
	}
	select {
	case h.clusterAsks <- struct{}{}:
	default:
		h.m.PresenceAsksRefused("overloaded").Inc()
		h.reply(s, protocol.CodeOverloaded, "too many presence asks in flight, try again", name)
		return
	}
	h.asking.Add(1)
	go func() {
		defer h.asking.Done()
		defer func() { <-h.clusterAsks }()
		v, err, _ := h.asks.Do(name, func() (any, error) {
			ctx, cancel := context.WithTimeout(context.Background(), clusterAskTimeout)
			defer cancel()
			p, err := h.peers.Presence(ctx, name)
			if err != nil {
				return nil, err
			}
			w := presenceWire(name, p.Clients, p.Total)
			if p.Total > presence.AnswerBatchMin {
				h.keepAnswer(name, w)
			}
			return w, nil
		})
		if err != nil {
			h.replyLater(s, protocol.CodeUnavailable, "presence: the other nodes cannot be asked now, try again", name)
			return
		}
		deliver(v.(*protocol.Wire))
	}()
}

// recentAnswer is a big channel's cluster answer from the last
// presence.AnswerInterval, or nil.
func (h *Handler) recentAnswer(name string) *protocol.Wire {
	h.answersMu.Lock()
	defer h.answersMu.Unlock()
	return h.answers[name]
}

// keepAnswer keeps w for presence.AnswerInterval.
func (h *Handler) keepAnswer(name string, w *protocol.Wire) {
	h.answersMu.Lock()
	defer h.answersMu.Unlock()
	if h.answers == nil {
		h.answers = map[string]*protocol.Wire{}
	}
	h.answers[name] = w
	time.AfterFunc(presence.AnswerInterval, func() {
		h.answersMu.Lock()
		defer h.answersMu.Unlock()
		if h.answers[name] == w {
			delete(h.answers, name)
		}
	})
}

// Close waits for the presence asks still waiting on other nodes and the
// proxy calls out (each at most its timeout).
func (h *Handler) Close() { h.asking.Wait(); h.hooks.Wait() }

// clusterAskTimeout bounds a presence op's wait for the other nodes.
const clusterAskTimeout = 3 * time.Second
