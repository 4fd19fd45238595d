package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/pushgate/pushgate/internal/proctest"
	"github.com/pushgate/pushgate/internal/wstest"
)

// TestClusterBehindHAProxy runs the real topology as separate processes on
// loopback: Debian's nats-server with JetStream, two gateways sharing it,
// and HAProxy in front of them. Clients connect through HAProxy; a publish
// to either gateway reaches all of them. One gateway is then stopped with
// SIGTERM: it drains with 1001, its clients reconnect through HAProxy to
// the other and recover with since, while publishing goes on. Every client
// ends with every offset exactly once, in order. It runs with each
// --cluster-read: with served, the gateway the clients move to reads their
// channel from the stream for its first subscriber there.
func TestClusterBehindHAProxy(t *testing.T) {
	for _, read := range []string{"all", "served"} {
		t.Run("read="+read, func(t *testing.T) { clusterBehindHAProxy(t, read) })
	}
}

func clusterBehindHAProxy(t *testing.T, read string) {
	natsBin, haproxyBin := proctest.Program(t, "nats-server"), proctest.Program(t, "haproxy")
	bin := proctest.Gateway(t)

	natsAddr, natsMon := proctest.FreeAddr(t), proctest.FreeAddr(t)
	natsHost, natsPort, _ := net.SplitHostPort(natsAddr)
	_, monPort, _ := net.SplitHostPort(natsMon)
	natsArgs := []string{"-a", natsHost, "-p", natsPort, "-m", monPort, "-js", "-sd", t.TempDir()}
	nats := proctest.Start(t, "", natsBin, natsArgs...)
	nats.WaitHTTP(t, "http://"+natsMon+"/healthz", http.StatusOK)

	type gateway struct {
		*proctest.Process
		addr, admin string
	}
	var gws []gateway
	for range 2 {
		g := gateway{addr: proctest.FreeAddr(t), admin: proctest.FreeAddr(t)}
		g.Process = proctest.Start(t, "", bin, "--addr", g.addr, "--admin-addr", g.admin, "--broker", "nats://"+natsAddr, "--cluster-read", read,
			"--drain-timeout", "4s", "--close-timeout", "1s", "--log-format", "json")
		gws = append(gws, g)
	}
	for _, g := range gws {
		g.Process.WaitHTTP(t, "http://"+g.admin+"/readyz", http.StatusOK)
	}

	lb, dir := proctest.FreeAddr(t), t.TempDir()
	cfg, stats := filepath.Join(dir, "haproxy.cfg"), filepath.Join(dir, "haproxy.sock")
	if err := os.WriteFile(cfg, []byte(haproxyConfig(lb, stats, [][2]string{{gws[0].addr, gws[0].admin}, {gws[1].addr, gws[1].admin}})), 0o600); err != nil {
		t.Fatal(err)
	}
	hap := proctest.Start(t, "", haproxyBin, "-f", cfg, "-db")
	hap.WaitHTTP(t, "http://"+lb+"/healthz", http.StatusOK)
	wstest.Until(t, 20*time.Second, func() error {
		for name, s := range haproxyServers(t, stats) {
			if s["status"] != "UP" || !strings.HasPrefix(s["check_status"], "L7OK") {
				return fmt.Errorf("HAProxy: %s is %s (check %s)", name, s["status"], s["check_status"])
			}
		}
		return nil
	})

	const clients = 300
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cs := make([]*clusterClient, clients)
	var wg sync.WaitGroup
	for i := range cs {
		cs[i] = &clusterClient{}
		wg.Go(func() { cs[i].run(ctx, "ws://"+lb) })
	}
	defer func() { cancel(); wg.Wait() }()
	waitAll(t, cs, "every client subscribed", func(c *clusterClient) error {
		if c.subscribed == 0 {
			return errors.New("not subscribed")
		}
		return nil
	})
	// HAProxy spread them over both gateways, and each gateway holds the
	// connections HAProxy sent it. Round robin alternates between the
	// gateways while both pass their checks; if HAProxy took one out for a
	// while (a check that failed on a loaded machine), the split is its
	// choice, not the gateways', and only has to use both.
	per := [2]int{}
	var lbView map[string]map[string]string
	wstest.Until(t, 10*time.Second, func() error {
		lbView = haproxyServers(t, stats)
		for i, g := range gws {
			per[i] = gatewayConnections(t, g.admin)
			if s := lbView[fmt.Sprintf("g%d", i+1)]; s["scur"] != strconv.Itoa(per[i]) {
				return fmt.Errorf("gateway %d holds %d connections, HAProxy has %s sessions on it", i+1, per[i], s["scur"])
			}
		}
		return nil
	})
	least := clients / 4
	if lbView["g1"]["chkdown"] != "0" || lbView["g2"]["chkdown"] != "0" {
		t.Logf("HAProxy took a gateway out while the clients connected: g1 %v, g2 %v", lbView["g1"], lbView["g2"])
		least = 1
	}
	if per[0]+per[1] != clients || per[0] < least || per[1] < least {
		t.Fatalf("connections per gateway %v; want %d spread over both, at least %d each", per, clients, least)
	}

	// A publish to either node reaches every client.
	offset := 0
	publishTo := func(g gateway) {
		t.Helper()
		offset++
		body := fmt.Sprintf(`{"channel":"news","data":{"n":%d}}`, offset)
		resp, err := http.Post("http://"+g.admin+"/api/publish", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var r struct{ Offset int }
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || r.Offset != offset {
			t.Fatalf("publish %d to %s: status %d, offset %d, %v", offset, g.admin, resp.StatusCode, r.Offset, err)
		}
	}
	for i := range 20 {
		publishTo(gws[i%2])
	}
	waitOffsets(t, cs, offset)

	// Stop the first gateway while publishing to the second goes on.
	stopped := make(chan error, 1)
	go func() { stopped <- gws[0].Stop(t, syscall.SIGTERM, 15*time.Second) }()
	for range 40 {
		publishTo(gws[1])
		time.Sleep(25 * time.Millisecond) // spread over the drain: load, not synchronisation
	}
	if err := <-stopped; err != nil {
		t.Fatalf("the drained gateway exited with %v", err)
	}
	for range 20 {
		publishTo(gws[1])
	}
	waitOffsets(t, cs, offset)

	moved := 0
	for i, c := range cs {
		c.mu.Lock()
		closes, recovered := slices.Clone(c.closes), slices.Clone(c.recovered)
		c.mu.Unlock()
		if len(closes) == 0 {
			continue
		}
		moved++
		if len(closes) != 1 || closes[0] != websocket.StatusGoingAway {
			t.Fatalf("client %d was closed with %v; want one 1001", i, closes)
		}
		if len(recovered) != 1 || !recovered[0] {
			t.Fatalf("client %d resubscribed with recovered=%v; want true", i, recovered)
		}
	}
	if moved != per[0] {
		t.Fatalf("%d clients moved to the other gateway; the drained one held %d", moved, per[0])
	}
	if n := gatewayConnections(t, gws[1].admin); n != clients {
		t.Fatalf("the remaining gateway holds %d connections; want all %d", n, clients)
	}
	if !strings.Contains(gws[0].Logs.String(), `"msg":"draining"`) {
		t.Fatalf("the stopped gateway did not log its drain:\n%s", gws[0].Logs.String())
	}
	// The survivor published 70 of the 80 and received all of them, 10
	// from the other node.
	checked := map[string]bool{}
	survivor := gws[1].admin
	checkMetrics(t, survivor, checked,
		expect{name: "pushgate_broker_up", want: 1},
		expect{name: "pushgate_broker_published_total", want: 70},
		expect{name: "pushgate_broker_publish_duration_seconds", want: 70},
		expect{name: "pushgate_broker_received_total", want: 80},
		expect{name: "pushgate_publishes_total", label: "source=broker", want: 10},
		expect{name: "pushgate_publishes_total", label: "source=api", want: 70},
		expect{name: "pushgate_fanout_duration_seconds", want: 80},
		expect{name: "pushgate_broker_publish_errors_total", want: 0},
		expect{name: "pushgate_broker_invalid_messages_total", want: 0},
		expect{name: "pushgate_broker_gaps_total", want: 0},
		expect{name: "pushgate_broker_lag_messages", want: 0},
		expect{name: "pushgate_broker_reconnects_total", want: 0},
		expect{name: "pushgate_broker_pending_publishes", want: 0},
		// Nothing expired from history (--history-ttl is 5 minutes): a
		// served node once gave live messages from NATS 2.9 no time.
		expect{name: "pushgate_history_evictions_total", label: "reason=expired", want: 0},
	)
	// Served: the survivor read news, loaded once for its first
	// subscriber there, and nothing else.
	served := 0.0
	if read == "served" {
		served = 1
	}
	checkMetrics(t, survivor, checked,
		expect{name: "pushgate_broker_channels_served", want: served},
		expect{name: "pushgate_broker_channel_loads_total", want: served},
		expect{name: "pushgate_broker_channel_loads_abandoned_total", want: 0},
		expect{name: "pushgate_broker_channel_fill_errors_total", want: 0},
	)

	// NATS goes away: the gateway keeps its clients, says it is not ready,
	// and refuses publishes with an error; NATS comes back and delivery
	// resumes.
	if err := nats.Stop(t, syscall.SIGTERM, 15*time.Second); err != nil {
		t.Logf("nats-server exited with %v", err)
	}
	gws[1].WaitHTTP(t, "http://"+survivor+"/readyz", http.StatusServiceUnavailable)
	resp, err := http.Post("http://"+survivor+"/api/publish", "application/json", strings.NewReader(`{"channel":"news","data":0}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("publish with NATS down: %d, want 503", resp.StatusCode)
	}
	checkMetrics(t, survivor, checked,
		expect{name: "pushgate_broker_up", want: 0},
		expect{name: "pushgate_publishes_refused_total", label: "reason=unavailable", want: 1},
		expect{name: "pushgate_connections", want: clients},
	)
	proctest.Start(t, "", natsBin, natsArgs...) // the same port and store: the stream is still there
	gws[1].WaitHTTP(t, "http://"+survivor+"/readyz", http.StatusOK)
	publishTo(gws[1])
	waitOffsets(t, cs, offset)
	checkMetrics(t, survivor, checked,
		expect{name: "pushgate_broker_up", want: 1},
		expect{name: "pushgate_broker_reconnects_total", min: 1},
	)
	for _, name := range []string{"pushgate_broker_up", "pushgate_broker_published_total", "pushgate_broker_publish_errors_total",
		"pushgate_broker_publish_duration_seconds", "pushgate_broker_received_total", "pushgate_broker_invalid_messages_total",
		"pushgate_broker_lag_messages", "pushgate_broker_reconnects_total", "pushgate_broker_gaps_total",
		"pushgate_broker_pending_publishes"} {
		if !checked[name] {
			t.Errorf("%s not checked", name)
		}
	}
	for name := range scrape(t, survivor) {
		if strings.HasPrefix(name, "pushgate_broker_") && !checked[name] {
			t.Errorf("%s is exported but not checked", name)
		}
	}
}

// haproxyConfig balances WebSockets over the gateways, checking each one's
// /readyz on its admin port, so a draining gateway gets no new clients. A
// gateway is taken out after three failed checks in a row, and a check
// has 5s to be answered: a gateway slow to answer on a loaded machine is
// not taken for a dead one, while a draining one (503 at once, then no
// admin listener) is out within a second. Its stats socket is at stats.
func haproxyConfig(bind, stats string, gateways [][2]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
	maxconn 2000
	stats socket %s mode 600 level user
defaults
	mode http
	timeout connect 2s
	timeout client 60s
	timeout server 60s
	timeout tunnel 1h
	timeout client-fin 5s
	timeout check 5s
	retries 3
	option redispatch 1
frontend ws
	bind %s
	default_backend gateways
backend gateways
	balance roundrobin
	option httpchk GET /readyz
	http-check expect status 200
`, stats, bind)
	for i, g := range gateways {
		_, adminPort, _ := net.SplitHostPort(g[1])
		fmt.Fprintf(&b, "\tserver g%d %s check port %s inter 200ms fall 3 rise 2\n", i+1, g[0], adminPort)
	}
	return b.String()
}

// haproxyServers reads HAProxy's view of the backend's servers from its
// stats socket ("show stat"): each server's fields by name (status,
// check_status, chkdown, scur, ...), by server name.
func haproxyServers(t *testing.T, socket string) map[string]map[string]string {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wstest.Timeout))
	if _, err := io.WriteString(c, "show stat\n"); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(c) // HAProxy answers one command and closes
	if err != nil {
		t.Fatal(err)
	}
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(out), "# ")))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) == 0 {
		t.Fatalf("HAProxy show stat: %v\n%s", err, out)
	}
	servers := map[string]map[string]string{}
	for _, row := range rows[1:] {
		if len(row) < 2 || row[0] != "gateways" || row[1] == "BACKEND" {
			continue
		}
		fields := map[string]string{}
		for i, name := range rows[0] {
			if i < len(row) {
				fields[name] = row[i]
			}
		}
		servers[row[1]] = fields
	}
	return servers
}

