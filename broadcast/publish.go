package broadcast

import (
	"context"
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/pushgate/pushgate/protocol"
)

// UnavailableError is ErrUnavailable with the reason the broker could not
// take a publish.
type UnavailableError struct{ Reason string }

func (e *UnavailableError) Error() string { return ErrUnavailable.Error() + ": " + e.Reason }

func (e *UnavailableError) Unwrap() error { return ErrUnavailable }

// ValidData reports whether data can be published: one JSON value, in
// UTF-8. encoding/json accepts any byte inside a string, but every
// subscriber gets data in a text frame, which must be UTF-8: browsers fail
// the connection on anything else, and history would replay it to every
// client that recovers.
func ValidData(data []byte) bool {
	return len(data) > 0 && utf8.Valid(data) && json.Valid(data)
}

// Publisher is where publications enter: the Hub on a single node, the
// cluster broker (package broker) when nodes share one. Both refuse data
// that fails ValidData with ErrInvalidData.
type Publisher interface {
	// Publish publishes data, valid JSON, to channel and waits until it has
	// its offset and this node's subscribers were handed it. If ctx ends
	// after the offset is known, that is reported without an error.
	Publish(ctx context.Context, channel string, data []byte) (Result, error)
	// TryPublish publishes without waiting. It fails at once with
	// ErrOverloaded when too many publications are in flight; an error
	// found later (the broker could not take it) is passed to failed.
	TryPublish(channel string, data []byte, failed func(error)) error
}

var _ Publisher = (*Hub)(nil)

// Result is the outcome of a publish.
type Result struct {
	Offset    uint64 // the publication's offset in its channel
	Epoch     string // the channel's epoch the offset counts in
	Delivered int64  // connections on this node handed the message
}

// Publish publishes data, valid JSON, to channel (a valid channel name or
// a personal channel) and waits until every subscriber on this node has
// been handed the frame. It waits for a publish slot if MaxPending
// publications are in flight.
func (h *Hub) Publish(ctx context.Context, channel string, data []byte) (Result, error) {
	if !ValidData(data) {
		return Result{}, ErrInvalidData
	}
	select {
	case h.slots <- struct{}{}:
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case <-h.quit:
		return Result{}, ErrClosed
	}
	p, err := h.publish(channel, data, true, false)
	if err != nil {
		return Result{}, err
	}
	select {
	case <-p.done:
		return p.result(), nil
	case <-ctx.Done():
		// Accepted and on its way: report the offset, not an error.
		return p.result(), nil
	}
}

// TryPublish publishes a client's message without waiting: it fails with
// ErrOverloaded when MaxPending publications, or MaxClientPending client
// ones, are in flight. A hub finds every error at once, so failed is never
// called.
func (h *Hub) TryPublish(channel string, data []byte, failed func(error)) error {
	if !ValidData(data) {
		return ErrInvalidData
	}
	if !TakeSlots(h.clientSlots, h.slots) {
		return ErrOverloaded
	}
	_, err := h.publish(channel, data, false, true)
	return err
}

// TakeSlots takes, without waiting, a slot of share (the part of all
// that client publishes may hold) and one of all, or neither.
func TakeSlots(share, all chan struct{}) bool {
	select {
	case share <- struct{}{}:
	default:
		return false
	}
	select {
	case all <- struct{}{}:
		return true
	default:
		<-share
		return false
	}
}

// publish runs with a publish slot held (and a client slot, for a
// client's publish), which the publication frees when its fan-out ends.
func (h *Hub) publish(name string, data []byte, wait, client bool) (*publication, error) {
	if h.closed.Load() {
		<-h.slots
		if client {
			<-h.clientSlots
		}
		return nil, ErrClosed
	}
	now := time.Now()
	mode := create
	if client {
		mode = createLimited
	}
	t, ch := h.lockChannel(name, mode)
	if ch == nil {
		<-h.slots
		<-h.clientSlots
		return nil, ErrChannelLimit
	}
	ch.offset++
	p := newPublication(name, ch.offset, data, now)
	p.epoch = ch.epoch
	p.start = now
	if client {
		p.clientSlots = h.clientSlots
	}
	if wait {
		p.done = make(chan struct{})
	}
	h.fanout(t, ch, p)
	return p, nil
}

// Message is a publication numbered by a cluster broker, for Apply.
type Message struct {
	Channel string
	Epoch   string // the channel's epoch, chosen by the broker
	Offset  uint64
	Data    []byte // valid JSON
	Time    time.Time
	// Load, with Config.Load, is the load the message was read for (the
	// id Load was given): a channel dropped and made anew meanwhile is
	// not the one the broker read it for, and does not take it.
	Load uint64
}

