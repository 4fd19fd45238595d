package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/internal/procstat"
)

// TestMain lets the test binary act as the harness's worker and reference
// server processes, which the harness starts by re-running itself.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "worker":
			workerMain()
			os.Exit(0)
		case "serve":
			os.Exit(serveMain(os.Args[2:]))
		}
	}
	os.Exit(m.Run())
}

// delayServer is a WebSocket server whose delivery delay is known: a
// publish with ?delay=D is written to every connection D after it
// arrives. Right behind each delivery it sends a ping, and it notes when
// the pong comes back: the harness reads a delivery before that pong, so
// its latency lies between when the server wrote it and when the pong
// arrived, however slow the machine.
type delayServer struct {
	readers sync.WaitGroup

	mu      sync.Mutex
	conns   []net.Conn
	sent    map[int]int64        // publish seq -> the harness's send time (Unix ns, from the payload)
	written map[int]time.Time    // publish seq -> just before its frames were written
	pongs   map[[2]int]time.Time // (seq, connection) -> when the pong to the ping behind it arrived
	errs    []error
}

func newDelayServer() *delayServer {
	return &delayServer{sent: map[int]int64{}, written: map[int]time.Time{}, pongs: map[[2]int]time.Time{}}
}

func (s *delayServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/ws":
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		s.mu.Lock()
		id := len(s.conns)
		s.conns = append(s.conns, conn)
		s.readers.Add(1)
		s.mu.Unlock()
		go s.readPongs(id, conn)
	case "/publish":
		body, _ := io.ReadAll(r.Body)
		seq, sent, ok := parsePayload(body)
		if !ok {
			http.Error(w, "no bench payload", http.StatusBadRequest)
			return
		}
		delay, _ := time.ParseDuration(r.URL.Query().Get("delay"))
		frame := ws.MustCompileFrame(ws.NewTextFrame(body))
		time.AfterFunc(delay, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.sent[seq] = sent
			s.written[seq] = time.Now()
			for i, c := range s.conns {
				ping := ws.MustCompileFrame(ws.NewPingFrame(fmt.Appendf(nil, "%d/%d", seq, i)))
				_, _ = c.Write(append(slices.Clip(frame), ping...))
			}
		})
		w.WriteHeader(http.StatusNoContent)
	}
}

// readPongs reads connection id's frames and notes when each pong came.
func (s *delayServer) readPongs(id int, conn net.Conn) {
	defer s.readers.Done()
	for {
		h, err := ws.ReadHeader(conn)
		if err != nil {
			return
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(conn, p); err != nil {
			return
		}
		at := time.Now()
		if h.OpCode != ws.OpPong {
			continue
		}
		ws.Cipher(p, h.Mask, 0)
		var seq, of int
		s.mu.Lock()
		if _, err := fmt.Sscanf(string(p), "%d/%d", &seq, &of); err != nil || of != id {
			s.errs = append(s.errs, fmt.Errorf("connection %d: pong %q", id, p))
		} else {
			s.pongs[[2]int{seq, id}] = at
		}
		s.mu.Unlock()
	}
}

// close closes every connection and waits for their readers.
func (s *delayServer) close() {
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.readers.Wait()
}

// bounds returns the least and the most latency any delivery of publish
// seq can have had: from the harness's send time to just before the server
// wrote it, and to the latest pong behind it (or to end, for a connection
// whose pong had not come back by then).
func (s *delayServer) bounds(seq int, end time.Time) (lo, hi time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sent := time.Unix(0, s.sent[seq])
	for i := range s.conns {
		last, ok := s.pongs[[2]int{seq, i}]
		if !ok || last.After(end) {
			last = end
		}
		hi = max(hi, last.Sub(sent))
	}
	return s.written[seq].Sub(sent), hi
}

// runBench runs the harness with args and returns its results.
func runBench(t *testing.T, args ...string) *Results {
	t.Helper()
	res, code := runBenchCode(t, args...)
	if code != 0 {
		t.Fatalf("bench %s: exit %d", strings.Join(args, " "), code)
	}
	return res
}

func runBenchCode(t *testing.T, args ...string) (*Results, int) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.json")
	args = append(args, "--json", out, "--quiet", "--timeout", "2m")
	code := run(args)
	res, err := readJSON(out)
	if err != nil {
		t.Fatal(err)
	}
	return res, code
}

