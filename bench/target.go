package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pushgate/pushgate/internal/attack"
	"github.com/pushgate/pushgate/internal/procstat"
)

// target is a server under test: where to connect, how to publish, and
// where to read its footprint.
type target struct {
	name string
	// wsURL and publishURL may hold {channel}; publishBody {channel} and
	// {payload}.
	wsURL, publishURL, publishBody string
	// subscribe, if set, is a text message (with {channel}) each
	// connection sends after the upgrade.
	subscribe   string
	readyMarker string
	pid         int    // 0: not local, memory from metricsURL
	metricsURL  string // Prometheus text endpoint, "" if none
	gcURL       string // GET makes the target collect garbage, "" if none
	host        string // the address every URL must point at

	cmd     *exec.Cmd
	logPath string
	// exited is closed once a started target's process has exited.
	exited chan struct{}
}

// targetOptions are the flags that say how to start or reach targets.
type targetOptions struct {
	gateway      string // gateway binary; built from ./cmd/gateway if empty
	gatewayFlags string // extra flags for the gateway
	// scenarioFlags are flags the scenario needs of the gateway, before
	// gatewayFlags
	scenarioFlags []string
	addr          string // loopback address servers listen on
	tmp           string // directory for built binaries and logs

	// the "url" target
	wsURL, publishURL, publishBody, subscribe, readyMarker, metricsURL, gcURL string
	pid                                                                       int
}

var knownTargets = []string{"pushgate", "pushgate-sse", "hub", "floor", "url"}

// startTarget starts (or, for "url", describes) the named target and
// waits until it answers.
func startTarget(ctx context.Context, name string, o *targetOptions) (*target, error) {
	switch name {
	case "url":
		if o.wsURL == "" || o.publishURL == "" {
			return nil, errors.New("target url needs --ws-url and --publish-url")
		}
		t := &target{name: name, wsURL: o.wsURL, publishURL: o.publishURL, publishBody: o.publishBody,
			subscribe: o.subscribe, readyMarker: o.readyMarker, pid: o.pid, metricsURL: o.metricsURL, gcURL: o.gcURL}
		u, err := url.Parse(strings.ReplaceAll(o.wsURL, "{channel}", "c"))
		if err != nil {
			return nil, fmt.Errorf("--ws-url: %w", err)
		}
		t.host = u.Hostname()
		return t, checkTargetHost(t)
	case "pushgate", "pushgate-sse":
		bin, err := gatewayBinary(ctx, o)
		if err != nil {
			return nil, err
		}
		pub, admin, err := freeAddrs(o.addr, 2)
		if err != nil {
			return nil, err
		}
		// --pprof: churn makes the gateway collect garbage through gcPath.
		args := []string{"--addr", pub[0], "--admin-addr", admin[0], "--log-level", "warn", "--pprof"}
		args = append(args, o.scenarioFlags...)
		args = append(args, strings.Fields(o.gatewayFlags)...)
		t := &target{
			name:        name,
			wsURL:       "ws://" + pub[0] + "/ws?channels={channel}",
			publishURL:  "http://" + admin[0] + "/api/publish",
			publishBody: `{"channel":"{channel}","data":"{payload}"}`,
			readyMarker: `"subscribed"`,
			metricsURL:  "http://" + admin[0] + "/metrics",
			gcURL:       "http://" + admin[0] + gcPath,
			host:        o.addr,
		}
		if name == "pushgate-sse" {
			// The same gateway, its clients on event streams (GET /events).
			t.wsURL = "http://" + pub[0] + "/events?channels={channel}"
		}
		return t, t.start(ctx, o, "http://"+admin[0]+"/readyz", bin, args...)
	case "hub", "floor":
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		addr, _, err := freeAddrs(o.addr, 1)
		if err != nil {
			return nil, err
		}
		base := "http://" + addr[0]
		t := &target{
			name:        name,
			wsURL:       "ws://" + addr[0] + "/ws?channel={channel}",
			publishURL:  base + "/publish?channel={channel}",
			publishBody: "{payload}",
			metricsURL:  base + "/metrics",
			gcURL:       base + gcPath,
			host:        o.addr,
		}
		return t, t.start(ctx, o, base+"/healthz", self, "serve", name, "--addr", addr[0])
	}
	return nil, fmt.Errorf("unknown target %q (known: %s)", name, strings.Join(knownTargets, ", "))
}

// checkTargetHost keeps the harness on loopback: it never aims its load
// anywhere but the machine it runs on.
func checkTargetHost(t *target) error {
	for _, raw := range []string{t.wsURL, t.publishURL, t.metricsURL, t.gcURL} {
		if raw == "" {
			continue
		}
		u, err := url.Parse(strings.ReplaceAll(raw, "{channel}", "c"))
		if err != nil {
			return err
		}
		ip := net.ParseIP(u.Hostname())
		if u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("%s: the harness only targets loopback addresses", raw)
		}
	}
	return nil
}

func (t *target) start(ctx context.Context, o *targetOptions, health, bin string, args ...string) error {
	t.logPath = filepath.Join(o.tmp, fmt.Sprintf("%s-%d.log", t.name, time.Now().UnixNano()))
	logf, err := os.Create(t.logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	t.cmd = exec.Command(bin, args...)
	t.cmd.Stdout, t.cmd.Stderr = logf, logf
	t.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := t.cmd.Start(); err != nil {
		return err
	}
	t.pid = t.cmd.Process.Pid
	exited := make(chan error, 1)
	t.exited = make(chan struct{})
	go func() {
		err := t.cmd.Wait()
		close(t.exited)
		exited <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get(health); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil // exited's goroutine reaps the process
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("%s exited before it was ready (%v): %s", t.name, err, t.logTail())
		case <-ctx.Done():
			t.kill()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.kill()
			return fmt.Errorf("%s not ready after 30s: %s", t.name, t.logTail())
		}
	}
}

