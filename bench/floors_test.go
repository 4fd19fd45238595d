package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
)

// `bench idle -n 100` printed "−37.1 KiB per connection" and ratios of
// such figures. Now its memory figures are absent, in the summary, the
// JSON and the report, each with the reason, and no ratio is made of
// them.
func TestSmallSizes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gateway")
	}
	res := runBench(t, "idle", "-n", "100", "--targets", "pushgate", "--hold", "100ms")
	m := res.Medians[0]
	const tooFew = "too few connections to measure: 100, under 1000"
	if m.RSSPerConn != 0 || m.KernelPerConn != 0 || m.UsedPerConn != 0 {
		t.Errorf("figures given: RSS %v, kernel %v, used %v per connection", m.RSSPerConn, m.KernelPerConn, m.UsedPerConn)
	}
	for _, key := range []string{keyRSSPerConn, keyKernelPerConn, keyUsedPerConn} {
		if m.Unmeasured[key] != tooFew {
			t.Errorf("%s: note %q", key, m.Unmeasured[key])
		}
	}

	var out bytes.Buffer
	printSummary(&out, res)
	summary := out.String()
	if !strings.Contains(summary, "pushgate RSS/conn: "+tooFew) || strings.Contains(summary, "KiB") {
		t.Errorf("summary:\n%s", summary)
	}
	page := writeTestReport(t, res)
	checkHTML(t, page)
	if !strings.Contains(page, `title="`+tooFew+`">not measured</td>`) || !strings.Contains(page, "<li>pushgate, RSS / conn: "+tooFew+"</li>") {
		t.Error("the report does not say why RSS / conn is not given")
	}
}

func TestFloors(t *testing.T) {
	const mb = 1 << 20
	for _, tt := range []struct {
		base, loaded int64
		conns        int
		want         float64
		note         string
	}{
		{14 * mb, 9 * mb, 100, 0, "too few connections to measure: 100, under 1000"},
		{14 * mb, 18 * mb, 5000, 0, "too few connections to measure: RSS grew 4.0 MiB, under the 5.0 MiB noise floor"},
		{14 * mb, 24 * mb, 5000, 2097.152, ""},
		{-1, 24 * mb, 5000, 0, "RSS not known"},
	} {
		got, note := rssPerConn(tt.base, tt.loaded, tt.conns)
		if got != tt.want || note != tt.note {
			t.Errorf("rssPerConn(%d, %d, %d) = %v, %q; want %v, %q", tt.base, tt.loaded, tt.conns, got, note, tt.want, tt.note)
		}
	}

	for _, tt := range []struct {
		before, held []int64
		conns        int
		want         float64
		note         string
	}{
		{[]int64{100 * mb}, []int64{110 * mb}, 999, 0, "too few connections to measure: 999, under 1000"},
		// Grown by 10 MiB, moved by 1 MiB: given, from the medians.
		{[]int64{100 * mb, 101 * mb, 100 * mb}, []int64{110 * mb, 110 * mb}, 1024, 10 * 1024, ""},
		// Moved by 3 MiB against 10 MiB of growth: past a fifth.
		{[]int64{100 * mb, 103 * mb, 100 * mb}, []int64{110 * mb}, 1000, 0,
			"not measurable: the machine's slab moved by 3.0 MiB while nothing changed here (other processes), against a growth of 10.0 MiB"},
		{[]int64{100 * mb}, []int64{90 * mb}, 1000, 0,
			"not measurable: the machine's slab moved by 0.0 MiB while nothing changed here (other processes), against a growth of -10.0 MiB"},
		{[]int64{-1}, []int64{90 * mb}, 1000, 0, "slab not known"},
	} {
		got, note := machinePerConn("slab", tt.before, tt.held, tt.conns)
		if got != tt.want || note != tt.note {
			t.Errorf("machinePerConn(%v, %v, %d) = %v, %q; want %v, %q", tt.before, tt.held, tt.conns, got, note, tt.want, tt.note)
		}
	}

	// Three nodes, each with its own floor.
	if got, note := rssPerConnOf(3*14*mb, 3*14*mb+12*mb, 20000, 3); got != 0 ||
		note != "too few connections to measure: RSS grew 12.0 MiB, under the 15.0 MiB noise floor of 3 processes" {
		t.Errorf("rssPerConnOf over 3 = %v, %q", got, note)
	}
	if got, _ := rssPerConnOf(7*14*mb, 7*14*mb+94*mb, 100000, 7); got < 985 || got > 986 {
		t.Errorf("rssPerConnOf over 7 = %v, want 94 MiB / 100,000", got)
	}
	if got, note := cpuPerMsg(2*time.Second, 200000); got != 10 || note != "" {
		t.Errorf("cpuPerMsg(2s, 200000) = %v, %q", got, note)
	}
	if got, note := cpuPerMsg(40*time.Millisecond, 600); got != 0 ||
		note != "too few deliveries to measure: 600 took 0.04 s of server CPU, under 0.5 s (CPU time is counted in 10 ms ticks)" {
		t.Errorf("cpuPerMsg(40ms, 600) = %v, %q", got, note)
	}
}

// A target's median gives a figure when any of its runs gave it, and
// says why not when none did; comparisons make no ratio of a figure not
// given.
func TestMediansUnmeasured(t *testing.T) {
	tooFew := map[string]string{keyRSSPerConn: "too few", keyKernelPerConn: "too few"}
	res := &Results{Scenario: "idle", Runs: []Run{
		{Target: "a", Run: 1, Unmeasured: tooFew, GoroutinesLoaded: 40},
		{Target: "a", Run: 2, RSSPerConn: 900, KernelPerConn: 9000, GoroutinesLoaded: 40},
		{Target: "a", Run: 3, Unmeasured: tooFew, GoroutinesLoaded: 40},
		{Target: "b", Run: 1, Unmeasured: tooFew, KernelPerConn: 0},
	}}
	res.Medians = medians(res)
	a, b := res.Medians[0], res.Medians[1]
	if a.RSSPerConn != 900 || a.KernelPerConn != 9000 || len(a.Unmeasured) != 0 {
		t.Errorf("a: RSS/conn %v, kernel/conn %v, notes %v; want run 2's figures", a.RSSPerConn, a.KernelPerConn, a.Unmeasured)
	}
	if b.Unmeasured[keyRSSPerConn] != "too few" || b.Unmeasured[keyKernelPerConn] != "too few" {
		t.Errorf("b: notes %v", b.Unmeasured)
	}
	if len(res.Runs[0].Unmeasured) != 2 {
		t.Error("medians changed a run's notes")
	}
	var out bytes.Buffer
	printCompare(&out, &Results{Scenario: "idle", Medians: []Run{{Target: "a", Unmeasured: tooFew}, {Target: "b", RSSPerConn: 800}}}, res)
	var rows []string
	for line := range strings.Lines(out.String()) {
		rows = append(rows, strings.Join(strings.Fields(line), " "))
	}
	for _, want := range []string{"a RSS/conn — 900 B -", "b RSS/conn 800 B — -"} {
		if !slices.Contains(rows, want) {
			t.Errorf("compare lacks %q:\n%s", want, out.String())
		}
	}
}
