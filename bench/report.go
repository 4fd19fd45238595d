package main

import (
	"bytes"
	"cmp"
	"fmt"
	"html/template"
	"image/color"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
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
	Figures                              []reportFigure
	Errors                               []string
}

type reportParam struct{ Name, Value string }

// reportHead is a column heading; Title, when set, explains it on hover.
type reportHead struct{ Text, Title string }

type reportRow struct {
	Name, Color string
	Runs        int
	Cells       []reportCell
}

// reportCell is one table value; Class is good, bad, na or ref.
type reportCell struct{ Text, Class string }

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
	p.Head, p.Rows = reportTable(reportColumns(r.Scenario, ts), ts)
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
	slices.Sort(vs)
	return (vs[(len(vs)-1)/2] + vs[len(vs)/2]) / 2
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
				text: reportBytes, ratio: "RSS/conn", lower: true},
			reportColumn{head: "kernel / conn", value: med(func(m *Run) float64 { return reportOr(m.KernelPerConn, m.KernelPerConn != -1) }), text: reportBytes},
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
				text: reportMs, ratio: "CPU/msg", lower: true},
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
			reportColumn{head: "heap ratio", value: leak(func(l *LeakCheck) float64 { return l.HeapRatio }), text: ratio, class: leaky},
			reportColumn{head: "passed", value: leak(func(l *LeakCheck) float64 {
				if l.Passed {
					return 1
				}
				return 0
			}), text: func(v float64) string { return reportPick(v == 1, "yes", "no") },
				class: func(v float64) string { return reportPick(v == 1, "good", "bad") }},
		)
	default:
		cols = append(cols, reportColumn{head: "connect rate (/s)", value: med(func(m *Run) float64 { return reportOr(m.ConnectRate, m.ConnectRate > 0) }), text: reportRate})
	}
	return cols
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
			cell := reportCell{"—", "na"}
			if v := c.value(t); !math.IsNaN(v) {
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
		return reportCell{"1×", "ref"}
	}
	v, rv := c.value(t), c.value(ref)
	if math.IsNaN(v) || math.IsNaN(rv) || rv <= 0 {
		return reportCell{"—", "na"}
	}
	x := v / rv
	better, worse := x < 0.95, x > 1.05
	if !c.lower {
		better, worse = worse, better
	}
	return reportCell{reportTimes(x), reportPick(better, "good", reportPick(worse, "bad", ""))}
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

// Plots are drawn 6in × 3.4in and scaled to the page width by CSS.
const (
	reportPlotW = 6 * vg.Inch
	reportPlotH = 3.4 * vg.Inch
)

// reportFigures draws the plots there is data for; a nil plot means none.
func reportFigures(ts []*reportTarget) []reportFigure {
	churn := func(ylabel string, f func(*Snapshot) float64) func([]*reportTarget) (*plot.Plot, error) {
		return func(ts []*reportTarget) (*plot.Plot, error) { return reportChurnPlot(ts, ylabel, f) }
	}
	var figs []reportFigure
	for _, spec := range []struct {
		title, note string
		build       func([]*reportTarget) (*plot.Plot, error)
	}{
		{"Latency distribution", "Share of deliveries that arrived within x, all runs of a target together. " +
			"The y axis stretches the tail: 90, 99 and 99.9% are equal steps. Further left is faster.", reportLatencyPlot},
		{"Time-to-all per publish", "When the last subscriber had each publish, one line per run. Lower is better.", reportTimeToAllPlot},
		{"Memory vs connections", "Target RSS as connections were opened, one line per run. The slope is the memory per connection.", reportMemoryPlot},
		{"Throughput", "Messages delivered per second at each offered publish rate, one line per run. " +
			"A cross marks a step that missed full delivery or the p99 target.", reportThroughputPlot},
		{"Churn: RSS", "RSS at baseline, after warm-up and after churn (median over runs). After churn should match after warm-up.",
			churn("RSS (MiB)", func(s *Snapshot) float64 { return reportOr(float64(s.RSS)/(1<<20), s.RSS >= 0) })},
		{"Churn: goroutines", "Goroutines at baseline, after warm-up and after churn (median over runs).",
			churn("goroutines", func(s *Snapshot) float64 { return reportOr(float64(s.Goroutines), s.Goroutines >= 0) })},
	} {
		p, err := spec.build(ts)
		if p == nil && err == nil {
			continue
		}
		f := reportFigure{Title: spec.title, Note: spec.note}
		if err == nil {
			f.SVG, err = reportSVG(p)
		}
		if err != nil {
			f.Err = err.Error()
		}
		figs = append(figs, f)
	}
	return figs
}

