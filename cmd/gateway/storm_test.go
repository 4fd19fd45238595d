package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"
	dto "github.com/prometheus/client_model/go"

	"github.com/pushgate/pushgate/internal/attack"
	"github.com/pushgate/pushgate/internal/proctest"
	"github.com/pushgate/pushgate/internal/proxytest"
	"github.com/pushgate/pushgate/internal/wstest"
)

// TestConnectStorm is a connect storm through the connect proxy, against
// a gateway process and a backend the test serves (proxytest): 5,000
// WebSocket connections admitted by a token (the proxy is not asked),
// after an unmeasured round that warms the gateway up, then 5,000
// admitted by the backend, which answers each after stormLatency (a
// database lookup). It logs both rounds' handshake latencies and the
// backend's request rate, in a form for the README, and checks that every
// connection got 101, that the backend was asked once per connection with
// a client id of its own, and that each connection is subscribed as the
// user the backend named. Then the backend stops answering (it holds every
// request past --proxy-timeout): new connections must get 503, most from
// the open circuit without asking it, while the 5,000 established ones
// still get a publish. Once it answers again, new connections are
// admitted. Timings are reported, not asserted. For the figures, run it
// alone and without the race detector:
//
//	go test -run TestConnectStorm -count=1 -v ./cmd/gateway
func TestConnectStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,000 connections to a gateway process")
	}
	backend := proxytest.Start(t, proxytest.Config{Latency: stormLatency, Admit: func(q url.Values) (string, []string) {
		return "u" + q.Get("u"), []string{"storm"}
	}})
	addr, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
	gw := proctest.Start(t, "", proctest.Gateway(t), "--addr", addr, "--admin-addr", admin, "--log-level", "warn",
		"--jwt-secret", stormSecret, "--proxy-connect", backend.URL, "--proxy-timeout", stormProxyTimeout.String())
	gw.WaitHTTP(t, "http://"+admin+"/readyz", http.StatusOK)
	clock := stormClock{end: time.Now().Add(stormWithin)}
	var f stormFigures

	// Baseline: admitted by their tokens.
	tokens := make([]string, stormConns)
	for i := range tokens {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": stormUser(i), "channels": []string{"storm"},
			"exp": wstest.ExpiresIn(5 * time.Minute)}).SignedString([]byte(stormSecret))
		if err != nil {
			t.Fatal(err)
		}
		tokens[i] = tok
	}
	byToken := func(i int) []string { return []string{"Authorization: Bearer " + tokens[i]} }
	// The gateway's first connections find a cold process (its heap
	// growing, its pools empty): a round of them warms it up unmeasured.
	for _, c := range stormConnectAll(t, addr, stormWarmUp, clock.phase(), byToken).conns {
		c.Conn.Close()
	}
	stormWaitConnections(t, admin, 0, clock.phase())
	f.byToken = stormConnectAll(t, addr, stormConns, clock.phase(), byToken)
	if n := len(backend.Calls()); n != 0 {
		t.Fatalf("the backend was asked %d times about connections with a valid token", n)
	}
	for _, c := range f.byToken.conns {
		c.Conn.Close()
	}
	stormWaitConnections(t, admin, 0, clock.phase())

	// The storm: admitted by the backend.
	before := scrape(t, admin)
	f.byProxy = stormConnectAll(t, addr, stormConns, clock.phase(), func(int) []string { return nil })
	t.Cleanup(func() {
		for _, c := range f.byProxy.conns {
			c.Conn.Close()
		}
	})
	after := scrape(t, admin)
	f.calls, f.peak, f.meanCall = backend.Calls(), backend.Peak(), stormMeanCall(before, after)
	checkStormCalls(t, f.calls, stormConns)
	for _, r := range []string{"ok", "error", "timeout", "circuit_open", "busy"} {
		want := 0.0
		if r == "ok" {
			want = stormConns
		}
		if d := stormDelta(before, after, r); d != want {
			t.Errorf("pushgate_proxy_requests_total{proxy=connect,result=%s} rose by %v during the storm, want %v", r, d, want)
		}
	}

	// Outage: the backend holds every request; the established
	// connections must not notice.
	backend.Fail()
	before = scrape(t, admin)
	deadline := clock.phase()
	var wg sync.WaitGroup
	wg.Go(func() { f.outage = stormRefused(addr, stormConns, deadline) })
	var err error
	f.delivery, err = stormDeliver(admin, f.byProxy.conns, deadline)
	wg.Wait()
	if err != nil {
		t.Error(err)
	}
	if f.outage.err != nil {
		t.Error(f.outage.err)
	}
	after = scrape(t, admin)
	for _, c := range backend.Calls()[len(f.calls):] {
		if c.Failing {
			f.outage.reached++
		}
	}
	timedOut, failed, busy := stormDelta(before, after, "timeout"), stormDelta(before, after, "error"), stormDelta(before, after, "busy")
	f.outage.timedOut, f.outage.broken = int(timedOut+failed), int(stormDelta(before, after, "circuit_open"))
	if sum := int(timedOut+failed+busy) + f.outage.broken; sum != stormOutageConns {
		t.Errorf("the outage's calls counted %v timeout, %v error, %d circuit_open, %v busy: %d, want one for each of %d connections",
			timedOut, failed, f.outage.broken, busy, sum, stormOutageConns)
	}
	if f.outage.broken == 0 || f.outage.reached > f.outage.timedOut {
		t.Errorf("the backend got %d requests, the gateway counted %d failed; the open circuit refused %d, want some",
			f.outage.reached, f.outage.timedOut, f.outage.broken)
	}
	if v := value(after, "pushgate_proxy_circuit_open", "proxy=connect"); v != 1 {
		t.Errorf("pushgate_proxy_circuit_open{proxy=connect} %v during the outage, want 1", v)
	}
	if v := value(after, "pushgate_connections", ""); v != stormConns {
		t.Errorf("pushgate_connections %v after the outage, want the %d established", v, stormConns)
	}

	// Recovery: the backend answers again.
	backend.Recover()
	recovered := time.Now()
	next := stormConns + stormOutageConns
	deadline = clock.phase()
	wstest.Until(t, time.Until(deadline), func() error {
		c, status, _, err := stormDial(addr, next, deadline, nil)
		switch {
		case err != nil:
			return err
		case status != http.StatusSwitchingProtocols:
			f.refusedAfter++
			return fmt.Errorf("a new connection got %d after the backend answered again", status)
		}
		defer c.Conn.Close()
		return stormSubscribed(c, next, deadline)
	})
	f.readmitted = time.Since(recovered)
	for i := next + 1; i <= next+10; i++ {
		c, status, _, err := stormDial(addr, i, deadline, nil)
		if err == nil && status != http.StatusSwitchingProtocols {
			err = fmt.Errorf("got %d, want 101", status)
		}
		if err == nil {
			err = stormSubscribed(c, i, deadline)
			c.Conn.Close()
		}
		if err != nil {
			t.Errorf("connection %d after the recovery: %v", i, err)
		}
	}
	if v := value(scrape(t, admin), "pushgate_proxy_circuit_open", "proxy=connect"); v != 0 {
		t.Errorf("pushgate_proxy_circuit_open{proxy=connect} %v after the recovery, want 0", v)
	}
	f.report(t)
}

