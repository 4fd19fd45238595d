package attack

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// Healthy is a well-behaved client that measures the gateway's service
// while attacks run: every Every it sends a subscribe and an unsubscribe
// and times their replies, and, with a Publisher, publishes a probe to
// its own channel and times its arrival.
type Healthy struct {
	Target *Target
	// Source is its dial number: it picks the source address.
	Source int
	// Publisher, when set, publishes the delivery probes.
	Publisher *Publisher
	// Every is the time between probes (default 50ms: 40 ops a second,
	// within the gateway's default message rate).
	Every time.Duration
	// Grace is how long answers are awaited after ctx ends (default 2s).
	Grace time.Duration
	// Channel, when set, is the channel its deliveries are published to
	// (default a channel of its own): a presence channel, to watch its
	// join and leave events (Health.Presence).
	Channel string
	// Query is added to its upgrade's query (an info=, say).
	Query string
	// Ready, when set, is called once the client is connected and
	// subscribed, before its first probe (so that an attack can start
	// after it: a client that came later might find, say, no channel
	// left to create).
	Ready func()
}

// Health is what a Healthy client measured.
type Health struct {
	Ops        Latency // a subscribe or unsubscribe to its reply
	Deliveries Latency // from a publish request to the message, when published
	// Errors counts the error replies to its ops, by code: under some
	// attacks an op is refused (channel_limit) rather than slow.
	Errors map[string]int `json:",omitempty"`
	// Presence counts the join and leave events and presence_lagging
	// notices of its channel, by the second they arrived in.
	Presence []PresenceSecond `json:",omitempty"`
	// Err says why the client stopped before its context ended: it could
	// not connect, or the gateway closed it.
	Err string `json:",omitempty"`
}

// PresenceSecond is what a Healthy client got of its channel's presence
// in one second of the clock (Unix seconds).
type PresenceSecond struct {
	Second  int64
	Events  int // joins and leaves
	Notices int // presence_lagging errors
}

// Latency summarises the probes of one kind.
type Latency struct {
	N    int // probes sent
	Lost int // never answered: each counts with the time it waited
	P50  time.Duration
	P99  time.Duration
	Max  time.Duration
}

func (l Latency) String() string {
	return fmt.Sprintf("p50 %v, p99 %v, max %v (%d probes, %d lost)",
		l.P50.Round(10*time.Microsecond), l.P99.Round(10*time.Microsecond), l.Max.Round(10*time.Microsecond), l.N, l.Lost)
}

