package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/pushgate/pushgate/internal/attack"
)

// Results is what one invocation of the harness measured: every run of
// every target, and per target the median over its runs. It is what
// --json writes, what --compare reads and what --report plots.
type Results struct {
	Scenario string    `json:"scenario"`
	Date     time.Time `json:"date"`
	Command  string    `json:"command"`
	Host     Host      `json:"host"`
	Params   Params    `json:"params"`
	Runs     []Run     `json:"runs"`
	// Medians holds, per target in the order measured, the median of each
	// figure over that target's runs.
	Medians []Run `json:"medians"`
}

// Host describes the machine the figures come from.
type Host struct {
	CPUs   int    `json:"cpus"`
	Go     string `json:"go"`
	Kernel string `json:"kernel"`
}

// Params are the settings the scenario ran with.
type Params struct {
	Conns          int           `json:"conns"`
	Channels       int           `json:"channels"`
	Messages       int           `json:"messages,omitempty"`
	Size           int           `json:"size"`
	Rate           float64       `json:"rate,omitempty"`       // publishes per second (fanout, first throughput step)
	ConnectRate    float64       `json:"connect_rate"`         // connections per second, all workers together
	Duration       time.Duration `json:"duration,omitempty"`   // throughput step length, churn length
	P99Target      time.Duration `json:"p99_target,omitempty"` // throughput
	Workers        int           `json:"workers"`
	ConnsPerWorker int           `json:"conns_per_worker"`
	Nodes          int           `json:"nodes,omitempty"` // cluster: gateway processes
}

// Run is one measurement of one target. Only the fields of its scenario
// are set.
type Run struct {
	Target string `json:"target"`
	Run    int    `json:"run"` // 1-based; 0 in Medians

	// Connecting (every scenario).
	Conns         int     `json:"conns"`
	ConnectFailed int     `json:"connect_failed"`
	ConnectRate   float64 `json:"connect_rate"` // achieved, per second

	// Memory (idle, churn). Bytes; -1 when not known.
	RSSBase          int64       `json:"rss_base,omitempty"`
	RSSLoaded        int64       `json:"rss_loaded,omitempty"`
	RSSPerConn       float64     `json:"rss_per_conn,omitempty"`
	KernelPerConn    float64     `json:"kernel_per_conn,omitempty"` // /proc/meminfo Slab delta / conns, whole machine
	UsedPerConn      float64     `json:"used_per_conn,omitempty"`   // MemTotal-MemAvailable delta / conns, whole machine (clients too)
	GoroutinesBase   int64       `json:"goroutines_base,omitempty"`
	GoroutinesLoaded int64       `json:"goroutines_loaded,omitempty"`
	Memory           []MemSample `json:"memory,omitempty"` // RSS as connections were opened

	// Delivery (fanout, throughput).
	Expected   int64     `json:"expected,omitempty"`
	Delivered  int64     `json:"delivered,omitempty"`
	Duplicates int64     `json:"duplicates,omitempty"` // a message seen twice on one connection, or out of order
	Latency    *Latency  `json:"latency,omitempty"`
	Publishes  []Publish `json:"publishes,omitempty"`      // fanout: one per publish
	TimeToAll  Millis    `json:"time_to_all_ms,omitempty"` // fanout: median over publishes
	CPUPerMsg  float64   `json:"cpu_per_msg_us,omitempty"` // server CPU (user+system) per delivered message, µs
	Steps      []Step    `json:"steps,omitempty"`          // throughput: one per offered rate
	Throughput float64   `json:"throughput,omitempty"`     // throughput: best delivered/s at 100% and p99 ≤ target

	// Attacks (hostile), in the order they ran.
	Attacks []AttackRun `json:"attacks,omitempty"`

	// Cluster: per node, the rolling restart, and connections and memory
	// over time. The fields above hold the totals: RSS and goroutines
	// summed over the nodes, RSS per connection the sum of their growth
	// over all connections, the broadcast's delivery.
	Cluster *ClusterRun `json:"cluster,omitempty"`

	// Leak check (churn).
	Churned    int64      `json:"churned,omitempty"` // connections opened and closed
	Baseline   *Snapshot  `json:"baseline,omitempty"`
	AfterWarm  *Snapshot  `json:"after_warmup,omitempty"`
	AfterChurn *Snapshot  `json:"after_churn,omitempty"`
	Leak       *LeakCheck `json:"leak,omitempty"`

	// Unmeasured says, by a figure's JSON name (rss_per_conn,
	// kernel_per_conn, used_per_conn, cpu_per_msg_us), why that figure
	// is absent: below some size a figure is the noise of its readings
	// (see floors.go).
	Unmeasured map[string]string `json:"unmeasured,omitempty"`

	Errors []string `json:"errors,omitempty"`
}

