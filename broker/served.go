package broker

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/protocol"
)

// Reading only the channels this node serves (Config.ReadServed).
//
// The stream republishes each message it stores (JetStream's RePublish) on
// the live subject of its channel; a node subscribes, on its own NATS
// connection, to the live subjects of the channels its hub holds, and to
// nothing else. A channel's first subscriber on the node makes the hub call
// Load: the node subscribes to the channel's live subject, fills the
// channel from the stream (what it stores of the channel, as a node reading
// everything would have read it), applies what came live meanwhile, and
// calls Hub.Loaded, which answers the waiting subscribes with that history.
//
// A live message carries the stream sequence of its channel's message
// before it (Nats-Last-Sequence). One that is not the last this node
// applied shows a gap: core NATS drops what a slow subscriber cannot take,
// and a reconnection loses what was sent meanwhile. The channel is then
// filled again from the stream, its live messages waiting; so is every
// channel after a reconnection.
//
// One goroutine (serve) owns the channels' state and applies everything, in
// stream order per channel; fill workers only read the stream.

// liveToken prefixes the live subjects: <liveToken>.<stream subject>.
const liveToken = "_pushgate_live"

// Bounds of serving.
const (
	fillWorkers    = 16    // channels filled from the stream at once (each waits on NATS)
	directGets     = 16    // messages a fill reads one by one before it takes a consumer
	fillBatch      = 256   // stream messages a fill asks for at a time
	maxPendingLive = 16384 // live messages of a channel kept while it fills; past it the fill runs again
	liveBuffer     = 65536 // live messages between NATS and serve, all channels
)

// servedChan is a channel this node reads. Owned by serve.
type servedChan struct {
	name, subject string
	sub           *nats.Subscription
	load          uint64 // the hub's id of the Load this node serves c for
	gen           uint64 // the fill this state is for: older fills are ignored
	lastSeq       uint64 // stream sequence of the last message applied
	filling       bool   // a fill is queued or running: live messages wait
	pending       []*nats.Msg
	overflow      bool      // pending outgrew maxPendingLive: fill again
	again         bool      // live messages were lost while filling: fill again
	retries       int       // failed reads in a row
	loading       bool      // the hub waits for Loaded
	since         time.Time // when the Load came
}

// A request to serve: from the hub's Load and Unload, a slow subscriber,
// a fill to retry.
type serveReq struct {
	kind serveReqKind
	name string
	gen  uint64
	load uint64 // reqLoad: the hub's id of the Load
	conn uint64 // reqAgain, reqAnew: the connection the stream was checked on
}

type serveReqKind uint8

const (
	reqLoad serveReqKind = iota
	reqUnload
	reqRefill // a gap was seen outside serve (slow consumer) or a fill failed
	reqAgain  // a reconnection: fill every channel from where it stood
	reqAnew   // the stream was recreated: fill every channel from its start
)

// A fill: read what the stream stores of a channel from a sequence on.
type fillJob struct {
	name, subject string
	gen           uint64
	from          uint64
}

// What a fill read, in order, perhaps in several parts.
type fillResult struct {
	job  fillJob
	msgs []storedMsg
	done bool
	err  error
}

type storedMsg struct {
	seq  uint64
	hdr  nats.Header
	data []byte
	time time.Time
}

// serving is the state of Config.ReadServed.
type serving struct {
	reqMu   sync.Mutex
	reqs    []serveReq
	reqKick chan struct{}

	live   chan *nats.Msg
	filled chan fillResult

	jobMu   sync.Mutex
	jobs    []fillJob
	jobKick chan struct{}

	namesMu sync.Mutex
	// names are the channels served, for Publish's wait (serve keeps the
	// state): each with a channel closed when serve stops reading it.
	names map[string]chan struct{}

	chans map[string]*servedChan // owned by serve
	gen   uint64
	// conn is the connection (Broker.connection) on which the stream was
	// last checked (setupServed). Live messages that come on a later one
	// wait: the stream may have been recreated, and its sequences would
	// be taken for the old one's.
	conn uint64
}

func newServing() *serving {
	return &serving{
		reqKick: make(chan struct{}, 1),
		live:    make(chan *nats.Msg, liveBuffer),
		filled:  make(chan fillResult, 64),
		jobKick: make(chan struct{}, 1),
		names:   make(map[string]chan struct{}),
		chans:   make(map[string]*servedChan),
	}
}

