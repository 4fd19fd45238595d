package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushgate/pushgate/broadcast"
)

// chanState is what this node knows of a channel it publishes to: the
// channel's last message on the stream, which the next one is numbered
// after, and the publishes waiting their turn. One goroutine at a time
// publishes a channel's queue (running), and it alone uses the numbering
// fields.
type chanState struct {
	name    string
	subject string
	queue   []*request // under Broker.mu
	running bool       // under Broker.mu
	used    time.Time  // under Broker.mu

	known   bool   // lastSeq, offset and epoch are the stream's as far as this node knows
	conn    uint64 // the NATS connection (count of reconnections) they were learned on
	lastSeq uint64 // stream sequence of the channel's last message; 0 if none
	offset  uint64
	epoch   string
}

// request is one publish on its way to the stream.
type request struct {
	ctx    context.Context
	queued time.Time // when it was queued: its PublishTimeout runs from here
	data   []byte
	id     string      // Nats-Msg-Id
	result chan error  // Publish waits on it; nil for TryPublish
	failed func(error) // TryPublish's error callback
	client bool        // TryPublish's: holds a client slot too
	offset uint64      // as numbered, once confirmed
	epoch  string      // as numbered, once confirmed
	waiter chan broadcast.Result
	sent   atomic.Bool // handed to NATS at least once
}

// Publish publishes data to channel through the stream and waits until
// the broker confirmed it and this node's subscribers were handed it. When
// NATS is unreachable, or does not confirm within Config.PublishTimeout, it
// fails with broadcast.ErrUnavailable. A publication whose ctx ends before
// it was handed to NATS is not published; one whose ctx ends after that
// returns at once, and may or may not have been published.
func (b *Broker) Publish(ctx context.Context, channel string, data []byte) (broadcast.Result, error) {
	if !broadcast.ValidData(data) {
		return broadcast.Result{}, broadcast.ErrInvalidData
	}
	if !b.nc.IsConnected() {
		return broadcast.Result{}, unavailable("not connected to NATS")
	}
	select {
	case b.slots <- struct{}{}:
	case <-ctx.Done():
		return broadcast.Result{}, ctx.Err()
	case <-b.ctx.Done():
		return broadcast.Result{}, broadcast.ErrClosed
	}
	r := &request{ctx: ctx, queued: time.Now(), data: data, id: b.msgID(), result: make(chan error, 1), waiter: make(chan broadcast.Result, 1)}
	b.mu.Lock()
	b.waiters[r.id] = r.waiter
	b.nwait.Add(1)
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.waiters, r.id)
		b.nwait.Add(-1)
		b.mu.Unlock()
	}()
	b.enqueue(channel, r)
	// Its batch may be tried for longer than this publish may wait: stop
	// waiting at its own deadline (the batch still answers r.result, which
	// is buffered, and gives back the slot).
	own := time.NewTimer(time.Until(r.queued.Add(b.cfg.PublishTimeout)))
	defer own.Stop()
	var err error
	select {
	case err = <-r.result:
	case <-own.C:
		if r.sent.Load() {
			return broadcast.Result{}, unavailable("NATS did not confirm the publish within %v; it may or may not have been published", b.cfg.PublishTimeout)
		}
		err = <-r.result // refused unsent when its turn comes
	case <-ctx.Done():
		if r.sent.Load() {
			return broadcast.Result{}, unavailable("the publish's context ended before NATS confirmed it (%v); it may or may not have been published", ctx.Err())
		}
		err = <-r.result
	}
	if err != nil {
		return broadcast.Result{}, err
	}
	var unloaded <-chan struct{}
	if b.serving != nil {
		var served bool
		if unloaded, served = b.serves(channel); !served {
			// No subscriber here: nothing to wait for.
			return broadcast.Result{Offset: r.offset, Epoch: r.epoch}, nil
		}
	}
	// Confirmed: wait for this node's fan-out, which follows through the
	// stream, but report the offset whatever happens.
	t := time.NewTimer(b.cfg.PublishTimeout)
	defer t.Stop()
	select {
	case res := <-r.waiter:
		// The numbering is the stream's, whatever the hub did: a channel
		// dropped here meanwhile (served) reports a zero Result.
		res.Offset, res.Epoch = r.offset, r.epoch
		return res, nil
	case <-unloaded: // served, no longer: no fan-out here (nil: never)
	case <-ctx.Done():
	case <-t.C:
	case <-b.ctx.Done():
	}
	return broadcast.Result{Offset: r.offset, Epoch: r.epoch}, nil
}