// Apply fans out a publication the cluster broker numbered, on a
// Clustered hub. Messages of a channel must be applied in offset order; one
// already applied (same epoch, offset not past the channel's) is skipped,
// so a broker may deliver again after a reconnect. A new epoch restarts the
// channel's history, as does a gap in offsets (history holds consecutive
// offsets only), and is reported. Apply waits for a publish slot; done, if
// set, is called when the fan-out on this node ends.
//
// With Config.Load, Apply takes only channels the hub holds (loading, or
// with subscribers or history), and only for the load they hold
// (msg.Load): for another it returns AppliedNotServed, without waiting
// for a slot, and calls done with a zero Result.
func (h *Hub) Apply(ctx context.Context, msg Message, done func(Result)) (Applied, error) {
	mode := create
	if h.cfg.Load != nil {
		if !h.holds(msg.Channel) {
			return h.notServed(done)
		}
		mode = lookup
	}
	select {
	case h.slots <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-h.quit:
		return 0, ErrClosed
	}
	if h.closed.Load() {
		<-h.slots
		return 0, ErrClosed
	}
	how := AppliedInOrder
	now := time.Now()
	t, ch := h.lockChannel(msg.Channel, mode)
	if ch == nil || (h.cfg.Load != nil && ch.load != msg.Load) { // dropped since holds looked, or read for another load
		if ch != nil {
			unlockChannel(t, ch)
		}
		<-h.slots
		return h.notServed(done)
	}
	switch {
	case ch.epoch == msg.Epoch && msg.Offset <= ch.offset:
		unlockChannel(t, ch)
		<-h.slots
		if done != nil {
			done(Result{Offset: msg.Offset, Epoch: msg.Epoch})
		}
		return AppliedBefore, nil
	case ch.epoch != msg.Epoch:
		h.newEpoch(ch, msg.Epoch, msg.Offset)
	case msg.Offset != ch.offset+1:
		h.clearHistory(ch, evictRestart)
		if ch.offset > 0 { // else this node starts reading mid-channel
			how = AppliedAfterGap
		}
	}
	ch.offset = msg.Offset
	p := newPublication(msg.Channel, msg.Offset, msg.Data, msg.Time)
	p.epoch = msg.Epoch
	p.start = now
	p.onDone = done
	h.fanout(t, ch, p)
	return how, nil
}

// Applied says how Apply took a message.
type Applied uint8

// How Apply took a message.
const (
	AppliedInOrder  Applied = iota + 1 // the channel's next offset, or a new epoch
	AppliedAfterGap                    // applied, but offsets before it never came
	AppliedBefore                      // already applied: skipped
	// AppliedNotServed: with Config.Load, the hub does not hold the
	// channel (no subscriber asked for it, or it was dropped): skipped.
	AppliedNotServed
)

func (h *Hub) notServed(done func(Result)) (Applied, error) {
	if done != nil {
		done(Result{})
	}
	return AppliedNotServed, nil
}

// newEpoch restarts ch in epoch, whose first message is at offset first.
// Its live subscribers are told before that message, with a "subscribed"
// reply in the new epoch: recovered when nothing was lost (the broker
// named the epoch of a channel this node had no message of), else not, so
// that they resync. Their shards forget the offsets their
// subscribers skip through, which belong to the old epoch. ch.mu is held.
func (h *Hub) newEpoch(ch *channel, epoch string, first uint64) {
	// A channel this node held no message of (the broker had not named
	// its epoch) has subscribers that asked for what comes from now on,
	// which they get: nothing was lost to them.
	continuous := ch.epoch == ""
	h.clearHistory(ch, evictRestart)
	ch.epoch = epoch
	if ch.subs == 0 {
		return
	}
	reply := protocol.NewWire(protocol.AppendSubscribed(protocol.Buffer(96+len(ch.name)), ch.name, first-1, epoch, continuous))
	for i, c := range ch.shards {
		if c > 0 {
			h.shards[i].push(op{kind: opEpoch, ch: ch, wire: reply})
		}
	}
}

// fanout records p in ch's history and queues it to the shards with
// subscribers of ch, then unlocks ch. A publish slot is held for p.
func (h *Hub) fanout(t *chanTable, ch *channel, p *publication) {
	p.ch = ch
	p.slots = h.slots
	p.observe = h.cfg.FanoutDuration
	if h.cfg.HistorySize > 0 {
		h.keep(ch, p, ch.hist.push(p, h.cfg.HistorySize))
	}
	n := int32(0)
	for _, c := range ch.shards {
		if c > 0 {
			n++
		}
	}
	p.shards.Store(n)
	if n == 0 {
		p.finish()
	}
	for i, c := range ch.shards {
		if c > 0 && !h.shards[i].push(op{kind: opPublish, ch: ch, pub: p}) {
			p.shardDone(0) // stopped: Close is under way
		}
	}
	unused := ch.unused()
	unlockChannel(t, ch)
	if unused {
		h.dropIfUnused(ch)
	}
	if h.index.bytes.Load() > h.cfg.HistoryMaxBytes {
		h.overBudget()
	}
}