// The harness's latencies are right: against a server that holds each
// publish for a known time, every delivery's latency is at least that
// delay, and lies between when the server wrote it and when the harness
// answered the ping the server sent right behind it. Those bounds come
// from events, so they hold on a loaded machine; on an idle one they are
// about a millisecond apart, and a latency taken from the wrong publish,
// the wrong clock or in the wrong unit falls outside them.
func TestLatencyAgainstKnownDelay(t *testing.T) {
	const delay = 300 * time.Millisecond
	s := newDelayServer()
	srv := httptest.NewServer(s)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	res := runBench(t, "fanout", "-n", "40", "--targets", "url", "--messages", "5", "--rate", "20", "--warmup", "0",
		"--ws-url", "ws://"+host+"/ws", "--publish-url", srv.URL+"/publish?delay="+delay.String())
	end := time.Now() // every delivery was read by now
	s.close()
	if len(s.errs) > 0 {
		t.Fatal(s.errs)
	}
	r := res.Runs[0]
	if r.Delivered != 40*5 || r.Expected != 40*5 || len(r.Publishes) != 5 {
		t.Fatalf("delivered %d of %d in %d publishes, want 200 in 5", r.Delivered, r.Expected, len(r.Publishes))
	}
	least, most := time.Duration(math.MaxInt64), time.Duration(0)
	for _, p := range r.Publishes {
		lo, hi := s.bounds(p.Seq, end)
		least, most = min(least, lo), max(most, hi)
		if p.Delivered != 40 || p.TimeToAll < Ms(lo) || p.TimeToAll > Ms(hi) {
			t.Errorf("publish %d: %d delivered, time-to-all %v ms, want 40 within [%v, %v] ms", p.Seq, p.Delivered, p.TimeToAll, Ms(lo), Ms(hi))
		}
	}
	if least < delay {
		t.Fatalf("the server wrote a publish %v after it was sent, before its delay of %v", least, delay)
	}
	// The histogram keeps latencies in µs to 3 significant digits.
	resolution := func(d time.Duration) Millis { return Ms(d/1000 + time.Microsecond) }
	if len(r.Latency.Buckets) == 0 || r.Latency.Buckets[0].From < Ms(least)-resolution(least) {
		t.Errorf("latency buckets %v: a delivery before the server wrote any (%v ms)", r.Latency.Buckets, Ms(least))
	}
	if r.Latency.Max > Ms(most)+resolution(most) {
		t.Errorf("latency max %v ms, after the last pong (%v ms)", r.Latency.Max, Ms(most))
	}
	var sum int64
	for _, b := range r.Latency.Buckets {
		sum += b.Count
	}
	if sum != r.Delivered {
		t.Errorf("latency buckets hold %d deliveries, want %d", sum, r.Delivered)
	}
	t.Logf("latencies %v to %v ms, bounded by the first write (%v ms) and the last pong (%v ms)",
		r.Latency.Buckets[0].From, r.Latency.Max, Ms(least), Ms(most))
}

