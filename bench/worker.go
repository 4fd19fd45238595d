package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/time/rate"

	"github.com/pushgate/pushgate/internal/attack"
)

// A worker is a child process of the harness holding up to a few thousand
// client connections, because one process may hold at most ~19.9k sockets
// here. The coordinator drives it with one JSON command per line on stdin;
// it answers with JSON events on stdout.

// command is one instruction from the coordinator.
type command struct {
	Cmd string `json:"cmd"` // connect, track, stats, collect, close, churn, nodes, offsets

	// connect, churn
	Sources     []string      `json:"sources,omitempty"` // source addresses, used in turn
	URLs        []string      `json:"urls,omitempty"`    // connection i dials URLs[i%len]
	Subscribe   [][]string    `json:"subscribe,omitempty"`
	First       int           `json:"first,omitempty"` // global index of the first connection
	Count       int           `json:"count,omitempty"`
	Rate        float64       `json:"rate,omitempty"` // connections per second
	ReadyMarker string        `json:"ready_marker,omitempty"`
	Timeout     time.Duration `json:"timeout,omitempty"`
	// churn: keep at most Hold connections, open new ones at Rate for
	// Duration, closing the oldest.
	Hold     int           `json:"hold,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`

	// track: per-sequence statistics for sequences [0, Seqs).
	Seqs int `json:"seqs,omitempty"`

	// connect: each connection follows the offsets of Channel (the one
	// its URL subscribes to) and, once a server ends it, reconnects to a
	// live node (see nodes) and subscribes again with since and epoch.
	Track   bool   `json:"track,omitempty"`
	Channel string `json:"channel,omitempty"`
	// nodes: URLs are the live nodes' WebSocket URLs, without a query.
	// offsets: Final is the channel's last offset.
	Final int64 `json:"final,omitempty"`
}

// event is one answer or progress report from a worker.
type event struct {
	Ev string `json:"ev"` // progress, done, stats, collected, error

	Connected int            `json:"connected,omitempty"`
	Failed    int            `json:"failed,omitempty"`
	Errors    map[string]int `json:"errors,omitempty"`
	Churned   int64          `json:"churned,omitempty"`

	Received int64 `json:"received,omitempty"`
	Dups     int64 `json:"dups,omitempty"`
	Lost     int64 `json:"lost,omitempty"` // connections the server closed or dropped

	Hist   *hdrhistogram.Snapshot `json:"hist,omitempty"`
	PerSeq []seqStat              `json:"per_seq,omitempty"`
	Track  *trackStats            `json:"track,omitempty"` // offsets

	Message string `json:"message,omitempty"`
}

// seqStat is what one worker saw of one publication.
type seqStat struct {
	Count int64 `json:"n"`
	Max   int64 `json:"max_ns"`
}

// Latencies are recorded in microseconds, from 1 µs to 10 minutes.
const (
	histMin = 1
	histMax = int64(10 * time.Minute / time.Microsecond)
	histSig = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histSig) }

// recorder is a worker's sink: counters and histograms shared by all its
// connections, sharded to keep thousands of goroutines off one lock.
type recorder struct {
	received counter
	dups     counter
	shards   [16]struct {
		sync.Mutex
		h *hdrhistogram.Histogram
		_ [40]byte
	}
	perSeq atomic.Pointer[[]seqCell] // per-sequence cells, when tracking
}

type seqCell struct {
	n   atomic.Int64
	max atomic.Int64
}

func newRecorder() *recorder {
	r := &recorder{}
	for i := range r.shards {
		r.shards[i].h = newHist()
	}
	return r
}

func (r *recorder) message(conn, seq int, latency time.Duration, last int) {
	r.received.Add(1)
	if seq <= last {
		r.dups.Add(1)
	}
	us := max(int64(latency/time.Microsecond), histMin)
	sh := &r.shards[conn%len(r.shards)]
	sh.Lock()
	_ = sh.h.RecordValue(min(us, histMax))
	sh.Unlock()
	if cells := r.perSeq.Load(); cells != nil && seq >= 0 && seq < len(*cells) {
		c := &(*cells)[seq]
		c.n.Add(1)
		for ns := int64(latency); ; {
			old := c.max.Load()
			if ns <= old || c.max.CompareAndSwap(old, ns) {
				break
			}
		}
	}
}