func gatewayConnections(t *testing.T, admin string) int {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/api/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// In cluster mode /api/stats sums the nodes; this node's own counts
	// come first under "nodes".
	var s struct{ Nodes []struct{ Connections int } }
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || len(s.Nodes) == 0 {
		t.Fatalf("stats without nodes: %v", err)
	}
	return s.Nodes[0].Connections
}

// clusterClient is a pushgate.v1 client as an application writes one: it
// subscribes to news, and when its connection ends it reconnects and
// subscribes again from the last offset it saw.
type clusterClient struct {
	mu         sync.Mutex
	offsets    []uint64
	epoch      string
	subscribed int
	closes     []websocket.StatusCode
	recovered  []bool // for each resubscription
	err        error
}

func (c *clusterClient) run(ctx context.Context, base string) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		c.mu.Lock()
		resume := c.subscribed > 0
		since, epoch := uint64(0), c.epoch
		if n := len(c.offsets); n > 0 {
			since = c.offsets[n-1]
		}
		c.mu.Unlock()
		url := base + "/ws?channels=news"
		if resume {
			url = base + "/ws"
		}
		conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"pushgate.v1"}})
		if err != nil {
			time.Sleep(min(time.Duration(attempt+1)*20*time.Millisecond, 200*time.Millisecond)) // a client's backoff
			continue
		}
		attempt = 0
		if resume {
			sub := fmt.Sprintf(`{"op":"subscribe","channel":"news","since":%d,"epoch":%q}`, since, epoch)
			if err := conn.Write(ctx, websocket.MessageText, []byte(sub)); err != nil {
				conn.CloseNow()
				continue
			}
		}
		err = c.read(ctx, conn, resume)
		conn.CloseNow()
		if code := websocket.CloseStatus(err); code != -1 {
			c.mu.Lock()
			c.closes = append(c.closes, code)
			c.mu.Unlock()
		}
	}
}