// Load is the hub's Config.Load: the node starts reading the channel name,
// for the hub's load id (which what it applies and its Loaded name). It is
// called under the hub's channel table lock, so it only queues.
func (b *Broker) Load(name string, id uint64) {
	b.request(serveReq{kind: reqLoad, name: name, load: id})
}

// Unload is the hub's Config.Unload: the node stops reading name.
func (b *Broker) Unload(name string) { b.request(serveReq{kind: reqUnload, name: name}) }

func (b *Broker) request(r serveReq) {
	s := b.serving
	s.reqMu.Lock()
	s.reqs = append(s.reqs, r)
	s.reqMu.Unlock()
	kick(s.reqKick)
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// serves reports whether this node reads channel (ReadServed), so that
// Publish waits for its own fan-out only where there is one, and until
// when: unloaded is closed once serve stops reading the channel.
func (b *Broker) serves(channel string) (unloaded <-chan struct{}, ok bool) {
	s := b.serving
	s.namesMu.Lock()
	defer s.namesMu.Unlock()
	c, ok := s.names[channel]
	return c, ok
}

func (b *Broker) liveSubject(subject string) string { return liveToken + "." + subject }

// serve runs the served channels: requests, live messages and fills, one
// at a time.
func (b *Broker) serve() {
	defer b.wg.Done()
	s := b.serving
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-s.reqKick:
			s.reqMu.Lock()
			reqs := s.reqs
			s.reqs = nil
			s.reqMu.Unlock()
			for _, r := range reqs {
				b.onRequest(r)
			}
		case m := <-s.live:
			b.onLive(m)
		case r := <-s.filled:
			b.onFilled(r)
		case now := <-tick.C:
			b.giveUpLoads(now)
		}
	}
}

func (b *Broker) onRequest(r serveReq) {
	s := b.serving
	c := s.chans[r.name]
	switch r.kind {
	case reqLoad:
		// The hub made the channel anew: it holds nothing of it yet.
		if c == nil {
			c = &servedChan{name: r.name, subject: subjectFor(b.prefix, r.name)}
			s.chans[r.name] = c
			s.namesMu.Lock()
			s.names[r.name] = make(chan struct{})
			s.namesMu.Unlock()
			b.subscribeLive(c)
		}
		s.gen++
		c.gen, c.lastSeq, c.pending, c.overflow = s.gen, 0, nil, false
		c.load, c.loading, c.since = r.load, true, time.Now()
		b.startFill(c)
		b.m.Served.Set(float64(len(s.chans)))
	case reqUnload:
		if c == nil {
			return
		}
		if c.sub != nil {
			_ = c.sub.Unsubscribe()
		}
		delete(s.chans, r.name)
		// A publish of this node that saw the channel served waits for
		// its fan-out here: it is not coming (its live message, if it
		// comes now, is dropped, and after the unsubscribe NATS may not
		// even send it), so it stops waiting.
		s.namesMu.Lock()
		close(s.names[r.name])
		delete(s.names, r.name)
		s.namesMu.Unlock()
		b.m.Served.Set(float64(len(s.chans)))
	case reqAgain, reqAnew:
		// A fill under way read the stream as it was before the
		// reconnection, or another stream: it is started again, and what
		// waits is read again too.
		s.conn = r.conn
		for _, c := range s.chans {
			if c.sub == nil {
				b.subscribeLive(c)
			}
			if r.kind == reqAnew {
				c.lastSeq = 0 // the hub sees a new epoch in what comes
			}
			s.gen++
			c.gen, c.pending, c.overflow, c.again = s.gen, nil, false, false
			b.startFill(c)
		}
	case reqRefill:
		switch {
		case c == nil:
		case r.gen != 0 && c.gen == r.gen && c.filling: // a failed fill, retried
			b.queueFill(c)
		case r.gen == 0 && !c.filling: // a slow consumer lost some
			b.startFill(c)
		case r.gen == 0: // lost some the fill under way may not read
			c.again = true
		}
	}
}

// subscribeLive subscribes to c's live subject. Before its fill reads the
// stream, on the same connection: so whatever the fill misses comes live.
func (b *Broker) subscribeLive(c *servedChan) {
	sub, err := b.nc.ChanSubscribe(b.liveSubject(c.subject), b.serving.live)
	if err != nil {
		b.log.Warn("broker: cannot subscribe to a channel's live messages; retried after the next reconnection", "channel", c.name, "err", err)
		return
	}
	c.sub = sub
}

// startFill makes c's live messages wait while the stream's are read.
func (b *Broker) startFill(c *servedChan) {
	c.filling = true
	b.queueFill(c)
}

