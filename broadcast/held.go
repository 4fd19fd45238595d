package broadcast

// A member is held on its shard while one of its subscribes waits for a
// channel to load (Config.Load): from its opWait until that is answered
// (opAnswer, from Hub.Loaded or the channel's drop), whatever the shard
// would hand the member is kept, in order, in the member's heldQueue, and
// handed on once the waits before it are answered. The lists change as
// ops arrive, as they do for any member: a subscribe joins its channel's
// list at once (an answered wait, when its answer arrives), an
// unsubscribe or a leave removes at once. So a publication's frame is
// kept for the member exactly when it would have been handed to it, and
// the publication's fan-out does not wait for the member: its frame is
// kept, not the publication. The reply and replay of an answer take the
// wait's place in the queue, before the live messages that follow them.
//
// A member that is not held costs a check of its memberHeld flag on each
// frame (send, pace) and each of its own ops.

// heldQueue is what a held member is to be handed, in order.
type heldQueue struct {
	items []heldItem
	waits []*op // its unanswered opWaits, in order
}

// heldItem is one thing a held member is to be handed: a frame, or an op
// (an opWait, an opGreet once answered, an opCall).
type heldItem struct {
	frame []byte
	paced bool // frame is a replay's or a ReplyWire's: paced (see Pacer)
	// own: the last item of one of m's own ops, which counts in its
	// backlog until this is handed on
	own bool
	o   *op
}

func (o *op) clone() *op {
	c := *o
	return &c
}

// hold keeps it for m, which becomes held if it was not.
func (s *shard) hold(m *Member, it heldItem) {
	q := s.held[m]
	if q == nil {
		if s.held == nil {
			s.held = make(map[*Member]*heldQueue)
		}
		q = &heldQueue{}
		s.held[m] = q
		m.flags |= memberHeld
		s.heldMembers.Add(1)
	}
	if it.frame != nil {
		s.heldFrames.Add(1)
	}
	q.items = append(q.items, it)
}

// doHeld runs o, one of m's own ops, while m is held (or an opWait, which
// holds it): its effect on the lists is now, what it sends is kept, and m's
// backlog counts it until that has been handed on.
func (s *shard) doHeld(o *op) {
	m := o.m
	n := 0
	if q := s.held[m]; q != nil {
		n = len(q.items)
	}
	s.exec(o)
	if q := s.held[m]; q != nil && len(q.items) > n {
		q.items[len(q.items)-1].own = true
		return
	}
	m.backlog.Add(-1) // it sent nothing
}

// wait keeps o, a subscribe to a channel that is loading, in m's queue:
// nothing after it is handed to m until it is answered.
func (s *shard) wait(o *op) {
	w := o.clone()
	s.hold(o.m, heldItem{o: w})
	q := s.held[o.m]
	q.waits = append(q.waits, w)
}

// findWait returns the index in q.waits of the first unanswered wait of
// sub to ch that is not gone (or, with gone, of any), or -1.
func (q *heldQueue) findWait(ch *channel, sub *subscription, gone bool) int {
	for i, w := range q.waits {
		if w.sub == sub && w.ch == ch && (gone || !w.gone) {
			return i
		}
	}
	return -1
}

// forgetWait reports whether sub, m's subscription to ch, is still waiting
// for its answer, which then joins no list: it is being unsubscribed, or m
// leaves. Else sub is in ch's list.
func (s *shard) forgetWait(m *Member, ch *channel, sub *subscription) bool {
	if m.flags&memberHeld == 0 {
		return false // a member with a wait is held
	}
	q := s.held[m]
	i := q.findWait(ch, sub, false)
	if i < 0 {
		return false
	}
	q.waits[i].gone = true
	return true
}

// answer takes o, the answer to one of m's waits: the subscription joins
// its channel's list now (unless m unsubscribed or left meanwhile), its
// reply and replay take the wait's place, and if that was the head of m's
// queue, what follows is handed on, up to the next unanswered wait.
func (s *shard) answer(o *op) {
	q := s.held[o.m]
	if q == nil {
		return // the hub's answers match its waits; this is not one
	}
	// Answers come in the order of their channel's waits, and one member
	// waits at most once at a time on one channel and subscription: the
	// first match is this answer's.
	i := q.findWait(o.ch, o.sub, true)
	if i < 0 {
		return
	}
	w := q.waits[i]
	q.waits = append(q.waits[:i], q.waits[i+1:]...)
	if !w.gone {
		s.join(o.ch, o.sub, o.skip)
	}
	w.kind, w.reply, w.replay = opGreet, o.reply, o.replay
	if q.items[0].o == w {
		s.release(o.m, q)
	}
}

// release hands m what its queue holds up to its next unanswered wait; m is
// no longer held if there is none.
func (s *shard) release(m *Member, q *heldQueue) {
	m.flags &^= memberHeld
	// As a batch: frames queue in order, paced or not, and are flushed
	// at the end (or with the batch this runs in).
	batching := s.batching
	s.batching = true
	i := 0
	for ; i < len(q.items); i++ {
		it := q.items[i]
		if it.o != nil && it.o.kind == opWait {
			break
		}
		q.items[i] = heldItem{}
		switch {
		case it.frame != nil:
			s.heldFrames.Add(-1)
			if it.paced {
				_ = s.pace(m, it.frame)
			} else {
				_ = s.send(m, it.frame)
			}
		case it.o.kind == opGreet:
			s.greet(m, it.o.reply, it.o.replay)
		case it.o.kind == opCall:
			s.call(it.o.fn)
		}
		if it.own {
			m.backlog.Add(-1)
		}
	}
	if i < len(q.items) {
		q.items = q.items[i:]
		m.flags |= memberHeld
	} else {
		delete(s.held, m)
		s.heldMembers.Add(-1)
	}
	if !batching {
		s.flush()
	}
}