// Millis is a duration in milliseconds, as JSON numbers people can read.
type Millis float64

// Ms converts d.
func Ms(d time.Duration) Millis { return Millis(float64(d) / float64(time.Millisecond)) }

// MemSample is the target's RSS with Conns connections open.
type MemSample struct {
	Conns int   `json:"conns"`
	RSS   int64 `json:"rss"`
}

// Latency summarises send-to-receive times over all deliveries. Buckets
// is the distribution for plots: counts of deliveries per latency range.
type Latency struct {
	P50     Millis   `json:"p50_ms"`
	P90     Millis   `json:"p90_ms"`
	P99     Millis   `json:"p99_ms"`
	Max     Millis   `json:"max_ms"`
	Mean    Millis   `json:"mean_ms"`
	Count   int64    `json:"count"`
	Buckets []Bucket `json:"buckets,omitempty"`
}

// Bucket counts the deliveries with latency in [From, To).
type Bucket struct {
	From  Millis `json:"from_ms"`
	To    Millis `json:"to_ms"`
	Count int64  `json:"count"`
}

// Publish is one fan-out publish: when the last subscriber had it,
// counted from the send time it carried.
type Publish struct {
	Seq       int    `json:"seq"`
	TimeToAll Millis `json:"time_to_all_ms"`
	Delivered int64  `json:"delivered"`
}

// Step is one offered publish rate of the throughput scenario.
type Step struct {
	Rate      float64 `json:"rate"`      // publishes per second offered
	Published int64   `json:"published"` // publishes the target accepted
	Rejected  int64   `json:"rejected"`  // publishes refused or failed
	Expected  int64   `json:"expected"`
	Delivered int64   `json:"delivered"`
	PerSecond float64 `json:"delivered_per_second"`
	P99       Millis  `json:"p99_ms"`
	CPUPerMsg float64 `json:"cpu_per_msg_us,omitempty"`
	CPUNote   string  `json:"cpu_per_msg_note,omitempty"` // why CPUPerMsg is absent
	Passed    bool    `json:"passed"`                     // 100% delivered and p99 within target
}

// Snapshot is the target's footprint at one moment of a churn run.
type Snapshot struct {
	Conns      int64 `json:"conns"` // as the target reports them; -1 if unknown
	RSS        int64 `json:"rss"`
	Goroutines int64 `json:"goroutines"`
	HeapLive   int64 `json:"heap_live"` // Go heap after a forced GC; -1 if unknown
}

// LeakCheck compares after-churn with after-warm-up.
type LeakCheck struct {
	RSSRatio        float64 `json:"rss_ratio"`
	GoroutinesRatio float64 `json:"goroutines_ratio"`
	HeapRatio       float64 `json:"heap_ratio"`
	Passed          bool    `json:"passed"` // live heap and goroutines within 5%
}

// AttackRun is one attack of the hostile scenario: the gateway's RSS
// before, at its peak and after (bytes; -1 unknown), the healthy client's
// latency, what the attackers did and how the gateway closed them, the
// gateway's gauges at their peak and what its counters counted.
type AttackRun struct {
	Name      string             `json:"name"`
	About     string             `json:"about"`
	Conns     int                `json:"conns"` // attack connections (of each kind, for bombs)
	RSSBefore int64              `json:"rss_before"`
	RSSPeak   int64              `json:"rss_peak"`
	RSSAfter  int64              `json:"rss_after"` // after --settle
	Healthy   HealthFigures      `json:"healthy"`
	Attackers Tally              `json:"attackers"`
	Gauges    map[string]float64 `json:"gauges,omitempty"`
	Counters  map[string]float64 `json:"counters,omitempty"`
	// Passed: RSS within --rss-bound, the healthy client's p99 within
	// --p99, none of its probes lost, and it stayed connected.
	Passed   bool     `json:"passed"`
	Failures []string `json:"failures,omitempty"`
}

// Tally is what an attack's connections did: connections upgraded and
// refused, messages and bytes sent, and the gateway's close codes.
type Tally attack.Tally

// HealthFigures is what the healthy client measured during an attack.
type HealthFigures struct {
	Ops        HealthLatency  `json:"ops"`        // a subscribe or an unsubscribe to its reply
	Deliveries HealthLatency  `json:"deliveries"` // an API publish to its arrival
	Errors     map[string]int `json:"errors,omitempty"`
	Err        string         `json:"err,omitempty"` // why it stopped early
}

// HealthLatency summarises one kind of probe; an unanswered probe counts
// with the time it waited.
type HealthLatency struct {
	P50    Millis `json:"p50_ms"`
	P99    Millis `json:"p99_ms"`
	Max    Millis `json:"max_ms"`
	Probes int    `json:"probes"`
	Lost   int    `json:"lost"`
}

