package main

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Below some size a figure is the noise of its readings, not what it
// names: the harness then says so (Run.Unmeasured, keyed by the figure's
// JSON name) instead of printing it.
//
// Measured on this project's 2-core machine (2026-12-01, go run ./bench
// idle -n N --runs 3 --targets pushgate,hub): a Go server's RSS grows by
// 2.3–2.8 MiB with 1 connection and 4.6–5.2 MiB with 10 or 100 (the
// collector's 4 MiB minimum heap goal filling with the handshakes' and
// broadcasts' garbage, and first-use costs), whatever the server; the
// same run gives 0.4–0.6 MiB apart. The machine's slab, read every 250 ms
// while nothing of the harness ran, moved by 140 MB in 6 s while another
// user's benchmarks ran, and by 0.3 MiB when the machine was quiet.
const (
	// memoryMinConns is the fewest connections a memory figure per
	// connection is given for.
	memoryMinConns = 1000
	// rssFloor is the least RSS growth an RSS figure per connection is
	// given for: about what a Go server at the default GOGC grows by with
	// a handful of connections (pushgate, which sets GOGC=20, about
	// 2 MiB: 2.3 MiB with 1,000). Past it the figure is mostly the
	// connections' own, and where not, an upper bound: the fixed growth is
	// in it, never subtracted.
	rssFloor = 5 << 20
	// machineMoveShare: a machine-wide figure (slab, memory in use) is
	// given only when what the machine's reading moved while nothing
	// changed here (other processes) is under this share of its growth.
	machineMoveShare = 0.2
	// cpuFloor is the least server CPU time a CPU figure per message is
	// given for: /proc counts CPU time in 10 ms ticks, so this keeps the
	// rounding of two readings under 4%.
	cpuFloor = 500 * time.Millisecond
)

// The figures that have a floor, by their JSON names.
const (
	keyRSSPerConn    = "rss_per_conn"
	keyKernelPerConn = "kernel_per_conn"
	keyUsedPerConn   = "used_per_conn"
	keyCPUPerMsg     = "cpu_per_msg_us"
)

// tooFewConns is the note of a memory figure over fewer than
// memoryMinConns connections, "" when there are enough.
func tooFewConns(conns int) string {
	if conns >= memoryMinConns {
		return ""
	}
	return fmt.Sprintf("too few connections to measure: %d, under %d", conns, memoryMinConns)
}

// rssPerConn is the RSS growth per connection, or why it is not given.
func rssPerConn(base, loaded int64, conns int) (float64, string) {
	return rssPerConnOf(base, loaded, conns, 1)
}

// rssPerConnOf is rssPerConn for the RSS summed over procs processes,
// each of which has its own noise floor.
func rssPerConnOf(base, loaded int64, conns, procs int) (float64, string) {
	if base < 0 || loaded < 0 {
		return 0, "RSS not known"
	}
	if note := tooFewConns(conns); note != "" {
		return 0, note
	}
	if grew, floor := loaded-base, int64(procs)*rssFloor; grew < floor {
		of := ""
		if procs > 1 {
			of = fmt.Sprintf(" of %d processes", procs)
		}
		return 0, fmt.Sprintf("too few connections to measure: RSS grew %s, under the %s noise floor%s", mib(float64(grew)), mib(float64(floor)), of)
	}
	return float64(loaded-base) / float64(conns), ""
}

// cpuPerMsg is the server's CPU per delivered message in µs, or why it
// is not given.
func cpuPerMsg(cpu time.Duration, delivered int64) (float64, string) {
	if delivered <= 0 {
		return 0, "nothing delivered"
	}
	if cpu < cpuFloor {
		return 0, fmt.Sprintf("too few deliveries to measure: %d took %.2f s of server CPU, under %.1f s (CPU time is counted in 10 ms ticks)",
			delivered, cpu.Seconds(), cpuFloor.Seconds())
	}
	return float64(cpu) / float64(time.Microsecond) / float64(delivered), ""
}

// machineReadings are readings of /proc/meminfo over a while: the
// machine's kernel slab and memory in use.
type machineReadings struct{ slab, used []int64 }

func (m *machineReadings) read() {
	slab, used := meminfo()
	m.slab, m.used = append(m.slab, slab), append(m.used, used)
}

// sample reads n times, every interval.
func (m *machineReadings) sample(ctx context.Context, n int, every time.Duration) {
	for i := range n {
		if i > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
		}
		m.read()
	}
}

// hold waits for d, showing it, and reads the machine into m every
// 200 ms and once at the end.
func (e *env) hold(ctx context.Context, desc string, d time.Duration, m *machineReadings) {
	b := e.ui.timeBar(desc, d)
	defer b.finish()
	end := time.Now().Add(d)
	for time.Until(end) > 200*time.Millisecond {
		m.read()
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Until(end)):
	}
	m.read()
}

// machinePerConn is what the machine's reading grew by from before to
// held, per connection (medians of each), or why it is not given.
func machinePerConn(what string, before, held []int64, conns int) (float64, string) {
	if note := tooFewConns(conns); note != "" {
		return 0, note
	}
	if len(before) == 0 || len(held) == 0 || slices.Min(before) < 0 || slices.Min(held) < 0 {
		return 0, what + " not known"
	}
	mid := func(xs []int64) float64 {
		f := make([]float64, len(xs))
		for i, x := range xs {
			f[i] = float64(x)
		}
		return median(f)
	}
	spread := func(xs []int64) int64 { return slices.Max(xs) - slices.Min(xs) }
	grew := mid(held) - mid(before)
	moved := float64(spread(before) + spread(held))
	if grew <= 0 || moved > machineMoveShare*grew {
		return 0, fmt.Sprintf("not measurable: the machine's %s moved by %s while nothing changed here (other processes), against a growth of %s",
			what, mib(moved), mib(grew))
	}
	return grew / float64(conns), ""
}

// mib formats bytes for the notes.
func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// note records why figure key is not given, or clears it.
func (r *Run) note(key, why string) {
	if why == "" {
		delete(r.Unmeasured, key)
		return
	}
	if r.Unmeasured == nil {
		r.Unmeasured = map[string]string{}
	}
	r.Unmeasured[key] = why
}
