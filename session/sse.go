package session

import (
	"slices"
	"sync"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/wsproto"
)

// Event streams (GET /events, Server-Sent Events) are sessions that only
// receive: their subscriptions come from the query (channels=a,b, and the
// user's personal channel) and from the server's commands. Each event that
// moves the stream's position in a channel (a message, a subscribed reply)
// carries an id naming its position in every channel it follows
// (protocol.AppendEventID); a browser reconnecting sends the last one as
// Last-Event-ID (last_event_id in the query for clients that cannot set
// it), and each channel it names is subscribed again from there: the
// missed messages, recovered:true, or recovered:false when history no
// longer reaches back, exactly as a WebSocket's subscribe with since.

// Events returns the server.Handler of event streams.
func (h *Handler) Events() server.Handler { return eventsHandler{h} }

type eventsHandler struct{ h *Handler }

var _ server.Handler = eventsHandler{}

// Open starts the session of a stream; the authorizer left the token's
// claims, if any, in hs.State.
func (e eventsHandler) Open(c *server.Conn, hs wsproto.Handshake, query []byte) {
	claims, serial := stateClaims(hs.State)
	e.h.start(&eventConn{Conn: c}, claims, serial, query)
}

// Message is never called: a stream's client sends nothing.
func (eventsHandler) Message(*server.Conn, ws.OpCode, []byte) {}

// Closed ends the stream's session.
func (e eventsHandler) Closed(c *server.Conn) { e.h.Closed(c) }

// eventConn is an event stream as the hub sees it: the server's Conn, and
// where the stream stands in each channel, so that every event that moves
// it names all of it. The hub hands it frames from the member's delivery
// shard, one at a time; mu keeps the positions and the order of ids on
// the socket one, whoever sends.
type eventConn struct {
	*server.Conn
	mu  sync.Mutex
	pos []protocol.SSEPosition
	// recovering names the channels whose position a reconnect asked to
	// recover from, until their subscribed reply says whether it did.
	recovering []string
}

// Send, Queue and Pace hand the server each frame with the id it moves
// the stream to (nil when it moves nothing). Send and Queue copy a small
// frame behind its id, into one buffer: one write of it costs the kernel
// less than a writev of the two (fan-out to 10,000 streams spent 80% of
// its time in writev), for a copy that fits in the id's allocation.
func (e *eventConn) Send(frame []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	id, joined := e.joinID(frame)
	if joined {
		return e.Conn.Send(id)
	}
	return e.Conn.SendEvent(id, frame)
}

func (e *eventConn) Queue(frame []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	id, joined := e.joinID(frame)
	if joined {
		return e.Conn.Queue(id)
	}
	return e.Conn.QueueEvent(id, frame)
}

// Pace leaves a replayed frame apart from its id: it is history's,
// shared, and only the id counts against the stream's bound.
func (e *eventConn) Pace(frame []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.Conn.PaceEvent(e.idFor(frame, 0), frame)
}

// maxJoined is the largest frame copied behind its id (Send, Queue).
const maxJoined = 2048

// joinID returns frame's id with frame copied behind it (joined) when
// the frame is small, else the id alone (nil when it moves nothing).
func (e *eventConn) joinID(frame []byte) (id []byte, joined bool) {
	if len(frame) > maxJoined {
		return e.idFor(frame, 0), false
	}
	if id = e.idFor(frame, len(frame)); id == nil {
		return nil, false
	}
	return append(id, frame...), true
}

// recoverFrom records that the stream asks to recover channel from pos;
// the channel's subscribed reply settles it.
func (e *eventConn) recoverFrom(channel string, pos broadcast.Position) {
	e.mu.Lock()
	defer e.mu.Unlock()
	i := e.find([]byte(channel))
	if i < 0 {
		e.pos = append(e.pos, protocol.SSEPosition{Channel: channel})
		i = len(e.pos) - 1
	}
	e.pos[i].Epoch, e.pos[i].Offset = pos.Epoch, pos.Offset
	e.recovering = append(e.recovering, channel)
}

// abandon forgets a recovery recoverFrom recorded for channel, whose
// subscribe was refused: the stream does not follow it.
func (e *eventConn) abandon(channel string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.settle([]byte(channel))
	if i := e.find([]byte(channel)); i >= 0 {
		e.pos = append(e.pos[:i], e.pos[i+1:]...)
	}
}

// recovers reports whether the stream's position in channel is one to
// recover from, its subscribe not settled yet.
func (e *eventConn) recovers(channel string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Contains(e.recovering, channel)
}

// follows reports whether the stream's positions name channel.
func (e *eventConn) follows(channel string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.find([]byte(channel)) >= 0
}

func (e *eventConn) find(channel []byte) int {
	for i := range e.pos {
		if e.pos[i].Channel == string(channel) {
			return i
		}
	}
	return -1
}

// settle reports whether channel's position was one to recover from, and
// forgets it.
func (e *eventConn) settle(channel []byte) bool {
	for i, c := range e.recovering {
		if c == string(channel) {
			e.recovering = append(e.recovering[:i], e.recovering[i+1:]...)
			return true
		}
	}
	return false
}

// idFor moves the stream's positions by the envelope in frame, an SSE
// event, and returns the id line naming them (in a stored block on a
// gzip-encoded stream; with room for extra more bytes), or nil when the
// event moves nothing. e.mu is held.
//
// A subscribed reply sets the channel's epoch and offset, but for one
// that answers a recovery: then the replay that follows moves it, from
// where the client was when it recovered, or from nothing when it did
// not (recovered:false: the client resyncs, and history follows from its
// oldest), so that a stream cut during a replay resumes within it.
func (e *eventConn) idFor(frame []byte, extra int) []byte {
	env, ok := protocol.EventEnvelope(frame)
	if !ok {
		return nil
	}
	p := protocol.ReadPosition(env)
	i := e.find(p.Channel)
	switch p.Kind {
	case protocol.EnvelopeMessage:
		if i < 0 {
			return nil
		}
		e.pos[i].Offset = p.Offset
	case protocol.EnvelopeSubscribed:
		if i < 0 {
			e.pos = append(e.pos, protocol.SSEPosition{Channel: string(p.Channel)})
			i = len(e.pos) - 1
		}
		switch recovering := e.settle(p.Channel); {
		case recovering && p.Recovered:
		case recovering:
			e.pos[i].Offset = 0
		default:
			e.pos[i].Offset = p.Offset
		}
		if string(p.Epoch) != e.pos[i].Epoch {
			e.pos[i].Epoch = string(p.Epoch)
		}
	case protocol.EnvelopeUnsubscribed:
		if i < 0 {
			return nil
		}
		e.pos = append(e.pos[:i], e.pos[i+1:]...)
	default:
		return nil
	}
	if e.Conn.Encoding() != protocol.SSEGzip {
		return protocol.AppendEventID(make([]byte, 0, e.idSize()+extra), e.pos)
	}
	// The stream's own bytes, stored (protocol.SSEGzip): the block's
	// header is written in front once the id's length is known.
	id := protocol.AppendEventID(make([]byte, protocol.StoredHeaderLen, protocol.StoredHeaderLen+e.idSize()+extra), e.pos)
	protocol.PutStoredHeader(id)
	return id
}

// idSize is about what the id line takes.
func (e *eventConn) idSize() int {
	n := 5
	for i := range e.pos {
		n += len(e.pos[i].Channel) + len(e.pos[i].Epoch) + 23
	}
	return min(n, protocol.MaxEventIDLen+5)
}