// The storm's sizes and bounds.
const (
	stormConns         = 5000
	stormDialers       = 200 // connections being opened at once
	stormWarmUp        = 1000
	stormLatency       = 5 * time.Millisecond
	stormProxyTimeout  = 500 * time.Millisecond
	stormOutageConns   = 200
	stormOutageDialers = 20
	stormPhase         = 20 * time.Second // each phase's deadline (they take a second or two)
	stormWithin        = 80 * time.Second // the whole test's, once the gateway is up
	stormSecret        = "storm-test-secret-of-32-bytes-or-more"
)

func stormUser(i int) string { return "u" + strconv.Itoa(i) }

// stormClock gives each phase its deadline: stormPhase from its start,
// and never past the test's end.
type stormClock struct{ end time.Time }

func (c stormClock) phase() time.Time {
	if d := time.Now().Add(stormPhase); d.Before(c.end) {
		return d
	}
	return c.end
}

// checkStormCalls checks the backend was asked exactly once about each of
// n connections, each with a client id of its own.
func checkStormCalls(t *testing.T, calls []proxytest.Call, n int) {
	t.Helper()
	clients, users := map[string]bool{}, map[string]int{}
	for _, c := range calls {
		if c.Bad != "" || c.Transport != "websocket" || c.Path != "/ws" {
			t.Fatalf("the backend got %+v, want a connect request for /ws", c)
		}
		q, _ := url.ParseQuery(c.Query)
		clients[c.Client] = true
		users["u"+q.Get("u")]++
	}
	if len(calls) != n || len(clients) != n {
		t.Fatalf("the backend got %d connect requests with %d distinct client ids, want %d", len(calls), len(clients), n)
	}
	for i := range n {
		if users[stormUser(i)] != 1 {
			t.Fatalf("the backend was asked %d times about u=%d, want once", users[stormUser(i)], i)
		}
	}
}

