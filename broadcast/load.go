package broadcast

// waiter is a subscribe that waits for its channel to load.
type waiter struct {
	sub    *subscription
	pos    Position
	hasPos bool
}

// Loaded tells a hub with Config.Load that the broker has applied what
// it stores of channel for the Load given the id load, or has given up
// loading it: the subscribes that wait for it are answered now, each as
// Subscribe would have answered it had the channel held this all along
// (recovered false for a position it cannot serve), and their members'
// other frames and ops, held meanwhile, follow. It does nothing for a
// channel that is not loading, or loading for another Load (the broker
// finished a load of a channel dropped and made anew since, and has not
// seen the new Load yet).
func (h *Hub) Loaded(channel string, load uint64) {
	t, ch := h.lockChannel(channel, lookup)
	if ch == nil {
		return
	}
	if ch.loading && ch.load == load {
		h.answerLocked(ch)
	}
	unlockChannel(t, ch)
}

// answerLocked ends ch's loading: each waiting subscribe is answered on
// its member's shard, where its subscription joins ch's list at once, so
// ch's later messages follow its reply and replay. ch.mu is held.
func (h *Hub) answerLocked(ch *channel) {
	ch.loading = false
	h.loading.Add(-1)
	for _, w := range ch.waiting {
		var pos *Position
		if w.hasPos {
			pos = &w.pos
		}
		o := op{kind: opAnswer, ch: ch, m: w.sub.m, sub: w.sub}
		o.reply, o.replay, o.skip = h.greeting(ch, pos)
		h.shardOf(o.m).push(o) // false: the hub is closing
	}
	clear(ch.waiting)
	ch.waiting = nil
}