// ClusterRun is what the cluster scenario measured beyond the totals.
type ClusterRun struct {
	Nodes        []NodeRun `json:"nodes"`
	TimeToAllMax Millis    `json:"time_to_all_max_ms"` // the broadcast's slowest publish
	// ClientRSSPerConn is the harness's own worker processes' RSS growth
	// per connection: the clients' side, on the same machine.
	ClientRSSPerConn float64          `json:"client_rss_per_conn,omitempty"`
	Hot              *HotRun          `json:"hot,omitempty"`
	Restart          *RestartRun      `json:"restart,omitempty"`
	Timeline         []TimelineSample `json:"timeline,omitempty"`
	Phases           []Phase          `json:"phases,omitempty"`
}

// NodeRun is one gateway process of the cluster.
type NodeRun struct {
	Node           string  `json:"node"`                        // node1, node2, …
	Conns          int64   `json:"conns"`                       // held while idle, as it counts them
	RSSBase        int64   `json:"rss_base"`                    // before the clients connected
	RSSLoaded      int64   `json:"rss_loaded"`                  // while they were held
	RSSPerConn     float64 `json:"rss_per_conn,omitempty"`      // (loaded − base) / conns
	RSSNote        string  `json:"rss_per_conn_note,omitempty"` // why RSSPerConn is absent
	GoroutinesBase int64   `json:"goroutines_base"`
	Goroutines     int64   `json:"goroutines"`          // while the clients were held
	ConnsAfter     int64   `json:"conns_after_restart"` // at the end, after the rolling restart; -1 down
}

// HotRun is the hot channel: concurrent publishers, each waiting for its
// publish, to one channel through every node's API in turn. The offsets
// they were answered must be 1..Publishes, each once.
type HotRun struct {
	Publishers int     `json:"publishers"`
	Seconds    float64 `json:"seconds"`
	Publishes  int64   `json:"publishes"`
	Rate       float64 `json:"rate"` // publishes a second
}

// RestartRun is the rolling restart: one node stopped with SIGTERM while
// publishes continue; its clients reconnect to the others and recover
// with since, each checking it got every offset exactly once.
type RestartRun struct {
	Node          string  `json:"node"`           // the node stopped
	Held          int64   `json:"held"`           // its connections when it was stopped
	DrainTime     Millis  `json:"drain_ms"`       // SIGTERM to its exit
	ReconnectTime Millis  `json:"reconnect_ms"`   // first connection closed to the last subscribed again
	Rate          float64 `json:"rate"`           // publishes per second offered meanwhile
	Publishes     int     `json:"publishes"`      // publishes made meanwhile, through the first node
	PublishErrors int     `json:"publish_errors"` // publishes refused or failed
	FinalOffset   int64   `json:"final_offset"`   // the channel's last offset
	// Per client, against every publish made since it subscribed.
	Clients        int64            `json:"clients"`
	Complete       int64            `json:"complete"`        // every offset, once each, in order
	Lossy          int64            `json:"lossy"`           // clients that missed offsets
	MissingOffsets int64            `json:"missing_offsets"` // over all clients
	Duplicated     int64            `json:"duplicated"`      // clients sent an offset twice or out of order
	Resets         int64            `json:"resets"`          // resubscriptions not recovered
	Failed         int64            `json:"failed"`          // clients that could not reconnect
	Closed         int64            `json:"closed"`          // clients whose connection was closed
	Reconnected    int64            `json:"reconnected"`     // clients that subscribed again on another node
	Recovered      int64            `json:"recovered"`       // clients sent offsets from history on resubscribing
	RecoveredSum   int64            `json:"recovered_offsets"`
	Closes         map[string]int64 `json:"closes,omitempty"`
	Problems       []string         `json:"problems,omitempty"` // the first few, client by client
	// Latency of the deliveries meanwhile, replays after reconnecting
	// included.
	Latency *Latency `json:"latency,omitempty"`
	// RestartedReady is how long the node took, started again, until
	// its /readyz answered 200 (0: not started again).
	RestartedReady Millis `json:"restarted_ready_ms,omitempty"`
	Passed         bool   `json:"passed"`
}

// TimelineSample is each node's connections and RSS at T seconds from
// the start (-1: not known, the node is down).
type TimelineSample struct {
	T     float64 `json:"t"`
	Conns []int64 `json:"conns"`
	RSS   []int64 `json:"rss"`
}

// Phase is a part of the cluster run, in seconds from the start.
type Phase struct {
	Name  string  `json:"name"`
	Start float64 `json:"start"`
	End   float64 `json:"end"`
}

func writeJSON(path string, r *Results) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func readJSON(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}