func (b *Broker) queueFill(c *servedChan) {
	s := b.serving
	s.jobMu.Lock()
	s.jobs = append(s.jobs, fillJob{name: c.name, subject: c.subject, gen: c.gen, from: c.lastSeq + 1})
	s.jobMu.Unlock()
	kick(s.jobKick)
}

func (b *Broker) onLive(m *nats.Msg) {
	token, ok := strings.CutPrefix(m.Subject, liveToken+".")
	if !ok {
		return
	}
	name, ok := channelOf(b.prefix, token)
	if !ok {
		return
	}
	c := b.serving.chans[name]
	if c == nil {
		return // unloaded; its subscription's last messages
	}
	if c.filling || b.connection() != b.serving.conn {
		b.keep(c, m)
		return
	}
	b.applyLive(c, m)
}

func (b *Broker) keep(c *servedChan, m *nats.Msg) {
	if c.overflow {
		return
	}
	if len(c.pending) >= maxPendingLive {
		c.pending, c.overflow = nil, true
		return
	}
	c.pending = append(c.pending, m)
}

// applyLive applies a live message of c, not filling, or fills c first
// when the message shows that some before it never came.
func (b *Broker) applyLive(c *servedChan, m *nats.Msg) {
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		b.m.Invalid.Inc()
		return
	}
	if seq <= c.lastSeq {
		return // a fill read it first
	}
	// 0: the channel's message before it is gone (expired), or there was
	// none; the hub sees from the offsets what that means.
	if prev, _ := strconv.ParseUint(m.Header.Get(lastSequenceHeader), 10, 64); prev != 0 && prev != c.lastSeq {
		c.pending = append(c.pending[:0], m)
		b.startFill(c)
		return
	}
	ts, err := time.Parse(time.RFC3339Nano, m.Header.Get(timeStampHeader))
	if err != nil {
		// NATS before 2.10 does not send the stored time: the time it
		// comes is within milliseconds of it. A zero time would make the
		// message expire from history at once (--history-ttl).
		ts = time.Now()
	}
	b.applyStored(c, storedMsg{seq: seq, hdr: m.Header, data: m.Data, time: ts})
}

// Headers JetStream's RePublish adds (jetstream names only some;
// Nats-Time-Stamp only since NATS 2.10).
const (
	lastSequenceHeader = "Nats-Last-Sequence"
	timeStampHeader    = "Nats-Time-Stamp"
)

// applyStored hands one stored message of c to the hub.
func (b *Broker) applyStored(c *servedChan, m storedMsg) {
	c.lastSeq = m.seq
	p, valid := decode(m.hdr, m.data)
	if !valid || !protocol.ValidName(c.name) {
		b.m.Invalid.Inc()
		b.log.Warn("broker: dropped a message that is not a pushgate publication", "subject", c.subject, "seq", m.seq)
		return
	}
	ours := m.hdr.Get(hdrNode) == b.cfg.Node
	for i, e := range p.entries {
		if !b.applyOne(broadcast.Message{Channel: c.name, Epoch: p.epoch, Offset: p.first + uint64(i), Data: e.data, Time: m.time, Load: c.load}, e.id, ours) {
			return
		}
	}
}

func (b *Broker) onFilled(r fillResult) {
	c := b.serving.chans[r.job.name]
	if c == nil || c.gen != r.job.gen || !c.filling {
		return // unloaded or loaded anew since
	}
	if b.connection() != b.serving.conn {
		// Perhaps read from a stream recreated since the sequences of c
		// were learned: setupServed's request fills c again.
		return
	}
	for _, m := range r.msgs {
		if m.seq > c.lastSeq {
			b.applyStored(c, m)
		}
	}
	if r.err != nil {
		b.m.FillErrors.Inc()
		if !b.nc.IsConnected() {
			// Every channel is read again once connected (setupServed);
			// what waits is in the stream too.
			c.filling, c.pending, c.overflow = false, nil, false
			return
		}
		b.log.Debug("broker: cannot read a channel from the stream; retrying", "channel", c.name, "err", r.err)
		gen, name := c.gen, c.name
		c.retries++
		time.AfterFunc(backoff(c.retries), func() { b.request(serveReq{kind: reqRefill, name: name, gen: gen}) })
		return
	}
	c.retries = 0
	if !r.done {
		return
	}
	c.filling = false
	if c.overflow || c.again {
		c.overflow, c.again = false, false
		b.startFill(c)
		return
	}
	pending := c.pending
	c.pending = nil
	for i, m := range pending {
		if c.filling { // a gap among them: they wait again
			c.pending = append(c.pending, pending[i:]...)
			break
		}
		b.applyLive(c, m)
	}
	if !c.filling && c.loading {
		c.loading = false
		b.m.Loads.Inc()
		b.cfg.Hub.Loaded(c.name, c.load)
	}
}

