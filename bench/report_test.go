package main

import (
	"encoding/xml"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// reportTitles are the plots each scenario's test data should produce.
var reportTitles = map[string][]string{
	"idle":       {"Memory vs connections"},
	"fanout":     {"Latency distribution", "Time-to-all per publish"},
	"throughput": {"Latency distribution", "Throughput", "Throughput: p99 latency"},
	"churn":      {"Memory vs connections", "Churn: RSS", "Churn: live heap", "Churn: goroutines"},
}

func TestWriteReport(t *testing.T) {
	for _, scenario := range []string{"idle", "fanout", "throughput", "churn"} {
		t.Run(scenario, func(t *testing.T) {
			r := testResults(scenario, "pushgate", "hub")
			page := writeTestReport(t, r)
			checkHTML(t, page)
			titles := reportTitles[scenario]
			if n := strings.Count(page, "<svg"); n != len(titles) {
				t.Errorf("%d plots, want %d", n, len(titles))
			}
			for _, title := range titles {
				if !strings.Contains(page, "<h3>"+title+"</h3>") {
					t.Errorf("no plot titled %q", title)
				}
			}
			for _, name := range []string{"pushgate", "hub"} {
				// In the table and in a plot legend.
				if n := strings.Count(page, ">"+name+"<"); n < 2 {
					t.Errorf("target %q appears %d times, want at least 2", name, n)
				}
			}
			if !strings.Contains(page, ">× hub</th>") {
				t.Error("no ratio column against hub")
			}
			if strings.Contains(page, "× floor") {
				t.Error("ratio column against floor, which did not run")
			}
		})
	}
}

func TestWriteReportRatios(t *testing.T) {
	page := writeTestReport(t, testResults("idle", "pushgate", "hub", "floor"))
	for _, want := range []string{
		`<th title="RSS/conn over hub&#39;s">× hub</th>`, `<th title="RSS/conn over floor&#39;s">× floor</th>`,
		`<td class="good">0.25×</td>`, // pushgate against hub: 3 KiB / 12 KiB
		`<td class="bad">3.00×</td>`,  // pushgate against floor: 3 KiB / 1 KiB
		`<td class="ref">1×</td>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("no %s", want)
		}
	}
}

func TestWriteReportOmitsMissingPlots(t *testing.T) {
	tests := []struct {
		scenario string
		strip    func(*Run)
		gone     string
	}{
		{"idle", func(r *Run) { r.Memory = nil }, "Memory vs connections"},
		{"fanout", func(r *Run) { r.Publishes = nil }, "Time-to-all per publish"},
		{"fanout", func(r *Run) { r.Latency.Buckets = nil }, "Latency distribution"},
		{"throughput", func(r *Run) { r.Steps = nil }, "Throughput"},
		{"churn", func(r *Run) { r.Baseline, r.AfterWarm, r.AfterChurn = nil, nil, nil }, "Churn: "},
	}
	for _, tt := range tests {
		t.Run(tt.gone, func(t *testing.T) {
			r := testResults(tt.scenario, "pushgate", "hub")
			for i := range r.Runs {
				tt.strip(&r.Runs[i])
			}
			for i := range r.Medians {
				tt.strip(&r.Medians[i])
			}
			page := writeTestReport(t, r)
			checkHTML(t, page)
			if strings.Contains(page, tt.gone) {
				t.Errorf("plot %q drawn without data", tt.gone)
			}
			want := 0
			for _, title := range reportTitles[tt.scenario] {
				if strings.Contains(page, "<h3>"+title+"</h3>") {
					want++
				}
			}
			if n := strings.Count(page, "<svg"); n != want {
				t.Errorf("%d plots, want %d", n, want)
			}
		})
	}
}

func TestWriteReportEscapes(t *testing.T) {
	const evil = `<script>alert(1)</script>`
	for _, scenario := range []string{"idle", "fanout", "throughput", "churn"} {
		t.Run(scenario, func(t *testing.T) {
			r := testResults(scenario, evil, "hub")
			r.Command = `bench --label "</code><script>x()</script>"`
			page := writeTestReport(t, r)
			if strings.Contains(strings.ToLower(page), "<script") {
				t.Error("unescaped <script> in the report")
			}
			if n := strings.Count(page, "&lt;script&gt;alert(1)&lt;/script&gt;"); n < 2 {
				t.Errorf("escaped target name appears %d times, want table and legend", n)
			}
			checkHTML(t, page)
		})
	}
}

// TestWriteReportSparse feeds the plots single points and gaps, where
// gonum/plot's ranges degenerate.
func TestWriteReportSparse(t *testing.T) {
	one := Run{
		Target: "pushgate", Run: 1, Conns: 1,
		Memory:     []MemSample{{Conns: 1, RSS: 1 << 20}, {Conns: 2, RSS: -1}},
		Latency:    &Latency{Count: 1, Buckets: []Bucket{{From: 0, To: 1, Count: 1}}},
		Publishes:  []Publish{{Seq: 1, TimeToAll: 0}},
		Steps:      []Step{{Rate: 100, PerSecond: 0}},
		AfterChurn: &Snapshot{RSS: -1, Goroutines: 3},
	}
	// Every plot but Churn: RSS, which has no known value.
	const plots = 7
	for _, tt := range []struct {
		r     *Results
		plots int
	}{
		{&Results{Scenario: "fanout"}, 0},
		{&Results{Scenario: "bogus", Runs: []Run{one}}, plots},
		{&Results{Scenario: "churn", Runs: []Run{one}, Medians: []Run{{Target: "pushgate"}}}, plots},
	} {
		t.Run(tt.r.Scenario, func(t *testing.T) {
			page := writeTestReport(t, tt.r)
			checkHTML(t, page)
			if n := strings.Count(page, "<svg"); n != tt.plots {
				t.Errorf("%d plots, want %d", n, tt.plots)
			}
			if strings.Contains(page, "Churn: RSS") {
				t.Error("RSS plot without a known RSS")
			}
		})
	}
}

func TestReportFormat(t *testing.T) {
	tests := []struct{ got, want string }{
		{reportCount(0), "0"},
		{reportCount(999), "999"},
		{reportCount(1234567), "1,234,567"},
		{reportCount(-12345), "-12,345"},
		{reportBytes(512), "512 B"},
		{reportBytes(3.5 * 1024), "3.5 KiB"},
		{reportBytes(12 << 20), "12.0 MiB"},
		{reportMs(0.4567), "0.46"},
		{reportMs(45.67), "45.7"},
		{reportMs(4567), "4,567"},
		{reportPct(100), "100%"},
		{reportPct(99.9999), "99.99%"},
		{reportPct(50), "50.00%"},
		{reportTimes(0.5), "0.50×"},
		{reportTimes(23.45), "23.4×"},
		{reportCompact(1500), "1.5k"},
		{reportCompact(2e6), "2M"},
		{reportCompact(0.25), "0.25"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func writeTestReport(t *testing.T, r *Results) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "report.html")
	if err := writeReport(path, r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkHTML checks the page's outline, and that every plot is
// well-formed SVG drawn without error.
func checkHTML(t *testing.T, page string) {
	t.Helper()
	if !strings.HasPrefix(page, "<!DOCTYPE html>\n<html") || !strings.HasSuffix(page, "</html>\n") {
		t.Error("not an HTML document")
	}
	for _, tag := range []string{"head", "style", "body", "main", "header", "table", "section", "figure", "svg"} {
		if o, c := strings.Count(page, "<"+tag+">")+strings.Count(page, "<"+tag+" "), strings.Count(page, "</"+tag+">"); o != c {
			t.Errorf("%d <%s> and %d </%s>", o, tag, c, tag)
		}
	}
	// Nothing fetched (SVG namespaces are names, not addresses), and no
	// plot failed.
	offline := strings.NewReplacer(`xmlns="http://www.w3.org/2000/svg"`, "", `xmlns:xlink="http://www.w3.org/1999/xlink"`, "").Replace(page)
	for _, bad := range []string{"http://", "https://", "@import", "url(", "<link", "src=", `class="err"`} {
		if strings.Contains(offline, bad) {
			t.Errorf("report contains %s", bad)
		}
	}
	rest := page
	for {
		i := strings.Index(rest, "<svg")
		if i < 0 {
			break
		}
		j := strings.Index(rest[i:], "</svg>")
		if j < 0 {
			t.Fatal("unterminated <svg>")
		}
		svg := rest[i : i+j+len("</svg>")]
		rest = rest[i+j:]
		d := xml.NewDecoder(strings.NewReader(svg))
		for {
			_, err := d.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("plot is not well-formed SVG: %v", err)
			}
		}
	}
}

// testResults makes plausible results of scenario for the targets, two
// runs each; later targets do worse, except floor, which does best.
func testResults(scenario string, targets ...string) *Results {
	r := &Results{
		Scenario: scenario,
		Date:     time.Date(2025, 11, 21, 15, 19, 0, 0, time.UTC),
		Command:  "go run ./bench " + scenario + " --targets " + strings.Join(targets, ",") + " --runs 2 --report report.html",
		Host:     Host{CPUs: 2, Go: "go1.26.8", Kernel: "6.1.0-40-amd64"},
		Params: Params{
			Conns: 10000, Channels: 100, Size: 128, ConnectRate: 5000,
			Workers: 4, ConnsPerWorker: 2500,
		},
	}
	switch scenario {
	case "fanout":
		r.Params.Messages, r.Params.Rate = 200, 20
	case "throughput":
		r.Params.Rate, r.Params.Duration, r.Params.P99Target = 1000, 5*time.Second, 50*time.Millisecond
	case "churn":
		r.Params.Duration = 30 * time.Second
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i, name := range targets {
		cost := float64(1 + 3*i) // hub costs 4× pushgate
		if name == "floor" {
			cost = 1.0 / 3
		}
		for run := 1; run <= 2; run++ {
			r.Runs = append(r.Runs, testRun(scenario, name, run, cost, rng))
		}
		m := testRun(scenario, name, 0, cost, rng)
		r.Medians = append(r.Medians, m)
	}
	return r
}

func testRun(scenario, name string, run int, cost float64, rng *rand.Rand) Run {
	const conns = 10000
	jitter := func() float64 { return 1 + 0.1*(rng.Float64()-0.5) }
	r := Run{Target: name, Run: run, Conns: conns, ConnectRate: 4900 * jitter()}
	switch scenario {
	case "idle", "churn":
		r.RSSBase = 8 << 20
		r.RSSPerConn = 3 * 1024 * cost
		r.RSSLoaded = r.RSSBase + int64(conns*r.RSSPerConn)
		r.KernelPerConn = 2.2 * 1024
		r.UsedPerConn = r.RSSPerConn + r.KernelPerConn
		r.GoroutinesBase = 9
		r.GoroutinesLoaded = 9 + int64(2*conns*max(cost-1, 0)/3)
		for c := 0; c <= conns; c += 500 {
			rss := r.RSSBase + int64(float64(c)*r.RSSPerConn*jitter())
			r.Memory = append(r.Memory, MemSample{Conns: c, RSS: rss})
		}
	}
	switch scenario {
	case "fanout":
		r.Expected = 200 * conns
		r.Delivered = r.Expected
		if cost > 1 {
			r.Delivered -= 37
		}
		r.Latency = testLatency(2*cost, r.Delivered, rng)
		for seq := 1; seq <= 200; seq++ {
			tta := Millis(6 * cost * jitter())
			if seq%50 == 0 {
				tta *= 3 // a GC pause
			}
			r.Publishes = append(r.Publishes, Publish{Seq: seq, TimeToAll: tta, Delivered: conns})
		}
		r.TimeToAll = Millis(6 * cost)
		r.CPUPerMsg = 0.8 * cost
	case "throughput":
		for rate := 1000.0; rate <= 32000; rate *= 2 {
			perSub := float64(conns) / 100
			capacity := 1.6e6 / cost * jitter()
			s := Step{Rate: rate, Published: int64(rate * 5), Expected: int64(rate * 5 * perSub)}
			s.PerSecond = math.Min(rate*perSub, capacity)
			s.Delivered = int64(s.PerSecond * 5)
			s.P99 = Millis(3 * cost * rate / 1000)
			s.Passed = s.Delivered == s.Expected && s.P99 <= 50
			r.Steps = append(r.Steps, s)
		}
		best, _ := reportBestStep(r.Steps)
		r.Throughput = best.PerSecond
		r.Expected, r.Delivered = best.Expected, best.Delivered
		r.Latency = testLatency(3*cost, r.Delivered, rng)
	case "churn":
		r.Churned = 50000
		r.Baseline = &Snapshot{Conns: 0, RSS: r.RSSBase, Goroutines: r.GoroutinesBase, HeapLive: 4 << 20}
		r.AfterWarm = &Snapshot{Conns: conns, RSS: r.RSSLoaded, Goroutines: r.GoroutinesLoaded, HeapLive: r.RSSLoaded / 2}
		leak := 1.01 + 0.05*(cost-1)/3
		r.AfterChurn = &Snapshot{
			Conns: conns, RSS: int64(float64(r.RSSLoaded) * leak),
			Goroutines: int64(float64(r.GoroutinesLoaded) * leak), HeapLive: int64(float64(r.RSSLoaded/2) * leak),
		}
		r.Leak = &LeakCheck{RSSRatio: leak, GoroutinesRatio: leak, HeapRatio: leak, Passed: leak <= 1.05}
	}
	return r
}

// testLatency spreads n deliveries log-normally around median ms over
// buckets that grow by a quarter.
func testLatency(median float64, n int64, rng *rand.Rand) *Latency {
	l := &Latency{Count: n, P50: Millis(median), P90: Millis(median * 2.2), P99: Millis(median * 5), Max: Millis(median * 11), Mean: Millis(median * 1.2)}
	counts := map[int]int64{}
	const samples = 20000
	for range samples {
		ms := median * math.Exp(0.6*rng.NormFloat64())
		counts[int(math.Floor(math.Log(ms/0.05)/math.Log(1.25)))]++
	}
	for k := range 60 {
		if c := counts[k]; c > 0 {
			from := 0.05 * math.Pow(1.25, float64(k))
			l.Buckets = append(l.Buckets, Bucket{From: Millis(from), To: Millis(from * 1.25), Count: c * n / samples})
		}
	}
	return l
}
