package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/pushgate/pushgate/internal/attack"
)

// figure is one number of a run that summaries, medians and comparisons
// know about.
type figure struct {
	name   string
	unit   string
	better int // +1 higher is better, -1 lower is better
	get    func(*Run) float64
	set    func(*Run, float64)
	// key, when set, is the figure's JSON name, under which a run's
	// Unmeasured says why it is absent.
	key string
}

// unmeasured is why run r does not give figure f, "" when it does.
func (f figure) unmeasured(r *Run) string {
	if f.key == "" {
		return ""
	}
	return r.Unmeasured[f.key]
}

func latencyFigure(name string, f func(*Latency) *Millis) figure {
	return figure{name: name, unit: "ms", better: -1,
		get: func(r *Run) float64 {
			if r.Latency == nil {
				return 0
			}
			return float64(*f(r.Latency))
		},
		set: func(r *Run, v float64) {
			if r.Latency != nil {
				*f(r.Latency) = Millis(v)
			}
		}}
}

// figures lists, per scenario, what is reported; the first is the key
// figure that picks a target's median run.
var figures = map[string][]figure{
	"idle": {
		{"RSS/conn", "B", -1, func(r *Run) float64 { return r.RSSPerConn }, func(r *Run, v float64) { r.RSSPerConn = v }, keyRSSPerConn},
		{"kernel slab/conn", "B", -1, func(r *Run) float64 { return r.KernelPerConn }, func(r *Run, v float64) { r.KernelPerConn = v }, keyKernelPerConn},
		{"machine used/conn", "B", -1, func(r *Run) float64 { return r.UsedPerConn }, func(r *Run, v float64) { r.UsedPerConn = v }, keyUsedPerConn},
		{"goroutines", "", -1, func(r *Run) float64 { return float64(r.GoroutinesLoaded) }, func(r *Run, v float64) { r.GoroutinesLoaded = int64(v) }, ""},
		{"connects/s", "/s", +1, func(r *Run) float64 { return r.ConnectRate }, func(r *Run, v float64) { r.ConnectRate = v }, ""},
	},
	"fanout": {
		{"time-to-all", "ms", -1, func(r *Run) float64 { return float64(r.TimeToAll) }, func(r *Run, v float64) { r.TimeToAll = Millis(v) }, ""},
		latencyFigure("p50", func(l *Latency) *Millis { return &l.P50 }),
		latencyFigure("p90", func(l *Latency) *Millis { return &l.P90 }),
		latencyFigure("p99", func(l *Latency) *Millis { return &l.P99 }),
		latencyFigure("max", func(l *Latency) *Millis { return &l.Max }),
		{"delivered", "%", +1, deliveredPct, nil, ""},
		{"CPU/msg", "µs", -1, func(r *Run) float64 { return r.CPUPerMsg }, func(r *Run, v float64) { r.CPUPerMsg = v }, keyCPUPerMsg},
	},
	"throughput": {
		{"delivered/s", "/s", +1, func(r *Run) float64 { return r.Throughput }, func(r *Run, v float64) { r.Throughput = v }, ""},
		{"p99 at best", "ms", -1, func(r *Run) float64 { s, _ := reportBestStep(r.Steps); return float64(s.P99) }, nil, ""},
		{"CPU/msg", "µs", -1, func(r *Run) float64 { return r.CPUPerMsg }, func(r *Run, v float64) { r.CPUPerMsg = v }, keyCPUPerMsg},
	},
	"hostile": {
		{"attacks passed", "", +1, func(r *Run) float64 { _, _, n := r.worst(); return float64(n) }, nil, ""},
		{"worst healthy p99", "ms", -1, func(r *Run) float64 { p99, _, _ := r.worst(); return float64(p99) }, nil, ""},
		{"peak RSS", "B", -1, func(r *Run) float64 { _, rss, _ := r.worst(); return float64(rss) }, nil, ""},
	},
	"cluster": {
		{"time-to-all", "ms", -1, func(r *Run) float64 { return float64(r.TimeToAll) }, func(r *Run, v float64) { r.TimeToAll = Millis(v) }, ""},
		{"max", "ms", -1, func(r *Run) float64 { return float64(clusterOf(r).TimeToAllMax) }, nil, ""},
		latencyFigure("p50", func(l *Latency) *Millis { return &l.P50 }),
		latencyFigure("p99", func(l *Latency) *Millis { return &l.P99 }),
		{"delivered", "%", +1, deliveredPct, nil, ""},
		{"RSS/conn", "B", -1, func(r *Run) float64 { return r.RSSPerConn }, func(r *Run, v float64) { r.RSSPerConn = v }, keyRSSPerConn},
		{"kernel slab/conn", "B", -1, func(r *Run) float64 { return r.KernelPerConn }, func(r *Run, v float64) { r.KernelPerConn = v }, keyKernelPerConn},
		{"goroutines", "", -1, func(r *Run) float64 { return float64(r.GoroutinesLoaded) }, func(r *Run, v float64) { r.GoroutinesLoaded = int64(v) }, ""},
		{"connects/s", "/s", +1, func(r *Run) float64 { return r.ConnectRate }, func(r *Run, v float64) { r.ConnectRate = v }, ""},
		{"reconnect", "ms", -1, func(r *Run) float64 { return float64(restartOf(r).ReconnectTime) }, nil, ""},
		{"clients lossy", "", -1, func(r *Run) float64 { return float64(restartOf(r).Lossy) }, nil, ""},
		{"duplicated", "", -1, func(r *Run) float64 { return float64(restartOf(r).Duplicated) }, nil, ""},
	},
	"churn": {
		{"RSS ratio", "×", -1, func(r *Run) float64 { return leak(r).RSSRatio }, nil, ""},
		{"goroutines ratio", "×", -1, func(r *Run) float64 { return leak(r).GoroutinesRatio }, nil, ""},
		{"live heap ratio", "×", -1, func(r *Run) float64 { return leak(r).HeapRatio }, nil, ""},
		{"churned", "", +1, func(r *Run) float64 { return float64(r.Churned) }, nil, ""},
	},
}