// Every scenario runs end to end against the real gateway and the
// reference servers, on small numbers.
func TestScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway and runs every scenario")
	}
	t.Run("fanout", func(t *testing.T) {
		res := runBench(t, "fanout", "-n", "150", "--targets", "pushgate,pushgate-sse,hub,floor", "--messages", "4", "--rate", "20", "--conns-per-worker", "100")
		if len(res.Runs) != 4 || len(res.Medians) != 4 {
			t.Fatalf("%d runs, %d medians", len(res.Runs), len(res.Medians))
		}
		for _, r := range res.Runs {
			if r.Conns != 150 || r.Delivered != 600 || r.Expected != 600 || r.Duplicates != 0 {
				t.Errorf("%s: %d conns, %d of %d delivered, %d duplicates", r.Target, r.Conns, r.Delivered, r.Expected, r.Duplicates)
			}
			if len(r.Publishes) != 4 || r.TimeToAll <= 0 {
				t.Errorf("%s: %d publishes, time-to-all %v", r.Target, len(r.Publishes), r.TimeToAll)
			}
			// 600 deliveries take far less CPU than can be read.
			if r.CPUPerMsg != 0 || !strings.HasPrefix(r.Unmeasured[keyCPUPerMsg], "too few deliveries to measure: 600 took") {
				t.Errorf("%s: CPU/msg %v, note %q", r.Target, r.CPUPerMsg, r.Unmeasured[keyCPUPerMsg])
			}
		}
		if res.Params.Workers != 2 {
			t.Errorf("%d workers for 150 connections at 100 each", res.Params.Workers)
		}
	})
	t.Run("idle", func(t *testing.T) {
		res := runBench(t, "idle", "-n", "300", "--channels", "3", "--targets", "pushgate,hub", "--transport", "websocket,sse", "--hold", "100ms", "--samples", "3")
		for _, r := range res.Runs {
			if r.Conns != 300 || r.RSSBase <= 0 || r.RSSLoaded <= 0 || r.GoroutinesLoaded <= 0 {
				t.Errorf("%s: %d conns, RSS %d -> %d, %d goroutines", r.Target, r.Conns, r.RSSBase, r.RSSLoaded, r.GoroutinesLoaded)
			}
			// 300 connections are too few for a figure per connection.
			for _, key := range []string{keyRSSPerConn, keyKernelPerConn, keyUsedPerConn} {
				if r.Unmeasured[key] != "too few connections to measure: 300, under 1000" {
					t.Errorf("%s: %s noted %q, want too few connections", r.Target, key, r.Unmeasured[key])
				}
			}
			if len(r.Memory) != 4 || r.Memory[3].Conns != 300 {
				t.Errorf("%s: memory samples %v", r.Target, r.Memory)
			}
		}
		// The hub's goroutine per connection shows; pushgate has none,
		// on WebSocket or on event streams.
		pg, sse, hub := findRun(res.Runs, "pushgate"), findRun(res.Runs, "pushgate-sse"), findRun(res.Runs, "hub")
		if hub.GoroutinesLoaded < 600 || pg.GoroutinesLoaded > 200 || sse.GoroutinesLoaded > 200 {
			t.Errorf("goroutines: pushgate %d, pushgate-sse %d, hub %d", pg.GoroutinesLoaded, sse.GoroutinesLoaded, hub.GoroutinesLoaded)
		}
	})
	t.Run("throughput", func(t *testing.T) {
		res := runBench(t, "throughput", "-n", "200", "--channels", "4", "--targets", "pushgate", "--rate", "20", "--max-steps", "2", "--step", "1.5", "--duration", "500ms", "--p99", "5s", "--publishers", "8")
		r := res.Runs[0]
		if len(r.Steps) != 2 || r.Throughput <= 0 {
			t.Fatalf("steps %+v, throughput %v", r.Steps, r.Throughput)
		}
		for _, s := range r.Steps {
			if !s.Passed || s.Delivered != s.Expected || s.Expected != s.Published*50 {
				t.Errorf("step %+v: want every publish delivered to its 50 subscribers", s)
			}
		}
		if r.Steps[1].Rate != 30 {
			t.Errorf("second step offered %v/s, want 1.5 × 20", r.Steps[1].Rate)
		}
	})
	t.Run("churn", func(t *testing.T) {
		// Seconds of churn are too short for a verdict on leaks (the
		// heap has not settled); this checks the readings are taken.
		res, _ := runBenchCode(t, "churn", "-n", "20", "--connect-rate", "200", "--targets", "pushgate,hub", "--warmup", "1s", "--duration", "2s", "--settle", "500ms")
		for _, r := range res.Runs {
			if r.Churned < 200 || r.Leak == nil || r.AfterChurn == nil || r.AfterChurn.RSS <= 0 || r.AfterChurn.Goroutines <= 0 {
				t.Fatalf("%s: churned %d, leak %+v, after %+v", r.Target, r.Churned, r.Leak, r.AfterChurn)
			}
			for _, e := range r.Errors {
				if !strings.HasPrefix(e, "footprint grew") {
					t.Errorf("%s: %s", r.Target, e)
				}
			}
			if r.AfterChurn.Conns > 0 {
				t.Errorf("%s: %d connections left after churn", r.Target, r.AfterChurn.Conns)
			}
		}
	})
}

