package server

import "sync"

// connTable finds every open connection, for the heartbeat and for drain.
// It is indexed by descriptor: descriptors are small, dense integers below
// the process's open-files limit, so a slot costs 8 bytes and no hashing.
//
// Lock order: connTable.mu before Conn.mu. Callers of each() must not hold
// any Conn.mu.
type connTable struct {
	mu    sync.RWMutex
	slots []*Conn
	n     int
	empty chan struct{} // gets a token when the table becomes empty
}

func newConnTable() *connTable {
	return &connTable{empty: make(chan struct{}, 1)}
}

// put records c under its descriptor. n counts the slots in use, so it can
// never count one descriptor twice. A connection leaves the table (remove)
// before its descriptor is closed, so a slot in use is never handed to a
// new connection; if it ever were, the new one replaces it.
func (t *connTable) put(fd int, c *Conn) {
	t.mu.Lock()
	if fd >= len(t.slots) {
		t.slots = append(t.slots, make([]*Conn, fd+1-len(t.slots)+len(t.slots)/2)...)
	}
	if t.slots[fd] == nil {
		t.n++
	}
	t.slots[fd] = c
	t.mu.Unlock()
}

// get returns the connection in fd's slot, nil if none.
func (t *connTable) get(fd int) *Conn {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if fd < 0 || fd >= len(t.slots) {
		return nil
	}
	return t.slots[fd]
}

// remove clears fd's slot if it holds c.
func (t *connTable) remove(fd int, c *Conn) {
	t.mu.Lock()
	if fd < len(t.slots) && t.slots[fd] == c {
		t.slots[fd] = nil
		t.n--
	}
	t.mu.Unlock()
}

// signalIfEmpty wakes a drain waiting for the table to empty. It runs once
// a connection is wholly released, so a drain that wakes finds it gone
// from the metrics too.
func (t *connTable) signalIfEmpty() {
	if t.len() > 0 {
		return
	}
	select {
	case t.empty <- struct{}{}:
	default:
	}
}

func (t *connTable) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.n
}

// each calls f for every connection, copying a batch of them at a time so
// the table is not locked while f runs.
func (t *connTable) each(f func(*Conn)) {
	var batch [256]*Conn
	for from := 0; ; {
		n := 0
		t.mu.RLock()
		for ; from < len(t.slots) && n < len(batch); from++ {
			if c := t.slots[from]; c != nil {
				batch[n] = c
				n++
			}
		}
		done := from >= len(t.slots)
		t.mu.RUnlock()
		for _, c := range batch[:n] {
			f(c)
		}
		if done {
			return
		}
	}
}

// all returns a snapshot of the open connections.
func (t *connTable) all() []*Conn {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]*Conn, 0, t.n)
	for _, c := range t.slots {
		if c != nil {
			out = append(out, c)
		}
	}
	return out
}
