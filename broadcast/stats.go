package broadcast

// Stats are the hub's current counts.
type Stats struct {
	Members      int64 `json:"members"`       // connections joined
	Channels     int64 `json:"channels"`      // channels with subscribers or history
	Subscribers  int64 `json:"subscribers"`   // subscriptions over all channels
	History      int64 `json:"history"`       // messages held in history
	HistoryBytes int64 `json:"history_bytes"` // what they weigh: frames, compressed copies, heldOverhead each
	InFlight     int   `json:"in_flight"`     // publications being fanned out
	QueuedOps    int64 `json:"queued_ops"`    // ops waiting on the delivery shards
	// With Config.Load: channels whose subscribers wait for the broker to
	// load them, members held on their shards meanwhile (what is for them
	// waits behind their subscribe), and the frames kept for those members
	// (their own ops' replies count in their Backlog too).
	LoadingChannels int64 `json:"loading_channels"`
	HeldMembers     int64 `json:"held_members"`
	HeldFrames      int64 `json:"held_frames"`
}

// Stats returns the current counts; they are kept as things change, so
// this takes no lock.
func (h *Hub) Stats() Stats {
	st := Stats{
		Members:      h.members.Load(),
		Channels:     h.channels.Load(),
		Subscribers:  h.subscribers.Load(),
		History:      h.index.entries.Load(),
		HistoryBytes: h.index.bytes.Load(),
		InFlight:     len(h.slots),
		QueuedOps:    h.queuedOps(),

		LoadingChannels: h.loading.Load(),
	}
	for _, s := range h.shards {
		st.HeldMembers += s.heldMembers.Load()
		st.HeldFrames += s.heldFrames.Load()
	}
	return st
}

// queuedOps sums what the shards have queued and not begun to run.
func (h *Hub) queuedOps() int64 {
	n := int64(0)
	for _, s := range h.shards {
		n += s.waiting.Load()
	}
	return n
}

// History is what a channel's history holds after an offset.
type History struct {
	Epoch   string  // the channel's epoch ("" if the channel does not exist)
	Offset  uint64  // the channel's latest offset
	Entries []Entry // publications after the requested offset, oldest first
	// Complete is set when Entries hold every publication after the
	// requested offset: nothing between it and Entries was lost.
	Complete bool
}

// History returns the publications of channel after offset since that
// history still holds.
func (h *Hub) History(channel string, since uint64) History {
	t, ch := h.lockChannel(channel, lookup)
	if ch == nil {
		return History{Complete: since == 0}
	}
	defer unlockChannel(t, ch)
	pubs, complete := ch.recover(&Position{Offset: since, Epoch: ch.epoch})
	out := History{Epoch: ch.epoch, Offset: ch.offset, Complete: complete, Entries: make([]Entry, len(pubs))}
	for i, p := range pubs {
		out.Entries[i] = Entry{Offset: p.offset, Time: p.at, Data: p.data}
	}
	return out
}