// clusterOf and restartOf are a cluster run's parts, empty if absent.
func clusterOf(r *Run) *ClusterRun {
	if r.Cluster == nil {
		return &ClusterRun{}
	}
	return r.Cluster
}

func restartOf(r *Run) *RestartRun {
	if c := clusterOf(r); c.Restart != nil {
		return c.Restart
	}
	return &RestartRun{}
}

func deliveredPct(r *Run) float64 {
	if r.Expected == 0 {
		return 0
	}
	return 100 * float64(r.Delivered) / float64(r.Expected)
}

func leak(r *Run) LeakCheck {
	if r.Leak == nil {
		return LeakCheck{}
	}
	return *r.Leak
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// targetsOf lists the targets of runs in the order they first ran.
func targetsOf(runs []Run) []string {
	var names []string
	for _, r := range runs {
		if !slices.Contains(names, r.Target) {
			names = append(names, r.Target)
		}
	}
	return names
}

// medians returns, per target, its median run: the run whose key figure is
// the median (its series are the ones plotted), with every other figure
// replaced by the median over the runs. Failed runs count only when no
// run of that target succeeded.
func medians(res *Results) []Run {
	figs := figures[res.Scenario]
	var out []Run
	for _, name := range targetsOf(res.Runs) {
		var runs []Run
		for _, r := range res.Runs {
			if r.Target == name && len(r.Errors) == 0 {
				runs = append(runs, r)
			}
		}
		if len(runs) == 0 {
			for _, r := range res.Runs {
				if r.Target == name {
					runs = append(runs, r)
				}
			}
		}
		// The runs that give the key figure come first, in its order; the
		// median is picked among them when there are any.
		key := figs[0]
		given := func(r *Run) bool { return key.unmeasured(r) == "" }
		slices.SortStableFunc(runs, func(a, b Run) int {
			if ga, gb := given(&a), given(&b); ga != gb {
				return map[bool]int{true: -1, false: 1}[ga]
			}
			return cmp.Compare(key.get(&a), key.get(&b))
		})
		pick := runs
		if k := slices.IndexFunc(runs, func(r Run) bool { return !given(&r) }); k > 0 {
			pick = runs[:k]
		}
		m := pick[(len(pick)-1)/2]
		if m.Latency != nil {
			l := *m.Latency
			m.Latency = &l
		}
		m.Unmeasured = maps.Clone(m.Unmeasured)
		for _, f := range figs[1:] {
			if f.set == nil {
				continue
			}
			var xs []float64
			why := ""
			for i := range runs {
				if n := f.unmeasured(&runs[i]); n != "" {
					why = cmp.Or(why, n)
					continue
				}
				xs = append(xs, f.get(&runs[i]))
			}
			if len(xs) == 0 && why != "" {
				f.set(&m, 0)
				m.note(f.key, why)
				continue
			}
			m.note(f.key, "")
			f.set(&m, median(xs))
		}
		m.Run = 0
		out = append(out, m)
	}
	return out
}

// printSummary writes the one-screen summary: the median figures per
// target and the ratios that matter.
func printSummary(w io.Writer, res *Results) {
	p := res.Params
	fmt.Fprintf(w, "\n%s: %d connections, %d channel(s), %d worker process(es); %s, %d CPUs, %s\n",
		res.Scenario, p.Conns, p.Channels, p.Workers, res.Date.Format("2006-01-02"), res.Host.CPUs, res.Host.Go)
	runs := map[string]int{}
	for _, r := range res.Runs {
		runs[r.Target]++
	}
	figs := figures[res.Scenario]
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "target\truns\tconns\t")
	for _, f := range figs {
		fmt.Fprintf(tw, "%s\t", f.name)
	}
	fmt.Fprintln(tw)
	for i := range res.Medians {
		m := &res.Medians[i]
		fmt.Fprintf(tw, "%s\t%d\t%d\t", m.Target, runs[m.Target], m.Conns)
		for _, f := range figs {
			if f.unmeasured(m) != "" {
				fmt.Fprint(tw, "—\t")
				continue
			}
			fmt.Fprintf(tw, "%s\t", format(f.get(m), f.unit))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	// What is not given, and why.
	for i := range res.Medians {
		for _, f := range figs {
			if why := f.unmeasured(&res.Medians[i]); why != "" {
				fmt.Fprintf(w, "  %s %s: %s\n", res.Medians[i].Target, f.name, why)
			}
		}
	}

	for i := range res.Medians {
		printAttacks(w, &res.Medians[i])
		printCluster(w, &res.Medians[i])
	}
	for _, r := range res.Runs {
		for _, e := range r.Errors {
			fmt.Fprintf(w, "  %s run %d failed: %s\n", r.Target, r.Run, e)
		}
	}
	// Ratios of pushgate to each reference, and of pushgate's event
	// streams to its WebSockets, for the key figures.
	for _, pair := range [][2]string{{"pushgate", "hub"}, {"pushgate", "floor"}, {"pushgate-sse", "pushgate"}} {
		a, b := findRun(res.Medians, pair[0]), findRun(res.Medians, pair[1])
		if a == nil || b == nil {
			continue
		}
		var parts []string
		for _, f := range figs {
			x, y := f.get(a), f.get(b)
			if x <= 0 || y <= 0 || f.unit == "%" || f.unmeasured(a) != "" || f.unmeasured(b) != "" {
				continue
			}
			parts = append(parts, fmt.Sprintf("%s %.2f×", f.name, x/y))
		}
		if len(parts) > 0 {
			fmt.Fprintf(w, "%s / %s: %s\n", pair[0], pair[1], strings.Join(parts, ", "))
		}
	}
}

// printCluster writes a cluster run's nodes, one a line, and what its
// rolling restart showed.
func printCluster(w io.Writer, r *Run) {
	c := r.Cluster
	if c == nil || len(c.Nodes) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s, node by node (connections held idle):\n", r.Target)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\tconns\tRSS before\tRSS held\tRSS/conn\tgoroutines\tconns at the end\t")
	for _, n := range c.Nodes {
		perConn := format(n.RSSPerConn, "B")
		if n.RSSNote != "" {
			perConn = "—"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%s\t\n", n.Node, n.Conns, format(float64(n.RSSBase), "B"), format(float64(n.RSSLoaded), "B"),
			perConn, n.Goroutines, countOrDown(n.ConnsAfter))
	}
	tw.Flush()
	for _, l := range clusterLines(r) {
		fmt.Fprintf(w, "  %s\n", l)
	}
}

func countOrDown(n int64) string {
	if n < 0 {
		return "down"
	}
	return fmt.Sprint(n)
}

// clusterLines says in words what a cluster run's figures per node do
// not: memory on both ends, the broadcast, the rolling restart.
func clusterLines(r *Run) []string {
	c := r.Cluster
	var out []string
	for _, n := range c.Nodes {
		if n.RSSNote != "" {
			out = append(out, fmt.Sprintf("%s RSS/conn: %s", n.Node, n.RSSNote))
		}
	}
	mem := "memory per connection, user and kernel: "
	var parts []string
	if r.Unmeasured[keyRSSPerConn] == "" {
		parts = append(parts, fmt.Sprintf("%s of gateway RSS (all nodes' growth over all connections)", format(r.RSSPerConn, "B")))
	}
	if r.Unmeasured[keyKernelPerConn] == "" {
		parts = append(parts, fmt.Sprintf("%s of kernel slab, the machine's, both ends of each connection (the clients run here too)", format(r.KernelPerConn, "B")))
	}
	if c.ClientRSSPerConn > 0 {
		parts = append(parts, fmt.Sprintf("%s of the harness's clients' RSS", format(c.ClientRSSPerConn, "B")))
	}
	if len(parts) > 0 {
		out = append(out, mem+strings.Join(parts, "; "))
	}
	if len(r.Publishes) > 0 {
		out = append(out, fmt.Sprintf("broadcast: %d publishes through %s, each to all %d clients: time-to-all median %s, max %s; %d of %d delivered",
			len(r.Publishes), c.Nodes[0].Node, r.Conns, format(float64(r.TimeToAll), "ms"), format(float64(c.TimeToAllMax), "ms"), r.Delivered, r.Expected))
	}
	if h := c.Hot; h != nil {
		out = append(out, fmt.Sprintf("hot channel: %d publishers, each waiting for its publish, to one channel through the %d nodes' APIs in turn: %d publishes in %.1f s, %.0f a second, offsets 1..%d each once",
			h.Publishers, len(c.Nodes), h.Publishes, h.Seconds, h.Rate, h.Publishes))
	}
	rs := c.Restart
	if rs == nil {
		return out
	}
	out = append(out, fmt.Sprintf("rolling restart: %s stopped with SIGTERM holding %d connections, exited %.1f s later; its clients were on the other %d nodes %.1f s after the first was closed (first close to last subscribed again); %d publishes at %.2g/s meanwhile, through %s",
		rs.Node, rs.Held, float64(rs.DrainTime)/1000, len(c.Nodes)-1, float64(rs.ReconnectTime)/1000, rs.Publishes, rs.Rate, c.Nodes[0].Node))
	if rs.Clients > 0 {
		out = append(out, fmt.Sprintf("every client, offset by offset up to %d: %d of %d complete; %d missed offsets (%d in all), %d were sent duplicates, %d not recovered, %d could not reconnect; %d closed, %d reconnected, %d of them sent %d offsets from history; closes %s",
			rs.FinalOffset, rs.Complete, rs.Clients, rs.Lossy, rs.MissingOffsets, rs.Duplicated, rs.Resets, rs.Failed, rs.Closed, rs.Reconnected,
			rs.Recovered, rs.RecoveredSum, closesText(rs.Closes)))
	}
	if other := rs.Closed - rs.Closes["1001"]; other > 0 {
		out = append(out, fmt.Sprintf("%d connections ended otherwise than with the drain's 1001 (by reason, in the closes above): clients far behind in their reading on a loaded machine; each reconnected, and is counted above", other))
	}
	if l := rs.Latency; l != nil && l.Count > 0 {
		out = append(out, fmt.Sprintf("deliveries during the restart, replays included: p50 %s, p99 %s, max %s", format(float64(l.P50), "ms"), format(float64(l.P99), "ms"), format(float64(l.Max), "ms")))
	}
	for _, p := range rs.Problems {
		out = append(out, "problem: "+p)
	}
	if rs.RestartedReady > 0 {
		out = append(out, fmt.Sprintf("%s started again: ready in %.2f s; it holds %d connections: nothing rebalances", rs.Node, float64(rs.RestartedReady)/1000, c.Nodes[len(c.Nodes)-1].ConnsAfter))
	}
	return out
}

func closesText(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// printAttacks writes a hostile run's attacks, one a line.
func printAttacks(w io.Writer, r *Run) {
	if len(r.Attacks) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s, attack by attack:\n", r.Target)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "attack\tconns\tRSS before\tpeak\tafter\tops p50\tp99\tdeliveries p50\tp99\tpassed\t")
	for _, a := range r.Attacks {
		h := a.Healthy
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", a.Name, a.Conns,
			format(float64(a.RSSBefore), "B"), format(float64(a.RSSPeak), "B"), format(float64(a.RSSAfter), "B"),
			format(float64(h.Ops.P50), "ms"), format(float64(h.Ops.P99), "ms"),
			format(float64(h.Deliveries.P50), "ms"), format(float64(h.Deliveries.P99), "ms"), passedText(a.Passed))
	}
	tw.Flush()
	for _, a := range r.Attacks {
		fmt.Fprintf(w, "  %s: %s; %s%s\n", a.Name, tallyText(a.Attackers), metricsText(a), healthErrors(a.Healthy))
	}
}

func passedText(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

func tallyText(t Tally) string { return "attackers: " + attack.Tally(t).String() }

// metricsText lists an attack's gauges at their peak and its counters'
// counts, by name.
func metricsText(a AttackRun) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(a.Gauges)) {
		parts = append(parts, fmt.Sprintf("%s peak %s", strings.TrimPrefix(k, "pushgate_"), reportCompact(a.Gauges[k])))
	}
	for _, k := range slices.Sorted(maps.Keys(a.Counters)) {
		parts = append(parts, fmt.Sprintf("%s +%s", strings.TrimPrefix(k, "pushgate_"), reportCompact(a.Counters[k])))
	}
	return strings.Join(parts, ", ")
}