// stop ends a target the harness started, gracefully first.
func (t *target) stop() {
	if t.cmd == nil || t.cmd.Process == nil {
		return
	}
	_ = t.cmd.Process.Signal(syscall.SIGTERM)
	for range 100 {
		if syscall.Kill(t.pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.kill()
}

func (t *target) kill() {
	if t.cmd != nil && t.cmd.Process != nil {
		_ = t.cmd.Process.Kill()
	}
}

func (t *target) logTail() string {
	b, _ := os.ReadFile(t.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// gatewayBinary returns the gateway to run: --gateway, or one built from
// the repository's ./cmd/gateway (through its go.work: the harness is a
// module of its own).
func gatewayBinary(ctx context.Context, o *targetOptions) (string, error) {
	if o.gateway != "" {
		return o.gateway, nil
	}
	bin := filepath.Join(o.tmp, "gateway")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/pushgate/pushgate/cmd/gateway")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the gateway (run it in the pushgate repository, whose go.work includes the gateway, or pass --gateway): %v\n%s", err, out)
	}
	o.gateway = bin
	return bin, nil
}

// freeAddrs returns n free TCP addresses on host, twice over (the second
// list for a second listener), picked by the kernel.
func freeAddrs(host string, n int) ([]string, []string, error) {
	var a, b []string
	for i := range 2 * n {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, nil, err
		}
		defer ln.Close()
		if i < n {
			a = append(a, ln.Addr().String())
		} else {
			b = append(b, ln.Addr().String())
		}
	}
	return a, b, nil
}

// gcPath is net/http/pprof's heap profile with gc=1: it runs a garbage
// collection first, so the heap read next is the live heap.
const gcPath = "/debug/pprof/heap?gc=1"

// collectGarbage makes the target run two garbage collections (the
// second empties what sync.Pools kept from the first), when it has a gc
// URL; it says why when the URL did not answer 200.
func (t *target) collectGarbage() error {
	if t.gcURL == "" {
		return nil
	}
	for range 2 {
		resp, err := http.Get(t.gcURL)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", t.gcURL, resp.Status)
		}
	}
	return nil
}

// footprint is what the harness reads of a target's process.
type footprint struct {
	RSS        int64 // bytes; -1 unknown
	Goroutines int64 // -1 unknown
	HeapAlloc  int64 // -1 unknown; live heap right after collectGarbage
	Conns      int64 // -1 unknown
	CPU        time.Duration
	CPUKnown   bool
}

// footprint reads RSS and CPU from /proc for a local pid, the rest (and
// RSS otherwise) from the metrics endpoint.
func (t *target) footprint() footprint {
	f := footprint{RSS: -1, Goroutines: -1, HeapAlloc: -1, Conns: -1}
	if t.metricsURL != "" {
		if m, err := scrape(t.metricsURL); err == nil {
			f.RSS = m.value("process_resident_memory_bytes", -1)
			f.Goroutines = m.value("go_goroutines", -1)
			f.HeapAlloc = m.value("go_memstats_heap_alloc_bytes", -1)
			f.Conns = m.value("pushgate_connections", m.value("refserver_clients", -1))
		}
	}
	if t.pid > 0 {
		if rss, err := procstat.RSS(t.pid); err == nil {
			f.RSS = rss
		}
		if cpu, err := procstat.CPU(t.pid); err == nil {
			f.CPU, f.CPUKnown = cpu, true
		}
	}
	return f
}

type metricValues map[string]float64

func (m metricValues) value(name string, def int64) int64 {
	if v, ok := m[name]; ok {
		return int64(v)
	}
	return def
}

// scrape reads a Prometheus text endpoint: unlabelled series by their
// name (see attack.Metrics).
func scrape(u string) (metricValues, error) {
	m, err := attack.Scrape(context.Background(), u)
	return metricValues(m), err
}

// meminfo reads /proc/meminfo: kernel slab and memory in use, machine-wide.
func meminfo() (slab, used int64) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return -1, -1
	}
	vals := map[string]int64{}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		vals[k] = n << 10
	}
	return vals["Slab"], vals["MemTotal"] - vals["MemAvailable"]
}

// publisher sends publications to a target over HTTP.
type publisher struct {
	t      *target
	client *http.Client
}

func newPublisher(t *target, conns int) *publisher {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	return &publisher{t: t, client: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

// publish sends one publication of seq to channel, stamped now.
func (p *publisher) publish(ctx context.Context, channel string, seq, size int) error {
	_, err := p.post(ctx, channel, seq, size)
	return err
}

// publishOffset publishes as publish does to pushgate's POST
// /api/publish, and returns the offset it answered.
func (p *publisher) publishOffset(ctx context.Context, channel string, seq, size int) (int64, error) {
	body, err := p.post(ctx, channel, seq, size)
	if err != nil {
		return 0, err
	}
	var a struct{ Offset int64 }
	if err := json.Unmarshal(body, &a); err != nil || a.Offset <= 0 {
		return 0, fmt.Errorf("publish: answered %.200q (%v)", body, err)
	}
	return a.Offset, nil
}

// post sends one publication and returns the answer's body.
func (p *publisher) post(ctx context.Context, channel string, seq, size int) ([]byte, error) {
	pl := payload(seq, time.Now(), size)
	u := strings.ReplaceAll(p.t.publishURL, "{channel}", url.QueryEscape(channel))
	body := strings.NewReplacer("{channel}", channel, "{payload}", pl).Replace(p.t.publishBody)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return nil, fmt.Errorf("publish: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_, _ = io.Copy(io.Discard, resp.Body)
	return b, err
}

func (p *publisher) close() { p.client.CloseIdleConnections() }
