package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/pushgate/pushgate/internal/attack"
	"github.com/pushgate/pushgate/internal/procstat"
)

// The hostile scenario replays the attacks of issue 11 on a pushgate
// gateway, one after another, each for --duration, beside a healthy
// client that connected first: it reports, per attack, the gateway's RSS
// before, at its peak and after, the healthy client's latency, and the
// gateway's metrics that show the protection at work, and judges them
// against stated bounds (--rss-bound, --p99). The attackers are package
// attack's, run in child processes (the harness re-run as a worker) at
// the lowest CPU priority, so that on one machine their own sending is
// not taken for the gateway's slowness.

// hostileOptions are the hostile scenario's flags.
type hostileOptions struct {
	attacks  []string      // the attacks to run, in order
	settle   time.Duration // after each attack, before its RSS after
	conns    map[string]*int
	rate     float64 // publishes a second to the stalled readers' channel
	rssBound int     // MiB
	apiKey   string
}

// hostileAttack is one attack of the scenario.
type hostileAttack struct {
	name  string
	about string
	conns int // default connections
	// specs are the attacks to spawn, given the connections and the size.
	specs func(conns, size int, o *options, pub *attack.Publisher) []attack.Spec
	// gauges are read for their peak while it runs; counters for what they
	// counted.
	gauges, counters []string
}

func closed(reason string) string {
	return `pushgate_connections_closed_total{reason="` + reason + `"}`
}

var hostileAttacks = []hostileAttack{
	{
		name:  "partial",
		about: "each connection sends the first fragment of a message (--size) and holds it, reconnecting when closed (issue 11: 1,000 × 1 MiB pinned 1.95 GB)",
		conns: 1000,
		specs: func(n, size int, _ *options, _ *attack.Publisher) []attack.Spec {
			return []attack.Spec{{Kind: attack.KindPartial, Conns: n, Size: size}}
		},
		gauges:   []string{"pushgate_partial_message_bytes", "pushgate_partial_messages"},
		counters: []string{closed("partial_budget"), closed("message_timeout"), closed("too_big")},
	},
	{
		name:  "trickle",
		about: "each connection sends a message a byte a second, reconnecting when closed",
		conns: 500,
		specs: func(n, _ int, _ *options, _ *attack.Publisher) []attack.Spec {
			return []attack.Spec{{Kind: attack.KindTrickle, Conns: n, Every: time.Second}}
		},
		gauges:   []string{"pushgate_partial_messages"},
		counters: []string{closed("message_timeout")},
	},
	{
		name: "bombs",
		about: "as many connections each send compressed messages of --size inflated as fast as read, inflating 100 times, and as many 800 times " +
			"(issue 11: 20 connections inflating to 1 MiB took others' p99 to 3.9 s)",
		conns: 20,
		specs: func(n, size int, _ *options, _ *attack.Publisher) []attack.Spec {
			return []attack.Spec{{Kind: attack.KindBombs, Conns: n, Size: size, Ratio: 100}, {Kind: attack.KindBombs, Conns: n, Size: size}}
		},
		counters: []string{"pushgate_read_throttles_total", closed("policy"), closed("too_big"), closed("protocol_error")},
	},
	{
		name:  "ops",
		about: "each connection sends invalid ops as fast as read, reconnecting when closed (issue 11: 20 connections took healthy p99 to 0.8 s)",
		conns: 20,
		specs: func(n, _ int, _ *options, _ *attack.Publisher) []attack.Spec {
			return []attack.Spec{{Kind: attack.KindOps, Conns: n, Op: attack.InvalidOp}}
		},
		gauges:   []string{"pushgate_shard_queued_ops"},
		counters: []string{"pushgate_rate_limited_messages_total", closed("rate_limited"), closed("overloaded")},
	},
	{
		name:  "channels",
		about: "each connection publishes 8-byte messages to ever new channels chat:…, reconnecting when closed (issue 11: 526k channels in 10 s)",
		conns: 20,
		specs: func(n, _ int, _ *options, _ *attack.Publisher) []attack.Spec {
			return []attack.Spec{{Kind: attack.KindChannels, Conns: n, Channel: "chat:", Size: 8}}
		},
		gauges:   []string{"pushgate_channels", "pushgate_history_bytes"},
		counters: []string{"pushgate_channels_refused_total", closed("rate_limited")},
	},
	{
		name: "history",
		about: "half the connections publish messages of --size to ever new channels chat:…, half 8-byte messages over 2,000 channels " +
			"(issue 11: one client drove 2.6 GB RSS in 25 s)",
		conns: 20,
		specs: func(n, size int, _ *options, _ *attack.Publisher) []attack.Spec {
			return []attack.Spec{
				{Kind: attack.KindChannels, Conns: max(1, n/2), Channel: "chat:big", Size: size},
				{Kind: attack.KindChannels, Conns: max(1, n-n/2), Channel: "chat:small", Size: 8, Spread: 2000},
			}
		},
		gauges:   []string{"pushgate_history_bytes", "pushgate_history_entries", "pushgate_channels"},
		counters: []string{`pushgate_history_evictions_total{reason="budget"}`, `pushgate_history_evictions_total{reason="channel_bytes"}`},
	},
	{
		name:  "stall",
		about: "connections subscribe to a channel and never read, while messages of --size are published there --stall-rate times a second",
		conns: 200,
		specs: func(n, size int, o *options, pub *attack.Publisher) []attack.Spec {
			return []attack.Spec{{Kind: attack.KindStall, Conns: n, Channel: "hostile.stalled", Publisher: pub, Size: size, Rate: o.hostile.rate}}
		},
		gauges:   []string{"pushgate_outbound_queued_bytes"},
		counters: []string{"pushgate_slow_consumers_total", closed("slow_consumer")},
	},
}