// stormPhaseResult is one phase's connections and their handshake
// latencies.
type stormPhaseResult struct {
	conns []*wstest.Client
	lat   attack.Latency
	took  time.Duration
}

// stormConnectAll opens n connections, stormDialers at a time,
// connection i as user u<i> with the header lines extra(i) gives, and
// fails the test unless each got 101 and was subscribed to its personal
// channel and to storm.
func stormConnectAll(t *testing.T, addr string, n int, deadline time.Time, extra func(i int) []string) stormPhaseResult {
	t.Helper()
	conns := make([]*wstest.Client, n)
	lat := make([]time.Duration, n)
	took, err := stormRun(n, stormDialers, deadline, func(i int) error {
		c, status, d, err := stormDial(addr, i, deadline, extra(i))
		if err != nil {
			return err
		}
		conns[i], lat[i] = c, d
		if status != http.StatusSwitchingProtocols {
			return fmt.Errorf("connection %d: got %d, want 101", i, status)
		}
		return stormSubscribed(c, i, deadline)
	})
	if err != nil {
		for _, c := range conns {
			if c != nil {
				c.Conn.Close()
			}
		}
		t.Fatal(err)
	}
	return stormPhaseResult{conns: conns, lat: attack.Summarise(lat, 0), took: took}
}

