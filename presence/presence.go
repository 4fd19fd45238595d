// Package presence keeps who is subscribed to the channels that have
// presence (the gateway's --presence patterns) on this node: each
// channel's clients with their user and info, a count of its users, and
// the rate of the join and leave events its subscribers are sent.
//
// Costs are per change, never per member: a join or leave updates two
// maps; counts are kept current; a list is capped (Config.MaxList). The
// events themselves are fanned out by the hub like a message, so a join
// to a channel of n subscribers costs n frames: under a reconnect storm a
// channel sends at most Config.EventRate events a second, then one
// presence_lagging notice, and drops the rest until the next second (the
// counts and lists stay exact; clients re-read them).
//
// In a cluster each node keeps its own clients; the union is the
// cluster's (see package control).
package presence

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushgate/pushgate/protocol"
)

// Config configures a Registry. Zero values take the defaults.
type Config struct {
	// Channels are the channels that keep presence. Default none.
	Channels protocol.Patterns
	// EventRate bounds the join and leave events one channel sends a
	// second. Default 50.
	EventRate int
	// MaxList bounds the clients a list returns. Default 1000.
	MaxList int
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
}

// Registry is the presence of this node's channels. Its methods are safe
// for concurrent use.
type Registry struct {
	cfg     Config
	seed    maphash.Seed
	shards  [64]shard
	clients atomic.Int64 // entries in all channels
}

type shard struct {
	mu    sync.Mutex
	rooms map[string]*room
}

// room is one channel's presence.
type room struct {
	clients map[string]*protocol.Client // by client id
	users   map[string]int32            // connections per user ("" not kept)
	second  int64                       // the second events are being counted in
	events  int                         // events decided in that second

	// The encoded answer to a presence op, shared by every connection
	// that asks within a second of it being built, or as long as nobody
	// joined or left: a flood of presence ops costs one list a second.
	answer   *protocol.Wire
	answerAt time.Time
	changed  bool // a join or leave since answer was built
}

// New returns a Registry for cfg.
func New(cfg Config) *Registry {
	if cfg.EventRate <= 0 {
		cfg.EventRate = 50
	}
	if cfg.MaxList <= 0 {
		cfg.MaxList = 1000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Registry{cfg: cfg, seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].rooms = make(map[string]*room)
	}
	return r
}

// On reports whether channel keeps presence.
func (r *Registry) On(channel string) bool { return r.cfg.Channels.Match(channel) }

// MaxList is the most clients a list returns.
func (r *Registry) MaxList() int { return r.cfg.MaxList }

// Clients is how many presence entries the node holds, over all channels.
func (r *Registry) Clients() int64 { return r.clients.Load() }

func (r *Registry) shard(channel string) *shard {
	return &r.shards[maphash.String(r.seed, channel)%uint64(len(r.shards))]
}

// Decision says what to do with a join or leave event.
type Decision uint8

// Decisions.
const (
	Send   Decision = iota // send the event to the channel's subscribers
	Notice                 // over the rate: send a presence_lagging notice instead, once a second
	Drop                   // over the rate, notice sent: drop it
)

// decide counts an event of rm against the rate. The shard's lock is held.
func (r *Registry) decide(rm *room) Decision {
	now := r.cfg.Now().Unix()
	if now != rm.second {
		rm.second, rm.events = now, 0
	}
	rm.events++
	switch {
	case rm.events <= r.cfg.EventRate:
		return Send
	case rm.events == r.cfg.EventRate+1:
		return Notice
	}
	return Drop
}

// Join records c in channel and says what to do with its join event. A
// client already there is not counted twice (and its event is dropped).
func (r *Registry) Join(channel string, c protocol.Client) Decision {
	sh := r.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rm := sh.rooms[channel]
	if rm == nil {
		rm = &room{clients: make(map[string]*protocol.Client), users: make(map[string]int32)}
		sh.rooms[channel] = rm
	}
	if rm.clients[c.Client] != nil {
		return Drop
	}
	rm.clients[c.Client] = &c
	rm.changed = true
	if c.User != "" {
		rm.users[c.User]++
	}
	r.clients.Add(1)
	return r.decide(rm)
}

// Leave removes client from channel and returns its entry and what to do
// with its leave event; ok is false if it was not there.
func (r *Registry) Leave(channel, client string) (c protocol.Client, d Decision, ok bool) {
	sh := r.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rm := sh.rooms[channel]
	if rm == nil || rm.clients[client] == nil {
		return c, Drop, false
	}
	c = *rm.clients[client]
	delete(rm.clients, client)
	rm.changed = true
	if c.User != "" {
		if rm.users[c.User]--; rm.users[c.User] <= 0 {
			delete(rm.users, c.User)
		}
	}
	r.clients.Add(-1)
	d = r.decide(rm)
	if len(rm.clients) == 0 {
		delete(sh.rooms, channel)
	}
	return c, d, true
}

// List returns up to limit (at most MaxList) of channel's clients and how
// many it has in all.
func (r *Registry) List(channel string, limit int) (clients []protocol.Client, total int) {
	if limit <= 0 || limit > r.cfg.MaxList {
		limit = r.cfg.MaxList
	}
	sh := r.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rm := sh.rooms[channel]
	if rm == nil {
		return nil, 0
	}
	clients = make([]protocol.Client, 0, min(limit, len(rm.clients)))
	for _, c := range rm.clients {
		if len(clients) == limit {
			break
		}
		clients = append(clients, *c)
	}
	return clients, len(rm.clients)
}

// A presence answer of a channel of more than AnswerCacheMin clients may
// be AnswerMaxAge old while clients join and leave (see Answer); smaller
// channels' answers are always current.
const (
	AnswerMaxAge   = time.Second
	AnswerCacheMin = 100
)

// Answer returns the encoded answer to a presence op for channel: encode
// builds it from up to MaxList clients and the total. It is shared while
// nobody joined or left; in a channel of more than AnswerCacheMin clients
// also for AnswerMaxAge after that, so that however many connections ask,
// a big channel's list is built at most once a second (a small one's
// costs little to build). It returns nil for a channel with nobody.
func (r *Registry) Answer(channel string, encode func(clients []protocol.Client, total int) *protocol.Wire) *protocol.Wire {
	sh := r.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rm := sh.rooms[channel]
	if rm == nil {
		return nil
	}
	now := r.cfg.Now()
	if rm.answer != nil && (!rm.changed || len(rm.clients) > AnswerCacheMin && now.Sub(rm.answerAt) < AnswerMaxAge) {
		return rm.answer
	}
	clients := make([]protocol.Client, 0, min(r.cfg.MaxList, len(rm.clients)))
	for _, c := range rm.clients {
		if len(clients) == r.cfg.MaxList {
			break
		}
		clients = append(clients, *c)
	}
	rm.answer, rm.answerAt, rm.changed = encode(clients, len(rm.clients)), now, false
	return rm.answer
}

// Channels returns the channels with presence entries on this node.
func (r *Registry) Channels() []string {
	var out []string
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for name := range sh.rooms {
			out = append(out, name)
		}
		sh.mu.Unlock()
	}
	return out
}

// Stats returns channel's client count and its users (each counted once
// however many connections it has), and the users themselves, for a
// cluster's union, when withUsers.
func (r *Registry) Stats(channel string, withUsers bool) (clients int, users []string, userCount int) {
	sh := r.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rm := sh.rooms[channel]
	if rm == nil {
		return 0, nil, 0
	}
	if withUsers {
		users = make([]string, 0, len(rm.users))
		for u := range rm.users {
			users = append(users, u)
		}
	}
	return len(rm.clients), users, len(rm.users)
}