// reportSVG renders p as an <svg> element for inlining. gonum/plot
// escapes the text it draws, so target names are safe in it.
func reportSVG(p *plot.Plot) (svg template.HTML, err error) {
	// gonum/plot panics on some degenerate ranges; a report that says so
	// beats a harness that crashes after a long run.
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("plot: %v", v)
		}
	}()
	// This is p.WriterTo, with the legend drawn beside the plot, where it
	// hides no data.
	c, err := draw.NewFormattedCanvas(reportPlotW, reportPlotH, "svg")
	if err != nil {
		return "", err
	}
	dc := draw.New(c)
	legend := p.Legend
	p.Legend = plot.NewLegend()
	if w := legend.Rectangle(dc).Size().X; w > 0 {
		// Icons first, then text: a fallback font wider than the one
		// measured runs on into the margin, not over the icons.
		strip := w*1.15 + 10
		legend.Top, legend.Left = true, true
		legend.Draw(draw.Crop(dc, reportPlotW-strip+10, 0, 0, 0))
		dc = draw.Crop(dc, 0, -strip, 0, 0)
	}
	p.Draw(dc)
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return "", err
	}
	s := b.String()
	if i := strings.Index(s, "<svg"); i >= 0 {
		s = s[i:] // drop the XML declaration and comment
	}
	return template.HTML(s), nil
}

// reportFont is metric-compatible with Arial and Helvetica, which the
// page's CSS names as fallbacks.
var reportFont = font.Font{Typeface: "Liberation", Variant: "Sans"}

func reportNewPlot(x, y string) *plot.Plot {
	p := plot.New()
	for _, s := range []struct {
		style *text.Style
		size  vg.Length
	}{{&p.X.Label.TextStyle, 10}, {&p.Y.Label.TextStyle, 10}, {&p.X.Tick.Label, 9}, {&p.Y.Tick.Label, 9}, {&p.Legend.TextStyle, 9.5}} {
		s.style.Font = font.From(reportFont, s.size)
	}
	p.X.Label.Text, p.Y.Label.Text = x, y
	p.X.Tick.Marker, p.Y.Tick.Marker = reportTicks{}, reportTicks{}
	p.Legend.ThumbnailWidth, p.Legend.Padding = 0.25*vg.Inch, 2
	g := plotter.NewGrid()
	g.Vertical.Color, g.Horizontal.Color = color.Gray{0xe4}, color.Gray{0xe4}
	p.Add(g)
	return p
}

func reportLine(xys plotter.XYs, c color.Color, width vg.Length) (*plotter.Line, error) {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return nil, err
	}
	l.Color, l.Width = c, width
	return l, nil
}

// reportRunLines adds a line per run that xys has points for, in its
// target's colour, the first of each target in the legend. It reports
// whether it drew any.
func reportRunLines(p *plot.Plot, ts []*reportTarget, width vg.Length, xys func(*Run) plotter.XYs) (bool, error) {
	drawn := false
	for _, t := range ts {
		for i, run := range t.sources(func(r *Run) bool { return len(xys(r)) > 0 }) {
			l, err := reportLine(xys(run), t.color, width)
			if err != nil {
				return drawn, err
			}
			p.Add(l)
			if i == 0 {
				p.Legend.Add(t.name, l)
			}
			drawn = true
		}
	}
	return drawn, nil
}

