// Command bench is pushgate's load harness. It holds thousands of
// WebSocket connections from worker processes it starts itself, drives
// publishes through a server's HTTP publish endpoint, and reports what a
// user deciding on a push gateway needs: memory per idle connection,
// fan-out latency, delivered throughput, leaks under churn, and what
// hostile clients cost the gateway and its other clients.
//
//	go run ./bench idle       -n 15000 --targets pushgate,hub
//	go run ./bench fanout     -n 15000 --targets pushgate,hub,floor --runs 3
//	go run ./bench throughput -n 15000 --channels 100 --targets pushgate,hub
//	go run ./bench churn      -n 2000 --duration 60s
//	go run ./bench hostile    --gateway-flags '--max-partial-bytes 33554432'
//	go run ./bench cluster    -n 100000 --nodes 7
//
// It starts the targets itself (pushgate built from this module, and the
// reference servers hub and floor from bench/hub and bench/floor), or
// measures any server through --targets url with --ws-url and
// --publish-url. See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "worker":
			workerMain()
			return
		case "serve":
			os.Exit(serveMain(os.Args[2:]))
		case "report":
			os.Exit(reportMain(os.Args[2:]))
		}
	}
	os.Exit(run(os.Args[1:]))
}

const usage = `usage: go run ./bench <scenario> [flags]

scenarios:
  idle        open N subscribed connections, hold them: memory per connection
  fanout      N subscribers of one channel, M publishes: time-to-all, latency
  throughput  N subscribers over many channels, rising publish rates: delivered/s
  churn       connections opening and closing for a while: leak check
  hostile     the attacks of issue 11 beside a healthy client: protections at scale
  cluster     N connections over a cluster of K gateways and NATS: memory per node,
              broadcast to all, and a rolling restart with zero loss per client

  go run ./bench serve hub|floor --addr 127.0.0.1:9000   runs a reference server
  go run ./bench report results.json out.html            summary and report of a --json file

Run 'go run ./bench <scenario> -h' for a scenario's flags.
`

// options holds every flag; each scenario reads the ones it declares.
type options struct {
	scenario string
	targets  []string
	runs     int
	conns    int
	channels int
	perWork  int
	connRate float64
	source   string
	timeout  time.Duration
	quiet    bool
	jsonOut  string
	report   string
	compare  string
	target   targetOptions

	// fanout
	messages int
	rate     float64
	size     int
	warmup   int
	// idle
	broadcasts int
	hold       time.Duration
	samples    int
	// throughput
	duration   time.Duration
	step       float64
	maxSteps   int
	p99        time.Duration
	publishers int
	// transports: the targets --transport puts in place of pushgate
	transports []string
	// churn
	settle time.Duration
	warm   time.Duration
	// hostile
	hostile hostileOptions
	// cluster
	cluster clusterOptions
}

// expandTransports puts the targets --transport names in place of
// target pushgate.
func (o *options) expandTransports() {
	if o.transports == nil {
		return
	}
	var ts []string
	for _, t := range o.targets {
		if t == "pushgate" {
			ts = append(ts, o.transports...)
		} else {
			ts = append(ts, t)
		}
	}
	o.targets = ts
}