// TryPublish queues a client's publish without waiting. It fails at once
// with broadcast.ErrOverloaded when MaxPending publishes, or
// MaxClientPending client ones, wait for the broker, or
// broadcast.ErrUnavailable when NATS is unreachable; failed is called if
// the broker does not confirm it later.
func (b *Broker) TryPublish(channel string, data []byte, failed func(error)) error {
	if !broadcast.ValidData(data) {
		return broadcast.ErrInvalidData
	}
	if !b.nc.IsConnected() {
		return unavailable("not connected to NATS")
	}
	if !b.cfg.Hub.AdmitsChannel(channel) {
		return broadcast.ErrChannelLimit
	}
	if !broadcast.TakeSlots(b.clientSlots, b.slots) {
		return broadcast.ErrOverloaded
	}
	b.enqueue(channel, &request{ctx: b.ctx, queued: time.Now(), data: data, id: b.msgID(), failed: failed, client: true})
	return nil
}

func (b *Broker) msgID() string {
	return b.cfg.Node + "-" + strconv.FormatUint(b.nextID.Add(1), 36)
}

// enqueue adds r to its channel's queue, starting the channel's publisher
// if none runs.
func (b *Broker) enqueue(channel string, r *request) {
	b.mu.Lock()
	cs := b.chans[channel]
	if cs == nil {
		cs = &chanState{name: channel, subject: subjectFor(b.prefix, channel)}
		b.chans[channel] = cs
	}
	cs.queue = append(cs.queue, r)
	cs.used = time.Now()
	start := !cs.running
	cs.running = true
	b.mu.Unlock()
	if start {
		b.wg.Add(1)
		go b.drain(cs)
	}
}

// Bounds of a batch: the publications of a channel that waited while the
// one before went out are sent as one stream message, up to these. A
// publication bigger than batchBytes goes alone.
const (
	maxBatch   = 1024
	batchBytes = 256 << 10
)

// drain publishes a channel's queue in order until it is empty: at each
// turn, everything that waited, up to a batch's bounds, as one stream
// message. So a busy channel makes one JetStream round trip for many
// publications, where one at a time would cap it at one per round trip.
func (b *Broker) drain(cs *chanState) {
	defer b.wg.Done()
	limit := min(batchBytes, int(b.nc.MaxPayload())-4096) // room for headers
	var reqs []*request
	for {
		b.mu.Lock()
		if len(cs.queue) == 0 {
			cs.running = false
			cs.queue = nil
			b.mu.Unlock()
			return
		}
		n, size := 1, batchSize(cs.queue[0])
		batches := b.cfg.Batches == nil || b.cfg.Batches()
		for batches && n < len(cs.queue) && n < maxBatch {
			s := batchSize(cs.queue[n])
			if size+s > limit {
				break
			}
			size += s
			n++
		}
		reqs = append(reqs[:0], cs.queue[:n]...)
		clear(cs.queue[:n])
		cs.queue = cs.queue[n:]
		b.mu.Unlock()
		var err error
		reqs, err = b.send(cs, reqs)
		if err != nil {
			cs.known = false // the next one reads the channel's last message again
			b.log.Warn("broker: publish failed", "subject", cs.subject, "publications", len(reqs), "err", err)
		}
		for _, r := range reqs {
			b.finish(r, err)
		}
		clear(reqs)
	}
}

// finish answers r's publisher and gives back its slots.
func (b *Broker) finish(r *request, err error) {
	<-b.slots
	if r.client {
		<-b.clientSlots
	}
	if err != nil {
		b.m.PublishErrors.Inc()
	}
	switch {
	case r.result != nil:
		r.result <- err
	case err != nil && r.failed != nil:
		r.failed(err)
	}
}