// Bad flags and targets outside loopback are refused before anything runs.
func TestRefusals(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nosuch"},
		{"fanout", "-n", "0"},
		{"fanout", "--targets", "nginx"},
		{"fanout", "--source", "10.0.0.1"},
		{"fanout", "--conns-per-worker", "30000"},
		{"fanout", "--size", "10"},
		{"throughput", "--step", "1"},
		{"cluster", "--nodes", "1"},
		{"cluster", "--targets", "hub"},
		{"cluster", "--restart-rate", "-1"},
		{"cluster", "--nats-server", "/nonexistent/nats-server"},
	} {
		if code := run(args); code != 2 {
			t.Errorf("bench %v: exit %d, want 2", args, code)
		}
	}
	for _, u := range []string{"ws://10.1.2.3/ws", "ws://example.com/ws"} {
		if err := checkTargetHost(&target{wsURL: u}); err == nil {
			t.Errorf("%s accepted as a target", u)
		}
	}
	if err := checkTargetHost(&target{wsURL: "ws://127.0.0.1:1/ws", publishURL: "http://localhost:2/p"}); err != nil {
		t.Error(err)
	}
	// A target that refuses connections makes a failed run, reported.
	res := &Results{}
	out := filepath.Join(t.TempDir(), "out.json")
	code := run([]string{"fanout", "-n", "5", "--targets", "url", "--quiet", "--json", out,
		"--ws-url", "ws://127.0.0.1:1/ws", "--publish-url", "http://127.0.0.1:1/p"})
	if code != 1 {
		t.Errorf("exit %d against a closed port, want 1", code)
	}
	if res, _ = readJSON(out); res == nil || len(res.Runs) != 1 || len(res.Runs[0].Errors) == 0 ||
		!strings.Contains(res.Runs[0].Errors[0], "5 connections failed") {
		t.Errorf("errors %+v", res)
	}
}

func TestPayload(t *testing.T) {
	now := time.Unix(1700000000, 123456789)
	p := payload(42, now, 100)
	if len(p) != 100 {
		t.Errorf("payload of %d bytes, want 100", len(p))
	}
	// Wrapped in any envelope, it is found.
	for _, msg := range []string{p, `{"type":"message","data":"` + p + `"}`, "prefix " + p} {
		seq, sent, ok := parsePayload([]byte(msg))
		if !ok || seq != 42 || sent != now.UnixNano() {
			t.Errorf("parse %q: %d %d %v", msg, seq, sent, ok)
		}
	}
	for _, bad := range []string{"", "pgb|", "pgb||1|", "pgb|1|", "pgb|x|1|", "pgb|1|2", "pgb|99999999999999999999|1|"} {
		if _, _, ok := parsePayload([]byte(bad)); ok {
			t.Errorf("parse %q: accepted", bad)
		}
	}
}

// The client's frame reader handles what servers send: lengths of every
// encoding, fragments, pings (answered) and a close.
func TestClientFrames(t *testing.T) {
	server, clientSide := net.Pipe()
	c := &client{id: 3, conn: clientSide, done: make(chan struct{}), ready: make(chan struct{})}
	rec := &fakeSink{}
	go c.readLoop(nil, rec)
	now := time.Now()
	var stream bytes.Buffer
	for i, size := range []int{50, 300, 70000} {
		_ = ws.WriteFrame(&stream, ws.NewTextFrame([]byte(payload(i, now, size))))
	}
	p := []byte(payload(3, now, 60))
	_ = ws.WriteFrame(&stream, ws.NewFrame(ws.OpText, false, p[:10]))
	_ = ws.WriteFrame(&stream, ws.NewPingFrame([]byte("hi")))
	_ = ws.WriteFrame(&stream, ws.NewFrame(ws.OpContinuation, true, p[10:]))
	_ = ws.WriteFrame(&stream, ws.NewTextFrame([]byte(`{"type":"subscribed"}`)))
	_ = ws.WriteFrame(&stream, ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, "bye")))
	go func() { _, _ = server.Write(stream.Bytes()) }()

	// The pong comes back masked, with the ping's payload.
	h, p := readFrame(t, server)
	if h.OpCode != ws.OpPong || !h.Masked {
		t.Fatalf("got %+v, want a masked pong", h)
	}
	if string(p) != "hi" {
		t.Errorf("pong payload %q", p)
	}
	if h, _ := readFrame(t, server); h.OpCode != ws.OpClose {
		t.Errorf("got %v, want the close echoed", h.OpCode)
	}
	<-c.done
	if fmt.Sprint(rec.seqs) != "[0 1 2 3]" || rec.others != 1 {
		t.Errorf("seqs %v, %d other messages", rec.seqs, rec.others)
	}
	if c.err == nil || !strings.Contains(c.err.Error(), "1001 bye") {
		t.Errorf("end: %v", c.err)
	}
}

// readFrame reads one frame a client wrote and unmasks it.
func readFrame(t *testing.T, r io.Reader) (ws.Header, []byte) {
	t.Helper()
	h, err := ws.ReadHeader(r)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		t.Fatal(err)
	}
	ws.Cipher(p, h.Mask, 0)
	return h, p
}

