package occupancy

import (
	"context"
	"errors"
	"maps"
	"strings"
	"sync"
	"time"
)

// store is where a cluster's nodes agree on who is online: one entry per
// user or channel that is announced, whose value lists the nodes holding
// it, and one pending entry per due check. Writes are compare-and-set on
// an entry's revision. The memory store serves a single node; the NATS
// store (natsstore.go) a cluster.
type store interface {
	// get returns an entry's value and revision, errNotFound if none.
	get(ctx context.Context, key string) ([]byte, uint64, error)
	// create writes a new entry and returns its revision, errExists if
	// there is one.
	create(ctx context.Context, key string, val []byte) (uint64, error)
	// update replaces the entry at revision rev, errConflict if it moved.
	update(ctx context.Context, key string, val []byte, rev uint64) error
	// remove deletes the entry at revision rev (0: whatever its
	// revision), errConflict if it moved.
	remove(ctx context.Context, key string, rev uint64) error
	// scan calls fn with every entry whose key starts with prefix.
	scan(ctx context.Context, prefix string, fn func(key string, val []byte, rev uint64)) error
	// setDue records that key is to be checked at due; clearDue forgets
	// the check at revision rev (a later one stays). due lists the checks
	// recorded, by any node.
	setDue(ctx context.Context, key string, due time.Time) error
	clearDue(ctx context.Context, key string, rev uint64) error
	due() map[string]dueCheck
	// epoch is when the store's entries began, in Unix microseconds:
	// added to a revision, it makes an event's seq, which then grows even
	// across a bucket NATS lost and made again (it cannot take a million
	// writes a second).
	epoch() uint64
	close()
}

// dueCheck is a check to make once its time has come.
type dueCheck struct {
	at  time.Time
	rev uint64
}

var (
	errNotFound = errors.New("occupancy: no such entry")
	errExists   = errors.New("occupancy: entry exists")
	errConflict = errors.New("occupancy: entry changed")
)

// memStore is the store of a single node.
type memStore struct {
	mu      sync.Mutex
	rev     uint64
	entries map[string]memEntry
	checks  map[string]dueCheck
	began   uint64
}

type memEntry struct {
	val []byte
	rev uint64
}

func newMemStore() *memStore {
	return &memStore{entries: map[string]memEntry{}, checks: map[string]dueCheck{}, began: uint64(time.Now().UnixMicro())}
}

func (m *memStore) get(_ context.Context, key string) ([]byte, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[key]
	if !ok {
		return nil, 0, errNotFound
	}
	return e.val, e.rev, nil
}

func (m *memStore) create(_ context.Context, key string, val []byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.entries[key]; ok {
		return 0, errExists
	}
	m.rev++
	m.entries[key] = memEntry{val, m.rev}
	return m.rev, nil
}

func (m *memStore) update(_ context.Context, key string, val []byte, rev uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.entries[key]; !ok || e.rev != rev {
		return errConflict
	}
	m.rev++
	m.entries[key] = memEntry{val, m.rev}
	return nil
}

func (m *memStore) remove(_ context.Context, key string, rev uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.entries[key]; !ok || (rev != 0 && e.rev != rev) {
		return errConflict
	}
	delete(m.entries, key)
	m.rev++ // as a NATS delete marker takes one
	return nil
}

func (m *memStore) scan(_ context.Context, prefix string, fn func(string, []byte, uint64)) error {
	m.mu.Lock()
	var list []string
	for k := range m.entries {
		if strings.HasPrefix(k, prefix) {
			list = append(list, k)
		}
	}
	m.mu.Unlock()
	for _, k := range list {
		if val, rev, err := m.get(context.Background(), k); err == nil {
			fn(k, val, rev)
		}
	}
	return nil
}

func (m *memStore) setDue(_ context.Context, key string, due time.Time) error {
	m.mu.Lock()
	m.rev++
	m.checks[key] = dueCheck{due, m.rev}
	m.mu.Unlock()
	return nil
}

func (m *memStore) clearDue(_ context.Context, key string, rev uint64) error {
	m.mu.Lock()
	if c, ok := m.checks[key]; ok && c.rev == rev {
		delete(m.checks, key)
	}
	m.mu.Unlock()
	return nil
}

func (m *memStore) due() map[string]dueCheck {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.checks)
}

func (m *memStore) epoch() uint64 { return m.began }

func (m *memStore) close() {}
