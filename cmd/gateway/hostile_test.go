package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/proctest"
	"github.com/pushgate/pushgate/internal/wstest"
)

// Attacks on the handshake path against a real gateway process, scaled
// down from the ones issue 11 reproduced, with the gateway's RSS measured
// while they run. Run them alone with
//
//	go test -run 'TestSlowlorisWithReconnectStorm|TestHugeHeads' -v ./cmd/gateway

// TestSlowlorisWithReconnectStorm: 400 sockets from two addresses trickle
// their request heads a byte a second (half of them send the request line
// first), and reconnect whenever the gateway drops them, so that every one
// of its 128 handshake slots is held by a slowloris, and goes on until
// half its sockets have been dropped and have come back. A storm of 300 real
// clients from three other addresses then connects at once: each must be
// upgraded within the handshake timeout (5s).
func TestSlowlorisWithReconnectStorm(t *testing.T) {
	const (
		slots     = 128
		attackers = 400
		storm     = 300
		timeout   = 5 * time.Second // --handshake-timeout's default
	)
	addr, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
	gw := proctest.Start(t, "", proctest.Gateway(t), "--addr", addr, "--admin-addr", admin,
		"--max-handshakes", fmt.Sprint(slots))
	gw.WaitHTTP(t, "http://"+admin+"/readyz", http.StatusOK)
	rss := sampleRSS(t, gw)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var opened atomic.Int64
	for i := range attackers {
		wg.Go(func() { slowloris(ctx, fmt.Sprintf("127.0.0.%d", 2+i%2), addr, i/2%2 == 0, &opened) })
	}
	// It holds every slot, and half its sockets have been dropped and come
	// back: the steady state of the attack.
	wstest.Until(t, 30*time.Second, func() error {
		held := value(scrape(t, admin), "pushgate_handshakes_in_flight", "")
		if n := opened.Load(); held < slots || n < attackers*3/2 {
			return fmt.Errorf("the slowloris holds %v of %d slots, has opened %d connections", held, slots, n)
		}
		return nil
	})
	attackRSS := rss.max()

	// The storm, all at once.
	latencies := make([]time.Duration, storm)
	errs := make([]error, storm)
	start := make(chan struct{})
	var clients sync.WaitGroup
	conns := make([]net.Conn, storm)
	for i := range storm {
		clients.Go(func() {
			<-start
			conns[i], latencies[i], errs[i] = upgradeFrom(fmt.Sprintf("127.0.0.%d", 10+i%3), addr, timeout)
		})
	}
	close(start)
	clients.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	fams := scrape(t, admin)
	cancel()

	failed := 0
	for i, err := range errs {
		if err != nil {
			if failed++; failed <= 5 {
				t.Errorf("storm client %d: %v", i, err)
			}
		}
	}
	slices.Sort(latencies)
	t.Logf("slowloris: %d sockets, %d connections opened; storm: %d clients, handshake latency p50 %v, p99 %v, max %v; "+
		"shed: full %v, per_source %v; timeouts %v; gateway RSS %.1f MiB before, %.1f MiB under the slowloris, %.1f MiB at most",
		attackers, opened.Load(), storm, latencies[storm/2], latencies[storm*99/100], latencies[storm-1],
		value(fams, "pushgate_handshakes_shed_total", "reason=full"), value(fams, "pushgate_handshakes_shed_total", "reason=per_source"),
		value(fams, "pushgate_handshakes_total", "result=timeout"), mib(rss.first), mib(attackRSS), mib(rss.max()))
	if failed > 0 {
		t.Fatalf("%d of %d storm clients were not upgraded within %v", failed, storm, timeout)
	}
	checkMetrics(t, admin, map[string]bool{}, expect{name: "pushgate_connections", want: storm})
	if m := rss.max(); m > 100<<20 {
		t.Errorf("the gateway's RSS reached %.1f MiB, over 100 MiB", mib(m))
	}
}

