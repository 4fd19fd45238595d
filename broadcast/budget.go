package broadcast

import (
	"sync"
	"sync/atomic"
	"time"
)

// History is bounded four ways: per channel by count (HistorySize) and by
// bytes (HistoryChannelMaxBytes, which never drops a channel's newest
// message), by age (HistoryTTL), and node-wide by bytes (HistoryMaxBytes).
// Bytes are the encoded frames, compressed copies included, and
// heldOverhead for each message: what holding it costs besides.
//
// Every publication held in any channel's history is also in the hub's
// historyIndex, a list in the order they entered (oldest first). Expiry
// and the node-wide budget take from its head: each costs what it
// removes, never a sweep of every channel, and the budget drops the
// node's oldest messages first, so the newest survive.
//
// Lock order: channel.mu, then historyIndex.mu.

// Why history was dropped, the label of pushgate_history_evictions_total.
type eviction uint8

const (
	evictExpired      eviction = iota // older than HistoryTTL
	evictSize                         // past HistorySize in its channel
	evictChannelBytes                 // past HistoryChannelMaxBytes in its channel
	evictBudget                       // past HistoryMaxBytes on the node
	evictRestart                      // its channel restarted (new epoch, or a gap)
	evictUnserved                     // loaded on demand, its last subscriber here left
	numEvictions
)

var evictionLabels = [numEvictions]string{"expired", "size", "channel_bytes", "budget", "restart", "unserved"}

// historyIndex lists every publication held in history, oldest first,
// through the publications themselves.
type historyIndex struct {
	mu         sync.Mutex
	head, tail *publication // head is the oldest
	over       []*channel   // channels a compressed copy took past their cap
	bytes      atomic.Int64 // what the listed publications weigh
	entries    atomic.Int64 // how many they are

	max, chMax int64         // HistoryMaxBytes, HistoryChannelMaxBytes
	kick       chan struct{} // wakes the expiry loop to enforce them
}

// encoded stores, by running set, an encoding of p built after p entered
// history (if it did): a listed p weighs it too, and past a bound the
// expiry loop is woken to bring history back under it, as a publish would.
// No lock may be held but a shard's.
func (x *historyIndex) encoded(p *publication, set func()) {
	x.mu.Lock()
	before := p.wire.Size()
	set()
	d := int64(p.wire.Size() - before)
	listed := p.listed
	if listed {
		p.ch.histBytes.Add(d)
		x.bytes.Add(d)
	}
	x.mu.Unlock()
	if !listed {
		return
	}
	ch := p.ch
	over := x.bytes.Load() > x.max
	if ch.histBytes.Load() > x.chMax && ch.overQueued.CompareAndSwap(false, true) {
		x.mu.Lock()
		x.over = append(x.over, ch)
		x.mu.Unlock()
		over = true
	}
	if over {
		select {
		case x.kick <- struct{}{}:
		default:
		}
	}
}

// trimOver brings the channels encoded listed back under their cap, and the
// node under its budget. No channel lock may be held.
func (h *Hub) trimOver() {
	h.index.mu.Lock()
	over := h.index.over
	h.index.over = nil
	h.index.mu.Unlock()
	for _, ch := range over {
		ch.overQueued.Store(false)
		ch.mu.Lock()
		for ch.histBytes.Load() > h.cfg.HistoryChannelMaxBytes && ch.hist.len() > 1 {
			h.forget(ch, ch.hist.popOldest(), evictChannelBytes)
		}
		ch.mu.Unlock()
	}
	h.overBudget()
}

// add lists p, the newest, and returns what it weighs.
func (x *historyIndex) add(p *publication) int64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	p.index = x
	p.older, p.newer = x.tail, nil
	if x.tail != nil {
		x.tail.newer = p
	} else {
		x.head = p
	}
	x.tail = p
	p.listed = true
	w := p.weight()
	x.bytes.Add(w)
	x.entries.Add(1)
	return w
}

// remove unlists p and returns what it weighed; 0 if it was not listed.
func (x *historyIndex) remove(p *publication) int64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !p.listed {
		return 0
	}
	if p.older != nil {
		p.older.newer = p.newer
	} else {
		x.head = p.newer
	}
	if p.newer != nil {
		p.newer.older = p.older
	} else {
		x.tail = p.older
	}
	p.older, p.newer, p.listed = nil, nil, false
	w := p.weight()
	x.bytes.Add(-w)
	x.entries.Add(-1)
	return w
}

func (x *historyIndex) oldest() *publication {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.head
}

// keep records p, just pushed into ch's history, in the index and the
// byte counts, then enforces ch's bounds: dropped is what the push itself
// pushed out (HistorySize), and the channel's bytes are brought back under
// HistoryChannelMaxBytes, its newest message always kept. ch.mu is held.
func (h *Hub) keep(ch *channel, p *publication, dropped *publication) {
	ch.histBytes.Add(h.index.add(p))
	if dropped != nil {
		h.forget(ch, dropped, evictSize)
	}
	for ch.histBytes.Load() > h.cfg.HistoryChannelMaxBytes && ch.hist.len() > 1 {
		h.forget(ch, ch.hist.popOldest(), evictChannelBytes)
	}
}

// forget takes p, out of ch's ring already, out of the index and the byte
// counts. ch.mu is held.
func (h *Hub) forget(ch *channel, p *publication, why eviction) {
	ch.histBytes.Add(-h.index.remove(p))
	if c := h.evicted[why]; c != nil {
		c.Inc()
	}
}

// clearHistory empties ch's history, for why. ch.mu is held.
func (h *Hub) clearHistory(ch *channel, why eviction) {
	for ch.hist.len() > 0 {
		h.forget(ch, ch.hist.popOldest(), why)
	}
}

// overBudget drops the node's oldest history until it weighs no more than
// HistoryMaxBytes. No channel lock may be held.
func (h *Hub) overBudget() {
	for h.index.bytes.Load() > h.cfg.HistoryMaxBytes {
		p := h.index.oldest()
		if p == nil {
			return
		}
		h.evictOldest(p, evictBudget)
	}
}

// expire drops the history published before cutoff, oldest first, and the
// channels it leaves with neither history nor subscribers. No channel lock
// may be held.
func (h *Hub) expire(cutoff time.Time) {
	for {
		p := h.index.oldest()
		if p == nil || !p.at.Before(cutoff) {
			return
		}
		h.evictOldest(p, evictExpired)
	}
}

// evictOldest drops p, the oldest publication in the index when looked at,
// from its channel. Between that look and taking the channel's lock p may
// have left (its channel dropped it, or restarted): then it is no longer
// listed and there is nothing to do.
func (h *Hub) evictOldest(p *publication, reason eviction) {
	ch := p.ch
	ch.mu.Lock()
	// Listed means held by its ring, oldest first: p is its oldest.
	if p.listed {
		ch.hist.popOldest()
		h.forget(ch, p, reason)
	}
	unused := ch.unused()
	ch.mu.Unlock()
	if unused {
		h.dropIfUnused(ch)
	}
}

// expireEvery is how often history is checked for expired messages, as a
// fraction of HistoryTTL (at least every expireMax).
const (
	expireDiv = 8
	expireMax = time.Second
)

func (h *Hub) expireLoop() {
	every := min(h.cfg.HistoryTTL/expireDiv, expireMax)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-h.quit:
			return
		case now := <-tick.C:
			h.expire(now.Add(-h.cfg.HistoryTTL))
		case <-h.index.kick:
			h.trimOver()
		}
	}
}
