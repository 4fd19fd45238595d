package main

import (
	"slices"
	"strings"
	"testing"
)

// The hostile scenario runs every attack, scaled down, against a gateway
// it starts afresh for each, and reports each one's figures, judged; its
// report has the attacks' table and plots.
func TestHostile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway and runs every attack")
	}
	res := runBench(t, "hostile", "--duration", "1500ms", "--settle", "100ms",
		"--partial-conns", "20", "--trickle-conns", "10", "--bombs-conns", "2", "--ops-conns", "2",
		"--channels-conns", "2", "--history-conns", "2", "--stall-conns", "5", "--stall-rate", "50",
		"--gateway-flags", "--outbound-queue-bytes 65536") // what stalls shows in 1.5s
	r := res.Runs[0]
	if len(r.Attacks) != len(hostileAttacks) {
		t.Fatalf("%d attacks, want %d", len(r.Attacks), len(hostileAttacks))
	}
	for i, a := range r.Attacks {
		if a.Name != hostileAttacks[i].name {
			t.Errorf("attack %d is %s, want %s", i, a.Name, hostileAttacks[i].name)
		}
		if !a.Passed || a.RSSBefore <= 0 || a.RSSPeak < a.RSSBefore || a.RSSAfter <= 0 {
			t.Errorf("%s: passed %v (%v), RSS %d, %d, %d", a.Name, a.Passed, a.Failures, a.RSSBefore, a.RSSPeak, a.RSSAfter)
		}
		if h := a.Healthy; h.Ops.Probes < 5 || h.Deliveries.Probes < 2 || h.Ops.P99 <= 0 || h.Err != "" {
			t.Errorf("%s: the healthy client measured %+v", a.Name, h)
		}
		if a.Attackers.Dials == 0 || len(a.Counters) == 0 {
			t.Errorf("%s: attackers %+v, counters %v", a.Name, a.Attackers, a.Counters)
		}
	}
	// What each attack is for shows in the gateway's own counts.
	named := func(name string) AttackRun {
		return r.Attacks[slices.IndexFunc(r.Attacks, func(a AttackRun) bool { return a.Name == name })]
	}
	for name, counted := range map[string]string{
		"bombs": closed("policy"), // past the inflate ratio
		"ops":   "pushgate_rate_limited_messages_total",
		"stall": "pushgate_slow_consumers_total",
	} {
		if a := named(name); a.Counters[counted] <= 0 {
			t.Errorf("%s: %s counted %v", name, counted, a.Counters[counted])
		}
	}
	if a := named("channels"); a.Gauges["pushgate_channels"] < 100 {
		t.Errorf("channels: at most %v channels", a.Gauges["pushgate_channels"])
	}
	page := writeTestReport(t, res)
	checkHTML(t, page)
	for _, want := range []string{"Attacks on pushgate", "Attacks: the gateway&#39;s RSS", "Attacks: a healthy client&#39;s latency", "<svg"} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// Only pushgate, started or pointed at, speaks what the attacks attack;
// a failed bound fails the run.
func TestHostileRefusals(t *testing.T) {
	for _, args := range [][]string{
		{"hostile", "--targets", "hub"},
		{"hostile", "--attacks", "nope"},
		{"hostile", "--ops-conns", "0"},
	} {
		if code := run(append(args, "--quiet")); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if testing.Short() {
		return
	}
	_, code := runBenchCode(t, "hostile", "--attacks", "ops", "--duration", "1s", "--settle", "0s", "--ops-conns", "2", "--rss-bound", "1")
	if code != 1 {
		t.Errorf("an RSS bound of 1 MiB: exit %d, want 1", code)
	}
}
