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
	// recent keeps the event counts of channels emptied in recentSecond.
	recent       map[string]rate
	recentSecond int64
}

// room is one channel's presence.
type room struct {
	clients map[string]*protocol.Client // by client id
	users   map[string]int32            // connections per user ("" not kept)
	second  int64                       // the second events are being counted in
	events  int                         // events decided in that second

	// Presence ops of a big channel (Answer): when the last answer was
	// built, and the asks waiting for the next one.
	answerAt time.Time
	waiting  []waiter
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

// Any reports whether any channel keeps presence.
func (r *Registry) Any() bool { return len(r.cfg.Channels) > 0 }

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
//
// announce, when set, is called with the decision under the registry's
// lock, as Answer's deliver is: events and answers of a channel are handed
// on (to the hub's queues) in the order the registry changed, so no
// answer is older than an event sent before it. It may hand on, but must
// not call the registry.
func (r *Registry) Join(channel string, c protocol.Client, announce func(Decision)) Decision {
	sh := r.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rm := sh.rooms[channel]
	if rm == nil {
		rm = &room{clients: make(map[string]*protocol.Client), users: make(map[string]int32)}
		sh.rooms[channel] = rm
		sh.restoreRate(channel, rm, r.cfg.Now().Unix())
	}
	if rm.clients[c.Client] != nil {
		return Drop
	}
	rm.clients[c.Client] = &c
	if c.User != "" {
		rm.users[c.User]++
	}
	r.clients.Add(1)
	d := r.decide(rm)
	if announce != nil {
		announce(d)
	}
	return d
}

// Leave removes client from channel and returns its entry and what to do
// with its leave event; ok is false if it was not there. announce is as
// Join's.
func (r *Registry) Leave(channel, client string, announce func(protocol.Client, Decision)) (c protocol.Client, d Decision, ok bool) {
	sh := r.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rm := sh.rooms[channel]
	if rm == nil || rm.clients[client] == nil {
		return c, Drop, false
	}
	c = *rm.clients[client]
	delete(rm.clients, client)
	if c.User != "" {
		if rm.users[c.User]--; rm.users[c.User] <= 0 {
			delete(rm.users, c.User)
		}
	}
	r.clients.Add(-1)
	d = r.decide(rm)
	if announce != nil {
		announce(c, d)
	}
	if len(rm.clients) == 0 && len(rm.waiting) == 0 {
		delete(sh.rooms, channel)
		sh.keepRate(channel, rm)
	}
	return c, d, true
}

// rate is a channel's event count in a second, kept while the channel is
// empty so that leaving and joining again does not restart its rate.
type rate struct {
	second int64
	events int
}

// keepRate keeps an emptied room's event count for the rest of its
// second. The shard's lock is held.
func (sh *shard) keepRate(channel string, rm *room) {
	switch {
	case rm.second < sh.recentSecond:
		return // its second is past: nothing to keep
	case sh.recent == nil || rm.second > sh.recentSecond:
		sh.recent, sh.recentSecond = map[string]rate{}, rm.second // older ones are spent
	}
	sh.recent[channel] = rate{rm.second, rm.events}
}

// restoreRate gives a new room the count its channel had this second.
func (sh *shard) restoreRate(channel string, rm *room, now int64) {
	if r, ok := sh.recent[channel]; ok && r.second == now {
		rm.second, rm.events = r.second, r.events
	}
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
	return rm.listLocked(limit), len(rm.clients)
}

// A channel of more than AnswerBatchMin clients builds its presence
// answer at most twice per AnswerInterval: an ask within AnswerInterval of
// the last build waits for the next, which answers every ask that waited
// (Answer). Smaller channels build one for every ask; they cost little.
const (
	AnswerInterval = time.Second
	AnswerBatchMin = 100
	// maxWaiting bounds the asks one channel holds for its next answer.
	maxWaiting = 1 << 16
)

// waiter is an ask waiting for a channel's next answer.
type waiter struct {
	asker   any // who asked: one ask of each waits at a time
	deliver func(*protocol.Wire)
}

// Outcome says what Answer did with an ask.
type Outcome uint8

// Outcomes.
const (
	Answered Outcome = iota // deliver was called
	Deferred                // deliver will be called with the next answer
	Pending                 // the asker's earlier ask waits already: deliver will not be called
	Full                    // maxWaiting asks wait: deliver will not be called
)

// Answer answers asker's presence op for channel: deliver is called with
// encode's envelope of up to MaxList clients and the total, under the
// registry's lock (see Join): now, or, when a big channel built an answer
// less than AnswerInterval ago, with the next one, from another goroutine.
// An asker has at most one ask waiting: another, meanwhile, is Pending
// (so what one connection is sent of a channel is one answer a second at
// most). No answer is kept once delivered.
func (r *Registry) Answer(channel string, asker any, encode func(clients []protocol.Client, total int) *protocol.Wire,
	deliver func(*protocol.Wire)) Outcome {
	sh := r.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rm := sh.rooms[channel]
	if rm == nil {
		deliver(encode(nil, 0))
		return Answered
	}
	now := r.cfg.Now()
	if len(rm.clients) <= AnswerBatchMin || now.Sub(rm.answerAt) >= AnswerInterval {
		rm.answerAt = now
		deliver(r.buildLocked(rm, encode))
		return Answered
	}
	for _, w := range rm.waiting {
		if w.asker == asker {
			return Pending
		}
	}
	if len(rm.waiting) >= maxWaiting {
		return Full
	}
	rm.waiting = append(rm.waiting, waiter{asker, deliver})
	if len(rm.waiting) == 1 {
		time.AfterFunc(rm.answerAt.Add(AnswerInterval).Sub(now), func() { r.flush(channel, rm, encode) })
	}
	return Deferred
}

// flush answers the asks that waited for rm's next answer.
func (r *Registry) flush(channel string, rm *room, encode func([]protocol.Client, int) *protocol.Wire) {
	sh := r.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rm.answerAt = r.cfg.Now()
	w := r.buildLocked(rm, encode)
	for _, wt := range rm.waiting {
		wt.deliver(w)
	}
	rm.waiting = nil
	if len(rm.clients) == 0 {
		delete(sh.rooms, channel)
		sh.keepRate(channel, rm)
	}
}

// buildLocked encodes rm's answer. Its shard's lock is held.
func (r *Registry) buildLocked(rm *room, encode func([]protocol.Client, int) *protocol.Wire) *protocol.Wire {
	return encode(rm.listLocked(r.cfg.MaxList), len(rm.clients))
}

// listLocked copies up to limit of rm's clients. Its shard's lock is held.
func (rm *room) listLocked(limit int) []protocol.Client {
	clients := make([]protocol.Client, 0, min(limit, len(rm.clients)))
	for _, c := range rm.clients {
		if len(clients) == limit {
			break
		}
		clients = append(clients, *c)
	}
	return clients
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
