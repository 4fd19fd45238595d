package session

import (
	"crypto/rand"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// index finds this node's live sessions by client id and by user, for the
// server's commands. It is sharded, like the hub's tables, so connections
// opening and closing on all cores do not meet on one lock.
//
// A client id is "<node>.<serial>": the node's name and a serial in base
// 36. The serial is 32 bits (a session's size is what an idle connection
// costs): it wraps after 4 billion connections on one node, and a live
// session whose serial comes round again is not replaced, so ids never
// name two live sessions.
type index struct {
	node   string
	serial atomic.Uint32
	shards [indexShards]indexShard
}

const indexShards = 64

type indexShard struct {
	mu      sync.RWMutex
	clients map[uint32]*Session
	users   map[string][]*Session // a user's sessions on this node
}

func (x *index) init(node string) {
	x.node = node
	for i := range x.shards {
		x.shards[i].clients = make(map[uint32]*Session)
		x.shards[i].users = make(map[string][]*Session)
	}
}

// randomNode names a node that was not given a name: 8 base-36 digits.
func randomNode() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	n := uint64(b[0])<<32 | uint64(b[1])<<24 | uint64(b[2])<<16 | uint64(b[3])<<8 | uint64(b[4])
	s := strconv.FormatUint(n, 36)
	return strings.Repeat("0", 8-len(s)) + s
}

func (x *index) clientShard(id uint32) *indexShard { return &x.shards[id%indexShards] }

func (x *index) userShard(user string) *indexShard {
	// FNV-1a: users are short, and this is not on a hot path.
	h := uint32(2166136261)
	for i := 0; i < len(user); i++ {
		h = (h ^ uint32(user[i])) * 16777619
	}
	return &x.shards[h%indexShards]
}

// add gives s a client id and indexes it. s.mu is held.
func (x *index) add(s *Session) {
	for {
		id := x.serial.Add(1)
		if id == 0 {
			continue
		}
		sh := x.clientShard(id)
		sh.mu.Lock()
		if sh.clients[id] != nil {
			sh.mu.Unlock()
			continue // still live after a wrap
		}
		sh.clients[id] = s
		sh.mu.Unlock()
		s.id = id
		break
	}
	if user := s.user(); user != "" {
		sh := x.userShard(user)
		sh.mu.Lock()
		sh.users[user] = append(sh.users[user], s)
		sh.mu.Unlock()
	}
}

// remove unindexes s. s.mu is held.
func (x *index) remove(s *Session) {
	sh := x.clientShard(s.id)
	sh.mu.Lock()
	delete(sh.clients, s.id)
	sh.mu.Unlock()
	if user := s.user(); user != "" {
		sh := x.userShard(user)
		sh.mu.Lock()
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
		} else {
			sh.users[user] = list
		}
		sh.mu.Unlock()
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
	i := strings.LastIndexByte(id, '.')
	if i <= 0 || id[:i] != x.node {
		return nil
	}
	serial := id[i+1:]
	n, err := strconv.ParseUint(serial, 36, 32)
	if err != nil {
		return nil
	}
	sh := x.clientShard(uint32(n))
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.clients[uint32(n)]
}

// user returns user's live sessions on this node.
func (x *index) user(user string) []*Session {
	sh := x.userShard(user)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return append([]*Session(nil), sh.users[user]...)
}

// clientID is s's client id.
func (x *index) clientID(s *Session) string {
	return x.node + "." + strconv.FormatUint(uint64(s.id), 36)
}