func (c *clusterClient) read(ctx context.Context, conn *websocket.Conn, resume bool) error {
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			return err
		}
		var m struct {
			Type      string
			Offset    uint64
			Epoch     string
			Recovered bool
			Code      string
		}
		if err := json.Unmarshal(data, &m); err != nil {
			return err
		}
		c.mu.Lock()
		switch m.Type {
		case "subscribed":
			c.subscribed++
			if m.Epoch != "" {
				c.epoch = m.Epoch
			}
			if resume {
				c.recovered = append(c.recovered, m.Recovered)
			}
		case "message":
			c.offsets = append(c.offsets, m.Offset)
		default:
			c.err = fmt.Errorf("unexpected %s", data)
		}
		c.mu.Unlock()
	}
}

// waitAll waits until cond holds for every client, reporting the first
// client it fails for.
func waitAll(t *testing.T, cs []*clusterClient, what string, cond func(*clusterClient) error) {
	t.Helper()
	wstest.Until(t, 30*time.Second, func() error {
		for i, c := range cs {
			c.mu.Lock()
			err := cond(c)
			if c.err != nil {
				err = c.err
			}
			c.mu.Unlock()
			if err != nil {
				return fmt.Errorf("waiting for %s: client %d: %w", what, i, err)
			}
		}
		return nil
	})
}

// waitOffsets waits until every client has offsets 1..n, each once, in
// order.
func waitOffsets(t *testing.T, cs []*clusterClient, n int) {
	t.Helper()
	waitAll(t, cs, "offsets 1.."+strconv.Itoa(n)+" at every client", func(c *clusterClient) error {
		for i, o := range c.offsets {
			if o != uint64(i+1) {
				// What a failure needs to be explained: the client's
				// connections, how each ended and whether it recovered.
				return fmt.Errorf("offset %d at position %d (of %d received): offsets %v; subscribed %d times, recovered %v, closes %v",
					o, i+1, len(c.offsets), c.offsets[max(0, i-5):min(len(c.offsets), i+5)], c.subscribed, c.recovered, c.closes)
			}
		}
		if len(c.offsets) != n {
			return fmt.Errorf("%d of %d offsets", len(c.offsets), n)
		}
		return nil
	})
}