// send writes reqs to the stream as the channel's next publications, in
// one message, retrying until PublishTimeout after the last was queued
// (each publisher stops waiting at its own; see Publish): after a lost
// race it numbers them again; after a lost confirmation it sends the same
// message again. JetStream checks the expected last sequence before
// duplicates, so that retry finds the message stored as a lost race and is
// numbered again, and the next one is found a duplicate (same message ID),
// whose numbering learnStored takes; the duplicate window (two minutes, or
// the history TTL if shorter) must outlast those retries. Until a first
// attempt, publications whose context ended or that waited too long are
// answered and left out (dropExpired); it returns the others, which its
// error, if any, is for.
func (b *Broker) send(cs *chanState, reqs []*request) ([]*request, error) {
	sent := false // an attempt may have reached NATS
	var (
		first uint64 // the first publication's offset, when plan
		epoch string
		plan  bool
		lost  bool // the plan's new epoch is for a lost tail
		body  []byte
	)
	var deadline time.Time
	for attempt := 0; ; attempt++ {
		if !sent {
			reqs = b.dropExpired(reqs)
			if len(reqs) == 0 {
				return nil, nil
			}
			deadline = b.deadline(reqs)
		}
		if !b.nc.IsConnected() {
			if sent {
				return reqs, unavailable("lost the connection to NATS before it confirmed the publish; it may or may not have been published")
			}
			return reqs, unavailable("not connected to NATS")
		}
		if cs.known && cs.conn != b.connection() {
			// Learned before a reconnection: NATS may have lost the
			// stream meanwhile, and a new stream's sequences mean
			// nothing of the old one's.
			cs.known, plan = false, false
		}
		if !cs.known {
			if err := b.readLast(cs); err != nil {
				if time.Now().Add(50 * time.Millisecond).Before(deadline) {
					sleep(b.ctx, backoff(attempt))
					continue
				}
				return reqs, unavailable("cannot read the channel's last message: %v", err)
			}
		}
		if !plan {
			first, epoch, plan = cs.offset+1, cs.epoch, true
			lost = cs.lastSeq != 0 && b.lostTail(cs)
			if cs.lastSeq == 0 || lost { // a new epoch
				first, epoch = 1, randomHex(8)
			}
		}
		if !sent {
			for _, r := range reqs {
				r.sent.Store(true)
			}
		}
		msg := nats.NewMsg(cs.subject)
		if len(reqs) == 1 {
			msg.Data = reqs[0].data
		} else {
			if body == nil {
				body = appendBatch(nil, reqs)
			}
			msg.Data = body
			msg.Header.Set(hdrCount, strconv.Itoa(len(reqs)))
		}
		msg.Header.Set(jetstream.MsgIDHeader, reqs[0].id)
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(cs.lastSeq, 10))
		msg.Header.Set(hdrOffset, strconv.FormatUint(first, 10))
		msg.Header.Set(hdrEpoch, epoch)
		msg.Header.Set(hdrNode, b.cfg.Node)
		ctx, cancel := context.WithDeadline(b.ctx, minTime(deadline, time.Now().Add(2*time.Second)))
		ack, err := b.js.PublishMsg(ctx, msg)
		cancel()
		sent = true
		var apiErr *jetstream.APIError
		switch {
		case err == nil && ack.Duplicate:
			// An earlier attempt was stored after all, perhaps numbered
			// otherwise: the stored message says how.
			if first, epoch, err = b.learnStored(cs, reqs, ack.Sequence); err != nil {
				return reqs, unavailable("NATS stored the publish but its numbering cannot be read: %v", err)
			}
			b.confirmed(reqs, first, epoch)
			return reqs, nil
		case err == nil:
			if lost {
				b.m.Gaps.Inc()
				b.log.Warn("broker: the stream lost a channel's last publications (NATS lost what it had acknowledged); a new epoch started",
					"channel", cs.name, "epoch", epoch)
			}
			cs.lastSeq, cs.offset, cs.epoch, cs.known = ack.Sequence, first+uint64(len(reqs))-1, epoch, true
			b.confirmed(reqs, first, epoch)
			return reqs, nil
		case errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant):
			// Another node published to the channel first: number again.
			cs.known, plan = false, false
		case b.ctx.Err() != nil:
			return reqs, broadcast.ErrClosed
		case time.Now().Add(50 * time.Millisecond).Before(deadline):
			sleep(b.ctx, backoff(attempt))
		default:
			return reqs, unavailable("NATS did not confirm the publish within %v (%v); it may or may not have been published",
				b.cfg.PublishTimeout, err)
		}
	}
}