func newFlags(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet(o.scenario, flag.ContinueOnError)
	fs.Func("targets", "comma-separated servers to measure, one after another: pushgate, hub, floor, url (default pushgate)", func(s string) error {
		o.targets = nil
		for t := range strings.SplitSeq(s, ",") {
			t = strings.TrimSpace(t)
			if !slices.Contains(knownTargets, t) {
				return fmt.Errorf("unknown target %q (known: %s)", t, strings.Join(knownTargets, ", "))
			}
			o.targets = append(o.targets, t)
		}
		return nil
	})
	fs.Func("transport", "the transports target pushgate's clients use, comma-separated: websocket, sse (Server-Sent Events); with both, pushgate is measured on each, one after the other, as targets pushgate and pushgate-sse (default websocket)", func(s string) error {
		var ts []string
		for t := range strings.SplitSeq(s, ",") {
			switch t = strings.TrimSpace(t); t {
			case "websocket":
				ts = append(ts, "pushgate")
			case "sse":
				ts = append(ts, "pushgate-sse")
			default:
				return fmt.Errorf("unknown transport %q (known: websocket, sse)", t)
			}
		}
		o.transports = ts
		return nil
	})
	fs.IntVar(&o.runs, "runs", 1, "runs per target; figures are the median over them")
	fs.IntVar(&o.conns, "n", 1000, "connections (subscribers)")
	fs.IntVar(&o.perWork, "conns-per-worker", 8000, "connections one worker process holds (a process may hold ~19.9k sockets)")
	fs.Float64Var(&o.connRate, "connect-rate", 3000, "connections opened per second, all workers together")
	fs.StringVar(&o.source, "source", "127.0.0.2", "first loopback source address; workers use it and the ones after it")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "the whole invocation stops after this")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress bars")
	fs.StringVar(&o.jsonOut, "json", "", "write the results as JSON to this file")
	fs.StringVar(&o.report, "report", "", "write an HTML report with plots to this file")
	fs.StringVar(&o.compare, "compare", "", "print ratios against the results in this JSON file")
	fs.StringVar(&o.target.gateway, "gateway", "", "gateway binary for target pushgate (default: built from ./cmd/gateway)")
	fs.StringVar(&o.target.gatewayFlags, "gateway-flags", "", "extra flags for the gateway, e.g. '--shards 16'")
	fs.StringVar(&o.target.addr, "addr", "127.0.0.1", "loopback address the started servers listen on")
	fs.StringVar(&o.target.wsURL, "ws-url", "", "target url: WebSocket URL; {channel} is replaced by the channel name")
	fs.StringVar(&o.target.publishURL, "publish-url", "", "target url: URL publishes are POSTed to; may hold {channel}")
	fs.StringVar(&o.target.publishBody, "publish-body", "{payload}", "target url: body template of a publish, with {channel} and {payload}")
	fs.StringVar(&o.target.subscribe, "subscribe-message", "", "target url: text message each connection sends after the upgrade, with {channel}")
	fs.StringVar(&o.target.readyMarker, "ready-marker", "", "target url: text whose arrival means a connection is subscribed (default: ready at the upgrade)")
	fs.StringVar(&o.target.metricsURL, "metrics-url", "", "target url: Prometheus endpoint for process_resident_memory_bytes and go_goroutines")
	fs.IntVar(&o.target.pid, "pid", 0, "target url: the server's pid, for RSS and CPU from /proc")
	fs.StringVar(&o.target.gcURL, "gc-url", "", "target url: URL whose GET makes the server collect garbage (a Go server's /debug/pprof/heap?gc=1), read before churn's readings")
	fs.IntVar(&o.size, "size", 100, "bytes of each publication's data")

	switch o.scenario {
	case "idle":
		fs.IntVar(&o.channels, "channels", 1, "channels; connection i subscribes to channel i mod channels")
		fs.IntVar(&o.broadcasts, "broadcasts", 3, "publishes to every channel before memory is read, so buffers have been used and returned")
		fs.DurationVar(&o.hold, "hold", 5*time.Second, "time connections are held before memory is read")
		fs.IntVar(&o.samples, "samples", 10, "memory readings while connecting, for the memory-vs-connections plot")
	case "fanout":
		o.channels = 1
		fs.IntVar(&o.messages, "messages", 20, "publishes measured")
		fs.Float64Var(&o.rate, "rate", 2, "publishes per second; keep it below 1/time-to-all so publishes do not overlap")
		fs.IntVar(&o.warmup, "warmup", 3, "publishes before the measured ones, not counted")
	case "throughput":
		fs.IntVar(&o.channels, "channels", 100, "channels; connection i subscribes to channel i mod channels")
		fs.Float64Var(&o.rate, "rate", 200, "publishes per second of the first step")
		fs.Float64Var(&o.step, "step", 1.25, "each step offers this times the rate of the one before")
		fs.IntVar(&o.maxSteps, "max-steps", 15, "steps at most")
		fs.DurationVar(&o.duration, "duration", 5*time.Second, "length of each step")
		fs.DurationVar(&o.p99, "p99", time.Second, "a step passes with every message delivered and p99 latency within this")
		fs.IntVar(&o.publishers, "publishers", 1024, "publish requests in flight at most (each an HTTP connection to the target)")
	case "churn":
		o.conns = 2000
		fs.IntVar(&o.channels, "channels", 10, "channels; connection i subscribes to channel i mod channels")
		fs.DurationVar(&o.duration, "duration", 30*time.Second, "length of the measured churn")
		fs.DurationVar(&o.warm, "warmup", 30*time.Second, "churn before the reference reading, so pools and heap reach their working size")
		fs.DurationVar(&o.settle, "settle", 10*time.Second, "time after each churn phase before reading (connections close, GC runs)")
		fs.Float64Var(&o.rate, "rate", 100, "publishes per second during churn, spread over the channels; enough that channel history is full after the warm-up")
	}
	if o.scenario == "hostile" {
		o.channels = 1
		hostileFlags(fs, o)
		f := fs.Lookup("size")
		f.Usage = "bytes of the attacks' messages: partial fragments, bombs once inflated, history's large publishes, the stalled readers' publishes (keep it under the gateway's --max-message-bytes)"
		f.DefValue, o.size = "60000", 60000
		fs.Lookup("n").Usage = "unused: each attack has its -conns flag"
	}
	if o.scenario == "cluster" {
		clusterFlags(fs, o)
	}
	if o.scenario == "churn" {
		fs.Lookup("n").Usage = "connections held open at once during churn"
		fs.Lookup("connect-rate").DefValue = "500"
		o.connRate = 500
	}
	fs.Lookup("n").DefValue = fmt.Sprint(o.conns)
	return fs
}