// stormRun calls do for 0 to n-1 on workers goroutines, and returns how
// long that took and an error naming the calls that failed, or that could
// not begin before deadline.
func stormRun(n, workers int, deadline time.Time, do func(i int) error) (time.Duration, error) {
	var next atomic.Int64
	var mu sync.Mutex
	var errs []error
	failed := 0
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				var err error
				if time.Now().After(deadline) {
					err = fmt.Errorf("%d: not begun by the phase's deadline", i)
				} else {
					err = do(i)
				}
				if err != nil {
					mu.Lock()
					if failed++; len(errs) < 5 {
						errs = append(errs, err)
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if failed > 0 {
		return took, fmt.Errorf("%d of %d failed, first: %w", failed, n, errors.Join(errs...))
	}
	return took, nil
}

// stormDial opens connection i (user u<i>, channels=storm) with the
// extra header lines, and times it from the dial to the answer's head. A
// 101 leaves it open; any other answer is read and closed.
func stormDial(addr string, i int, deadline time.Time, extra []string) (*wstest.Client, int, time.Duration, error) {
	start := time.Now()
	nc, err := (&net.Dialer{Deadline: deadline}).Dial("tcp", addr)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("connection %d: %w", i, err)
	}
	_ = nc.SetDeadline(deadline)
	c := &wstest.Client{Conn: nc, R: bufio.NewReader(nc)}
	req := wstest.UpgradeRequest(fmt.Sprintf("/ws?u=%d&channels=storm", i), append([]string{"Sec-WebSocket-Protocol: pushgate.v1"}, extra...)...)
	if _, err := c.Conn.Write([]byte(req)); err != nil {
		c.Conn.Close()
		return nil, 0, 0, fmt.Errorf("connection %d: %w", i, err)
	}
	resp, err := http.ReadResponse(c.R, nil)
	took := time.Since(start)
	if err != nil {
		c.Conn.Close()
		return nil, 0, 0, fmt.Errorf("connection %d: %w", i, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_, _ = io.Copy(io.Discard, resp.Body)
		c.Conn.Close()
		return nil, resp.StatusCode, took, nil
	}
	if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != "pushgate.v1" {
		c.Conn.Close()
		return nil, 0, 0, fmt.Errorf("connection %d: subprotocol %q", i, p)
	}
	return c, resp.StatusCode, took, nil
}

// stormSubscribed reads connection i's first messages: subscribed to #u<i>
// and to storm.
func stormSubscribed(c *wstest.Client, i int, deadline time.Time) error {
	want := map[string]bool{"#" + stormUser(i): true, "storm": true}
	for len(want) > 0 {
		m, err := stormRead(c, deadline)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		if m.Type != "subscribed" || !want[m.Channel] {
			return fmt.Errorf("connection %d got %s, want subscribed to one of %v", i, m.Raw, want)
		}
		delete(want, m.Channel)
	}
	return nil
}

// stormRead reads a text message by deadline (wstest.Client's reads set
// their own) and decodes it.
func stormRead(c *wstest.Client, deadline time.Time) (wstest.Msg, error) {
	_ = c.Conn.SetReadDeadline(deadline)
	h, err := ws.ReadHeader(c.R)
	if err != nil {
		return wstest.Msg{}, err
	}
	if h.OpCode != ws.OpText || !h.Fin || h.Masked || h.Length > 1<<16 {
		return wstest.Msg{}, fmt.Errorf("got frame %+v, want an unmasked text message", h)
	}
	m := wstest.Msg{Raw: make([]byte, h.Length)}
	if _, err := io.ReadFull(c.R, m.Raw); err != nil {
		return m, err
	}
	if err := json.Unmarshal(m.Raw, &m); err != nil {
		return m, fmt.Errorf("invalid JSON %.200q: %w", m.Raw, err)
	}
	return m, nil
}

// stormWaitConnections waits until the gateway counts n connections.
func stormWaitConnections(t *testing.T, admin string, n float64, deadline time.Time) {
	t.Helper()
	wstest.Until(t, time.Until(deadline), func() error {
		if v := value(scrape(t, admin), "pushgate_connections", ""); v != n {
			return fmt.Errorf("pushgate_connections %v, want %v", v, n)
		}
		return nil
	})
}

// stormOutage is what new connections got while the backend failed.
type stormOutage struct {
	lat      attack.Latency // to the 503
	slow     int            // refused only after --proxy-timeout
	reached  int            // requests the backend got
	timedOut int            // calls the gateway counted as timeout or error
	broken   int            // calls the open circuit refused
	err      error
}

// stormRefused opens stormOutageConns connections from connection first
// on, and checks each is refused with 503.
func stormRefused(addr string, first int, deadline time.Time) stormOutage {
	var o stormOutage
	lat := make([]time.Duration, stormOutageConns)
	_, o.err = stormRun(stormOutageConns, stormOutageDialers, deadline, func(i int) error {
		c, status, d, err := stormDial(addr, first+i, deadline, nil)
		if c != nil {
			c.Conn.Close()
		}
		lat[i] = d
		switch {
		case err != nil:
			return err
		case status != http.StatusServiceUnavailable:
			return fmt.Errorf("connection %d during the outage: got %d, want 503", first+i, status)
		}
		return nil
	})
	for _, d := range lat {
		if d >= stormProxyTimeout {
			o.slow++
		}
	}
	o.lat = attack.Summarise(lat, 0)
	return o
}

// stormDelivery is how a publish reached the established connections.
type stormDelivery struct {
	answered, all time.Duration // from the POST
}

// stormDeliver publishes to storm through the admin API and checks each
// of conns gets it.
func stormDeliver(admin string, conns []*wstest.Client, deadline time.Time) (stormDelivery, error) {
	var d stormDelivery
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+admin+"/api/publish",
		strings.NewReader(`{"channel":"storm","data":{"phase":"outage","seq":1}}`))
	if err != nil {
		return d, err
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return d, err
	}
	var res struct {
		Offset    uint64 `json:"offset"`
		Delivered int    `json:"delivered"`
	}
	err = json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	d.answered = time.Since(start)
	switch {
	case err != nil || resp.StatusCode != http.StatusOK:
		return d, fmt.Errorf("publish: %s, %v", resp.Status, err)
	case res.Delivered != len(conns):
		return d, fmt.Errorf("publish delivered to %d connections, want %d", res.Delivered, len(conns))
	}
	got := make([]time.Duration, len(conns))
	_, err = stormRun(len(conns), stormDialers, deadline, func(i int) error {
		m, err := stormRead(conns[i], deadline)
		got[i] = time.Since(start)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		var data struct {
			Phase string `json:"phase"`
			Seq   int    `json:"seq"`
		}
		if m.Type != "message" || m.Channel != "storm" || m.Offset != res.Offset || json.Unmarshal(m.Data, &data) != nil ||
			data.Phase != "outage" || data.Seq != 1 {
			return fmt.Errorf("connection %d got %s, want the message at offset %d on storm", i, m.Raw, res.Offset)
		}
		return nil
	})
	d.all = slices.Max(got)
	return d, err
}

func stormDelta(before, after map[string]*dto.MetricFamily, result string) float64 {
	label := "proxy=connect,result=" + result
	return value(after, "pushgate_proxy_requests_total", label) - value(before, "pushgate_proxy_requests_total", label)
}

// stormMeanCall is the mean duration of the connect proxy's calls between
// two readings, as the gateway timed them.
func stormMeanCall(before, after map[string]*dto.MetricFamily) time.Duration {
	read := func(fams map[string]*dto.MetricFamily) (float64, uint64) {
		for _, m := range fams["pushgate_proxy_request_duration_seconds"].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "proxy" && l.GetValue() == "connect" {
					return m.GetHistogram().GetSampleSum(), m.GetHistogram().GetSampleCount()
				}
			}
		}
		return 0, 0
	}
	s0, n0 := read(before)
	s1, n1 := read(after)
	if n1 <= n0 {
		return 0
	}
	return time.Duration((s1 - s0) / float64(n1-n0) * float64(time.Second))
}

