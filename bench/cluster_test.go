package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pushgate/pushgate/internal/proctest"
)

// The cluster scenario end to end at a small size: Debian's nats-server,
// three gateways, 3,000 clients spread over them. Every client connects,
// every broadcast reaches every client, and across the rolling restart
// each client of the stopped node reconnects to another and every client
// has every offset exactly once.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway and runs a cluster")
	}
	nats := proctest.Program(t, "nats-server") // under CI=true, missing fails
	res := runBench(t, "cluster", "-n", "3000", "--nodes", "3", "--nats-server", nats,
		"--conns-per-worker", "1500", // a race-detector worker holds at most 8,128 goroutines
		"--hold", "500ms", "--warmup", "1", "--messages", "5", "--restart-rate", "10",
		"--hot-publishers", "16", "--hot-for", "1s",
		// Clients built with the race detector on a shared machine can
		// fall behind by more than the default 100 messages of history.
		"--gateway-flags", "--drain-timeout 3s --close-timeout 1s --history-size 1000")
	if len(res.Runs) != 1 || res.Params.Nodes != 3 || res.Params.Workers != 2 {
		t.Fatalf("%d runs, params %+v", len(res.Runs), res.Params)
	}
	r := res.Runs[0]
	c := r.Cluster
	if r.Conns != 3000 || r.ConnectFailed != 0 || r.ConnectRate <= 0 {
		t.Errorf("connected %d, %d failed, at %v/s", r.Conns, r.ConnectFailed, r.ConnectRate)
	}
	// Round robin: a third on each node.
	if len(c.Nodes) != 3 {
		t.Fatalf("%d nodes", len(c.Nodes))
	}
	for _, n := range c.Nodes {
		if n.Conns != 1000 || n.RSSLoaded <= 0 || n.Goroutines <= 0 {
			t.Errorf("%s: %d connections, RSS %d, %d goroutines", n.Node, n.Conns, n.RSSLoaded, n.Goroutines)
		}
	}
	if r.Expected != 5*3000 || r.Delivered != r.Expected || r.Duplicates != 0 || len(r.Publishes) != 5 || r.TimeToAll <= 0 || c.TimeToAllMax < r.TimeToAll {
		t.Errorf("broadcast: %d of %d delivered, %d duplicates, %d publishes, time-to-all %v, max %v",
			r.Delivered, r.Expected, r.Duplicates, len(r.Publishes), r.TimeToAll, c.TimeToAllMax)
	}
	for _, p := range r.Publishes {
		if p.Delivered != 3000 {
			t.Errorf("publish %d reached %d clients", p.Seq, p.Delivered)
		}
	}

	// The hot channel: the scenario checked the offsets answered were
	// 1..N each once; here, that it ran.
	if h := c.Hot; h == nil || h.Publishers != 16 || h.Publishes < 16 || h.Rate <= 0 {
		t.Errorf("hot channel: %+v", h)
	}

	rs := c.Restart
	if rs == nil {
		t.Fatal("no restart")
	}
	// The channel's offsets: the first publish, the broadcasts, and the
	// publishes during the restart; each client had each once.
	if rs.Publishes < 10 || rs.PublishErrors != 0 || rs.FinalOffset != int64(1+1+5+rs.Publishes) {
		t.Errorf("restart: %d publishes, %d failed, last offset %d", rs.Publishes, rs.PublishErrors, rs.FinalOffset)
	}
	if !rs.Passed || rs.Clients != 3000 || rs.Complete != 3000 || rs.Lossy != 0 || rs.MissingOffsets != 0 || rs.Duplicated != 0 ||
		rs.Resets != 0 || rs.Failed != 0 || len(rs.Problems) != 0 {
		t.Errorf("restart: %+v", rs)
	}
	if rs.Node != "node3" || rs.Held != 1000 || rs.Closed != 1000 || rs.Reconnected != 1000 || rs.Closes["1001"] != 1000 || len(rs.Closes) != 1 {
		t.Errorf("restart of %s holding %d: %d closed (%v), %d reconnected", rs.Node, rs.Held, rs.Closed, rs.Closes, rs.Reconnected)
	}
	// Recovery with since was put to work: publishes at 10 a second fall
	// between some of the 1,000 clients' closes and their resubscriptions.
	if rs.Recovered == 0 || rs.RecoveredSum < rs.Recovered {
		t.Errorf("%d clients recovered %d offsets from history", rs.Recovered, rs.RecoveredSum)
	}
	if rs.ReconnectTime <= 0 || rs.DrainTime <= 0 || rs.RestartedReady <= 0 {
		t.Errorf("reconnected in %v ms, drained in %v ms, ready again in %v ms", rs.ReconnectTime, rs.DrainTime, rs.RestartedReady)
	}
	// The stopped node's clients are on the others; started again, it
	// has none.
	if a, b, z := c.Nodes[0].ConnsAfter, c.Nodes[1].ConnsAfter, c.Nodes[2].ConnsAfter; a+b != 3000 || a < 1000 || b < 1000 || z != 0 {
		t.Errorf("connections at the end: %d, %d, %d", a, b, z)
	}
	if len(c.Timeline) < 10 || len(c.Phases) != 6 || c.Phases[0].Name != "connect" || c.Phases[3].Name != "hot channel" {
		t.Errorf("%d timeline samples, phases %+v", len(c.Timeline), c.Phases)
	}
	// 1,000 connections a node: too few for RSS per connection.
	for _, n := range c.Nodes {
		if n.RSSNote == "" {
			t.Errorf("%s: RSS/conn %v given at %d connections", n.Node, n.RSSPerConn, n.Conns)
		}
	}

	var out bytes.Buffer
	printSummary(&out, res)
	for _, want := range []string{"node3 stopped with SIGTERM holding 1000 connections", "3000 of 3000 complete", "closes 1001 ×1000", "node3 started again"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	page := writeTestReport(t, res)
	checkHTML(t, page)
	for _, want := range []string{"<h2>Nodes of pushgate</h2>", "<h3>Connections per node over time</h3>", "<h3>Memory per node</h3>",
		"<h3>Time-to-all per publish</h3>", "<h3>Latency distribution</h3>"} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %s", want)
		}
	}
}