func hostileNames() []string {
	var names []string
	for _, a := range hostileAttacks {
		names = append(names, a.name)
	}
	return names
}

// hostileFlags declares the scenario's flags on fs.
func hostileFlags(fs *flag.FlagSet, o *options) {
	h := &o.hostile
	h.attacks = hostileNames()
	fs.Func("attacks", "comma-separated attacks to run, in order (default all: "+strings.Join(h.attacks, ",")+")", func(s string) error {
		h.attacks = nil
		for a := range strings.SplitSeq(s, ",") {
			a = strings.TrimSpace(a)
			if !slices.Contains(hostileNames(), a) {
				return fmt.Errorf("unknown attack %q (known: %s)", a, strings.Join(hostileNames(), ", "))
			}
			h.attacks = append(h.attacks, a)
		}
		return nil
	})
	h.conns = map[string]*int{}
	for _, a := range hostileAttacks {
		h.conns[a.name] = new(int)
		fs.IntVar(h.conns[a.name], a.name+"-conns", a.conns, "connections of the "+a.name+" attack: "+a.about)
	}
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "length of each attack")
	fs.DurationVar(&h.settle, "settle", 5*time.Second, "wait after each attack before reading the RSS after it")
	fs.Float64Var(&h.rate, "stall-rate", 20, "publishes a second to the stalled readers' channel")
	fs.DurationVar(&o.p99, "p99", 500*time.Millisecond, "an attack passes if the healthy client's ops and deliveries have a p99 within this")
	fs.IntVar(&h.rssBound, "rss-bound", 768, "an attack passes if the gateway's RSS stays within this many MiB")
	fs.StringVar(&h.apiKey, "api-key", "", "the gateway's API key, for the healthy client's and the stall attack's publishes")
}

// checkHostile checks the scenario's flags, and counts its connections in
// -n for the summary.
func (o *options) checkHostile() error {
	for _, t := range o.targets {
		if t != "pushgate" && t != "url" {
			return fmt.Errorf("hostile attacks pushgate's protocol: target %s cannot be measured (use pushgate or url)", t)
		}
	}
	for name, n := range o.hostile.conns {
		if *n < 1 {
			return fmt.Errorf("--%s-conns must be at least 1", name)
		}
	}
	switch {
	case o.duration <= 0:
		return errors.New("--duration must be positive")
	case o.hostile.rate <= 0:
		return errors.New("--stall-rate must be positive")
	case o.hostile.rssBound < 1 || o.p99 <= 0:
		return errors.New("--rss-bound and --p99 must be positive")
	}
	o.conns = o.hostileConns()
	// The attacks need what the gateway leaves off by default: a gateway
	// the harness starts negotiates compression and lets clients publish
	// to chat:* (flags of --gateway-flags come after, and win).
	o.target.scenarioFlags = []string{"--compression", "--client-publish", "chat:*"}
	return nil
}

// hostileConns is the attack connections of the attacks selected.
func (o *options) hostileConns() int {
	n := 0
	for _, a := range hostileAttacks {
		if slices.Contains(o.hostile.attacks, a.name) {
			k := *o.hostile.conns[a.name]
			if a.name == "bombs" {
				k *= 2
			}
			n += k
		}
	}
	return n
}