// reportLogX puts the x axis on a log scale when the data spans more than
// ratio, and reports whether it did.
func reportLogX(p *plot.Plot, lo, hi, ratio float64) bool {
	if lo <= 0 || hi/lo < ratio {
		return false
	}
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, reportLogTicks{}
	return true
}

// reportLatencyPlot draws a CDF per target from the latency buckets of
// all its runs.
func reportLatencyPlot(ts []*reportTarget) (*plot.Plot, error) {
	type curve struct {
		t   *reportTarget
		xys plotter.XYs
	}
	var curves []curve
	var total int64
	lo, hi := math.Inf(1), 0.0
	for _, t := range ts {
		counts := map[[2]Millis]int64{}
		for _, run := range t.sources(func(r *Run) bool { return r.Latency != nil && len(r.Latency.Buckets) > 0 }) {
			for _, b := range run.Latency.Buckets {
				counts[[2]Millis{b.From, b.To}] += b.Count
			}
		}
		var bs []Bucket
		var n int64
		for k, c := range counts {
			if c > 0 {
				bs, n = append(bs, Bucket{From: k[0], To: k[1], Count: c}), n+c
			}
		}
		if n == 0 {
			continue
		}
		slices.SortFunc(bs, func(a, b Bucket) int { return cmp.Compare(a.From, b.From) })
		xys := plotter.XYs{{X: float64(bs[0].From), Y: 0}}
		var cum int64
		for _, b := range bs {
			cum += b.Count
			xys = append(xys, plotter.XY{X: float64(b.To), Y: 100 * float64(cum) / float64(n)})
		}
		total, lo, hi = max(total, n), math.Min(lo, float64(bs[0].To)), math.Max(hi, xys[len(xys)-1].X)
		curves = append(curves, curve{t, xys})
	}
	if len(curves) == 0 {
		return nil, nil
	}
	p := reportNewPlot("latency (ms)", "deliveries within")
	logX := reportLogX(p, lo, hi, 20)
	// Show the tail down to about one delivery in the busiest target, but
	// no further than 99.99%, which would squeeze the bulk.
	top := 100 * (1 - math.Pow(10, -min(max(math.Floor(math.Log10(float64(total))), 2), 4)))
	for _, c := range curves {
		if logX {
			c.xys = slices.DeleteFunc(c.xys, func(xy plotter.XY) bool { return xy.X <= 0 })
		}
		for i := range c.xys {
			c.xys[i].Y = math.Min(c.xys[i].Y, top)
		}
		l, err := reportLine(c.xys, c.t.color, 1.75)
		if err != nil {
			return nil, err
		}
		p.Add(l)
		p.Legend.Add(c.t.name, l)
	}
	p.Y.Min, p.Y.Max = 0, top
	p.Y.Scale, p.Y.Tick.Marker = reportTailScale{top}, reportTailScale{top}
	return p, nil
}

func reportTimeToAllPlot(ts []*reportTarget) (*plot.Plot, error) {
	p := reportNewPlot("publish", "time-to-all (ms)")
	drawn, err := reportRunLines(p, ts, 1, func(r *Run) plotter.XYs {
		xys := make(plotter.XYs, len(r.Publishes))
		for i, pub := range r.Publishes {
			xys[i] = plotter.XY{X: float64(pub.Seq), Y: float64(pub.TimeToAll)}
		}
		return xys
	})
	if !drawn || err != nil {
		return nil, err
	}
	p.Y.Min = 0
	return p, nil
}

func reportMemoryPlot(ts []*reportTarget) (*plot.Plot, error) {
	p := reportNewPlot("connections", "RSS (MiB)")
	drawn, err := reportRunLines(p, ts, 1.25, func(r *Run) plotter.XYs {
		var xys plotter.XYs
		for _, s := range r.Memory {
			if s.RSS >= 0 {
				xys = append(xys, plotter.XY{X: float64(s.Conns), Y: float64(s.RSS) / (1 << 20)})
			}
		}
		return xys
	})
	if !drawn || err != nil {
		return nil, err
	}
	p.X.Min, p.Y.Min = 0, 0
	return p, nil
}

