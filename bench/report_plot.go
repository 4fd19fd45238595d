package main

import (
	"bytes"
	"cmp"
	"fmt"
	"html/template"
	"image/color"
	"math"
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

// The report's plots: gonum/plot drawings rendered as inline SVG.

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
	steps := func(ylabel string, y func(Step) float64) func([]*reportTarget) (*plot.Plot, error) {
		return func(ts []*reportTarget) (*plot.Plot, error) { return reportStepsPlot(ts, ylabel, y) }
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
			"A cross marks a step that missed full delivery or the p99 target.",
			steps("delivered (messages/s)", func(s Step) float64 { return s.PerSecond })},
		{"Throughput: p99 latency", "p99 latency of each step's deliveries, one line per run. " +
			"A cross marks a step that did not pass.",
			steps("p99 (ms)", func(s Step) float64 { return float64(s.P99) })},
		{"Churn: RSS", "RSS at baseline, after warm-up and after churn (median over runs). After churn should match after warm-up.",
			churn("RSS (MiB)", func(s *Snapshot) float64 { return reportOr(float64(s.RSS)/(1<<20), s.RSS >= 0) })},
		{"Churn: live heap", "Go heap after a forced GC at baseline, after warm-up and after churn (median over runs). " +
			"This is what the leak check judges.",
			churn("live heap (MiB)", func(s *Snapshot) float64 { return reportOr(float64(s.HeapLive)/(1<<20), s.HeapLive >= 0) })},
		{"Churn: goroutines", "Goroutines at baseline, after warm-up and after churn (median over runs).",
			churn("goroutines", func(s *Snapshot) float64 { return reportOr(float64(s.Goroutines), s.Goroutines >= 0) })},
		{"Connections per node over time", "Each node's connections as it counts them, and their total, every 500 ms of the median run. " +
			"The grey lines mark the phases: the connect storm, the idle hold, the broadcasts, the rolling restart " +
			"(the stopped node's clients move to the others) and the node started again.", reportTimelinePlot},
		{"Memory per node", "Each node's RSS before the clients connected and while they were held idle (median run).", reportNodeMemoryPlot},
		{"Attacks: the gateway's RSS", "The gateway's RSS before each attack, at its peak while it ran, and after it " +
			"(after --settle). Each attack is a bound: the peak should stay under --rss-bound.",
			func(ts []*reportTarget) (*plot.Plot, error) {
				return reportAttackPlot(ts, "RSS (MiB)", []string{"before", "peak", "after"}, 1, func(a *AttackRun, k int) float64 {
					v := [...]int64{a.RSSBefore, a.RSSPeak, a.RSSAfter}[k]
					return reportOr(float64(v)/(1<<20), v >= 0)
				})
			}},
		{"Attacks: a healthy client's latency", "A well-behaved client beside each attack: the round trip of its ops, " +
			"and the time from a publish to its delivery. p99 should stay under --p99.",
			func(ts []*reportTarget) (*plot.Plot, error) {
				return reportAttackPlot(ts, "latency (ms)", []string{"ops p50", "ops p99", "deliveries p99"}, 1, func(a *AttackRun, k int) float64 {
					return float64([...]Millis{a.Healthy.Ops.P50, a.Healthy.Ops.P99, a.Healthy.Deliveries.P99}[k])
				})
			}},
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

// reportStepsPlot draws y of each throughput step against its offered
// rate, crossing the steps that did not pass.
func reportStepsPlot(ts []*reportTarget, ylabel string, y func(Step) float64) (*plot.Plot, error) {
	p := reportNewPlot("offered (publishes/s)", ylabel)
	steps := func(r *Run) plotter.XYs {
		xys := make(plotter.XYs, len(r.Steps))
		for i, s := range r.Steps {
			xys[i] = plotter.XY{X: s.Rate, Y: y(s)}
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
					bad = append(bad, plotter.XY{X: s.Rate, Y: y(s)})
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
	var series []reportSeries
	for _, t := range ts {
		b := reportSeries{name: t.name, color: t.color}
		for i := range moments {
			b.vs = append(b.vs, t.medianOf(func(r *Run) float64 {
				if s := snap(r, i); s != nil {
					return f(s)
				}
				return math.NaN()
			}))
		}
		series = append(series, b)
	}
	return reportBars(moments, ylabel, series)
}

// reportSeries is one bar of each group of a grouped bar chart.
type reportSeries struct {
	name  string
	color color.Color
	vs    []float64 // one per group; NaN when unknown
}

// reportBars draws a grouped bar chart, the series that have a known
// value side by side in each group; nil when none has.
func reportBars(groups []string, ylabel string, series []reportSeries) (*plot.Plot, error) {
	var all []reportSeries
	for _, b := range series {
		if slices.ContainsFunc(b.vs, func(v float64) bool { return !math.IsNaN(v) }) {
			all = append(all, b)
		}
	}
	if len(all) == 0 {
		return nil, nil
	}
	p := reportNewPlot("", ylabel)
	p.X.Tick.Label.Font.Size = 10
	width := min(28, 96/vg.Length(len(all)), 280/vg.Length(len(all)*len(groups)))
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
		bc.Color, bc.LineStyle.Width = b.color, 0
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
		p.Legend.Add(b.name, bc)
	}
	p.NominalX(groups...)
	p.Y.Min = 0
	p.Y.Max *= 1.08 // room for the labels
	return p, nil
}

// reportClusterRun is the first target's median cluster run, nil if none.
func reportClusterRun(ts []*reportTarget) *Run {
	for _, t := range ts {
		if t.med != nil && t.med.Cluster != nil && len(t.med.Cluster.Nodes) > 0 {
			return t.med
		}
	}
	return nil
}

// reportTimelinePlot draws each node's connections over the run (broken
// where the node was down) and their total, with the phases marked.
func reportTimelinePlot(ts []*reportTarget) (*plot.Plot, error) {
	r := reportClusterRun(ts)
	if r == nil || len(r.Cluster.Timeline) == 0 {
		return nil, nil
	}
	c := r.Cluster
	p := reportNewPlot("time (s)", "connections")
	var total plotter.XYs
	top := 0.0
	for i, n := range c.Nodes {
		col := reportPalette[i%len(reportPalette)]
		var seg plotter.XYs
		first := true
		flush := func() error {
			if len(seg) == 0 {
				return nil
			}
			l, err := reportLine(seg, col, 1.25)
			if err != nil {
				return err
			}
			p.Add(l)
			if first {
				p.Legend.Add(n.Node, l)
				first = false
			}
			seg = nil
			return nil
		}
		for _, s := range c.Timeline {
			if i >= len(s.Conns) || s.Conns[i] < 0 {
				if err := flush(); err != nil {
					return nil, err
				}
				continue
			}
			seg = append(seg, plotter.XY{X: s.T, Y: float64(s.Conns[i])})
		}
		if err := flush(); err != nil {
			return nil, err
		}
	}
	for _, s := range c.Timeline {
		var sum int64
		for _, v := range s.Conns {
			sum += max(v, 0)
		}
		total = append(total, plotter.XY{X: s.T, Y: float64(sum)})
		top = max(top, float64(sum))
	}
	// Grey and dashed: the palette's last node is black.
	l, err := reportLine(total, color.Gray{0x70}, 1.5)
	if err != nil {
		return nil, err
	}
	l.Dashes = []vg.Length{4, 2}
	p.Add(l)
	p.Legend.Add("total", l)
	top *= 1.12
	var names plotter.XYLabels
	for _, ph := range c.Phases {
		mark, err := reportLine(plotter.XYs{{X: ph.Start, Y: 0}, {X: ph.Start, Y: top}}, color.Gray{0xa0}, 0.75)
		if err != nil {
			return nil, err
		}
		mark.Dashes = []vg.Length{2, 2}
		p.Add(mark)
		names.XYs = append(names.XYs, plotter.XY{X: ph.Start, Y: top})
		names.Labels = append(names.Labels, " "+ph.Name)
	}
	if len(names.XYs) > 0 {
		labels, err := plotter.NewLabels(names)
		if err != nil {
			return nil, err
		}
		for j := range labels.TextStyle {
			labels.TextStyle[j].Font = font.From(reportFont, 7)
			labels.TextStyle[j].YAlign = draw.YTop
			labels.TextStyle[j].Rotation = -math.Pi / 2
		}
		p.Add(labels)
	}
	p.X.Min, p.Y.Min, p.Y.Max = 0, 0, top
	return p, nil
}

// reportNodeMemoryPlot is a bar chart of each node's RSS before the
// clients connected and while they were held.
func reportNodeMemoryPlot(ts []*reportTarget) (*plot.Plot, error) {
	r := reportClusterRun(ts)
	if r == nil {
		return nil, nil
	}
	var names []string
	before := reportSeries{name: "before the clients", color: reportPalette[5]}
	held := reportSeries{name: "clients held", color: reportPalette[0]}
	mib := func(v int64) float64 { return reportOr(float64(v)/(1<<20), v >= 0) }
	for _, n := range r.Cluster.Nodes {
		names = append(names, n.Node)
		before.vs = append(before.vs, mib(n.RSSBase))
		held.vs = append(held.vs, mib(n.RSSLoaded))
	}
	return reportBars(names, "RSS (MiB)", []reportSeries{before, held})
}

// reportAttackPlot is a grouped bar chart of the hostile scenario: a
// group per attack (of the first target that ran them), and per target
// the figures figs picks from its median run: with one target, each its
// own bar; with several, figs[main] per target.
func reportAttackPlot(ts []*reportTarget, ylabel string, figs []string, main int, f func(*AttackRun, int) float64) (*plot.Plot, error) {
	var attacks []string
	for _, t := range ts {
		if t.med != nil && len(attacks) == 0 {
			for _, a := range t.med.Attacks {
				attacks = append(attacks, a.Name)
			}
		}
	}
	value := func(t *reportTarget, k int) []float64 {
		vs := make([]float64, len(attacks))
		for i, name := range attacks {
			vs[i] = math.NaN()
			for j := range t.med.Attacks {
				if a := &t.med.Attacks[j]; a.Name == name {
					vs[i] = f(a, k)
				}
			}
		}
		return vs
	}
	var series []reportSeries
	for _, t := range ts {
		if t.med == nil {
			continue
		}
		if len(ts) > 1 {
			series = append(series, reportSeries{name: t.name + " " + figs[main], color: t.color, vs: value(t, main)})
			continue
		}
		for k, name := range figs {
			series = append(series, reportSeries{name: name, color: reportPalette[k%len(reportPalette)], vs: value(t, k)})
		}
	}
	return reportBars(attacks, ylabel, series)
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
