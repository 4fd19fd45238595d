package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// connectResult is what opening connections achieved.
type connectResult struct {
	ok, failed int
	errors     map[string]int
	took       time.Duration
}

func (c connectResult) err() error {
	if c.failed == 0 {
		return nil
	}
	return fmt.Errorf("%d connections failed: %s", c.failed, strings.Join(sortedErrors(c.errors), "; "))
}

// connect opens connections [from, from+n) of the run, spread over the
// workers, connection g subscribing to channel g mod channels.
func (e *env) connect(ctx context.Context, from, n int, bar progress) connectResult {
	base := command{ReadyMarker: e.t.readyMarker}
	for ch := range e.o.channels {
		name := channelName(ch)
		base.URLs = append(base.URLs, strings.ReplaceAll(e.t.wsURL, "{channel}", name))
		if e.t.subscribe != "" {
			base.Subscribe = append(base.Subscribe, []string{strings.ReplaceAll(e.t.subscribe, "{channel}", name)})
		}
	}
	res := e.connectWith(ctx, base, from, n, bar)
	e.awaitRegistered(ctx, from+res.ok)
	return res
}

// connectWith opens connections [from, from+n) of the run, spread over
// the workers, connection g dialling base.URLs[g mod len]; base gives
// what every connect command has in common.
func (e *env) connectWith(ctx context.Context, base command, from, n int, bar progress) connectResult {
	w := len(e.fleet.procs)
	cmds := make([]*command, w)
	first := from
	for i, p := range e.fleet.procs {
		count := n / w
		if i < n%w {
			count++
		}
		if count == 0 {
			continue
		}
		cmd := base
		cmd.Cmd, cmd.Sources, cmd.First, cmd.Count = "connect", p.sources, first, count
		cmd.Rate, cmd.Timeout = e.o.connRate/float64(w), 30*time.Second
		cmds[i] = &cmd
		first += count
	}
	done := make([]int, w)
	var mu sync.Mutex
	start := time.Now()
	evs, err := e.fleet.do(ctx, cmds, func(i int, ev event) {
		mu.Lock()
		defer mu.Unlock()
		done[i] = ev.Connected
		total := 0
		for _, d := range done {
			total += d
		}
		bar.set(int64(total))
	})
	res := connectResult{errors: map[string]int{}, took: time.Since(start)}
	for _, ev := range evs {
		res.ok += ev.Connected
		res.failed += ev.Failed
		maps.Copy(res.errors, ev.Errors)
	}
	if err != nil {
		res.failed = n - res.ok
		res.errors[err.Error()]++
	}
	bar.set(int64(res.ok))
	return res
}

