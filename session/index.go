package session

import (
	"crypto/rand"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// index finds this node's live sessions by client id and by user, for the
// server's commands.
//
// A client id is "<node>.<n>": the node's name, then, in base 36, the
// connection's slot among the server's open connections (its descriptor)
// and a serial, as slot<<32 | serial. By client id a session is found
// through the server's own table of connections (Lookup), so the index
// costs an idle connection nothing: the serial tells a session from a
// later one in the same slot. (It wraps after 4 billion connections on one
// node; two sessions with one id would have to share a slot across them.)
// By user, sessions are listed in maps sharded like the hub's tables;
// only connections with a user are there.
type index struct {
	node   string
	lookup atomic.Pointer[func(slot int) any]
	serial atomic.Uint32
	shards [indexShards]indexShard
	// online, when set, is told of a user's first session on this node
	// and of its last one ending, under the user's shard lock.
	online func(user string, online bool)
}

const indexShards = 64

type indexShard struct {
	mu    sync.RWMutex
	users map[string][]*Session // a user's sessions on this node
}

func (x *index) init(node string, lookup func(slot int) any) {
	x.node = node
	if lookup != nil {
		x.lookup.Store(&lookup)
	}
	for i := range x.shards {
		x.shards[i].users = make(map[string][]*Session)
	}
}

// SetLookup sets Config.Lookup, for a server built after the handler.
func (h *Handler) SetLookup(lookup func(slot int) any) { h.index.lookup.Store(&lookup) }

// randomNode names a node that was not given a name: 8 base-36 digits.
func randomNode() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	n := uint64(b[0])<<32 | uint64(b[1])<<24 | uint64(b[2])<<16 | uint64(b[3])<<8 | uint64(b[4])
	s := strconv.FormatUint(n, 36)
	return strings.Repeat("0", 8-len(s)) + s
}

func (x *index) userShard(user string) *indexShard {
	// FNV-1a: users are short, and this is not on a hot path.
	h := uint32(2166136261)
	for i := 0; i < len(user); i++ {
		h = (h ^ uint32(user[i])) * 16777619
	}
	return &x.shards[h%indexShards]
}

// add gives s its serial and indexes it by user. s.mu is held.
func (x *index) add(s *Session) {
	if s.id == 0 { // else reserved by Authorize
		s.id = x.serial.Add(1)
	}
	if user := s.user(); user != "" {
		sh := x.userShard(user)
		sh.mu.Lock()
		sh.users[user] = append(sh.users[user], s)
		if first := len(sh.users[user]) == 1; first && x.online != nil {
			x.online(user, true)
		}
		sh.mu.Unlock()
	}
}

// remove unindexes s. s.mu is held.
func (x *index) remove(s *Session) {
	user := s.user()
	if user == "" {
		return
	}
	sh := x.userShard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	list := sh.users[user]
	for i, o := range list {
		if o == s {
			list[i] = list[len(list)-1]
			list[len(list)-1] = nil
			list = list[:len(list)-1]
			break
		}
	}
	if len(list) == 0 {
		delete(sh.users, user)
		if x.online != nil {
			x.online(user, false)
		}
	} else {
		sh.users[user] = list
	}
}

// NodeOf returns the node part of a client id.
func NodeOf(client string) (node string, ok bool) {
	i := strings.LastIndexByte(client, '.')
	if i <= 0 {
		return "", false
	}
	return client[:i], true
}

// client returns the session with client id, nil if none is live here.
func (x *index) client(id string) *Session {
	node, ok := NodeOf(id)
	lookup := x.lookup.Load()
	if !ok || node != x.node || lookup == nil {
		return nil
	}
	n, err := strconv.ParseUint(id[len(node)+1:], 36, 64)
	if err != nil || n>>32 > 1<<31 {
		return nil
	}
	s, _ := (*lookup)(int(n >> 32)).(*Session)
	if s == nil || s.id != uint32(n) {
		return nil
	}
	return s
}

// user returns user's live sessions on this node.
func (x *index) user(user string) []*Session {
	sh := x.userShard(user)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return append([]*Session(nil), sh.users[user]...)
}

// clientID is s's client id.
func (x *index) clientID(s *Session) string { return x.idOf(s.conn().Slot(), s.id) }

// idOf is the client id of the session with serial in slot.
func (x *index) idOf(slot int, serial uint32) string {
	return x.node + "." + strconv.FormatUint(uint64(slot)<<32|uint64(serial), 36)
}

// Users lists the users with a session on this node (for
// Config.UserOnline's callee, which writes them again after it lost
// track), one shard's read lock at a time.
func (h *Handler) Users() []string {
	var out []string
	for i := range h.index.shards {
		sh := &h.index.shards[i]
		sh.mu.RLock()
		for u := range sh.users {
			out = append(out, u)
		}
		sh.mu.RUnlock()
	}
	return out
}
