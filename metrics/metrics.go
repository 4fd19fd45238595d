package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "pushgate"

// Gateway holds the collectors of one gateway. Fields used on per-frame or
// per-delivery paths are plain counters, resolved once: recording is one
// atomic add, with no label lookup.
type Gateway struct {
	ConnectionsOpen     prometheus.Gauge
	ConnectionsAccepted prometheus.Counter
	connectionsClosed   *prometheus.CounterVec

	handshakes         *prometheus.CounterVec
	HandshakesInFlight prometheus.Gauge

	MessagesReceived prometheus.Counter
	BytesReceived    prometheus.Counter
	MessagesSent     prometheus.Counter
	BytesSent        prometheus.Counter

	SlowConsumers  prometheus.Counter
	DroppedFrames  prometheus.Counter
	HeartbeatPings prometheus.Counter
	Evictions      prometheus.Counter
	PollerEvents   prometheus.Counter

	reg prometheus.Registerer
}

// New creates the gateway's collectors and registers them with reg.
func New(reg prometheus.Registerer) *Gateway {
	f := factory{reg}
	return &Gateway{
		ConnectionsOpen: f.gauge("connections",
			"WebSocket connections open."),
		ConnectionsAccepted: f.counter("connections_accepted_total",
			"WebSocket connections accepted (handshake completed)."),
		connectionsClosed: f.counterVec("connections_closed_total",
			"WebSocket connections closed, by reason.", "reason"),
		handshakes: f.counterVec("handshakes_total",
			"WebSocket handshakes, by result: ok, or why it was refused (wsproto.HandshakeResult).", "result"),
		HandshakesInFlight: f.gauge("handshakes_in_flight",
			"Connections accepted whose handshake has not finished."),
		MessagesReceived: f.counter("messages_received_total",
			"Data messages received from clients."),
		BytesReceived: f.counter("received_bytes_total",
			"Bytes read from WebSocket connections."),
		MessagesSent: f.counter("messages_sent_total",
			"Frames handed to WebSocket connections (written or queued)."),
		BytesSent: f.counter("sent_bytes_total",
			"Bytes written to WebSocket connections."),
		SlowConsumers: f.counter("slow_consumers_total",
			"Connections closed with 1013 because their outbound queue overflowed."),
		DroppedFrames: f.counter("outbound_dropped_frames_total",
			"Queued frames discarded when a slow consumer was closed."),
		HeartbeatPings: f.counter("heartbeat_pings_total",
			"Pings sent to idle connections."),
		Evictions: f.counter("heartbeat_evictions_total",
			"Connections closed because they did not answer a ping."),
		PollerEvents: f.counter("poller_events_total",
			"Readiness events delivered by the epoll pollers."),
		reg: reg,
	}
}

// ConnectionsClosed returns the counter for one close reason. Resolve it
// once and keep it.
func (g *Gateway) ConnectionsClosed(reason string) prometheus.Counter {
	return g.connectionsClosed.WithLabelValues(reason)
}

// Handshakes returns the counter for one handshake result.
func (g *Gateway) Handshakes(result string) prometheus.Counter {
	return g.handshakes.WithLabelValues(result)
}

// ObservePool exports a worker pool's busy workers and queued tasks, read
// when scraped.
func (g *Gateway) ObservePool(busy, queued func() int) {
	f := factory{g.reg}
	f.gaugeFunc("workers_busy", "Worker pool goroutines running a task.", busy)
	f.gaugeFunc("tasks_queued", "Tasks waiting for a worker.", queued)
}

// ObserveHeld exports what connections hold beyond their parked state,
// read when scraped: bytes waiting in outbound queues, and connections
// holding a partial frame or message.
func (g *Gateway) ObserveHeld(queuedBytes, partial func() int) {
	f := factory{g.reg}
	f.gaugeFunc("outbound_queued_bytes", "Bytes waiting in connections' outbound queues for their sockets.", queuedBytes)
	f.gaugeFunc("partial_messages", "Connections holding a partly received frame or message.", partial)
}

// NewRegistry returns a registry holding the Go runtime and process
// collectors, for the gateway's collectors to join.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// factory registers what it creates; a nil Registerer registers nothing.
type factory struct{ reg prometheus.Registerer }

func (f factory) register(c prometheus.Collector) {
	if f.reg != nil {
		f.reg.MustRegister(c)
	}
}

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help})
	f.register(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	f.register(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help})
	f.register(g)
	return g
}

func (f factory) gaugeFunc(name, help string, fn func() int) {
	f.register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help},
		func() float64 { return float64(fn()) }))
}