func reportThroughputPlot(ts []*reportTarget) (*plot.Plot, error) {
	p := reportNewPlot("offered (publishes/s)", "delivered (messages/s)")
	steps := func(r *Run) plotter.XYs {
		xys := make(plotter.XYs, len(r.Steps))
		for i, s := range r.Steps {
			xys[i] = plotter.XY{X: s.Rate, Y: s.PerSecond}
		}
		return xys
	}
	drawn, err := reportRunLines(p, ts, 1.25, steps)
	if !drawn || err != nil {
		return nil, err
	}
	var bad plotter.XYs
	lo, hi := math.Inf(1), 0.0
	for _, t := range ts {
		for _, run := range t.sources(func(r *Run) bool { return len(r.Steps) > 0 }) {
			dots, err := plotter.NewScatter(steps(run))
			if err != nil {
				return nil, err
			}
			dots.GlyphStyle = draw.GlyphStyle{Color: t.color, Radius: 2.25, Shape: draw.CircleGlyph{}}
			p.Add(dots)
			for _, s := range run.Steps {
				if !s.Passed {
					bad = append(bad, plotter.XY{X: s.Rate, Y: s.PerSecond})
				}
				lo, hi = math.Min(lo, s.Rate), math.Max(hi, s.Rate)
			}
		}
	}
	if len(bad) > 0 {
		crosses, err := plotter.NewScatter(bad)
		if err != nil {
			return nil, err
		}
		crosses.GlyphStyle = draw.GlyphStyle{Color: color.Black, Radius: 4, Shape: reportCross{}}
		p.Add(crosses)
		p.Legend.Add("did not pass", crosses)
	}
	if !reportLogX(p, lo, hi, 8) {
		p.X.Min = 0
	}
	p.Y.Min = 0
	return p, nil
}

// reportChurnPlot is a grouped bar chart: a group per moment of a churn
// run, a bar per target, its median over the runs.
func reportChurnPlot(ts []*reportTarget, ylabel string, f func(*Snapshot) float64) (*plot.Plot, error) {
	moments := []string{"baseline", "after warm-up", "after churn"}
	snap := func(r *Run, i int) *Snapshot { return [...]*Snapshot{r.Baseline, r.AfterWarm, r.AfterChurn}[i] }
	type bars struct {
		t  *reportTarget
		vs []float64 // NaN when unknown
	}
	var all []bars
	for _, t := range ts {
		b := bars{t: t}
		for i := range moments {
			b.vs = append(b.vs, t.medianOf(func(r *Run) float64 {
				if s := snap(r, i); s != nil {
					return f(s)
				}
				return math.NaN()
			}))
		}
		if slices.ContainsFunc(b.vs, func(v float64) bool { return !math.IsNaN(v) }) {
			all = append(all, b)
		}
	}
	if len(all) == 0 {
		return nil, nil
	}
	p := reportNewPlot("", ylabel)
	p.X.Tick.Label.Font.Size = 10
	width := min(28, 96/vg.Length(len(all)))
	for i, b := range all {
		// Unknown values get no bar and no label; known ones are written
		// over their bar, so a short bar still reads.
		lb := plotter.XYLabels{XYs: make(plotter.XYs, len(b.vs)), Labels: make([]string, len(b.vs))}
		vs := make(plotter.Values, len(b.vs))
		for j, v := range b.vs {
			if !math.IsNaN(v) {
				vs[j], lb.Labels[j] = v, reportCompact(v)
			}
			lb.XYs[j] = plotter.XY{X: float64(j), Y: vs[j]}
		}
		bc, err := plotter.NewBarChart(vs, width)
		if err != nil {
			return nil, err
		}
		bc.Color, bc.LineStyle.Width = b.t.color, 0
		bc.Offset = (vg.Length(i) - vg.Length(len(all)-1)/2) * width
		labels, err := plotter.NewLabels(lb)
		if err != nil {
			return nil, err
		}
		for j := range labels.TextStyle {
			labels.TextStyle[j].Font = font.From(reportFont, 7.5)
			labels.TextStyle[j].XAlign = draw.XCenter
		}
		labels.Offset = vg.Point{X: bc.Offset, Y: 2}
		p.Add(bc, labels)
		p.Legend.Add(b.t.name, bc)
	}
	p.NominalX(moments...)
	p.Y.Min = 0
	p.Y.Max *= 1.08 // room for the labels
	return p, nil
}

