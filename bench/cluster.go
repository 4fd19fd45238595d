package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pushgate/pushgate/internal/attack"
	"github.com/pushgate/pushgate/internal/procstat"
)

// The cluster scenario: a nats-server with JetStream, --nodes gateways in
// cluster mode sharing it, and -n clients spread over the nodes round
// robin (as a load balancer would), all subscribed to one channel. In
// order: a connect storm; the connections held idle, memory per node and
// the machine's kernel memory read; broadcasts through the first node's
// API, each to every client; a rolling restart, one node stopped with
// SIGTERM while publishes go on, its clients reconnecting to the others
// and recovering with since, each client checking it got every offset
// exactly once; then the node started again.

// clusterOptions are the cluster scenario's own flags.
type clusterOptions struct {
	nodes         int
	natsServer    string
	restartRate   float64
	restartNode   bool
	hotPublishers int
	hotFor        time.Duration
}

// hotChannel is the hot phase's channel: nobody subscribes to it, so the
// phase measures the publish path (the API, the broker, every node
// reading each publication), not fan-out.
const hotChannel = "hot0"

// clusterChannel is the channel every client subscribes to.
const clusterChannel = "bench0"

func clusterFlags(fs *flag.FlagSet, o *options) {
	c := &o.cluster
	o.channels = 1
	o.conns, o.perWork = 3000, 15000
	fs.IntVar(&c.nodes, "nodes", 3, "gateway processes; connection i goes to node i mod nodes (round robin, as a load balancer would)")
	fs.StringVar(&c.natsServer, "nats-server", "", "nats-server binary, with JetStream (default: nats-server on PATH, or Debian's /usr/sbin/nats-server)")
	fs.DurationVar(&o.hold, "hold", 5*time.Second, "time the connections are held idle before memory is read")
	fs.IntVar(&o.messages, "messages", 10, "broadcasts measured, each published once the one before reached every client")
	fs.IntVar(&o.warmup, "warmup", 2, "broadcasts before the measured ones, not counted")
	fs.Float64Var(&c.restartRate, "restart-rate", 0, "publishes per second while a node is stopped and its clients move (0: half what the broadcasts showed the machine carries, 0.5 / time-to-all, at most 10)")
	fs.IntVar(&c.hotPublishers, "hot-publishers", 64, "hot channel phase: publishers to one channel, each waiting for its publish, spread over the nodes' APIs")
	fs.DurationVar(&c.hotFor, "hot-for", 5*time.Second, "hot channel phase: how long the publishers publish (0: no hot phase)")
	fs.BoolVar(&c.restartNode, "restart-node", true, "start the stopped node again at the end and report how long it took to be ready (its clients stay where they moved: nothing rebalances)")
	fs.Lookup("n").Usage = "connections, all subscribed to one channel, spread over the nodes"
	fs.Lookup("conns-per-worker").DefValue = "15000"
}

func (o *options) checkCluster() error {
	if len(o.targets) != 1 || o.targets[0] != "pushgate" {
		return errors.New("the cluster scenario starts its own pushgate nodes: --targets can only be pushgate")
	}
	c := &o.cluster
	switch {
	case c.nodes < 2:
		return errors.New("--nodes must be at least 2: one is stopped in the rolling restart")
	case o.messages < 1 || o.warmup < 0:
		return errors.New("--messages must be at least 1, --warmup at least 0")
	case c.restartRate < 0:
		return errors.New("--restart-rate must not be negative")
	case c.hotFor < 0 || c.hotPublishers < 1:
		return errors.New("--hot-for must not be negative, --hot-publishers at least 1")
	}
	// Once one node is stopped, the others hold every connection.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		most := int(lim.Cur) - 1000 // the gateway's own files, NATS, listeners
		if per := (o.conns + c.nodes - 2) / (c.nodes - 1); per > most {
			return fmt.Errorf("-n %d over %d nodes: once one is stopped the others hold %d connections each, over the %d a process may hold here (%d open files, less 1000): add nodes",
				o.conns, c.nodes, per, most, lim.Cur)
		}
	}
	if c.natsServer == "" {
		c.natsServer = findProgram("nats-server")
		if c.natsServer == "" {
			return errors.New("nats-server not found: install Debian's (apt-get install nats-server) or pass --nats-server")
		}
	} else if _, err := os.Stat(c.natsServer); err != nil {
		return fmt.Errorf("--nats-server: %w", err)
	}
	return nil
}