// giveUpLoads answers the subscribes of channels that could not be read
// for PublishTimeout with what the hub holds; the node goes on trying.
func (b *Broker) giveUpLoads(now time.Time) {
	for _, c := range b.serving.chans {
		if c.loading && now.Sub(c.since) > b.cfg.PublishTimeout {
			c.loading = false
			b.m.LoadsAbandoned.Inc()
			b.log.Warn("broker: subscribers of a channel answered without its history: the stream could not be read in time", "channel", c.name, "waited", now.Sub(c.since).Round(time.Millisecond))
			b.cfg.Hub.Loaded(c.name, c.load)
		}
	}
}

// fillWorker reads channels from the stream for serve.
func (b *Broker) fillWorker() {
	defer b.wg.Done()
	s := b.serving
	for {
		s.jobMu.Lock()
		var j fillJob
		ok := len(s.jobs) > 0
		if ok {
			j = s.jobs[0]
			s.jobs = s.jobs[1:]
		}
		more := len(s.jobs) > 0
		s.jobMu.Unlock()
		if more {
			kick(s.jobKick) // another worker takes the next
		}
		if !ok {
			select {
			case <-b.ctx.Done():
				return
			case <-s.jobKick:
				continue
			}
		}
		b.fill(j)
	}
}

// fill reads what the stream stores of j's channel from j.from on and
// hands it to serve, in parts.
func (b *Broker) fill(j fillJob) {
	send := func(r fillResult) bool {
		r.job = j
		select {
		case b.serving.filled <- r:
			return true
		case <-b.ctx.Done():
			return false
		}
	}
	sp := b.stream.Load()
	if sp == nil {
		send(fillResult{err: errors.New("the stream is not set up yet")})
		return
	}
	st := *sp
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.PublishTimeout)
	defer cancel()
	last, err := st.GetLastMsgForSubject(ctx, j.subject)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		send(fillResult{done: true})
		return
	case err != nil:
		send(fillResult{err: err})
		return
	case last.Sequence < j.from:
		send(fillResult{done: true})
		return
	case last.Sequence == j.from: // the usual catch-up: one message
		send(fillResult{msgs: []storedMsg{{seq: last.Sequence, hdr: last.Header, data: last.Data, time: last.Time}}, done: true})
		return
	}
	// A few messages: one direct get each (the next of the subject from a
	// sequence), cheaper than a consumer made, read and deleted.
	from := j.from
	var msgs []storedMsg
	for range directGets {
		m, err := st.GetMsg(ctx, from, jetstream.WithGetMsgSubject(j.subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) { // what remained expired
			send(fillResult{msgs: msgs, done: true})
			return
		}
		if err != nil {
			send(fillResult{msgs: msgs, err: err})
			return
		}
		msgs = append(msgs, storedMsg{seq: m.Sequence, hdr: m.Header, data: m.Data, time: m.Time})
		if m.Sequence >= last.Sequence {
			send(fillResult{msgs: msgs, done: true})
			return
		}
		from = m.Sequence + 1
	}
	if !send(fillResult{msgs: msgs}) {
		return
	}
	cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     j.subject,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       from,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: 30 * time.Second, // if this node dies before deleting it
	})
	if err != nil {
		send(fillResult{err: err})
		return
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer dcancel()
		_ = st.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	for {
		// What is stored is there at once; a Fetch would wait for a
		// full batch.
		batch, err := cons.FetchNoWait(fillBatch)
		if err != nil {
			send(fillResult{err: err})
			return
		}
		var msgs []storedMsg
		done, n := false, 0
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				continue
			}
			msgs = append(msgs, storedMsg{seq: meta.Sequence.Stream, hdr: m.Headers(), data: m.Data(), time: meta.Timestamp})
			if meta.Sequence.Stream >= last.Sequence || meta.NumPending == 0 {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !done {
			send(fillResult{msgs: msgs, err: err})
			return
		}
		if n == 0 { // what remained expired meanwhile
			done = true
		}
		if !send(fillResult{msgs: msgs, done: done}) || done {
			return
		}
		if ctx.Err() != nil {
			send(fillResult{err: ctx.Err()})
			return
		}
	}
}
