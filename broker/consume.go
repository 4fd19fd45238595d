package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
		// Served: no consumer of the whole stream (cc stays nil).
		if b.nc.IsConnected() && (!ok || (cc == nil && b.serving == nil)) {
			if err := b.setup(&cc); err != nil {
				// Said once until it changes: it is retried every second.
				if last, _ := b.setupErr.Load().(string); last != err.Error() {
					b.log.Warn("broker: cannot set up the stream; retrying every second", "err", err)
				}
				b.setupErr.Store(err.Error())
				b.consuming.Store(cc != nil)
			} else {
				b.setupErr.Store("")
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
	sc := b.streamConfig()
	s, err := b.js.CreateOrUpdateStream(ctx, sc)
	if err != nil && isRePublishChange(err) {
		// Made by an earlier version without RePublish, on a NATS that
		// cannot add it (before 2.10): kept as it is.
		sc.RePublish = nil
		s, err = b.js.CreateOrUpdateStream(ctx, sc)
	}
	if err != nil {
		return err
	}
	b.stream.Store(&s)
	if b.serving != nil {
		return b.setupServed(ctx, s)
	}
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
		// Every stored message again on its live subject, for nodes that
		// read only the channels they serve (served.go); whatever the
		// node's own mode, so that nodes of both kinds share the stream.
		RePublish: &jetstream.RePublish{Source: b.prefix + ">", Destination: liveToken + "." + b.prefix + ">"},
	}
}

// isRePublishChange is NATS refusing to add or remove a stream's RePublish
// (before 2.10).
func isRePublishChange(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && strings.Contains(apiErr.Description, "RePublish")
}

// setupServed checks that the stream republishes (ReadServed), and has
// every served channel read again: what came live while the connection was
// down is lost, and a stream NATS recreated numbers anew.
func (b *Broker) setupServed(ctx context.Context, s jetstream.Stream) error {
	conn := b.connection() // the stream as checked here is this connection's
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	if rp := info.Config.RePublish; rp == nil || rp.Destination != liveToken+"."+b.prefix+">" {
		b.consuming.Store(false)
		return fmt.Errorf("the stream %s does not republish its messages (an earlier pushgate made it, and NATS before 2.10 cannot change that): "+
			"delete it, or run every node with --cluster-read all", b.cfg.Stream)
	}
	recreated := !b.streamCreated.IsZero() && !info.Created.Equal(b.streamCreated)
	b.streamCreated = info.Created
	if recreated {
		b.log.Warn("broker: the stream was recreated (NATS lost it); reading the served channels from its start")
		b.request(serveReq{kind: reqAnew, conn: conn})
	} else {
		b.request(serveReq{kind: reqAgain, conn: conn})
	}
	b.caughtUp.Store(true)
	b.consuming.Store(true)
	b.log.Info("broker: reading the channels this node serves", "stream", b.cfg.Stream)
	return nil
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
			done = func(r broadcast.Result) {
				// Once is enough: a channel loaded again applies the
				// message again, and a publisher gone meanwhile reads
				// neither; a second send would block serve for good.
				select {
				case w <- r:
				default:
				}
			}
		}
	}
	how, err := b.cfg.Hub.Apply(b.ctx, m, done)
	switch {
	case err != nil:
		b.log.Debug("broker: not applied", "err", err) // closing
		return false
	case how == broadcast.AppliedBefore: // read again after a consumer reset
		return true
	case how == broadcast.AppliedNotServed: // served: dropped here meanwhile
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