// dropExpired answers the publications of reqs whose context ended, or
// that waited in the queue for more than three quarters of their
// PublishTimeout, before they were sent, and returns the others. The
// quarter kept is time for NATS to confirm: a publication that had waited
// that long would be sent with a batch that NATS, slow as it is, might
// confirm too late for it, and its publisher would be told it may or may
// not have been published; refused unsent, it is told it was not.
func (b *Broker) dropExpired(reqs []*request) []*request {
	now := time.Now()
	kept := reqs[:0]
	for _, r := range reqs {
		switch {
		case r.ctx.Err() != nil:
			b.finish(r, r.ctx.Err())
		case !now.Before(r.queued.Add(b.cfg.PublishTimeout - b.cfg.PublishTimeout/4)):
			b.finish(r, unavailable("the publish waited %v in this node's queue for the channel, too long to be sent: NATS is too slow; it was not published", now.Sub(r.queued).Round(time.Millisecond)))
		default:
			kept = append(kept, r)
		}
	}
	clear(reqs[len(kept):])
	return kept
}

// deadline is how long a batch is tried: until the last of its
// publications' PublishTimeouts. A publisher whose own time (PublishTimeout
// or context) runs out first stops waiting by itself (Publish); the batch
// goes on for the others.
func (b *Broker) deadline(reqs []*request) time.Time {
	d := reqs[0].queued
	for _, r := range reqs {
		if r.queued.After(d) {
			d = r.queued
		}
	}
	return d.Add(b.cfg.PublishTimeout)
}

// confirmed numbers reqs from first, as the stream has them.
func (b *Broker) confirmed(reqs []*request, first uint64, epoch string) {
	now := time.Now()
	for i, r := range reqs {
		r.offset, r.epoch = first+uint64(i), epoch
		b.m.Published.Inc()
		b.m.PublishDuration.Observe(now.Sub(r.queued).Seconds())
	}
}

// connection identifies the NATS connection: it changes with every
// reconnection, and does so before anything can be published on the new one.
func (b *Broker) connection() uint64 { return b.nc.Stats().Reconnects }

// learnStored reads the message stored at seq, reqs', and returns the
// numbering it gave them.
func (b *Broker) learnStored(cs *chanState, reqs []*request, seq uint64) (first uint64, epoch string, err error) {
	// Later messages of the channel may follow it: read the last again.
	cs.known = false
	sp := b.stream.Load()
	if sp == nil {
		return 0, "", errors.New("the stream is not set up yet")
	}
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	m, err := (*sp).GetMsg(ctx, seq)
	if err != nil {
		return 0, "", err
	}
	p, ok := decode(m.Header, m.Data)
	if !ok || p.entries[0].id != reqs[0].id || len(p.entries) != len(reqs) {
		return 0, "", fmt.Errorf("message %d is not this publish", seq)
	}
	return p.first, p.epoch, nil
}

// lostTail reports whether the stream lost the channel's last messages:
// this node applied offsets of the channel's epoch past the stream's last.
// NATS may lose what it acknowledged (a crash before its store reached the
// disk); numbering after the stream's last would give those offsets again
// to other messages, which every node that applied them would skip as
// read. A new epoch makes subscribers resync instead.
func (b *Broker) lostTail(cs *chanState) bool {
	pos, ok := b.cfg.Hub.Position(cs.name)
	// Applied after the last was read is not lost: that publish fails the
	// expected sequence and numbers again.
	return ok && pos.Epoch == cs.epoch && pos.Offset > cs.offset
}

// readLast learns the channel's last message from the stream.
func (b *Broker) readLast(cs *chanState) error {
	cs.conn = b.connection()
	sp := b.stream.Load()
	if sp == nil {
		return errors.New("the stream is not set up yet")
	}
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	m, err := (*sp).GetLastMsgForSubject(ctx, cs.subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		cs.lastSeq, cs.offset, cs.epoch, cs.known = 0, 0, "", true
		return nil
	}
	if err != nil {
		return err
	}
	p, ok := decode(m.Header, m.Data)
	if !ok {
		// Not ours (someone wrote to the subject by hand): start an epoch
		// after it, as the nodes reading it drop it.
		cs.lastSeq, cs.offset, cs.epoch, cs.known = m.Sequence, 0, randomHex(8), true
		return nil
	}
	cs.lastSeq, cs.offset, cs.epoch, cs.known = m.Sequence, p.first+uint64(len(p.entries))-1, p.epoch, true
	return nil
}

// prune forgets channels this node has not published to for a history
// TTL: their state would be read again anyway.
func (b *Broker) prune(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for name, cs := range b.chans {
		if !cs.running && now.Sub(cs.used) > b.cfg.HistoryTTL {
			delete(b.chans, name)
		}
	}
}

func backoff(attempt int) time.Duration {
	return min(25*time.Millisecond<<min(attempt, 4), 250*time.Millisecond)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