// awaitRegistered waits (up to 10s) until the target counts n connections,
// when it reports them: a server may answer the upgrade before it has
// registered the connection, and a publish in between would miss it.
// pushgate's connections are ready at their "subscribed" reply instead.
func (e *env) awaitRegistered(ctx context.Context, n int) {
	deadline := time.Now().Add(10 * time.Second)
	for f := e.t.footprint(); f.Conns >= 0 && f.Conns < int64(n) && time.Now().Before(deadline); f = e.t.footprint() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// connectAll opens the run's connections and fills the connect figures
// of r.
func (e *env) connectAll(ctx context.Context, r *Run) error {
	bar := e.ui.bar("connecting", int64(e.o.conns))
	c := e.connect(ctx, 0, e.o.conns, bar)
	bar.finish()
	r.Conns, r.ConnectFailed = c.ok, c.failed
	r.ConnectRate = float64(c.ok) / c.took.Seconds()
	return c.err()
}

// received sums what the workers have received since their last collect,
// and the connections the server dropped.
func (e *env) received(ctx context.Context) (recv, lost int64, err error) {
	evs, err := e.fleet.each(ctx, command{Cmd: "stats"})
	for _, ev := range evs {
		recv += ev.Received
		lost += ev.Lost
	}
	return recv, lost, err
}

// await waits until the workers have received want publications, or for
// timeout after progress stops; it returns how many arrived.
func (e *env) await(ctx context.Context, want int64, timeout time.Duration, bar progress) (int64, error) {
	last, lastChange := int64(-1), time.Now()
	for {
		got, _, err := e.received(ctx)
		if err != nil {
			return got, err
		}
		bar.set(got)
		if got >= want {
			return got, nil
		}
		if got != last {
			last, lastChange = got, time.Now()
		} else if time.Since(lastChange) > timeout {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return got, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// collected merges the workers' collect answers.
type collected struct {
	received, dups, lost int64
	hist                 *hdrhistogram.Histogram
	perSeq               []seqStat
}

func (e *env) collect(ctx context.Context) (collected, error) {
	evs, err := e.fleet.each(ctx, command{Cmd: "collect"})
	c := collected{hist: newHist()}
	for _, ev := range evs {
		c.received += ev.Received
		c.dups += ev.Dups
		c.lost += ev.Lost
		if ev.Hist != nil {
			c.hist.Merge(hdrhistogram.Import(ev.Hist))
		}
		for i, s := range ev.PerSeq {
			if i >= len(c.perSeq) {
				c.perSeq = append(c.perSeq, seqStat{})
			}
			c.perSeq[i].Count += s.Count
			c.perSeq[i].Max = max(c.perSeq[i].Max, s.Max)
		}
	}
	return c, err
}

// publishes are the publications tracked from sequence w on, each with
// when its last subscriber had it, and those times.
func (c collected) publishes(w int) (pubs []Publish, tta []float64) {
	for i := w; i < len(c.perSeq); i++ {
		s := c.perSeq[i]
		p := Publish{Seq: i - w, TimeToAll: Ms(time.Duration(s.Max)), Delivered: s.Count}
		pubs, tta = append(pubs, p), append(tta, float64(p.TimeToAll))
	}
	return pubs, tta
}

// latency summarises a histogram of microseconds.
func latency(h *hdrhistogram.Histogram) *Latency {
	us := func(v int64) Millis { return Millis(float64(v) / 1000) }
	l := &Latency{
		P50: us(h.ValueAtQuantile(50)), P90: us(h.ValueAtQuantile(90)),
		P99: us(h.ValueAtQuantile(99)), Max: us(h.Max()),
		Mean: Millis(h.Mean() / 1000), Count: h.TotalCount(),
	}
	// About 40 buckets, evenly spaced on a log scale, for the plot.
	if h.TotalCount() > 0 {
		lo, hi := max(h.Min(), 1), max(h.Max(), 2)
		factor := math.Pow(float64(hi)/float64(lo), 1.0/40)
		from := float64(lo)
		for from <= float64(hi) {
			to := from * max(factor, 1.0001)
			var n int64
			for _, b := range h.Distribution() {
				if float64(b.From) >= from && float64(b.From) < to {
					n += b.Count
				}
			}
			l.Buckets = append(l.Buckets, Bucket{From: us(int64(from)), To: us(int64(to)), Count: n})
			from = to
		}
	}
	return l
}

// publishAll publishes seqs [from, from+n) to channel at rate per second,
// each in its own goroutine so a slow answer does not delay the next.
func (e *env) publishAll(ctx context.Context, p *publisher, channel string, from, n int, rate float64, bar progress) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for k := range n {
		if d := time.Until(start.Add(time.Duration(k) * interval)); d > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
			}
		}
		wg.Go(func() {
			if err := p.publish(ctx, channel, from+k, e.o.size); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			bar.add(1)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// fanoutScenario: N subscribers of one channel; M publishes at a steady
// rate; per publish the time until the last subscriber had it.
func fanoutScenario(ctx context.Context, e *env) (Run, error) {
	var r Run
	if err := e.connectAll(ctx, &r); err != nil {
		return r, err
	}
	p := newPublisher(e.t, 16)
	defer p.close()
	ch := channelName(0)
	n := int64(r.Conns)
	w, m := e.o.warmup, e.o.messages
	if _, err := e.fleet.each(ctx, command{Cmd: "track", Seqs: w + m}); err != nil {
		return r, err
	}
	if w > 0 {
		if err := e.publishAll(ctx, p, ch, 0, w, e.o.rate, nopBar{}); err != nil {
			return r, fmt.Errorf("warm-up: %w", err)
		}
		if got, err := e.await(ctx, int64(w)*n, 10*time.Second, nopBar{}); err != nil || got < int64(w)*n {
			return r, fmt.Errorf("warm-up: %d of %d delivered (%v)", got, int64(w)*n, err)
		}
		if _, err := e.collect(ctx); err != nil {
			return r, err
		}
	}
	cpu0 := e.t.footprint()
	bar := e.ui.bar("publishing", int64(m))
	err := e.publishAll(ctx, p, ch, w, m, e.o.rate, bar)
	bar.finish()
	if err != nil {
		return r, err
	}
	r.Expected = int64(m) * n
	bar = e.ui.bar("delivering", r.Expected)
	if _, err := e.await(ctx, r.Expected, 10*time.Second, bar); err != nil {
		return r, err
	}
	bar.finish()
	cpu1 := e.t.footprint()
	c, err := e.collect(ctx)
	if err != nil {
		return r, err
	}
	r.Delivered, r.Duplicates = c.received, c.dups
	r.Latency = latency(c.hist)
	var tta []float64
	r.Publishes, tta = c.publishes(w)
	r.TimeToAll = Millis(median(tta))
	if cpu0.CPUKnown && cpu1.CPUKnown {
		var why string
		r.CPUPerMsg, why = cpuPerMsg(cpu1.CPU-cpu0.CPU, r.Delivered)
		r.note(keyCPUPerMsg, why)
	}
	if r.Delivered != r.Expected {
		return r, fmt.Errorf("delivered %d of %d (%d connections lost)", r.Delivered, r.Expected, c.lost)
	}
	return r, nil
}

// idleScenario: N subscribed connections held; the target's memory per
// connection once a few broadcasts have passed through.
func idleScenario(ctx context.Context, e *env) (Run, error) {
	var r Run
	f0 := e.t.footprint()
	// The machine's readings move with other processes: a few before and
	// through the hold show by how much.
	var before, held machineReadings
	before.sample(ctx, 5, 200*time.Millisecond)
	r.RSSBase, r.GoroutinesBase = f0.RSS, f0.Goroutines
	r.Memory = append(r.Memory, MemSample{Conns: 0, RSS: f0.RSS})

	bar := e.ui.bar("connecting", int64(e.o.conns))
	samples := max(1, min(e.o.samples, e.o.conns))
	start := time.Now()
	done := 0
	for s := range samples {
		n := e.o.conns*(s+1)/samples - done
		c := e.connect(ctx, done, n, offsetBar{bar, int64(done)})
		r.ConnectFailed += c.failed
		done += c.ok
		if err := c.err(); err != nil {
			bar.finish()
			r.Conns = done
			return r, err
		}
		r.Memory = append(r.Memory, MemSample{Conns: done, RSS: e.t.footprint().RSS})
	}
	bar.finish()
	r.Conns = done
	r.ConnectRate = float64(done) / time.Since(start).Seconds()

	if e.o.broadcasts > 0 {
		p := newPublisher(e.t, 16)
		defer p.close()
		for b := range e.o.broadcasts {
			for ch := range e.o.channels {
				if err := p.publish(ctx, channelName(ch), b, e.o.size); err != nil {
					return r, fmt.Errorf("broadcast: %w", err)
				}
			}
		}
		want := int64(e.o.broadcasts) * int64(done)
		bar := e.ui.bar("broadcasting", want)
		got, err := e.await(ctx, want, 10*time.Second, bar)
		bar.finish()
		if err != nil || got < want {
			return r, fmt.Errorf("broadcasts: %d of %d delivered (%v)", got, want, err)
		}
	}
	e.hold(ctx, "holding", e.o.hold, &held)
	f1 := e.t.footprint()
	r.RSSLoaded, r.GoroutinesLoaded = f1.RSS, f1.Goroutines
	var why string
	r.RSSPerConn, why = rssPerConn(f0.RSS, f1.RSS, done)
	r.note(keyRSSPerConn, why)
	r.KernelPerConn, why = machinePerConn("slab", before.slab, held.slab, done)
	r.note(keyKernelPerConn, why)
	r.UsedPerConn, why = machinePerConn("memory in use", before.used, held.used, done)
	r.note(keyUsedPerConn, why)
	if _, lost, err := e.received(ctx); err != nil || lost > 0 {
		return r, fmt.Errorf("%d connections lost while held (%v)", lost, err)
	}
	return r, nil
}

// throughputScenario: N subscribers over many channels; publish rates
// rising step by step until a step misses a delivery or the p99 target.
func throughputScenario(ctx context.Context, e *env) (Run, error) {
	var r Run
	if err := e.connectAll(ctx, &r); err != nil {
		return r, err
	}
	subs := make([]int64, e.o.channels)
	for g := range r.Conns {
		subs[g%e.o.channels]++
	}
	p := newPublisher(e.t, e.o.publishers)
	defer p.close()
	seq := 0
	rate := e.o.rate
	for range e.o.maxSteps {
		st, err := e.step(ctx, p, rate, subs, &seq)
		r.Steps = append(r.Steps, st)
		if err != nil {
			return r, err
		}
		if !st.Passed {
			break
		}
		r.Throughput = max(r.Throughput, st.PerSecond)
		if st.PerSecond == r.Throughput {
			r.CPUPerMsg = st.CPUPerMsg
			r.note(keyCPUPerMsg, st.CPUNote)
		}
		rate *= e.o.step
	}
	for _, st := range r.Steps {
		r.Expected += st.Expected
		r.Delivered += st.Delivered
	}
	if r.Throughput == 0 {
		return r, errors.New("not even the first step passed; lower --rate")
	}
	return r, nil
}

// step offers rate publishes per second for the step's duration, spread
// round-robin over the channels, with at most --publishers in flight.
func (e *env) step(ctx context.Context, p *publisher, rate float64, subs []int64, seq *int) (Step, error) {
	st := Step{Rate: rate}
	var expected, ok, rejected, skipped atomic.Int64
	var firstErr atomic.Value
	jobs := make(chan int, e.o.publishers)
	var wg sync.WaitGroup
	for range e.o.publishers {
		wg.Go(func() {
			for s := range jobs {
				ch := s % e.o.channels
				if err := p.publish(ctx, channelName(ch), s, e.o.size); err != nil {
					rejected.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
				expected.Add(subs[ch])
			}
		})
	}
	cpu0 := e.t.footprint()
	bar := e.ui.bar(fmt.Sprintf("%.0f publishes/s", rate), int64(rate*e.o.duration.Seconds()))
	start := time.Now()
	total := int(rate * e.o.duration.Seconds())
	for k := 0; k < total; {
		due := min(total, int(time.Since(start).Seconds()*rate)+1)
		for ; k < due; k++ {
			select {
			case jobs <- *seq:
				*seq++
			default:
				skipped.Add(1) // every publisher busy: the target is behind
			}
		}
		bar.set(int64(k))
		select {
		case <-ctx.Done():
			close(jobs)
			wg.Wait()
			bar.finish()
			return st, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	close(jobs)
	wg.Wait()
	bar.finish()
	st.Published, st.Rejected, st.Expected = ok.Load(), rejected.Load()+skipped.Load(), expected.Load()
	bar = e.ui.bar("delivering", st.Expected)
	_, err := e.await(ctx, st.Expected, max(2*time.Second, 4*e.o.p99), bar)
	bar.finish()
	end := time.Now()
	if err != nil {
		return st, err
	}
	cpu1 := e.t.footprint()
	c, err := e.collect(ctx)
	if err != nil {
		return st, err
	}
	st.Delivered = c.received
	st.PerSecond = float64(c.received) / end.Sub(start).Seconds()
	st.P99 = Millis(float64(c.hist.ValueAtQuantile(99)) / 1000)
	if cpu0.CPUKnown && cpu1.CPUKnown {
		st.CPUPerMsg, st.CPUNote = cpuPerMsg(cpu1.CPU-cpu0.CPU, c.received)
	}
	st.Passed = st.Rejected == 0 && c.lost == 0 && st.Delivered == st.Expected && st.P99 <= Ms(e.o.p99)
	if v := firstErr.Load(); v != nil {
		e.ui.printf("  %.0f/s: %d publishes failed, first: %s", rate, rejected.Load(), v)
	}
	if skipped.Load() > 0 {
		e.ui.printf("  %.0f/s: %d publishes not sent: all %d publishers busy", rate, skipped.Load(), e.o.publishers)
	}
	return st, nil
}

// churnScenario: connections open and close for a while, twice; the
// target's footprint after the second round must match the first.
func churnScenario(ctx context.Context, e *env) (Run, error) {
	r := Run{Conns: e.o.conns}
	gcFailed := false
	snap := func() *Snapshot {
		if err := e.t.collectGarbage(); err != nil && !gcFailed {
			gcFailed = true
			r.Errors = append(r.Errors, "live heap read without a garbage collection: "+err.Error())
		}
		f := e.t.footprint()
		return &Snapshot{Conns: f.Conns, RSS: f.RSS, Goroutines: f.Goroutines, HeapLive: f.HeapAlloc}
	}
	r.Baseline = snap()
	round := func(label string, d time.Duration) error {
		w := len(e.fleet.procs)
		cmds := make([]*command, w)
		var urls []string
		var subs [][]string
		for ch := range e.o.channels {
			urls = append(urls, strings.ReplaceAll(e.t.wsURL, "{channel}", channelName(ch)))
			if e.t.subscribe != "" {
				subs = append(subs, []string{strings.ReplaceAll(e.t.subscribe, "{channel}", channelName(ch))})
			}
		}
		for i, p := range e.fleet.procs {
			cmds[i] = &command{
				Cmd: "churn", Sources: p.sources, URLs: urls, Subscribe: subs, First: i,
				Hold: max(1, e.o.conns/w), Rate: e.o.connRate / float64(w), Duration: d,
				ReadyMarker: e.t.readyMarker, Timeout: 30 * time.Second,
			}
		}
		// Publishes keep flowing, so queues and frames are exercised too.
		pctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		pub := newPublisher(e.t, 4)
		defer pub.close()
		wg.Go(func() {
			t := time.NewTicker(time.Duration(float64(time.Second) / max(e.o.rate, 0.1)))
			defer t.Stop()
			for k := 0; ; k++ {
				select {
				case <-pctx.Done():
					return
				case <-t.C:
					_ = pub.publish(pctx, channelName(k%e.o.channels), k, e.o.size)
				}
			}
		})
		bar := e.ui.timeBar(label, d)
		evs, err := e.fleet.do(ctx, cmds, nil)
		stop()
		wg.Wait()
		bar.finish()
		var failed int
		errs := map[string]int{}
		for _, ev := range evs {
			r.Churned += ev.Churned
			failed += ev.Failed
			maps.Copy(errs, ev.Errors)
		}
		if err != nil {
			return err
		}
		if failed > 0 {
			return fmt.Errorf("%d connections failed: %s", failed, strings.Join(sortedErrors(errs), "; "))
		}
		// Let the target see every close, then give it the settle time.
		deadline := time.Now().Add(30 * time.Second)
		for f := e.t.footprint(); f.Conns > 0 && time.Now().Before(deadline); f = e.t.footprint() {
			time.Sleep(100 * time.Millisecond)
		}
		e.ui.wait(ctx, "settling", e.o.settle)
		return ctx.Err()
	}
	if err := round("warm-up churn", e.o.warm); err != nil {
		return r, err
	}
	r.AfterWarm = snap()
	if err := round("churn", e.o.duration); err != nil {
		return r, err
	}
	r.AfterChurn = snap()
	ratio := func(a, b int64) float64 {
		if a <= 0 || b < 0 {
			return 0
		}
		return float64(b) / float64(a)
	}
	l := &LeakCheck{
		RSSRatio:        ratio(r.AfterWarm.RSS, r.AfterChurn.RSS),
		GoroutinesRatio: ratio(r.AfterWarm.Goroutines, r.AfterChurn.Goroutines),
		HeapRatio:       ratio(r.AfterWarm.HeapLive, r.AfterChurn.HeapLive),
	}
	within := func(x float64) bool { return x == 0 || x <= 1.05 }
	// RSS is reported, not judged: how much freed memory a Go process
	// still holds depends on its heap's peak and on when the runtime
	// returns pages, not on leaks. The live heap after a GC does not.
	l.Passed = within(l.HeapRatio) && within(l.GoroutinesRatio)
	r.Leak = l
	if !l.Passed {
		return r, fmt.Errorf("footprint grew: live heap ×%.3f, goroutines ×%.3f (RSS ×%.3f)", l.HeapRatio, l.GoroutinesRatio, l.RSSRatio)
	}
	return r, nil
}