// findProgram finds name on PATH or in Debian's sbin; "" if nowhere.
func findProgram(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

// cluster is the processes of one run: NATS and the gateways.
type cluster struct {
	o     *options
	nats  *target
	bin   string
	addrs [][2]string // each node's public and admin addresses
	args  [][]string  // each node's arguments, to start it again

	mu    sync.Mutex // nodes[i] is replaced when node i starts again
	nodes []*target
}

func (c *cluster) node(i int) *target {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// startCluster starts nats-server with JetStream, its store in a fresh
// directory, and the gateways in cluster mode, and waits until each
// answers /readyz, counting them on bar.
func startCluster(ctx context.Context, o *options, bar progress) (*cluster, error) {
	c := &cluster{o: o}
	store, err := os.MkdirTemp(o.target.tmp, "nats-")
	if err != nil {
		return nil, err
	}
	client, mon, err := freeAddrs(o.target.addr, 1)
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(client[0])
	_, monPort, _ := net.SplitHostPort(mon[0])
	c.nats = &target{name: "nats-server"}
	if err := c.nats.start(ctx, &o.target, "http://"+mon[0]+"/healthz", o.cluster.natsServer,
		"-a", host, "-p", port, "-m", monPort, "-js", "-sd", store); err != nil {
		return nil, err
	}
	bar.add(1)
	if c.bin, err = gatewayBinary(ctx, &o.target); err != nil {
		c.stop()
		return nil, err
	}
	pub, admin, err := freeAddrs(o.target.addr, o.cluster.nodes)
	if err != nil {
		c.stop()
		return nil, err
	}
	for i := range o.cluster.nodes {
		args := []string{"--addr", pub[i], "--admin-addr", admin[i], "--broker", "nats://" + client[0], "--log-level", "warn"}
		args = append(args, o.target.scenarioFlags...)
		args = append(args, strings.Fields(o.target.gatewayFlags)...)
		c.args, c.addrs = append(c.args, args), append(c.addrs, [2]string{pub[i], admin[i]})
		t := c.newNode(i)
		c.nodes = append(c.nodes, t)
		if err := t.start(ctx, &o.target, "http://"+admin[i]+"/readyz", c.bin, args...); err != nil {
			c.stop()
			return nil, err
		}
		bar.add(1)
	}
	return c, nil
}

// newNode describes node i, not started.
func (c *cluster) newNode(i int) *target {
	pub, admin := c.addrs[i][0], c.addrs[i][1]
	return &target{
		name:        fmt.Sprintf("node%d", i+1),
		wsURL:       "ws://" + pub + "/ws?channels={channel}",
		publishURL:  "http://" + admin + "/api/publish",
		publishBody: `{"channel":"{channel}","data":"{payload}"}`,
		readyMarker: `"subscribed"`,
		metricsURL:  "http://" + admin + "/metrics",
		host:        c.o.target.addr,
	}
}

// restart starts node i again, on the same addresses.
func (c *cluster) restart(ctx context.Context, i int) error {
	t := c.newNode(i)
	if err := t.start(ctx, &c.o.target, "http://"+c.addrs[i][1]+"/readyz", c.bin, c.args[i]...); err != nil {
		return err
	}
	c.mu.Lock()
	c.nodes[i] = t
	c.mu.Unlock()
	return nil
}

// stop stops the gateways, together, then NATS.
func (c *cluster) stop() {
	var wg sync.WaitGroup
	c.mu.Lock()
	for _, t := range c.nodes {
		wg.Go(t.stop)
	}
	c.mu.Unlock()
	wg.Wait()
	if c.nats != nil {
		c.nats.stop()
	}
}

// wsBase is node t's WebSocket URL without a query: where a client
// reconnects to and subscribes with an op.
func wsBase(t *target) string { return strings.TrimSuffix(t.wsURL, "?channels={channel}") }

// nodeReading is what a node's process and metrics say, -1 where unknown.
type nodeReading struct{ rss, conns, goroutines int64 }

// read reads node t, within 2 seconds.
func readNode(ctx context.Context, t *target) nodeReading {
	n := nodeReading{-1, -1, -1}
	if rss, err := procstat.RSS(t.pid); err == nil {
		n.rss = rss
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if m, err := attack.Scrape(ctx, t.metricsURL); err == nil {
		n.conns, n.goroutines = int64(m["pushgate_connections"]), int64(m["go_goroutines"])
	}
	return n
}

func (c *cluster) readAll(ctx context.Context) []nodeReading {
	out := make([]nodeReading, len(c.nodes))
	for i := range out {
		out[i] = readNode(ctx, c.node(i))
	}
	return out
}

// timeline samples every node's connections and RSS every 500 ms, and
// keeps the run's phases, from its start.
type timeline struct {
	start   time.Time
	mu      sync.Mutex
	samples []TimelineSample
	phases  []Phase
	stop    func()
}

func (c *cluster) record(ctx context.Context) *timeline {
	tl := &timeline{start: time.Now()}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	tl.stop = func() { cancel(); wg.Wait() }
	wg.Go(func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			s := TimelineSample{T: time.Since(tl.start).Seconds()}
			for _, n := range c.readAll(ctx) {
				s.Conns, s.RSS = append(s.Conns, n.conns), append(s.RSS, n.rss)
			}
			tl.mu.Lock()
			tl.samples = append(tl.samples, s)
			tl.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	return tl
}

// phase marks the start of a phase, ending the one before.
func (tl *timeline) phase(name string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	now := time.Since(tl.start).Seconds()
	if n := len(tl.phases); n > 0 && tl.phases[n-1].End == 0 {
		tl.phases[n-1].End = now
	}
	if name != "" {
		tl.phases = append(tl.phases, Phase{Name: name, Start: now})
	}
}

// clusterRun is one run of the scenario under way.
type clusterRun struct {
	e   *env
	c   *cluster
	r   *Run
	tl  *timeline
	pub *publisher
	n   int64 // clients connected
}

func clusterScenario(ctx context.Context, e *env) (Run, error) {
	r := Run{Cluster: &ClusterRun{}}
	bar := e.ui.bar(fmt.Sprintf("starting nats-server and %d gateways", e.o.cluster.nodes), int64(e.o.cluster.nodes+1))
	c, err := startCluster(ctx, e.o, bar)
	bar.finish()
	if err != nil {
		return r, err
	}
	defer c.stop()
	// Before the nodes stop, the clients close: a node stopped under them
	// would have them reconnect.
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = e.fleet.each(cctx, command{Cmd: "close"})
	}()
	cr := &clusterRun{e: e, c: c, r: &r, tl: c.record(ctx), pub: newPublisher(c.node(0), 16)}
	defer cr.pub.close()
	// r.Cluster is a pointer: what this sets reaches the run returned.
	defer func() {
		cr.tl.phase("")
		cr.tl.stop()
		r.Cluster.Timeline, r.Cluster.Phases = cr.tl.samples, cr.tl.phases
	}()
	for _, step := range []func(context.Context) error{cr.connectAndHold, cr.broadcast, cr.hot, cr.rollingRestart} {
		if err := step(ctx); err != nil {
			return r, err
		}
	}
	return r, nil
}

// connectAndHold primes the channel, opens every connection at
// --connect-rate, holds them and reads the memory they cost.
func (cr *clusterRun) connectAndHold(ctx context.Context) error {
	e, c, r := cr.e, cr.c, cr.r
	// A first publish gives the channel its epoch before anyone
	// subscribes.
	if _, err := cr.pub.publishOffset(ctx, clusterChannel, 0, e.o.size); err != nil {
		return fmt.Errorf("the first publish: %w", err)
	}
	var before, held machineReadings
	before.sample(ctx, 5, 200*time.Millisecond)
	base := c.readAll(ctx)
	clients0 := cr.clientRSS()

	cr.tl.phase("connect")
	// Connection g goes to node g mod K, and subscribes in its URL.
	cmd := command{ReadyMarker: `"subscribed"`, Track: true, Channel: clusterChannel}
	for i := range c.nodes {
		cmd.URLs = append(cmd.URLs, strings.ReplaceAll(c.node(i).wsURL, "{channel}", clusterChannel))
	}
	bar := e.ui.bar("connecting", int64(e.o.conns))
	res := e.connectWith(ctx, cmd, 0, e.o.conns, bar)
	bar.finish()
	r.Conns, r.ConnectFailed = res.ok, res.failed
	r.ConnectRate = float64(res.ok) / res.took.Seconds()
	cr.n = int64(res.ok)
	if err := res.err(); err != nil {
		return fmt.Errorf("connect storm: %w", err)
	}

	cr.tl.phase("idle")
	e.hold(ctx, "holding", e.o.hold, &held)
	loaded := c.readAll(ctx)
	var sum0, sum1, conns int64
	for i := range c.nodes {
		b, l := base[i], loaded[i]
		nr := NodeRun{Node: c.node(i).name, Conns: l.conns, RSSBase: b.rss, RSSLoaded: l.rss, GoroutinesBase: b.goroutines, Goroutines: l.goroutines}
		nr.RSSPerConn, nr.RSSNote = rssPerConn(b.rss, l.rss, int(l.conns))
		r.Cluster.Nodes = append(r.Cluster.Nodes, nr)
		sum0, sum1, conns = sum0+b.rss, sum1+l.rss, conns+l.conns
		r.GoroutinesBase += b.goroutines
		r.GoroutinesLoaded += l.goroutines
	}
	if conns != cr.n {
		return fmt.Errorf("the nodes hold %d connections, the clients %d", conns, cr.n)
	}
	r.RSSBase, r.RSSLoaded = sum0, sum1
	var why string
	r.RSSPerConn, why = rssPerConnOf(sum0, sum1, r.Conns, len(c.nodes))
	r.note(keyRSSPerConn, why)
	r.KernelPerConn, why = machinePerConn("slab", before.slab, held.slab, r.Conns)
	r.note(keyKernelPerConn, why)
	r.UsedPerConn, why = machinePerConn("memory in use", before.used, held.used, r.Conns)
	r.note(keyUsedPerConn, why)
	if clients0 > 0 {
		// Shown only where it means something, like the gateways'.
		r.Cluster.ClientRSSPerConn, _ = rssPerConnOf(clients0, cr.clientRSS(), r.Conns, len(e.fleet.procs))
	}
	return nil
}

// clientRSS is the workers' RSS, summed.
func (cr *clusterRun) clientRSS() int64 {
	var sum int64
	for _, p := range cr.e.fleet.procs {
		if rss, err := procstat.RSS(p.cmd.Process.Pid); err == nil {
			sum += rss
		}
	}
	return sum
}

// broadcast publishes through the first node, each publish once the one
// before reached every client, and measures when the last one had it.
func (cr *clusterRun) broadcast(ctx context.Context) error {
	e, r := cr.e, cr.r
	cr.tl.phase("broadcast")
	w, m := e.o.warmup, e.o.messages
	if _, err := e.fleet.each(ctx, command{Cmd: "track", Seqs: w + m}); err != nil {
		return err
	}
	bar := e.ui.bar("broadcasting", int64(w+m))
	defer bar.finish()
	// each publishes seqs [from, from+k), one after another, and waits
	// for every delivery of each.
	each := func(from, k int) error {
		for j := range k {
			if _, err := cr.pub.publishOffset(ctx, clusterChannel, from+j, e.o.size); err != nil {
				return fmt.Errorf("broadcast %d: %w", from+j, err)
			}
			want := int64(j+1) * cr.n
			got, err := e.await(ctx, want, 10*time.Second, nopBar{})
			if err != nil || got < want {
				return fmt.Errorf("broadcast %d: delivered to %d of %d clients (%v)", from+j, got-int64(j)*cr.n, cr.n, err)
			}
			bar.add(1)
		}
		return nil
	}
	if err := each(0, w); err != nil {
		return err
	}
	if _, err := e.collect(ctx); err != nil { // the warm-up's deliveries
		return err
	}
	if err := each(w, m); err != nil {
		return err
	}
	col, err := e.collect(ctx)
	if err != nil {
		return err
	}
	r.Expected, r.Delivered, r.Duplicates = int64(m)*cr.n, col.received, col.dups
	r.Latency = latency(col.hist)
	var tta []float64
	r.Publishes, tta = col.publishes(w)
	r.TimeToAll = Millis(median(tta))
	if len(tta) > 0 {
		r.Cluster.TimeToAllMax = Millis(slices.Max(tta))
	}
	if r.Delivered != r.Expected || r.Duplicates > 0 {
		return fmt.Errorf("broadcast: delivered %d of %d, %d duplicates", r.Delivered, r.Expected, r.Duplicates)
	}
	return nil
}

// hot publishes to one channel from --hot-publishers goroutines, each
// waiting for its publish, through every node's API in turn, for
// --hot-for: the rate of a hot channel in cluster mode. Every publish must
// succeed, and the offsets answered must be 1..N, each once: the nodes
// number one channel together.
func (cr *clusterRun) hot(ctx context.Context) error {
	o := cr.e.o.cluster
	if o.hotFor == 0 {
		return nil
	}
	cr.tl.phase("hot channel")
	nodes := len(cr.c.nodes)
	pubs := make([]*publisher, nodes)
	for i := range pubs {
		pubs[i] = newPublisher(cr.c.node(i), o.hotPublishers/nodes+1)
		defer pubs[i].close()
	}
	bar := cr.e.ui.bar(fmt.Sprintf("hot channel: %d publishers", o.hotPublishers), int64(o.hotFor/time.Second))
	defer bar.finish()
	var (
		mu       sync.Mutex
		offsets  []int64
		firstErr error
		failed   int
		wg       sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(o.hotFor)
	for w := range o.hotPublishers {
		p := pubs[w%nodes]
		wg.Go(func() {
			for seq := 0; time.Now().Before(end) && ctx.Err() == nil; seq++ {
				off, err := p.publishOffset(ctx, hotChannel, seq, cr.e.o.size)
				mu.Lock()
				if err != nil {
					failed++
					firstErr = cmp.Or(firstErr, err)
				} else {
					offsets = append(offsets, off)
				}
				mu.Unlock()
			}
		})
	}
	for time.Now().Before(end) && ctx.Err() == nil {
		if err := pause(ctx, time.Second); err != nil {
			break
		}
		bar.add(1)
	}
	wg.Wait()
	took := time.Since(start).Seconds()
	n := int64(len(offsets))
	cr.r.Cluster.Hot = &HotRun{Publishers: o.hotPublishers, Seconds: took, Publishes: n, Rate: float64(n) / took}
	if failed > 0 {
		return fmt.Errorf("hot channel: %d of %d publishes failed, the first: %v", failed, failed+len(offsets), firstErr)
	}
	slices.Sort(offsets)
	for i, off := range offsets {
		if off != int64(i)+1 {
			return fmt.Errorf("hot channel: the %d publishes were answered offsets that are not 1..%d each once (at %d: %d)", n, n, i+1, off)
		}
	}
	return ctx.Err()
}

// pause waits d, or returns ctx's error.
func pause(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// offsets asks every worker how its clients stand against final.
func (e *env) offsets(ctx context.Context, final int64) (*trackStats, error) {
	evs, err := e.fleet.each(ctx, command{Cmd: "offsets", Final: final})
	st := &trackStats{}
	for _, ev := range evs {
		st.merge(ev.Track)
	}
	return st, err
}

// steadyPublisher publishes at a steady rate until stopped, each publish
// in its own goroutine, and keeps the highest offset answered.
type steadyPublisher struct {
	mu       sync.Mutex
	made     int
	errs     int
	firstErr error
	final    int64
	stop     func()
}

func (cr *clusterRun) publishSteadily(ctx context.Context, rate float64, seq int) *steadyPublisher {
	sp := &steadyPublisher{}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	sp.stop = func() { cancel(); wg.Wait() }
	wg.Go(func() {
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tick.Stop()
		for {
			k := seq
			seq++
			// A publish under way when the phase ends is waited for,
			// not cancelled: it may be stored either way.
			wg.Go(func() {
				off, err := cr.pub.publishOffset(context.WithoutCancel(ctx), clusterChannel, k, cr.e.o.size)
				sp.mu.Lock()
				defer sp.mu.Unlock()
				if err != nil {
					sp.errs++
					if sp.firstErr == nil {
						sp.firstErr = err
					}
					return
				}
				sp.made++
				sp.final = max(sp.final, off)
			})
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	return sp
}

// rollingRestart stops the last node with SIGTERM while publishes go on
// through the first: its clients reconnect to the others and recover;
// then every client must have every offset exactly once.
func (cr *clusterRun) rollingRestart(ctx context.Context) error {
	e, c, r := cr.e, cr.c, cr.r
	cr.tl.phase("restart")
	k := len(c.nodes) - 1
	victim := c.node(k)
	rs := &RestartRun{Node: victim.name, Rate: e.o.cluster.restartRate, Clients: cr.n}
	if rs.Rate == 0 {
		// Publishing faster than the machine delivers to every client
		// has them fall ever further behind: past --pong-timeout the
		// gateways take them for dead, past --history-size they cannot
		// recover.
		rs.Rate = 1
		if tta := float64(r.TimeToAll) / 1000; tta > 0 {
			rs.Rate = min(10, 0.5/tta)
		}
	}
	r.Cluster.Restart = rs
	// Whatever happens, what the clients and the nodes say at the end is
	// reported.
	var st *trackStats
	defer func() {
		if st != nil {
			rs.Complete, rs.Lossy, rs.MissingOffsets, rs.Duplicated = st.Complete, st.Missing, st.MissingSum, st.Dups
			rs.Resets, rs.Failed, rs.Closed, rs.Reconnected = st.Resets, st.Failed, st.Closed, st.Reconnected
			rs.Closes, rs.Problems = st.Closes, st.Problems
			rs.Recovered, rs.RecoveredSum = st.Replayed, st.ReplayedSum
		}
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for i, n := range c.readAll(rctx) {
			r.Cluster.Nodes[i].ConnsAfter = n.conns
		}
	}()
	var live []string
	for i := range k {
		live = append(live, wsBase(c.node(i)))
	}
	// The load balancer takes the node out: clients it closes go to the
	// others.
	if _, err := e.fleet.each(ctx, command{Cmd: "nodes", URLs: live}); err != nil {
		return err
	}
	rs.Held = readNode(ctx, victim).conns
	lead := max(time.Second, time.Duration(float64(time.Second)/rs.Rate))
	sp := cr.publishSteadily(ctx, rs.Rate, e.o.warmup+e.o.messages)
	stopped := false
	defer func() {
		if !stopped {
			sp.stop()
		}
	}()
	e.ui.wait(ctx, "publishing before the stop", lead)

	sigterm := time.Now()
	if err := victim.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	exitedAt := make(chan time.Time, 1)
	go func() {
		<-victim.exited
		exitedAt <- time.Now()
	}()
	bar := e.ui.bar("reconnecting "+victim.name+"'s clients", max(rs.Held, 1))
	var exited time.Time
	lastMove, moved := time.Now(), int64(-1)
	for {
		var err error
		if st, err = e.offsets(ctx, 0); err != nil {
			bar.finish()
			return err
		}
		bar.set(st.Reconnected + st.Failed)
		if exited.IsZero() {
			select {
			case exited = <-exitedAt:
			default:
			}
		}
		settled := st.Reconnecting == 0 && st.Closed == st.Reconnected+st.Failed
		if !exited.IsZero() && settled && st.Closed >= rs.Held {
			break
		}
		m := st.Closed + st.Reconnected + st.Failed
		if m != moved {
			lastMove, moved = time.Now(), m
		}
		// A client tries for a minute (resumeFor) before it gives up.
		if stuck, long := time.Since(lastMove) > 30*time.Second, time.Since(sigterm) > 3*time.Minute+resumeFor; stuck || long {
			bar.finish()
			return fmt.Errorf("rolling restart: not settled %.0f s after the SIGTERM: %s exited %v; %d clients closed (%s held %d), %d reconnected, %d failed, %d reconnecting",
				time.Since(sigterm).Seconds(), victim.name, !exited.IsZero(), st.Closed, victim.name, rs.Held, st.Reconnected, st.Failed, st.Reconnecting)
		}
		if err := pause(ctx, 100*time.Millisecond); err != nil {
			bar.finish()
			return err
		}
	}
	bar.finish()
	rs.DrainTime = Ms(exited.Sub(sigterm))
	if st.FirstClose > 0 && st.LastResub >= st.FirstClose {
		rs.ReconnectTime = Ms(time.Duration(st.LastResub - st.FirstClose))
	}
	e.ui.wait(ctx, "publishing after the move", lead)
	sp.stop()
	stopped = true
	rs.Publishes, rs.PublishErrors, rs.FinalOffset = sp.made, sp.errs, sp.final
	if sp.errs > 0 {
		return fmt.Errorf("rolling restart: %d of %d publishes failed, the first: %v", sp.errs, sp.errs+sp.made, sp.firstErr)
	}

	// Every client must come to the last offset, each offset once.
	bar = e.ui.bar("every offset at every client", cr.n)
	lastMove, moved = time.Now(), -1
	for {
		var err error
		if st, err = e.offsets(ctx, rs.FinalOffset); err != nil {
			bar.finish()
			return err
		}
		bar.set(st.Complete)
		if st.Behind == 0 && st.Reconnecting == 0 {
			break
		}
		if st.Messages != moved {
			lastMove, moved = time.Now(), st.Messages
		} else if time.Since(lastMove) > 15*time.Second {
			break // what is missing will not come
		}
		if err := pause(ctx, 100*time.Millisecond); err != nil {
			bar.finish()
			return err
		}
	}
	bar.finish()
	if col, err := e.collect(ctx); err == nil {
		rs.Latency = latency(col.hist)
	}
	var fails []string
	if st.Complete != rs.Clients {
		fails = append(fails, fmt.Sprintf("%d of %d clients have every offset up to %d exactly once (%d missed %d offsets in all, %d were sent duplicates, %d were not recovered, %d could not reconnect, %d are behind)",
			st.Complete, rs.Clients, rs.FinalOffset, st.Missing, st.MissingSum, st.Dups, st.Resets, st.Failed, st.Behind))
	}
	if len(st.Problems) > 0 {
		fails = append(fails, "first problems: "+strings.Join(st.Problems, "; "))
	}
	rs.Passed = len(fails) == 0

	if e.o.cluster.restartNode {
		cr.tl.phase("node restart")
		bar := e.ui.bar("starting "+victim.name+" again", 1)
		start := time.Now()
		if err := c.restart(ctx, k); err != nil {
			fails = append(fails, fmt.Sprintf("%s did not start again: %v", victim.name, err))
		} else {
			rs.RestartedReady = Ms(time.Since(start))
			bar.add(1)
		}
		bar.finish()
	}
	if len(fails) > 0 {
		return errors.New("rolling restart: " + strings.Join(fails, "; "))
	}
	return nil
}