// hostileEndpoints are where the attacks and the healthy client go.
type hostileEndpoints struct {
	target  attack.Target
	pub     *attack.Publisher
	metrics string
}

// hostileTarget finds the gateway's public address (and the query a
// token may be in) from the target's WebSocket URL, and its publish API.
func hostileTarget(e *env) (hostileEndpoints, error) {
	u, err := url.Parse(strings.ReplaceAll(e.t.wsURL, "{channel}", "c"))
	if err != nil {
		return hostileEndpoints{}, err
	}
	q := u.Query()
	q.Del("channels")
	var sources []string
	base := net.ParseIP(e.o.source).To4()
	for i := range 8 {
		ip, err := addIP(base, i)
		if err != nil {
			return hostileEndpoints{}, err
		}
		sources = append(sources, ip.String())
	}
	ep := hostileEndpoints{
		target:  attack.Target{Addr: u.Host, Query: q.Encode(), Sources: sources},
		metrics: e.t.metricsURL,
	}
	if e.t.publishURL == "" || strings.Contains(e.t.publishURL, "{channel}") {
		return ep, errors.New("hostile: the target's --publish-url must be the gateway's POST /api/publish")
	}
	if ep.metrics == "" {
		return ep, errors.New("hostile: the target needs --metrics-url (the gateway's /metrics)")
	}
	ep.pub = &attack.Publisher{URL: e.t.publishURL, Key: e.o.hostile.apiKey}
	return ep, nil
}

// hostileScenario runs the attacks selected in turn. A gateway the
// harness started is started afresh for each, so that what one attack
// left (channels and history, a heap grown) is not counted in the next;
// a gateway of target url carries it over, as its RSS before shows.
func hostileScenario(ctx context.Context, e *env) (Run, error) {
	r := Run{Conns: e.o.conns}
	first := e.t
	defer func() {
		if e.t != first {
			e.t.stop()
		}
	}()
	var failed []string
	for k, name := range e.o.hostile.attacks {
		if k > 0 && e.t.cmd != nil {
			t, err := startTarget(ctx, e.t.name, &e.o.target)
			if err != nil {
				return r, err
			}
			e.t.stop()
			e.t = t
		}
		ep, err := hostileTarget(e)
		if err != nil {
			return r, err
		}
		i := slices.IndexFunc(hostileAttacks, func(a hostileAttack) bool { return a.name == name })
		ar, err := e.attack(ctx, hostileAttacks[i], ep)
		r.Attacks = append(r.Attacks, ar)
		if err != nil {
			return r, fmt.Errorf("%s: %w", name, err)
		}
		if !ar.Passed {
			failed = append(failed, name+": "+strings.Join(ar.Failures, "; "))
		}
	}
	if len(failed) > 0 {
		return r, errors.New(strings.Join(failed, "; "))
	}
	return r, nil
}

// attack runs one attack for the duration beside a healthy client and
// measures it.
func (e *env) attack(ctx context.Context, a hostileAttack, ep hostileEndpoints) (AttackRun, error) {
	conns := *e.o.hostile.conns[a.name]
	ar := AttackRun{Name: a.name, About: a.about, Conns: conns, RSSBefore: e.t.footprint().RSS}
	before, err := attack.Scrape(ctx, ep.metrics)
	if err != nil {
		return ar, err
	}
	d := e.o.duration
	hctx, stop := context.WithTimeout(ctx, d)
	defer stop()
	// The healthy client connects first: it is the gateway's user, the
	// attack comes after.
	ready := make(chan struct{})
	health := make(chan attack.Health, 1)
	go func() {
		src, _ := addIP(net.ParseIP(e.o.source).To4(), 10)
		h := attack.Healthy{Target: &attack.Target{Addr: ep.target.Addr, Query: ep.target.Query, Sources: []string{src.String()}},
			Publisher: ep.pub, Ready: func() { close(ready) }}
		health <- h.Run(hctx)
	}()
	select {
	case <-ready:
	case h := <-health:
		return ar, fmt.Errorf("the healthy client: %s", h.Err)
	}
	self, err := os.Executable()
	if err != nil {
		return ar, err
	}
	var children []*attack.Child
	defer func() {
		for _, c := range children {
			_, _ = c.Stop()
		}
	}()
	for _, spec := range a.specs(conns, e.o.size, e.o, ep.pub) {
		spec.Target = ep.target
		c, err := attack.Spawn(spec, self, "worker")
		if err != nil {
			return ar, err
		}
		children = append(children, c)
	}
	bar := e.ui.timeBar(a.name, d)
	peaks := e.watch(hctx, ep.metrics, a.gauges)
	h := <-health
	bar.finish()
	stop()
	m := <-peaks
	ar.RSSPeak, ar.Gauges = m.rss, m.gauges
	for _, c := range children {
		t, err := c.Stop()
		if err != nil {
			return ar, err
		}
		ar.Attackers = ar.Attackers.add(t)
	}
	children = nil
	after, err := attack.Scrape(ctx, ep.metrics)
	if err != nil {
		return ar, err
	}
	ar.Counters = map[string]float64{}
	for _, name := range a.counters {
		ar.Counters[name] = after[name] - before[name]
	}
	e.ui.wait(ctx, "settling", e.o.hostile.settle)
	ar.RSSAfter = e.t.footprint().RSS
	ar.Healthy = healthFigures(h)
	ar.judge(e.o)
	return ar, ctx.Err()
}