func stormMs(d time.Duration, signed ...bool) string {
	s := strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
	if len(signed) > 0 && d >= 0 {
		s = "+" + s
	}
	return s
}

// stormN formats n with thousands separators, as the README does.
func stormN[N int | int64](n N) string {
	s := strconv.FormatInt(int64(n), 10)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// stormRate is n in d, a second.
func stormRate(n int, d time.Duration) string {
	return stormN(int(float64(n)/d.Seconds()+0.5)) + "/s"
}

// stormFigures is what the test measured, for the report.
type stormFigures struct {
	byToken, byProxy stormPhaseResult
	calls            []proxytest.Call // the backend's, during the storm
	peak             int64            // the backend's requests at once, at most
	meanCall         time.Duration    // the gateway's connect calls, on average
	outage           stormOutage
	delivery         stormDelivery
	readmitted       time.Duration // from the backend's recovery to a connection admitted
	refusedAfter     int           // connections refused meanwhile
}

// report logs the figures in a form for the README.
func (f *stormFigures) report(t *testing.T) {
	t.Helper()
	race := "off"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				race = "on"
			}
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "Connect storm (`go test -run TestConnectStorm -count=1 -v ./cmd/gateway`, the test's race detector %s): "+
		"%s WebSocket connections to one gateway process on loopback, %d opening at once, after an unmeasured round of %s; "+
		"the connect backend, in the test process, answers each after %v.\n\n",
		race, stormN(stormConns), stormDialers, stormN(stormWarmUp), stormLatency)
	fmt.Fprintf(&b, "| admitted by | handshake p50 | p99 | max | all %s in | connections/s |\n| --- | --- | --- | --- | --- | --- |\n", stormN(stormConns))
	for _, r := range []struct {
		name string
		r    stormPhaseResult
	}{{"a token (HS256)", f.byToken}, {"the connect proxy", f.byProxy}} {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.2f s | %s |\n", r.name, stormMs(r.r.lat.P50), stormMs(r.r.lat.P99), stormMs(r.r.lat.Max),
			r.r.took.Seconds(), stormRate(stormConns, r.r.took))
	}
	fmt.Fprintf(&b, "| added latency | %s | %s | | %+.2f s | |\n\n", stormMs(f.byProxy.lat.P50-f.byToken.lat.P50, true),
		stormMs(f.byProxy.lat.P99-f.byToken.lat.P99, true), (f.byProxy.took - f.byToken.took).Seconds())
	n := len(f.calls)
	fmt.Fprintf(&b, "The backend got %s connect requests (%s distinct client ids): %s over the storm, %s from the first to the last; "+
		"at most %d at once (--proxy-max-inflight 64), each %s on average as the gateway timed it.\n\n",
		stormN(n), stormN(n), stormRate(n, f.byProxy.took), stormRate(n-1, f.calls[n-1].At.Sub(f.calls[0].At)), f.peak, stormMs(f.meanCall))
	o := f.outage
	fmt.Fprintf(&b, "Outage (the backend holds every request past --proxy-timeout %v): %s of %s new connections, %d opening at once, "+
		"were refused with 503 in p50 %s, p99 %s, max %s. %d calls timed out (the backend got %d), then the open circuit refused %d at once; "+
		"%d connections waited %v or more. Meanwhile a publish to the %s established connections was answered in %s "+
		"and had reached them all in %s.\n\n",
		stormProxyTimeout, stormN(stormOutageConns), stormN(stormOutageConns), stormOutageDialers, stormMs(o.lat.P50), stormMs(o.lat.P99),
		stormMs(o.lat.Max), o.timedOut, o.reached, o.broken, o.slow, stormProxyTimeout, stormN(stormConns),
		stormMs(f.delivery.answered), stormMs(f.delivery.all))
	fmt.Fprintf(&b, "Recovery: a new connection was admitted %s after the backend answered again (%d tries refused meanwhile by the open circuit).",
		stormMs(f.readmitted), f.refusedAfter)
	t.Logf("\n%s", b.String())
}