type fakeSink struct {
	seqs   []int
	others int
}

func (s *fakeSink) message(_ int, seq int, _ time.Duration, _ int) { s.seqs = append(s.seqs, seq) }
func (s *fakeSink) other(int, []byte)                              { s.others++ }

func TestMedians(t *testing.T) {
	res := &Results{Scenario: "fanout", Runs: []Run{
		{Target: "a", Run: 1, TimeToAll: 30, CPUPerMsg: 5, Latency: &Latency{P99: 9}},
		{Target: "a", Run: 2, TimeToAll: 10, CPUPerMsg: 7, Latency: &Latency{P99: 1}},
		{Target: "a", Run: 3, TimeToAll: 20, CPUPerMsg: 6, Latency: &Latency{P99: 5}, Publishes: []Publish{{Seq: 7}}},
		{Target: "b", Run: 1, TimeToAll: 99, Errors: []string{"failed"}},
		{Target: "b", Run: 2, TimeToAll: 40},
	}}
	m := medians(res)
	if len(m) != 2 || m[0].Target != "a" || m[1].Target != "b" {
		t.Fatalf("medians %+v", m)
	}
	// a: the run with the median time-to-all supplies the series; other
	// figures are medians of their own.
	if m[0].TimeToAll != 20 || len(m[0].Publishes) != 1 || m[0].CPUPerMsg != 6 || m[0].Latency.P99 != 5 {
		t.Errorf("a: %+v", m[0])
	}
	if res.Runs[2].Latency.P99 != 5 {
		t.Error("medians modified a run")
	}
	// b: the failed run is left out.
	if m[1].TimeToAll != 40 {
		t.Errorf("b: time-to-all %v, want the successful run's 40", m[1].TimeToAll)
	}
	var out bytes.Buffer
	res.Medians = m
	printSummary(&out, res)
	if !strings.Contains(out.String(), "b run 1 failed: failed") {
		t.Errorf("summary misses the failure:\n%s", out.String())
	}
	old := &Results{Scenario: "fanout", Medians: []Run{{Target: "a", TimeToAll: 40, CPUPerMsg: 6}}}
	out.Reset()
	printCompare(&out, old, res)
	if !strings.Contains(out.String(), "0.50× better") || strings.Contains(out.String(), "differ") {
		t.Errorf("compare:\n%s", out.String())
	}
	old.Params.Conns = 15000
	out.Reset()
	printCompare(&out, old, res)
	if !strings.Contains(out.String(), "conns 15000 → 0") {
		t.Errorf("compare of different runs without a note:\n%s", out.String())
	}
}

func TestProcReadings(t *testing.T) {
	rss, err := procstat.RSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Errorf("own RSS %d, %v", rss, err)
	}
	if _, err := procstat.CPU(os.Getpid()); err != nil {
		t.Error(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# TYPE go_goroutines gauge\ngo_goroutines 17\n# TYPE x counter\nx{a=\"b\"} 3\nprocess_resident_memory_bytes 4.5e+06\n")
	}))
	defer srv.Close()
	m, err := scrape(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if m.value("go_goroutines", -1) != 17 || m.value("process_resident_memory_bytes", -1) != 4500000 || m.value("x", -1) != -1 {
		t.Errorf("scraped %v", m)
	}
	if slab, used := meminfo(); slab <= 0 || used <= 0 {
		t.Errorf("meminfo slab %d used %d", slab, used)
	}
}

// streamConn is a net.Conn that reads a prepared byte stream.
type streamConn struct {
	net.Conn
	r io.Reader
}

func (c streamConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c streamConn) Write(p []byte) (int, error) { return len(p), nil }
func (c streamConn) Close() error                { return nil }

// BenchmarkClientRead is the harness's own cost per received message:
// frame parsing, payload search and recording, as a worker does it. It
// must stay far below a server's cost per delivery for the harness not to
// be what is measured.
func BenchmarkClientRead(b *testing.B) {
	var stream bytes.Buffer
	const frames = 1000
	for i := range frames {
		_ = ws.WriteFrame(&stream, ws.NewTextFrame([]byte(`{"type":"message","channel":"bench0","offset":1,"data":"`+payload(i, time.Now(), 100)+`"}`)))
	}
	rec := newRecorder()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c := &client{conn: streamConn{r: bytes.NewReader(stream.Bytes())}, done: make(chan struct{}), ready: make(chan struct{})}
		c.readLoop(nil, rec)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*frames), "ns/msg")
}