// slowloris plays one attacker socket from the address from until ctx
// ends: it trickles a request head a byte a second (the request line
// first, at once, if line is set) and reconnects whenever the gateway
// drops it.
func slowloris(ctx context.Context, from, addr string, line bool, opened *atomic.Int64) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for ctx.Err() == nil {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
			continue
		}
		opened.Add(1)
		head := "GET /ws HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("s", 4000)
		if line {
			_, err = c.Write([]byte(head[:18]))
			head = head[18:]
		}
		for i := 0; err == nil && ctx.Err() == nil; i++ {
			select {
			case <-ctx.Done():
			case <-tick.C:
				_, err = c.Write([]byte{head[i%len(head)]})
			}
		}
		c.Close()
	}
}

// upgradeFrom connects from the address from and upgrades to /ws, and
// returns the connection and the time from dialling to the 101.
func upgradeFrom(from, addr string, timeout time.Duration) (net.Conn, time.Duration, error) {
	begin := time.Now()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: timeout}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, 0, err
	}
	_ = c.SetDeadline(begin.Add(timeout))
	if _, err := c.Write([]byte(wstest.UpgradeRequest("/ws"))); err != nil {
		c.Close()
		return nil, 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	took := time.Since(begin)
	switch {
	case err != nil:
		c.Close()
		return nil, took, fmt.Errorf("after %v: %w", took.Round(time.Millisecond), err)
	case resp.StatusCode != http.StatusSwitchingProtocols:
		c.Close()
		return nil, took, fmt.Errorf("status %s", resp.Status)
	}
	_ = c.SetDeadline(time.Time{})
	return c, took, nil
}

// TestHugeHeads: 300 connections each send a 1 MiB request head (one
// header line that never ends) to the public listener and hold on. The
// gateway reads at most --max-header-bytes (8 KiB) of each and answers 431,
// so its RSS stays small; net/http, which such heads reached before, buffered
// each up to its own 1 MB limit.
func TestHugeHeads(t *testing.T) {
	const clients = 300
	addr, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
	gw := proctest.Start(t, "", proctest.Gateway(t), "--addr", addr, "--admin-addr", admin)
	gw.WaitHTTP(t, "http://"+admin+"/readyz", http.StatusOK)
	before := gw.RSS(t)
	rss := sampleRSS(t, gw)

	head := []byte("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("p", 1<<20))
	var wg sync.WaitGroup
	conns := make([]net.Conn, clients)
	statuses := make([]int, clients)
	for i := range clients {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			conns[i] = c
			_ = c.SetDeadline(time.Now().Add(wstest.Timeout))
			go func() { _, _ = c.Write(head) }() // fails once the gateway has answered and closed
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
				statuses[i] = resp.StatusCode
			}
		})
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	peak := rss.max()
	t.Logf("%d connections sent 1 MiB heads: gateway RSS %.1f MiB before, %.1f MiB at most (+%.1f MiB)",
		clients, mib(before), mib(peak), mib(peak-before))
	for i, s := range statuses {
		if s != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("client %d: status %d, want 431", i, s)
		}
	}
	checkMetrics(t, admin, map[string]bool{},
		expect{name: "pushgate_handshakes_total", label: "result=too_large", want: clients},
		expect{name: "pushgate_handshakes_in_flight", want: 0})
	if peak-before > 40<<20 {
		t.Fatalf("the gateway's RSS grew by %.1f MiB, over 40 MiB", mib(peak-before))
	}
}

// rssSampler records a process's RSS every 20ms until the test ends.
type rssSampler struct {
	mu    sync.Mutex
	first int64
	peak  int64
}

func sampleRSS(t *testing.T, p *proctest.Process) *rssSampler {
	t.Helper()
	s := &rssSampler{first: p.RSS(t)}
	s.peak = s.first
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if v, err := p.ReadRSS(); err == nil {
					s.mu.Lock()
					s.peak = max(s.peak, v)
					s.mu.Unlock()
				}
			}
		}
	}()
	t.Cleanup(func() { close(done); <-stopped })
	return s
}

func (s *rssSampler) max() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