func (r *recorder) other(int, []byte) {}

// collect returns everything recorded since the last collect and starts
// afresh.
func (r *recorder) collect() event {
	h := newHist()
	for i := range r.shards {
		sh := &r.shards[i]
		sh.Lock()
		h.Merge(sh.h)
		sh.h.Reset()
		sh.Unlock()
	}
	var cells []seqCell
	if p := r.perSeq.Load(); p != nil {
		fresh := make([]seqCell, len(*p))
		cells = *r.perSeq.Swap(&fresh)
	}
	ev := event{Ev: "collected", Received: r.received.Swap(0), Dups: r.dups.Swap(0), Hist: h.Export()}
	for i := range cells {
		ev.PerSeq = append(ev.PerSeq, seqStat{Count: cells[i].n.Load(), Max: cells[i].max.Load()})
	}
	return ev
}

// worker is the state of one worker process.
type worker struct {
	out   *json.Encoder
	outMu sync.Mutex
	rec   *recorder

	mu      sync.Mutex
	clients []*client
	lost    atomic.Int64
	track   tracker // the connections that follow offsets
}

func (w *worker) send(ev event) {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	_ = w.out.Encode(ev)
}

// runWorker serves commands from in until it closes; the coordinator's
// exit closes it, so a worker never outlives its harness.
func runWorker(in io.Reader, out io.Writer) error {
	w := &worker{out: json.NewEncoder(out), rec: newRecorder()}
	dec := json.NewDecoder(bufio.NewReader(in))
	for {
		var cmd command
		if err := dec.Decode(&cmd); err != nil {
			w.closeAll()
			if err == io.EOF {
				return nil
			}
			return err
		}
		switch cmd.Cmd {
		case "connect":
			w.send(w.connect(cmd))
		case "churn":
			w.send(w.churn(cmd))
		case "track":
			cells := make([]seqCell, cmd.Seqs)
			w.rec.perSeq.Store(&cells)
			w.send(event{Ev: "done"})
		case "stats":
			w.send(event{Ev: "stats", Received: w.rec.received.Load(), Dups: w.rec.dups.Load(), Lost: w.lost.Load()})
		case "collect":
			ev := w.rec.collect()
			ev.Lost = w.lost.Load()
			w.send(ev)
		case "close":
			w.closeAll()
			w.send(event{Ev: "done"})
		case "nodes":
			w.track.mu.Lock()
			w.track.nodes = cmd.URLs
			w.track.mu.Unlock()
			w.send(event{Ev: "done"})
		case "offsets":
			w.send(event{Ev: "offsets", Track: w.track.stats(cmd.Final)})
		default:
			w.send(event{Ev: "error", Message: "unknown command " + cmd.Cmd})
		}
	}
}

func (c command) dialConfig(i int) (string, dialConfig) {
	g := c.First + i
	cfg := dialConfig{
		Source:      net.ParseIP(c.Sources[i%len(c.Sources)]),
		Timeout:     c.Timeout,
		ReadyMarker: c.ReadyMarker,
	}
	if len(c.Subscribe) > 0 {
		cfg.Subscribe = c.Subscribe[g%len(c.Subscribe)]
	}
	return c.URLs[g%len(c.URLs)], cfg
}