// peakReadings are the highest readings while an attack ran.
type peakReadings struct {
	rss    int64
	gauges map[string]float64
}

// watch reads the target's RSS every 50ms and the gauges every 250ms
// until ctx ends, and then sends their peaks.
func (e *env) watch(ctx context.Context, metrics string, gauges []string) <-chan peakReadings {
	out := make(chan peakReadings, 1)
	go func() {
		p := peakReadings{rss: -1, gauges: map[string]float64{}}
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for k := 0; ; k++ {
			if e.t.pid > 0 {
				if v, err := procstat.RSS(e.t.pid); err == nil {
					p.rss = max(p.rss, v)
				}
			}
			if k%5 == 0 {
				if m, err := attack.Scrape(ctx, metrics); err == nil {
					for _, g := range gauges {
						p.gauges[g] = max(p.gauges[g], m[g])
					}
					if e.t.pid <= 0 {
						p.rss = max(p.rss, int64(m["process_resident_memory_bytes"]))
					}
				}
			}
			select {
			case <-ctx.Done():
				out <- p
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// judge decides whether the attack passed the bounds.
func (ar *AttackRun) judge(o *options) {
	bound := Ms(o.p99)
	if ar.RSSPeak > int64(o.hostile.rssBound)<<20 {
		ar.Failures = append(ar.Failures, fmt.Sprintf("RSS reached %.1f MiB, over %d MiB", float64(ar.RSSPeak)/(1<<20), o.hostile.rssBound))
	}
	h := ar.Healthy
	if h.Err != "" {
		ar.Failures = append(ar.Failures, "the healthy client: "+h.Err)
	}
	for _, l := range []struct {
		what string
		l    HealthLatency
	}{{"ops", h.Ops}, {"deliveries", h.Deliveries}} {
		switch {
		case l.l.Lost > 0:
			ar.Failures = append(ar.Failures, fmt.Sprintf("the healthy client's %s: %d of %d unanswered", l.what, l.l.Lost, l.l.Probes))
		case l.l.P99 > bound:
			ar.Failures = append(ar.Failures, fmt.Sprintf("the healthy client's %s: p99 %.0f ms, over %v", l.what, l.l.P99, o.p99))
		}
	}
	ar.Passed = len(ar.Failures) == 0
}

// add sums two tallies.
func (t Tally) add(u attack.Tally) Tally {
	t.Dials += u.Dials
	t.Refused += u.Refused
	t.Messages += u.Messages
	t.Bytes += u.Bytes
	if len(u.Closes) > 0 && t.Closes == nil {
		t.Closes = map[int]int64{}
	}
	for code, n := range u.Closes {
		t.Closes[code] += n
	}
	return t
}

func healthFigures(h attack.Health) HealthFigures {
	lat := func(l attack.Latency) HealthLatency {
		return HealthLatency{P50: Ms(l.P50), P99: Ms(l.P99), Max: Ms(l.Max), Probes: l.N, Lost: l.Lost}
	}
	return HealthFigures{Ops: lat(h.Ops), Deliveries: lat(h.Deliveries), Errors: maps.Clone(h.Errors), Err: h.Err}
}

// worst is the highest healthy p99 of the run's attacks, and the highest
// RSS.
func (r *Run) worst() (p99 Millis, rss int64, passed int) {
	for _, a := range r.Attacks {
		p99 = max(p99, a.Healthy.Ops.P99, a.Healthy.Deliveries.P99)
		rss = max(rss, a.RSSPeak)
		if a.Passed {
			passed++
		}
	}
	return p99, rss, passed
}