// reportTicks are gonum's default ticks with compact labels.
type reportTicks struct{}

func (reportTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = reportCompact(ts[i].Value)
		}
	}
	return ts
}

// reportLogTicks label 1, 2 and 5 times the powers of ten (only the powers
// when the range spans many), with minor ticks between.
type reportLogTicks struct{}

func (reportLogTicks) Ticks(lo, hi float64) []plot.Tick {
	first, last := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	var ts []plot.Tick
	for e := first; e <= last; e++ {
		for m := 1; m <= 9; m++ {
			v := float64(m) * math.Pow(10, e)
			if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || (last-first <= 4 && (m == 2 || m == 5)) {
				t.Label = reportCompact(v)
			}
			ts = append(ts, t)
		}
	}
	return ts
}

// reportTailScale maps a share in percent so that 0, 90, 99, 99.9, …
// are evenly spaced, up to top; it also marks those ticks.
type reportTailScale struct{ top float64 }

func (s reportTailScale) f(v float64) float64 { return -math.Log10(1 - min(max(v, 0), s.top)/100) }

func (s reportTailScale) Normalize(lo, hi, x float64) float64 {
	return (s.f(x) - s.f(lo)) / (s.f(hi) - s.f(lo))
}

func (s reportTailScale) Ticks(_, hi float64) []plot.Tick {
	ts := []plot.Tick{{Value: 0, Label: "0%"}, {Value: 50, Label: "50%"}}
	for d := 1.0; ; d++ {
		v := 100 * (1 - math.Pow(10, -d))
		if v > hi+1e-9 {
			return ts
		}
		ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', int(max(d-2, 0)), 64) + "%"})
	}
}

// reportCross is a bold ×, for steps that did not pass.
type reportCross struct{}

func (reportCross) DrawGlyph(c *draw.Canvas, sty draw.GlyphStyle, pt vg.Point) {
	c.SetLineStyle(draw.LineStyle{Color: sty.Color, Width: 1.5})
	r := sty.Radius
	var p vg.Path
	p.Move(vg.Point{X: pt.X - r, Y: pt.Y - r})
	p.Line(vg.Point{X: pt.X + r, Y: pt.Y + r})
	p.Move(vg.Point{X: pt.X - r, Y: pt.Y + r})
	p.Line(vg.Point{X: pt.X + r, Y: pt.Y - r})
	c.Stroke(p)
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
figure svg{display:block;width:100%;height:auto}
figure svg text{font-family:"Liberation Sans",Arimo,Arial,Helvetica,sans-serif!important}
.err{color:#cf222e}
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
<tr><td><span class="sw" style="background:{{.Color}}"></span>{{.Name}}<small>{{.Runs}} run{{if ne .Runs 1}}s{{end}}</small></td>{{range .Cells}}<td{{with .Class}} class="{{.}}"{{end}}>{{.Text}}</td>{{end}}</tr>{{end}}
</tbody></table></div></section>{{end}}
{{with .Errors}}<section class="card"><h2>Errors</h2><ul>{{range .}}<li class="err">{{.}}</li>{{end}}</ul></section>{{end}}
{{with .Figures}}<div class="plots">{{range .}}
<figure class="card"><h3>{{.Title}}</h3><p class="note">{{.Note}}</p>{{if .Err}}<p class="err">{{.Err}}</p>{{else}}
{{.SVG}}{{end}}</figure>{{end}}
</div>{{end}}
</main></body>
</html>
`))