// connect opens cmd.Count connections at cmd.Rate, with up to 64 dials in
// flight, reporting progress every 200ms.
func (w *worker) connect(cmd command) event {
	lim := rate.NewLimiter(rate.Limit(cmd.Rate), 1)
	var (
		mu     sync.Mutex
		errs   = map[string]int{}
		failed int
		ok     atomic.Int64
		wg     sync.WaitGroup
		sem    = make(chan struct{}, 64)
	)
	stop := w.progress(func() event { return event{Ev: "progress", Connected: int(ok.Load())} })
	defer stop()
	if cmd.Track {
		w.track.channel = cmd.Channel
	}
	for i := range cmd.Count {
		_ = lim.Wait(context.Background())
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			url, cfg := cmd.dialConfig(i)
			var s *subscriber
			if cmd.Track {
				s = &subscriber{id: cmd.First + i, source: cfg.Source, node: url}
				cfg.Sub = s
			}
			c, err := dial(context.Background(), cmd.First+i, url, cfg, w.rec)
			if err != nil {
				mu.Lock()
				failed++
				errs[shortError(err)]++
				mu.Unlock()
				return
			}
			if s != nil {
				s.mu.Lock()
				s.c = c
				s.mu.Unlock()
				w.track.add(s)
				go w.follow(s)
			} else {
				w.add(c)
			}
			ok.Add(1)
		}()
	}
	wg.Wait()
	return event{Ev: "done", Connected: int(ok.Load()), Failed: failed, Errors: errs}
}

// churn keeps opening connections at cmd.Rate for cmd.Duration, closing
// the oldest whenever more than cmd.Hold are open, then closes the rest.
func (w *worker) churn(cmd command) event {
	lim := rate.NewLimiter(rate.Limit(cmd.Rate), 1)
	ctx, cancel := context.WithTimeout(context.Background(), cmd.Duration)
	defer cancel()
	var (
		live    []*client
		churned atomic.Int64
		failed  int
		errs    = map[string]int{}
	)
	stop := w.progress(func() event { return event{Ev: "progress", Churned: churned.Load()} })
	defer stop()
	for i := 0; lim.Wait(ctx) == nil; i++ {
		url, cfg := cmd.dialConfig(i)
		// A dial begun before the end finishes: ending the round must not
		// look like a failed connection.
		c, err := dial(context.Background(), cmd.First+i, url, cfg, w.rec)
		if err != nil {
			failed++
			errs[shortError(err)]++
			continue
		}
		live = append(live, c)
		if len(live) > cmd.Hold {
			live[0].close()
			live = live[1:]
			churned.Add(1)
		}
	}
	for _, c := range live {
		c.close()
		churned.Add(1)
	}
	return event{Ev: "done", Churned: churned.Load(), Failed: failed, Errors: errs}
}

// progress sends f's event every 200ms until the returned stop is called.
func (w *worker) progress(f func() event) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				w.send(f())
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (w *worker) add(c *client) {
	w.mu.Lock()
	w.clients = append(w.clients, c)
	w.mu.Unlock()
	// A connection the server ends is counted as lost.
	go func() {
		<-c.done
		if c.err != nil && c.err != net.ErrClosed && !isClosedErr(c.err) {
			w.lost.Add(1)
		}
	}()
}

func (w *worker) closeAll() {
	w.track.closing.Store(true)
	w.mu.Lock()
	cs := w.clients
	w.clients = nil
	w.mu.Unlock()
	w.track.mu.Lock()
	for _, s := range w.track.subs {
		s.mu.Lock()
		cs = append(cs, s.c)
		s.mu.Unlock()
	}
	w.track.subs = nil
	w.track.mu.Unlock()
	var wg sync.WaitGroup
	for chunk := range slices.Chunk(cs, 256) {
		wg.Go(func() {
			for _, c := range chunk {
				c.close()
			}
		})
	}
	wg.Wait()
}

func isClosedErr(err error) bool {
	return strings.Contains(err.Error(), "use of closed network connection")
}

// shortError makes error texts from many connections countable: the
// addresses and ports that differ between them are dropped.
func shortError(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.Contains(s[:i], "127.") {
		s = s[i+2:]
	}
	return s
}

// sortedErrors formats an error count map, most frequent first.
func sortedErrors(m map[string]int) []string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(m[b]-m[a], strings.Compare(a, b)) })
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fmt.Sprintf("%d× %s", m[k], k)
	}
	return out
}

func workerMain() {
	if attack.RunChild() { // an attack of the hostile scenario
		return
	}
	if err := runWorker(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}