func healthErrors(h HealthFigures) string {
	var parts []string
	if h.Err != "" {
		parts = append(parts, "healthy client stopped: "+h.Err)
	}
	for _, code := range slices.Sorted(maps.Keys(h.Errors)) {
		parts = append(parts, fmt.Sprintf("healthy ops refused %s ×%d", code, h.Errors[code]))
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, ", ")
}

func findRun(runs []Run, target string) *Run {
	for i := range runs {
		if runs[i].Target == target {
			return &runs[i]
		}
	}
	return nil
}

func format(v float64, unit string) string {
	switch unit {
	case "B":
		switch {
		case v >= 10<<20 || v <= -10<<20:
			return fmt.Sprintf("%.1f MiB", v/(1<<20))
		case v >= 10<<10 || v <= -10<<10:
			return fmt.Sprintf("%.1f KiB", v/(1<<10))
		}
		return fmt.Sprintf("%.0f B", v)
	case "ms":
		return fmt.Sprintf("%.2f ms", v)
	case "µs":
		return fmt.Sprintf("%.2f µs", v)
	case "%":
		return fmt.Sprintf("%.2f%%", v)
	case "/s":
		return fmt.Sprintf("%.0f/s", v)
	case "×":
		return fmt.Sprintf("%.3f×", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// printCompare writes, per target in both, each figure now, then, and the
// ratio now/then.
func printCompare(w io.Writer, old, now *Results) {
	if old.Scenario != now.Scenario {
		fmt.Fprintf(w, "\ncompare: %s is a %s run, not %s\n", "old", old.Scenario, now.Scenario)
		return
	}
	fmt.Fprintf(w, "\ncompared with %s (%s):\n", old.Date.Format("2006-01-02 15:04"), old.Command)
	if a, b := old.Params, now.Params; a.Conns != b.Conns || a.Channels != b.Channels || a.Size != b.Size {
		fmt.Fprintf(w, "note: the runs differ: conns %d → %d, channels %d → %d, size %d → %d\n",
			a.Conns, b.Conns, a.Channels, b.Channels, a.Size, b.Size)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tfigure\tthen\tnow\tnow/then\t")
	for _, m := range now.Medians {
		o := findRun(old.Medians, m.Target)
		if o == nil {
			continue
		}
		for _, f := range figures[now.Scenario] {
			a, b := f.get(o), f.get(&m)
			then, nowText := format(a, f.unit), format(b, f.unit)
			if f.unmeasured(o) != "" {
				then = "—"
			}
			if f.unmeasured(&m) != "" {
				nowText = "—"
			}
			ratio := "-"
			if a != 0 && then != "—" && nowText != "—" {
				verdict := ""
				switch {
				case b/a > 1.05 && f.better > 0, b/a < 0.95 && f.better < 0:
					verdict = " better"
				case b/a > 1.05 && f.better < 0, b/a < 0.95 && f.better > 0:
					verdict = " worse"
				}
				ratio = fmt.Sprintf("%.2f×%s", b/a, verdict)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", m.Target, f.name, then, nowText, ratio)
		}
	}
	tw.Flush()
}
