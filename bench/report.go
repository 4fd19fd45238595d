package main

import (
	"bytes"
	"fmt"
	"html/template"
	"image/color"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// The report is one HTML page with everything inline: a header saying
// what ran where, a table of the per-target medians, and the plots that
// r has data for, drawn by gonum/plot as SVG. Names here start with
// report because package main is flat.

// writeReport writes r to path as a self-contained HTML page.
func writeReport(path string, r *Results) error {
	var buf bytes.Buffer
	if err := reportTmpl.Execute(&buf, newReportPage(r)); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

type reportPage struct {
	Scenario, About, Date, Command, Host string
	Params                               []reportParam
	Head                                 []reportHead
	Rows                                 []reportRow
	Attacks                              []reportAttacks
	Details                              []reportDetail
	Figures                              []reportFigure
	// Notes say why figures of the table are not given.
	Notes  []string
	Errors []string
}

// reportAttacks is the hostile scenario's table of one target's median
// run: a row per attack.
type reportAttacks struct {
	Target string
	Rows   []reportAttackRow
}

// reportDetail is a table of one target's median run beyond the
// summary (the cluster's nodes), with lines of text under it.
type reportDetail struct {
	Title string
	Head  []string
	Rows  [][]reportCell
	Lines []string
}

type reportAttackRow struct {
	Name, About string
	Cells       []reportCell
	Notes       string // what the attackers did, the gateway's metrics
}

type reportParam struct{ Name, Value string }

// reportHead is a column heading; Title, when set, explains it on hover.
type reportHead struct{ Text, Title string }

type reportRow struct {
	Name, Color string
	Runs        int
	Cells       []reportCell
}

// reportCell is one table value; Class is good, bad, na or ref; Title,
// when set, explains it on hover.
type reportCell struct{ Text, Class, Title string }

type reportFigure struct {
	Title, Note string
	SVG         template.HTML // from gonum/plot, which escapes its text
	Err         string
}

var reportAbout = map[string]string{
	"idle":       "Connections opened and held idle: what each one costs in memory and goroutines.",
	"fanout":     "Every publish goes to all subscribers of its channel: how long until the last one had it, and at what CPU cost.",
	"throughput": "The publish rate rises step by step until delivery falls short or p99 passes the target.",
	"churn":      "Connections opened and closed over and over: the footprint after churn should match the one after warm-up.",
	"hostile": "The attacks of issue 11, one after another, each beside a healthy client: the gateway's RSS and the healthy client's latency, " +
		"judged against stated bounds.",
	"cluster": "Gateways in cluster mode sharing NATS, the clients spread over them round robin: a connect storm, memory per node held idle, " +
		"broadcasts to every client, and a rolling restart in which every client checks it got every offset exactly once.",
}

func newReportPage(r *Results) *reportPage {
	p := &reportPage{Scenario: r.Scenario, About: reportAbout[r.Scenario], Command: r.Command}
	if !r.Date.IsZero() {
		p.Date = r.Date.Format("2006-01-02 15:04 MST")
	}
	var host []string
	for _, s := range []string{reportPick(r.Host.CPUs > 0, strconv.Itoa(r.Host.CPUs)+" CPUs", ""), r.Host.Go,
		reportPick(r.Host.Kernel != "", "kernel "+r.Host.Kernel, "")} {
		if s != "" {
			host = append(host, s)
		}
	}
	p.Host = strings.Join(host, " · ")
	p.Params = reportParams(r.Params)
	ts := reportTargets(r)
	cols := reportColumns(r.Scenario, ts)
	p.Head, p.Rows = reportTable(cols, ts)
	for _, t := range ts {
		for _, c := range cols {
			if why := c.unmeasured(t); why != "" {
				p.Notes = append(p.Notes, fmt.Sprintf("%s, %s: %s", t.name, c.head, why))
			}
		}
	}
	p.Attacks = reportAttackTables(ts)
	p.Details = reportClusterTables(ts)
	p.Figures = reportFigures(ts)
	for _, t := range ts {
		for _, run := range t.runs {
			for _, e := range run.Errors {
				p.Errors = append(p.Errors, fmt.Sprintf("%s run %d: %s", t.name, run.Run, e))
			}
		}
	}
	return p
}

func reportParams(ps Params) []reportParam {
	var out []reportParam
	add := func(name string, v float64, s string) {
		if v != 0 {
			out = append(out, reportParam{name, s})
		}
	}
	add("conns", float64(ps.Conns), reportCount(float64(ps.Conns)))
	add("channels", float64(ps.Channels), reportCount(float64(ps.Channels)))
	add("messages", float64(ps.Messages), reportCount(float64(ps.Messages)))
	add("size", float64(ps.Size), reportCount(float64(ps.Size))+" B")
	add("rate", ps.Rate, reportRate(ps.Rate)+"/s")
	add("connect rate", ps.ConnectRate, reportRate(ps.ConnectRate)+"/s")
	add("duration", float64(ps.Duration), ps.Duration.String())
	add("p99 target", float64(ps.P99Target), ps.P99Target.String())
	add("nodes", float64(ps.Nodes), strconv.Itoa(ps.Nodes))
	add("workers", float64(ps.Workers), strconv.Itoa(ps.Workers))
	add("conns/worker", float64(ps.ConnsPerWorker), reportCount(float64(ps.ConnsPerWorker)))
	return out
}

// reportTarget gathers one target's median and runs, and its colour.
type reportTarget struct {
	name  string
	color color.RGBA
	med   *Run // nil when Medians has no row for it
	runs  []*Run
}

// reportPalette is Okabe and Ito's, which colour-blind readers can tell apart.
var reportPalette = []color.RGBA{
	{0x00, 0x72, 0xb2, 0xff}, {0xd5, 0x5e, 0x00, 0xff}, {0x00, 0x9e, 0x73, 0xff},
	{0xcc, 0x79, 0xa7, 0xff}, {0xe6, 0x9f, 0x00, 0xff}, {0x56, 0xb4, 0xe9, 0xff},
	{0x00, 0x00, 0x00, 0xff},
}

// reportTargets lists the targets in the order of Medians, then any only
// seen in Runs.
func reportTargets(r *Results) []*reportTarget {
	var ts []*reportTarget
	get := func(name string) *reportTarget {
		for _, t := range ts {
			if t.name == name {
				return t
			}
		}
		t := &reportTarget{name: name, color: reportPalette[len(ts)%len(reportPalette)]}
		ts = append(ts, t)
		return t
	}
	for i := range r.Medians {
		get(r.Medians[i].Target).med = &r.Medians[i]
	}
	for i := range r.Runs {
		t := get(r.Runs[i].Target)
		t.runs = append(t.runs, &r.Runs[i])
	}
	return ts
}

// sources returns the runs that has accepts, or else the median row if
// has accepts it.
func (t *reportTarget) sources(has func(*Run) bool) []*Run {
	var out []*Run
	for _, run := range t.runs {
		if has(run) {
			out = append(out, run)
		}
	}
	if len(out) == 0 && t.med != nil && has(t.med) {
		out = append(out, t.med)
	}
	return out
}

// medianOf is f of the median row when known (not NaN), else the median
// of f over the runs.
func (t *reportTarget) medianOf(f func(*Run) float64) float64 {
	if t.med != nil {
		if v := f(t.med); !math.IsNaN(v) {
			return v
		}
	}
	var vs []float64
	for _, run := range t.runs {
		if v := f(run); !math.IsNaN(v) {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return math.NaN()
	}
	return median(vs)
}

// reportColumn is one figure of the summary table.
type reportColumn struct {
	head  string
	value func(*reportTarget) float64 // NaN when unknown
	text  func(float64) string
	class func(float64) string // optional
	// ratio, when set, names the figure in a column per reference
	// target; lower says smaller is better.
	ratio string
	lower bool
	// key, when set, is the figure's JSON name in Run.Unmeasured.
	key string
}

// unmeasured is why t's median does not give c's figure, "" when it does.
func (c reportColumn) unmeasured(t *reportTarget) string {
	if c.key == "" || t.med == nil {
		return ""
	}
	return t.med.Unmeasured[c.key]
}

// reportRefs are the targets the others are compared with, when present.
var reportRefs = []string{"hub", "floor"}

func reportColumns(scenario string, ts []*reportTarget) []reportColumn {
	nan := math.NaN()
	med := func(f func(*Run) float64) func(*reportTarget) float64 {
		return func(t *reportTarget) float64 {
			if t.med == nil {
				return nan
			}
			return f(t.med)
		}
	}
	lat := func(f func(*Latency) Millis) func(*reportTarget) float64 {
		return med(func(m *Run) float64 {
			if m.Latency == nil || m.Latency.Count == 0 {
				return nan
			}
			return float64(f(m.Latency))
		})
	}
	leak := func(f func(*LeakCheck) float64) func(*reportTarget) float64 {
		return med(func(m *Run) float64 {
			if m.Leak == nil {
				return nan
			}
			return f(m.Leak)
		})
	}
	best := func(f func(Step) float64) func(*reportTarget) float64 {
		return func(t *reportTarget) float64 {
			return t.medianOf(func(m *Run) float64 { s, ok := reportBestStep(m.Steps); return reportOr(f(s), ok) })
		}
	}
	ratio := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
	leaky := func(v float64) string { return reportPick(v > 1.05, "bad", "") }

	cols := []reportColumn{{head: "conns", value: med(func(m *Run) float64 { return reportOr(float64(m.Conns), m.Conns > 0) }), text: reportCount}}
	if slices.ContainsFunc(ts, func(t *reportTarget) bool { return t.med != nil && t.med.ConnectFailed > 0 }) {
		cols = append(cols, reportColumn{head: "connect failed", value: med(func(m *Run) float64 { return float64(m.ConnectFailed) }),
			text: reportCount, class: func(v float64) string { return reportPick(v > 0, "bad", "") }})
	}
	switch scenario {
	case "idle":
		cols = append(cols,
			reportColumn{head: "RSS / conn", value: med(func(m *Run) float64 { return reportOr(m.RSSPerConn, m.RSSPerConn != -1) }),
				text: reportBytes, ratio: "RSS/conn", lower: true, key: keyRSSPerConn},
			reportColumn{head: "kernel / conn", value: med(func(m *Run) float64 { return reportOr(m.KernelPerConn, m.KernelPerConn != -1) }), text: reportBytes,
				key: keyKernelPerConn},
			reportColumn{head: "goroutines", value: med(func(m *Run) float64 {
				return reportOr(float64(m.GoroutinesLoaded), m.GoroutinesLoaded != -1)
			}), text: reportCount},
			reportColumn{head: "connect rate (/s)", value: med(func(m *Run) float64 { return reportOr(m.ConnectRate, m.ConnectRate > 0) }), text: reportRate},
		)
	case "fanout":
		cols = append(cols,
			reportColumn{head: "time-to-all (ms)", value: med(func(m *Run) float64 { return reportOr(float64(m.TimeToAll), m.TimeToAll > 0) }),
				text: reportMs, ratio: "time-to-all", lower: true},
			reportColumn{head: "p50 (ms)", value: lat(func(l *Latency) Millis { return l.P50 }), text: reportMs},
			reportColumn{head: "p90 (ms)", value: lat(func(l *Latency) Millis { return l.P90 }), text: reportMs},
			reportColumn{head: "p99 (ms)", value: lat(func(l *Latency) Millis { return l.P99 }), text: reportMs},
			reportColumn{head: "max (ms)", value: lat(func(l *Latency) Millis { return l.Max }), text: reportMs},
			reportColumn{head: "delivered", value: med(func(m *Run) float64 {
				return reportOr(100*float64(m.Delivered)/float64(m.Expected), m.Expected > 0)
			}), text: reportPct, class: func(v float64) string { return reportPick(v < 100, "bad", "") }},
			reportColumn{head: "CPU / msg (µs)", value: med(func(m *Run) float64 { return reportOr(m.CPUPerMsg, m.CPUPerMsg > 0) }),
				text: reportMs, ratio: "CPU/msg", lower: true, key: keyCPUPerMsg},
		)
	case "throughput":
		cols = append(cols,
			reportColumn{head: "best delivered/s", value: func(t *reportTarget) float64 {
				if t.med != nil && t.med.Throughput > 0 {
					return t.med.Throughput
				}
				return best(func(s Step) float64 { return s.PerSecond })(t)
			}, text: reportRate, ratio: "delivered/s"},
			reportColumn{head: "at offered (/s)", value: best(func(s Step) float64 { return s.Rate }), text: reportRate},
			reportColumn{head: "p99 there (ms)", value: best(func(s Step) float64 { return float64(s.P99) }), text: reportMs},
		)
	case "churn":
		cols = append(cols,
			reportColumn{head: "churned", value: med(func(m *Run) float64 { return reportOr(float64(m.Churned), m.Churned > 0) }), text: reportCount},
			reportColumn{head: "RSS after churn", value: func(t *reportTarget) float64 {
				return t.medianOf(func(m *Run) float64 {
					if m.AfterChurn == nil {
						return nan
					}
					return reportOr(float64(m.AfterChurn.RSS), m.AfterChurn.RSS >= 0)
				})
			}, text: reportBytes, ratio: "RSS", lower: true},
			reportColumn{head: "RSS ratio", value: leak(func(l *LeakCheck) float64 { return l.RSSRatio }), text: ratio, class: leaky},
			reportColumn{head: "goroutines ratio", value: leak(func(l *LeakCheck) float64 { return l.GoroutinesRatio }), text: ratio, class: leaky},
			reportColumn{head: "live heap ratio", value: leak(func(l *LeakCheck) float64 { return l.HeapRatio }), text: ratio, class: leaky},
			reportColumn{head: "passed", value: leak(func(l *LeakCheck) float64 {
				if l.Passed {
					return 1
				}
				return 0
			}), text: func(v float64) string { return reportPick(v == 1, "yes", "no") },
				class: func(v float64) string { return reportPick(v == 1, "good", "bad") }},
		)
	case "cluster":
		restart := func(f func(*RestartRun) float64) func(*reportTarget) float64 {
			return med(func(m *Run) float64 { return reportOr(f(restartOf(m)), m.Cluster != nil && m.Cluster.Restart != nil) })
		}
		cols = append(cols,
			reportColumn{head: "connect rate (/s)", value: med(func(m *Run) float64 { return reportOr(m.ConnectRate, m.ConnectRate > 0) }), text: reportRate},
			reportColumn{head: "RSS / conn", value: med(func(m *Run) float64 { return m.RSSPerConn }), text: reportBytes, key: keyRSSPerConn},
			reportColumn{head: "kernel / conn", value: med(func(m *Run) float64 { return m.KernelPerConn }), text: reportBytes, key: keyKernelPerConn},
			reportColumn{head: "goroutines", value: med(func(m *Run) float64 { return float64(m.GoroutinesLoaded) }), text: reportCount},
			reportColumn{head: "time-to-all (ms)", value: med(func(m *Run) float64 { return reportOr(float64(m.TimeToAll), m.TimeToAll > 0) }), text: reportMs},
			reportColumn{head: "max (ms)", value: med(func(m *Run) float64 { return reportOr(float64(clusterOf(m).TimeToAllMax), m.TimeToAll > 0) }), text: reportMs},
			reportColumn{head: "p50 (ms)", value: lat(func(l *Latency) Millis { return l.P50 }), text: reportMs},
			reportColumn{head: "p99 (ms)", value: lat(func(l *Latency) Millis { return l.P99 }), text: reportMs},
			reportColumn{head: "delivered", value: med(func(m *Run) float64 {
				return reportOr(100*float64(m.Delivered)/float64(m.Expected), m.Expected > 0)
			}), text: reportPct, class: func(v float64) string { return reportPick(v < 100, "bad", "") }},
			reportColumn{head: "reconnect (s)", value: restart(func(rs *RestartRun) float64 { return float64(rs.ReconnectTime) / 1000 }), text: reportMs},
			reportColumn{head: "clients complete", value: restart(func(rs *RestartRun) float64 {
				return reportOr(100*float64(rs.Complete)/float64(rs.Clients), rs.Clients > 0)
			}), text: reportPct, class: func(v float64) string { return reportPick(v < 100, "bad", "good") }},
		)
	case "hostile":
		worst := func(f func(p99 Millis, rss int64, passed int) float64) func(*reportTarget) float64 {
			return med(func(m *Run) float64 {
				if len(m.Attacks) == 0 {
					return nan
				}
				return f(m.worst())
			})
		}
		cols = append(cols,
			reportColumn{head: "attacks passed", value: worst(func(_ Millis, _ int64, n int) float64 { return float64(n) }), text: reportCount},
			reportColumn{head: "worst healthy p99 (ms)", value: worst(func(p99 Millis, _ int64, _ int) float64 { return float64(p99) }), text: reportMs},
			reportColumn{head: "peak RSS", value: worst(func(_ Millis, rss int64, _ int) float64 { return float64(rss) }), text: reportBytes},
		)
	default:
		cols = append(cols, reportColumn{head: "connect rate (/s)", value: med(func(m *Run) float64 { return reportOr(m.ConnectRate, m.ConnectRate > 0) }), text: reportRate})
	}
	return cols
}

// reportAttackTables lays out the attacks of each target's median run.
func reportAttackTables(ts []*reportTarget) []reportAttacks {
	var out []reportAttacks
	for _, t := range ts {
		if t.med == nil || len(t.med.Attacks) == 0 {
			continue
		}
		tab := reportAttacks{Target: t.name}
		for _, a := range t.med.Attacks {
			rss := func(v int64) reportCell {
				if v < 0 {
					return reportCell{Text: "—", Class: "na"}
				}
				return reportCell{Text: reportBytes(float64(v))}
			}
			ms := func(v Millis) reportCell { return reportCell{Text: reportMs(float64(v))} }
			h := a.Healthy
			row := reportAttackRow{Name: a.Name, About: a.About, Cells: []reportCell{
				{Text: reportCount(float64(a.Conns))}, rss(a.RSSBefore), rss(a.RSSPeak), rss(a.RSSAfter),
				ms(h.Ops.P50), ms(h.Ops.P99), ms(h.Deliveries.P50), ms(h.Deliveries.P99),
				{Text: reportPick(a.Passed, "yes", "no"), Class: reportPick(a.Passed, "good", "bad")},
			}}
			row.Notes = tallyText(a.Attackers) + "; " + metricsText(a) + healthErrors(h)
			if len(a.Failures) > 0 {
				row.Notes += "; failed: " + strings.Join(a.Failures, "; ")
			}
			tab.Rows = append(tab.Rows, row)
		}
		out = append(out, tab)
	}
	return out
}

// reportClusterTables lays out the nodes of each target's median cluster
// run, with the summary's lines on the restart under them.
func reportClusterTables(ts []*reportTarget) []reportDetail {
	var out []reportDetail
	for _, t := range ts {
		if t.med == nil || t.med.Cluster == nil || len(t.med.Cluster.Nodes) == 0 {
			continue
		}
		d := reportDetail{Title: "Nodes of " + t.name,
			Head:  []string{"node", "conns held", "RSS before", "RSS held", "RSS / conn", "goroutines", "conns at the end"},
			Lines: clusterLines(t.med)}
		for _, n := range t.med.Cluster.Nodes {
			perConn := reportCell{Text: reportBytes(n.RSSPerConn)}
			if n.RSSNote != "" {
				perConn = reportCell{Text: "not measured", Class: "na", Title: n.RSSNote}
			}
			after := reportCell{Text: reportCount(float64(n.ConnsAfter))}
			if n.ConnsAfter < 0 {
				after = reportCell{Text: "down", Class: "na"}
			}
			d.Rows = append(d.Rows, []reportCell{{Text: n.Node}, {Text: reportCount(float64(n.Conns))},
				{Text: reportBytes(float64(n.RSSBase))}, {Text: reportBytes(float64(n.RSSLoaded))}, perConn,
				{Text: reportCount(float64(n.Goroutines))}, after})
		}
		out = append(out, d)
	}
	return out
}

// reportTable lays out one row per target in Medians, each ratio column
// right after its figure.
func reportTable(cols []reportColumn, ts []*reportTarget) ([]reportHead, []reportRow) {
	var refs []*reportTarget
	for _, name := range reportRefs {
		for _, t := range ts {
			if t.name == name && t.med != nil {
				refs = append(refs, t)
			}
		}
	}
	head := []reportHead{{Text: "target"}}
	for _, c := range cols {
		head = append(head, reportHead{Text: c.head})
		for _, ref := range refs {
			if c.ratio != "" {
				head = append(head, reportHead{"× " + ref.name, c.ratio + " over " + ref.name + "'s"})
			}
		}
	}
	var rows []reportRow
	for _, t := range ts {
		if t.med == nil {
			continue
		}
		row := reportRow{Name: t.name, Color: fmt.Sprintf("#%02x%02x%02x", t.color.R, t.color.G, t.color.B), Runs: len(t.runs)}
		for _, c := range cols {
			cell := reportCell{Text: "—", Class: "na"}
			if why := c.unmeasured(t); why != "" {
				cell = reportCell{Text: "not measured", Class: "na", Title: why}
			} else if v := c.value(t); !math.IsNaN(v) {
				cell = reportCell{Text: c.text(v)}
				if c.class != nil {
					cell.Class = c.class(v)
				}
			}
			row.Cells = append(row.Cells, cell)
			for _, ref := range refs {
				if c.ratio != "" {
					row.Cells = append(row.Cells, reportRatio(c, t, ref))
				}
			}
		}
		rows = append(rows, row)
	}
	return head, rows
}

func reportRatio(c reportColumn, t, ref *reportTarget) reportCell {
	if t == ref {
		return reportCell{Text: "1×", Class: "ref"}
	}
	v, rv := c.value(t), c.value(ref)
	if math.IsNaN(v) || math.IsNaN(rv) || rv <= 0 || c.unmeasured(t) != "" || c.unmeasured(ref) != "" {
		return reportCell{Text: "—", Class: "na"}
	}
	x := v / rv
	better, worse := x < 0.95, x > 1.05
	if !c.lower {
		better, worse = worse, better
	}
	return reportCell{Text: reportTimes(x), Class: reportPick(better, "good", reportPick(worse, "bad", ""))}
}

// reportBestStep is the passed step that delivered the most per second.
func reportBestStep(steps []Step) (Step, bool) {
	var best Step
	ok := false
	for _, s := range steps {
		if s.Passed && (!ok || s.PerSecond > best.PerSecond) {
			best, ok = s, true
		}
	}
	return best, ok
}

// reportOr is v if ok, else NaN, which the table shows as unknown.
func reportOr(v float64, ok bool) float64 {
	if !ok {
		return math.NaN()
	}
	return v
}

func reportPick(cond bool, a, b string) string {
	if cond {
		return a
	}
	return b
}

// reportCount formats a count with thousands separators.
func reportCount(v float64) string {
	s := strconv.FormatInt(int64(math.Round(math.Abs(v))), 10)
	var b strings.Builder
	if v < 0 {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func reportRate(v float64) string {
	if math.Abs(v) >= 100 {
		return reportCount(v)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func reportBytes(v float64) string {
	const k = 1024
	switch a := math.Abs(v); {
	case a < k:
		return fmt.Sprintf("%.0f B", v)
	case a < k*k:
		return fmt.Sprintf("%.1f KiB", v/k)
	case a < k*k*k:
		return fmt.Sprintf("%.1f MiB", v/(k*k))
	default:
		return fmt.Sprintf("%.2f GiB", v/(k*k*k))
	}
}

// reportMs formats milli- or microseconds, or a ratio, to about three
// figures.
func reportMs(v float64) string {
	switch a := math.Abs(v); {
	case a < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case a < 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return reportCount(v)
	}
}

// reportPct never rounds a shortfall up to 100%.
func reportPct(v float64) string {
	if v == 100 {
		return "100%"
	}
	if v < 100 {
		v = math.Min(v, 99.99)
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "%"
}

func reportTimes(x float64) string { return reportMs(x) + "×" }

// reportCompact labels axis ticks and bars: 1.5k, 20k, 1.2M, 0.25.
func reportCompact(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 3, 64) + "M"
	case a >= 1e3:
		return strconv.FormatFloat(v/1e3, 'g', 3, 64) + "k"
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

var reportTmpl = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bench {{.Scenario}}{{with .Date}} · {{.}}{{end}}</title>
<style>
body{margin:0;padding:20px 24px;background:#f5f6f8;color:#1f2328;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",Arial,sans-serif}
main{max-width:1240px;margin:0 auto}
h1{font-size:22px;margin:0}h1 small{font-size:14px;font-weight:400;color:#59636e;margin-left:8px}
h2{font-size:15px;margin:0 0 8px}h3{font-size:14px;margin:0}
.meta{color:#59636e;margin:4px 0 0}
code{font:12.5px ui-monospace,Menlo,"DejaVu Sans Mono",monospace;background:#e9ecf0;padding:1px 5px;border-radius:4px;overflow-wrap:anywhere}
ul.params{display:flex;flex-wrap:wrap;gap:6px;list-style:none;margin:10px 0 0;padding:0}
ul.params li{background:#fff;border:1px solid #d6dbe1;border-radius:11px;padding:0 9px;font-size:13px}
ul.params b{font-weight:600;color:#59636e;margin-right:5px}
.card{background:#fff;border:1px solid #d6dbe1;border-radius:8px;padding:12px 14px;margin:14px 0}
.scroll{overflow-x:auto}
table{font-size:13.5px;border-collapse:collapse;font-variant-numeric:tabular-nums;min-width:100%}
th,td{padding:5px 8px;text-align:right;white-space:nowrap;border-bottom:1px solid #e8ebef}
th{font-size:12px;font-weight:600;color:#59636e;vertical-align:bottom}
th:first-child,td:first-child{text-align:left}
tr:last-child td{border-bottom:0}
td small{color:#8c959f;margin-left:6px}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:7px}
.good{color:#1a7f37}.bad{color:#cf222e;font-weight:600}.na,.ref{color:#8c959f}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:14px;margin-top:14px}
figure{margin:0}figure.card{margin:0}
.note{color:#59636e;font-size:12.5px;margin:2px 0 6px}
td.note{text-align:left;white-space:normal;margin:0}
figure svg{display:block;width:100%;height:auto}
figure svg text{font-family:"Liberation Sans",Arimo,Arial,Helvetica,sans-serif!important}
.err{color:#cf222e}
ul.notes{color:#59636e;font-size:12.5px;margin:4px 0 0;padding-left:18px}
</style>
</head>
<body><main>
<header>
<h1>{{.Scenario}}<small>pushgate bench</small></h1>
{{with .About}}<p class="meta">{{.}}</p>{{end}}
<p class="meta">{{.Date}}{{if and .Date .Host}} · {{end}}{{.Host}}</p>
{{with .Command}}<p class="meta"><code>{{.}}</code></p>{{end}}
{{with .Params}}<ul class="params">{{range .}}<li><b>{{.Name}}</b>{{.Value}}</li>{{end}}</ul>{{end}}
</header>
{{if .Rows}}<section class="card"><h2>Medians</h2><div class="scroll"><table>
<thead><tr>{{range .Head}}<th{{with .Title}} title="{{.}}"{{end}}>{{.Text}}</th>{{end}}</tr></thead>
<tbody>{{range .Rows}}
<tr><td><span class="sw" style="background:{{.Color}}"></span>{{.Name}}<small>{{.Runs}} run{{if ne .Runs 1}}s{{end}}</small></td>{{range .Cells}}<td{{with .Class}} class="{{.}}"{{end}}{{with .Title}} title="{{.}}"{{end}}>{{.Text}}</td>{{end}}</tr>{{end}}
</tbody></table></div>
{{with .Notes}}<h3 class="note">Not measured</h3><ul class="notes">{{range .}}<li>{{.}}</li>{{end}}</ul>{{end}}</section>{{end}}
{{range .Attacks}}<section class="card"><h2>Attacks on {{.Target}}</h2><div class="scroll"><table>
<thead><tr><th>attack</th><th>conns</th><th>RSS before</th><th>RSS peak</th><th>RSS after</th><th>healthy ops p50 (ms)</th><th>ops p99 (ms)</th><th>deliveries p50 (ms)</th><th>deliveries p99 (ms)</th><th>passed</th></tr></thead>
<tbody>{{range .Rows}}
<tr><td title="{{.About}}">{{.Name}}</td>{{range .Cells}}<td{{with .Class}} class="{{.}}"{{end}}>{{.Text}}</td>{{end}}</tr>
<tr><td colspan="10" class="note">{{.About}}. {{.Notes}}</td></tr>{{end}}
</tbody></table></div></section>{{end}}
{{range .Details}}<section class="card"><h2>{{.Title}}</h2><div class="scroll"><table>
<thead><tr>{{range .Head}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>{{range .Rows}}
<tr>{{range .}}<td{{with .Class}} class="{{.}}"{{end}}{{with .Title}} title="{{.}}"{{end}}>{{.Text}}</td>{{end}}</tr>{{end}}
</tbody></table></div>
{{with .Lines}}<ul class="notes">{{range .}}<li>{{.}}</li>{{end}}</ul>{{end}}</section>{{end}}
{{with .Errors}}<section class="card"><h2>Errors</h2><ul>{{range .}}<li class="err">{{.}}</li>{{end}}</ul></section>{{end}}
{{with .Figures}}<div class="plots">{{range .}}
<figure class="card"><h3>{{.Title}}</h3><p class="note">{{.Note}}</p>{{if .Err}}<p class="err">{{.Err}}</p>{{else}}
{{.SVG}}{{end}}</figure>{{end}}
</div>{{end}}
</main></body>
</html>
`))
