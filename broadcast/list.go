package broadcast

import (
	"container/heap"
	"strings"
)

// ChannelInfo is a channel as Channels lists it.
type ChannelInfo struct {
	Name        string
	Subscribers int // on this node
}

// MaxListChannels bounds the channels one Channels call returns.
const MaxListChannels = 1000

// Channels returns, in name order, up to limit (at most MaxListChannels)
// of this node's channels whose names start with prefix and come after
// cursor, with their subscriber counts, and whether more follow. It looks
// at every channel's name, holding one registry shard's read lock at a
// time: its cost grows with the node's channels, not with what it returns.
func (h *Hub) Channels(prefix, cursor string, limit int) (list []ChannelInfo, more bool) {
	if limit <= 0 || limit > MaxListChannels {
		limit = MaxListChannels
	}
	// The limit+1 smallest names after cursor, in a max-heap.
	top := &nameHeap{}
	for i := range h.tables {
		t := &h.tables[i]
		t.mu.RLock()
		for name := range t.chans {
			if name <= cursor || !strings.HasPrefix(name, prefix) {
				continue
			}
			if top.Len() <= limit {
				heap.Push(top, name)
			} else if name < (*top)[0] {
				(*top)[0] = name
				heap.Fix(top, 0)
			}
		}
		t.mu.RUnlock()
	}
	names := make([]string, top.Len())
	for i := len(names) - 1; i >= 0; i-- {
		names[i] = heap.Pop(top).(string)
	}
	if len(names) > limit {
		names, more = names[:limit], true
	}
	list = make([]ChannelInfo, 0, len(names))
	for _, name := range names {
		t, ch := h.lockChannel(name, lookup)
		if ch == nil {
			continue // dropped meanwhile
		}
		list = append(list, ChannelInfo{Name: name, Subscribers: ch.subs})
		unlockChannel(t, ch)
	}
	return list, more
}

// nameHeap is a max-heap of names.
type nameHeap []string

func (h nameHeap) Len() int           { return len(h) }
func (h nameHeap) Less(i, j int) bool { return h[i] > h[j] }
func (h nameHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *nameHeap) Push(x any)        { *h = append(*h, x.(string)) }
func (h *nameHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Occupied lists this node's channels that have a subscriber here, in no
// order (Config.Occupied's callee writes them again after it lost track).
// It holds one registry shard's read lock at a time, and each channel's
// lock in turn.
func (h *Hub) Occupied() []string {
	var out []string
	for i := range h.tables {
		t := &h.tables[i]
		t.mu.RLock()
		for name, ch := range t.chans {
			ch.mu.Lock()
			if ch.subs > 0 {
				out = append(out, name)
			}
			ch.mu.Unlock()
		}
		t.mu.RUnlock()
	}
	return out
}
