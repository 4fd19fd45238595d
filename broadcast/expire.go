package broadcast

import "time"

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
		}
	}
}

// expire drops history published before cutoff and then the channels left
// with neither history nor subscribers. The read-locked pass lets
// publishes go on; only channels found unused take the table's write lock.
func (h *Hub) expire(cutoff time.Time) {
	var unused []*channel
	for i := range h.tables {
		t := &h.tables[i]
		unused = unused[:0]
		t.mu.RLock()
		for _, ch := range t.chans {
			ch.mu.Lock()
			h.history.Add(-int64(ch.hist.expire(cutoff)))
			if ch.subs == 0 && ch.hist.len() == 0 {
				unused = append(unused, ch)
			}
			ch.mu.Unlock()
		}
		t.mu.RUnlock()
		if len(unused) == 0 {
			continue
		}
		t.mu.Lock()
		for _, ch := range unused {
			h.dropLocked(t, ch)
		}
		t.mu.Unlock()
	}
}
