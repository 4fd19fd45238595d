package broker

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/protocol"
)

// supervise keeps the stream and its consumer in place: at start, and
// after each reconnection, it creates the stream if NATS lost it and
// starts a consumer that reads on from the last publication applied.
func (b *Broker) supervise() {
	defer b.wg.Done()
	var cc jetstream.ConsumeContext
	defer func() {
		if cc != nil {
			cc.Stop()
		}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastPrune := time.Now()
	ok := false
	for {
		if b.nc.IsConnected() && (!ok || cc == nil) {
			if err := b.setup(&cc); err != nil {
				b.log.Warn("broker: cannot set up the stream; retrying", "err", err)
				b.consuming.Store(cc != nil)
			} else {
				ok = true
			}
		}
		select {
		case <-b.ctx.Done():
			return
		case <-b.kick:
			ok = false // check again: the stream may be gone after a reconnection
		case now := <-tick.C:
			if now.Sub(lastPrune) > b.cfg.HistoryTTL/4 {
				b.prune(now)
				lastPrune = now
			}
		}
	}
}

// setup creates or updates the stream and starts a new ordered consumer
// after the last publication applied, stopping the one before. It runs at
// start and after every (re)connection: a fresh consumer resumes at once,
// where the old one would wait to notice the lost server. A stream found
// behind what was applied was recreated (NATS lost it): it is read from
// its start.
func (b *Broker) setup(cc *jetstream.ConsumeContext) error {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, err := b.js.CreateOrUpdateStream(ctx, b.streamConfig())
	if err != nil {
		return err
	}
	b.stream.Store(&s)
	if *cc != nil { // replaced below; ready stays as it is meanwhile
		(*cc).Stop()
		*cc = nil
	}
	// With no apply in flight, the stream's last sequence is comparable
	// with what was applied.
	b.applyMu.Lock()
	defer b.applyMu.Unlock()
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	last := info.State.LastSeq
	// A stream NATS lost and recreated has a new creation time. Its
	// sequence may already be past what this node applied of the old one
	// (other nodes published into it first), so comparing sequences alone
	// would skip its start.
	recreated := !b.streamCreated.IsZero() && !info.Created.Equal(b.streamCreated)
	if recreated || last < b.applied.Load() {
		b.log.Warn("broker: the stream was recreated (NATS lost it); reading it from its start",
			"stream_last", last, "applied", b.applied.Load(), "created", info.Created)
		b.applied.Store(0)
	}
	b.streamCreated = info.Created
	b.target.Store(last)
	b.caughtUp.Store(b.applied.Load() >= last)
	occ := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if a := b.applied.Load(); a > 0 {
		occ = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: a + 1}
	}
	cons, err := s.OrderedConsumer(ctx, occ)
	if err != nil {
		return err
	}
	c, err := cons.Consume(b.apply,
		// Heartbeats every 2s: a consumer that stops hearing them resets
		// within seconds rather than the default half minute.
		jetstream.PullHeartbeat(2*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			b.log.Debug("broker: consumer", "err", err)
		}))
	if err != nil {
		return err
	}
	*cc = c
	b.consuming.Store(true)
	b.log.Info("broker: reading the stream", "stream", b.cfg.Stream, "from", b.applied.Load()+1, "history_to", last)
	return nil
}

func (b *Broker) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        b.cfg.Stream,
		Description: "pushgate publications, one subject per channel",
		Subjects:    []string{b.prefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      b.cfg.HistoryTTL,
		Duplicates:  min(2*time.Minute, b.cfg.HistoryTTL),
		Replicas:    b.cfg.Replicas,
		AllowDirect: true,
	}
}

// apply hands one publication of the stream to the hub, in stream order.
// A consumer stopped for a new one may still be in apply: applyMu keeps
// the two from interleaving, and what the old one read is skipped by
// sequence.
func (b *Broker) apply(msg jetstream.Msg) {
	b.applyMu.Lock()
	defer b.applyMu.Unlock()
	meta, err := msg.Metadata()
	if err != nil {
		b.m.Invalid.Inc()
		b.log.Warn("broker: dropped a message without JetStream metadata", "subject", msg.Subject(), "err", err)
		return
	}
	seq := meta.Sequence.Stream
	if seq <= b.applied.Load() {
		return // read again after the consumer was recreated
	}
	defer b.advance(seq, meta.NumPending)
	h := msg.Headers()
	name, ok := channelOf(b.prefix, msg.Subject())
	p, valid := decode(h, msg.Data())
	if !ok || !protocol.ValidName(name) || !valid {
		b.m.Invalid.Inc()
		b.log.Warn("broker: dropped a message that is not a pushgate publication", "subject", msg.Subject(), "seq", seq)
		return
	}
	ours := h.Get(hdrNode) == b.cfg.Node
	for i, e := range p.entries {
		if !b.applyOne(broadcast.Message{Channel: name, Epoch: p.epoch, Offset: p.first + uint64(i), Data: e.data, Time: meta.Timestamp}, e.id, ours) {
			return
		}
	}
}

// applyOne hands the hub one publication of a stream message, whose
// publish on this node, if ours and still waiting, is told when it is
// fanned out. It reports false when the hub is closing.
func (b *Broker) applyOne(m broadcast.Message, id string, ours bool) bool {
	var done func(broadcast.Result)
	if ours && b.nwait.Load() > 0 {
		b.mu.Lock()
		w := b.waiters[id]
		b.mu.Unlock()
		if w != nil {
			done = func(r broadcast.Result) { w <- r }
		}
	}
	how, err := b.cfg.Hub.Apply(b.ctx, m, done)
	switch {
	case err != nil:
		b.log.Debug("broker: not applied", "err", err) // closing
		return false
	case how == broadcast.AppliedBefore: // read again after a consumer reset
		return true
	case how == broadcast.AppliedAfterGap:
		b.m.Gaps.Inc()
		b.log.Warn("broker: publications of a channel were gone from the stream before this node read them",
			"channel", m.Channel, "offset", m.Offset)
	}
	b.m.Received.Inc()
	if !ours {
		b.cfg.Gateway.PublishesBroker.Inc()
	}
	return true
}

func (b *Broker) advance(seq, pending uint64) {
	b.applied.Store(seq)
	b.m.Lag.Set(float64(pending))
	if !b.caughtUp.Load() && seq >= b.target.Load() {
		b.caughtUp.Store(true)
		b.log.Info("broker: caught up with the stream", "seq", seq)
	}
}