func run(args []string) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	o := &options{scenario: args[0], targets: []string{"pushgate"}}
	scenario, ok := scenarios[o.scenario]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown scenario %q\n\n%s", o.scenario, usage)
		return 2
	}
	fs := newFlags(o)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	o.expandTransports()
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, o.timeout)
	defer cancelT()

	tmp, err := os.MkdirTemp("", "pushgate-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	o.target.tmp = tmp

	res := &Results{
		Scenario: o.scenario,
		Date:     time.Now().UTC().Truncate(time.Second),
		Command:  "go run ./bench " + strings.Join(args, " "),
		Host:     hostInfo(),
		Params:   o.params(),
	}
	failed := false
	// Runs interleave targets (a b c a b c ...), so slow drift of the
	// machine spreads over all of them.
	for r := 1; r <= o.runs; r++ {
		for _, name := range o.targets {
			ui := newUI(o.quiet, fmt.Sprintf("%s run %d/%d", name, r, o.runs))
			run, err := runOne(ctx, o, scenario, name, ui)
			run.Target, run.Run = name, r
			if err != nil {
				run.Errors = append(run.Errors, err.Error())
				failed = true
				ui.printf("%s run %d: %v", name, r, err)
			}
			res.Runs = append(res.Runs, run)
			if ctx.Err() != nil {
				break
			}
		}
	}
	res.Medians = medians(res)
	printSummary(os.Stdout, res)
	if o.compare != "" {
		old, err := readJSON(o.compare)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		printCompare(os.Stdout, old, res)
	}
	if o.jsonOut != "" {
		if err := writeJSON(o.jsonOut, res); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	}
	if o.report != "" {
		if err := writeReport(o.report, res); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	}
	if failed || ctx.Err() != nil {
		return 1
	}
	return 0
}

// reportMain prints the summary of a --json file and writes its report.
func reportMain(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run ./bench report results.json out.html")
		return 2
	}
	res, err := readJSON(args[0])
	if err == nil {
		printSummary(os.Stdout, res)
		err = writeReport(args[1], res)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

func (o *options) check() error {
	switch {
	case o.conns < 1:
		return errors.New("-n must be at least 1")
	case o.runs < 1:
		return errors.New("--runs must be at least 1")
	case o.perWork < 1 || o.perWork > 19000:
		return errors.New("--conns-per-worker must be in 1..19000 (the per-process file limit)")
	case o.connRate <= 0:
		return errors.New("--connect-rate must be positive")
	case o.channels < 1:
		return errors.New("--channels must be at least 1")
	case o.size < 40:
		return errors.New("--size must be at least 40 (the marker, sequence number and send time)")
	case o.scenario == "fanout" && (o.messages < 1 || o.rate <= 0):
		return errors.New("--messages and --rate must be positive")
	case o.scenario == "throughput" && (o.rate <= 0 || o.step <= 1 || o.publishers < 1):
		return errors.New("--rate must be positive, --step above 1, --publishers at least 1")
	}
	if o.scenario == "hostile" {
		if err := o.checkHostile(); err != nil {
			return err
		}
	}
	if o.scenario == "cluster" {
		if err := o.checkCluster(); err != nil {
			return err
		}
	}
	if ip := net.ParseIP(o.source); ip == nil || !ip.IsLoopback() || ip.To4() == nil {
		return fmt.Errorf("--source %q: need an IPv4 loopback address", o.source)
	}
	if ip := net.ParseIP(o.target.addr); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--addr %q: need a loopback address", o.target.addr)
	}
	return nil
}

func (o *options) workers() int {
	if o.scenario == "hostile" {
		return 0 // the attacks run in processes of their own
	}
	return (o.conns + o.perWork - 1) / o.perWork
}

func (o *options) params() Params {
	return Params{
		Conns: o.conns, Channels: o.channels, Messages: o.messages, Size: o.size,
		Rate: o.rate, ConnectRate: o.connRate, Duration: o.duration, P99Target: o.p99,
		Workers: o.workers(), ConnsPerWorker: o.perWork, Nodes: o.cluster.nodes,
	}
}

func hostInfo() Host {
	h := Host{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	return h
}

// scenarioFunc measures one run of one target, started and connected by
// runOne's caller.
type scenarioFunc func(ctx context.Context, e *env) (Run, error)

var scenarios = map[string]scenarioFunc{
	"idle":       idleScenario,
	"fanout":     fanoutScenario,
	"throughput": throughputScenario,
	"churn":      churnScenario,
	"hostile":    hostileScenario,
	"cluster":    clusterScenario,
}

// env is what a scenario works with.
type env struct {
	o     *options
	t     *target
	fleet *fleet
	ui    *ui
}

// runOne starts the target and the workers, runs the scenario, and stops
// them all, whatever happens.
func runOne(ctx context.Context, o *options, scenario scenarioFunc, name string, ui *ui) (Run, error) {
	var t *target
	if o.scenario != "cluster" { // which starts its own
		var err error
		if t, err = startTarget(ctx, name, &o.target); err != nil {
			return Run{}, err
		}
		defer t.stop()
	}
	f, err := startFleet(o.workers(), net.ParseIP(o.source))
	if err != nil {
		return Run{}, err
	}
	defer f.stop()
	return scenario(ctx, &env{o: o, t: t, fleet: f, ui: ui})
}

func channelName(i int) string { return fmt.Sprintf("bench%d", i) }