// Summarise sorts ds and sums them up, lost of them never came.
func Summarise(ds []time.Duration, lost int) Latency {
	l := Latency{N: len(ds), Lost: lost}
	if len(ds) == 0 {
		return l
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration { return ds[max(0, int(float64(len(ds))*q+0.999999)-1)] }
	l.P50, l.P99, l.Max = at(0.50), at(0.99), ds[len(ds)-1]
	return l
}

// healthyRun is one Run's state, shared by its reader and probes.
type healthyRun struct {
	probe, deliver string // channel names

	mu        sync.Mutex
	ops       []time.Time         // ops sent and not answered, in order
	published map[int64]time.Time // delivery probes sent and not received
	opLat     []time.Duration
	delLat    []time.Duration
	errors    map[string]int
	seq       int64
	presence  []PresenceSecond
}

// presenceAt counts an event (or a notice) arriving at now. r.mu is held.
func (r *healthyRun) presenceAt(now time.Time, notice bool) {
	sec := now.Unix()
	if n := len(r.presence); n == 0 || r.presence[n-1].Second != sec {
		r.presence = append(r.presence, PresenceSecond{Second: sec})
	}
	p := &r.presence[len(r.presence)-1]
	if notice {
		p.Notices++
	} else {
		p.Events++
	}
}

// Run measures until ctx ends, then waits Grace for the answers still due.
func (h *Healthy) Run(ctx context.Context) Health {
	every, grace := h.Every, h.Grace
	if every <= 0 {
		every = 50 * time.Millisecond
	}
	if grace <= 0 {
		grace = 2 * time.Second
	}
	id := strconv.FormatUint(rand.Uint64()%(1<<40), 36)
	r := &healthyRun{probe: "healthy." + id + ".op", deliver: "healthy." + id, published: map[int64]time.Time{}}
	if h.Channel != "" {
		r.deliver = h.Channel
	}
	c, err := h.Target.dial(ctx, h.Source, dialOpts{query: strings.Trim("channels="+r.deliver+"&"+h.Query, "&")})
	if err != nil {
		return Health{Err: "connecting: " + err.Error()}
	}
	defer c.Close()
	subscribed := make(chan struct{})
	readErr := make(chan error, 1)
	go func() { readErr <- r.read(c, subscribed) }()
	var health Health
	select {
	case <-subscribed:
	case err := <-readErr:
		return Health{Err: err.Error()}
	case <-ctx.Done():
		return Health{Err: "not subscribed to " + r.deliver + " before the end"}
	}
	if h.Ready != nil {
		h.Ready()
	}

	ops := append(Text(`{"op":"subscribe","channel":"`+r.probe+`"}`), Text(`{"op":"unsubscribe","channel":"`+r.probe+`"}`)...)
	var inflight sync.WaitGroup
	tick := time.NewTicker(every)
	defer tick.Stop()
	stopped := false
	for !stopped {
		select {
		case <-ctx.Done():
			stopped = true
			continue
		case err := <-readErr:
			health.Err = err.Error()
			stopped = true
			continue
		case <-tick.C:
		}
		now := time.Now()
		r.mu.Lock()
		r.ops = append(r.ops, now, now)
		r.mu.Unlock()
		if err := c.write(ops); err != nil {
			health.Err = "writing: " + err.Error()
			break
		}
		if h.Publisher != nil {
			r.mu.Lock()
			r.seq++
			seq := r.seq
			r.published[seq] = now
			r.mu.Unlock()
			inflight.Go(func() {
				data := []byte(`{"probe":` + strconv.FormatInt(seq, 10) + `}`)
				_ = h.Publisher.Publish(context.WithoutCancel(ctx), r.deliver, data) // a failure shows as lost
			})
		}
	}
	// The answers still due get Grace.
	wait := time.NewTimer(grace)
	defer wait.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
awaiting:
	for health.Err == "" && r.pending() > 0 {
		select {
		case err := <-readErr:
			health.Err = err.Error()
		case <-wait.C:
			break awaiting // what is still due counts as lost
		case <-poll.C:
		}
	}
	c.Close()
	inflight.Wait()
	health.Ops, health.Deliveries = r.summary(h.Publisher != nil)
	r.mu.Lock()
	health.Errors = r.errors
	health.Presence = r.presence
	r.mu.Unlock()
	return health
}

// read handles the gateway's frames until the connection ends.
func (r *healthyRun) read(c *Conn, subscribed chan<- struct{}) error {
	var m struct {
		Type    string `json:"type"`
		Channel string `json:"channel"`
		Code    string `json:"code"`
		Message string `json:"message"`
		Data    struct {
			Probe int64 `json:"probe"`
		} `json:"data"`
	}
	for {
		h, p, err := c.ReadFrame(1 << 20)
		if err != nil {
			return fmt.Errorf("reading: %w", err)
		}
		switch h.OpCode {
		case ws.OpPing:
			_ = c.write(AppendFrame(nil, true, 0, ws.OpPong, p))
			continue
		case ws.OpClose:
			code := 0
			if len(p) >= 2 {
				code = int(p[0])<<8 | int(p[1])
			}
			return fmt.Errorf("the gateway closed the connection: %d %q", code, p[min(2, len(p)):])
		case ws.OpText:
		default:
			continue
		}
		now := time.Now()
		m.Type, m.Channel, m.Code, m.Message, m.Data.Probe = "", "", "", "", 0
		if json.Unmarshal(p, &m) != nil {
			continue // a message of a large size was discarded
		}
		if m.Type == "error" && m.Channel == r.deliver && subscribed != nil {
			return fmt.Errorf("subscribing: %s: %s", m.Code, m.Message)
		}
		r.mu.Lock()
		switch {
		case m.Channel != r.deliver:
		case m.Type == "join" || m.Type == "leave":
			r.presenceAt(now, false)
		case m.Type == "error" && m.Code == "presence_lagging":
			r.presenceAt(now, true)
		}
		if m.Type == "error" {
			if r.errors == nil {
				r.errors = map[string]int{}
			}
			r.errors[m.Code]++
		}
		switch {
		case m.Channel == r.deliver && m.Type == "subscribed" && subscribed != nil:
			close(subscribed)
			subscribed = nil
		case m.Channel == r.deliver && m.Type == "message":
			if at, ok := r.published[m.Data.Probe]; ok {
				r.delLat = append(r.delLat, now.Sub(at))
				delete(r.published, m.Data.Probe)
			}
		case m.Channel == r.probe && len(r.ops) > 0:
			// Replies come in the order of the ops.
			r.opLat = append(r.opLat, now.Sub(r.ops[0]))
			r.ops = r.ops[1:]
		}
		r.mu.Unlock()
	}
}

func (r *healthyRun) pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ops) + len(r.published)
}

// summary counts what was never answered with the time it waited.
func (r *healthyRun) summary(deliveries bool) (ops, dels Latency) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	opLat, delLat := r.opLat, r.delLat
	for _, at := range r.ops {
		opLat = append(opLat, now.Sub(at))
	}
	for _, at := range r.published {
		delLat = append(delLat, now.Sub(at))
	}
	ops = Summarise(opLat, len(r.ops))
	if deliveries {
		dels = Summarise(delLat, len(r.published))
	}
	return ops, dels
}
