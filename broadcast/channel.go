package broadcast

import (
	"sync"
	"sync/atomic"
	"time"
)

// channel is a channel's state on this node. Lock order: see the package
// doc.
type channel struct {
	name  string
	epoch string

	mu     sync.Mutex
	offset uint64  // offset of the latest publication; 0 before the first
	subs   int     // subscriptions on all shards
	shards []int32 // subscriptions per shard: publications skip empty shards
	hist   ring

	// With Config.Load: served is set when Load was called for the channel
	// (Unload is owed when it is dropped), with load as its id; loading
	// until Loaded, while waiting lists its subscribes, in order.
	served, loading bool
	load            uint64 // the id Load was given
	waiting         []waiter

	histBytes  atomic.Int64 // what hist weighs (budget.go)
	overQueued atomic.Bool  // listed in historyIndex.over
}

// unused reports whether ch may leave the registry: no subscriber, and no
// history, or a channel loaded on demand, whose broker reads it only while
// it is held here (a history kept without subscribers would keep it read
// forever, every publication renewing it). ch.mu is held.
func (ch *channel) unused() bool {
	return ch.subs == 0 && (ch.hist.len() == 0 || ch.served)
}

// Position is where a client's copy of a channel stands: the last offset it
// saw, in which epoch. An empty or unknown Epoch matches no epoch: offsets
// of different epochs are different messages.
type Position struct {
	Offset uint64
	Epoch  string
}

// Entry is one publication of a channel's history.
type Entry struct {
	Offset uint64
	Time   time.Time
	Data   []byte // JSON; must not be modified
}

// recover decides what a subscriber at pos is sent before live messages:
// everything after pos if the history still reaches back that far in the
// same epoch (recovered), else all the history holds (not recovered: the
// client has a gap and must resync).
func (ch *channel) recover(pos *Position) (replay []*publication, recovered bool) {
	if pos == nil {
		return nil, false
	}
	sameEpoch := pos.Epoch != "" && pos.Epoch == ch.epoch
	switch {
	case !sameEpoch || pos.Offset > ch.offset:
		return ch.hist.after(0), false
	case pos.Offset == ch.offset:
		return nil, true
	case ch.hist.len() > 0 && ch.hist.oldest() <= pos.Offset+1:
		return ch.hist.after(pos.Offset), true
	}
	return ch.hist.after(0), false
}

// chanTable is one shard of the channel registry, chosen by a hash of the
// channel name.
type chanTable struct {
	mu    sync.RWMutex
	chans map[string]*channel
}
