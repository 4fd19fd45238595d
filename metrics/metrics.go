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
	handshakesShed     *prometheus.CounterVec

	MessagesReceived prometheus.Counter
	BytesReceived    prometheus.Counter
	MessagesSent     prometheus.Counter
	BytesSent        prometheus.Counter

	// RateLimited counts client messages refused for their connection's
	// message rate; ReadThrottles the times a connection's reading paused
	// for its byte rate.
	RateLimited   prometheus.Counter
	ReadThrottles prometheus.Counter
	// DrainPauses counts the times a closing connection's reading paused
	// because closing connections together passed the node's drain rate.
	DrainPauses prometheus.Counter

	SlowConsumers  prometheus.Counter
	DroppedFrames  prometheus.Counter
	HeartbeatPings prometheus.Counter
	Evictions      prometheus.Counter
	PollerEvents   prometheus.Counter

	// Publications by source: accepted from the admin API or from clients
	// on this node, or received from the cluster broker having been
	// accepted by another node. Their sum over a node is what it fanned
	// out; the api and client sums over the cluster are what was published.
	PublishesAPI    prometheus.Counter
	PublishesClient prometheus.Counter
	PublishesBroker prometheus.Counter
	// Publishes refused, by reason: overloaded (no publish slot) or
	// unavailable (shutting down, or the broker cannot take it).
	PublishesOverloaded  prometheus.Counter
	PublishesUnavailable prometheus.Counter
	// ChannelsRefused counts client subscribes and publishes refused
	// because the node holds --max-node-channels.
	ChannelsRefused  prometheus.Counter
	historyEvictions *prometheus.CounterVec
	presenceEvents   *prometheus.CounterVec
	presenceRefused  *prometheus.CounterVec
	// FanoutDuration is the time from a publication reaching this node's
	// hub to its last frame handed to the kernel (or queued behind a full
	// socket), observed once per publication.
	FanoutDuration prometheus.Histogram

	transportConnections *prometheus.GaugeVec
	transportMessages    *prometheus.CounterVec

	reg prometheus.Registerer
}

// Transports, as the transport label names them.
const (
	TransportWebSocket = "websocket"
	TransportSSE       = "sse"
)

// Transport returns one transport's gauge of open connections and
// counter of messages sent (both also in the totals, ConnectionsOpen and
// MessagesSent). Resolve them once and keep them.
func (g *Gateway) Transport(name string) (open prometheus.Gauge, sent prometheus.Counter) {
	return g.transportConnections.WithLabelValues(name), g.transportMessages.WithLabelValues(name)
}

// New creates the gateway's collectors and registers them with reg.
func New(reg prometheus.Registerer) *Gateway {
	f := factory{reg}
	g := &Gateway{
		ConnectionsOpen: f.gauge("connections",
			"Connections open: WebSocket connections and event streams (by transport: pushgate_transport_connections)."),
		ConnectionsAccepted: f.counter("connections_accepted_total",
			"Connections accepted (handshake completed): WebSocket connections and event streams."),
		connectionsClosed: f.counterVec("connections_closed_total",
			"Connections closed (WebSocket connections and event streams), by reason.", "reason"),
		handshakes: f.counterVec("handshakes_total",
			"WebSocket handshakes, by result: ok, or why it was refused (wsproto.HandshakeResult). Plain HTTP requests on the public listener count here when their head is too large or too slow.", "result"),
		HandshakesInFlight: f.gauge("handshakes_in_flight",
			"Handshake slots held: connections on the public listener not (yet) WebSocket connections, plain HTTP requests included."),
		handshakesShed: f.counterVec("handshakes_shed_total",
			"Stalled handshakes (or plain HTTP requests) closed to make room, by reason: full (every slot held) or per_source (one address over its share).", "reason"),
		MessagesReceived: f.counter("messages_received_total",
			"Data messages received from clients."),
		BytesReceived: f.counter("received_bytes_total",
			"Bytes read from connections (WebSocket connections and event streams)."),
		MessagesSent: f.counter("messages_sent_total",
			"Messages handed to connections (written or queued): WebSocket frames and event stream events."),
		BytesSent: f.counter("sent_bytes_total",
			"Bytes written to connections (WebSocket connections and event streams)."),
		RateLimited: f.counter("rate_limited_messages_total",
			"Client messages refused (rate_limited error, then 1008) because their connection passed --client-message-rate."),
		ReadThrottles: f.counter("read_throttles_total",
			"Times a connection's reading paused because it passed --client-bytes-rate (it resumes as the budget refills)."),
		DrainPauses: f.counter("drain_pauses_total",
			"Times a closing connection was not read on because closing connections together were sending past the node's drain rate (64 MiB/s, dropped unread); it is read again at the next heartbeat tick."),
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
		ChannelsRefused: f.counter("channels_refused_total",
			"Client subscribes and publishes refused because they would create a channel past --max-node-channels."),
		historyEvictions: f.counterVec("history_evictions_total",
			"Messages dropped from history, by reason: expired (--history-ttl), size (--history-size), channel_bytes (--history-max-channel-bytes), budget (--history-max-bytes), restart (the channel's epoch changed), unserved (--cluster-read served: the channel's last subscriber on this node left).", "reason"),
		presenceEvents: f.counterVec("presence_events_total",
			"Join and leave events of presence channels, by event: join and leave were sent to the channel's subscribers on this node, dropped were over --presence-event-rate, lost could not be relayed to the other nodes of a cluster.", "event"),
		presenceRefused: f.counterVec("presence_asks_refused_total",
			"Presence ops refused, by reason: rate (over 4 at once, then 2 a second per connection), backlog (over 1 MiB waits for the connection's socket), overloaded (65,536 asks wait for one channel's answer, or 256 for other nodes').", "reason"),
		FanoutDuration: f.histogram("fanout_duration_seconds",
			"Time from a publication reaching the hub to its last frame handed to the kernel.",
			prometheus.ExponentialBuckets(50e-6, 2.5, 14)), // 50µs .. 7.5s
		transportConnections: f.gaugeVec("transport_connections",
			"Connections open, by transport: websocket (/ws, /echo) or sse (GET /events streams). Their sum is pushgate_connections.", "transport"),
		transportMessages: f.counterVec("transport_messages_sent_total",
			"Messages handed to connections (written or queued), by transport: websocket frames or sse events. Their sum is pushgate_messages_sent_total.", "transport"),
		reg: reg,
	}
	for _, t := range []string{TransportWebSocket, TransportSSE} {
		g.Transport(t) // exported from the start, at 0
	}
	publishes := f.counterVec("publishes_total",
		"Publications by source: api and client are accepted on this node, broker come from other nodes.", "source")
	g.PublishesAPI = publishes.WithLabelValues("api")
	g.PublishesClient = publishes.WithLabelValues("client")
	g.PublishesBroker = publishes.WithLabelValues("broker")
	refused := f.counterVec("publishes_refused_total",
		"Publishes refused, by reason: overloaded (too many in flight) or unavailable (shutting down, broker down).", "reason")
	for _, e := range []string{"join", "leave", "dropped", "lost"} {
		g.presenceEvents.WithLabelValues(e) // exported from the start, at 0
	}
	for _, r := range []string{"rate", "backlog", "overloaded"} {
		g.presenceRefused.WithLabelValues(r)
	}
	g.PublishesOverloaded = refused.WithLabelValues("overloaded")
	g.PublishesUnavailable = refused.WithLabelValues("unavailable")
	return g
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

// HistoryEvictions returns the counter of history dropped for one reason.
func (g *Gateway) HistoryEvictions(reason string) prometheus.Counter {
	return g.historyEvictions.WithLabelValues(reason)
}

// PresenceEvents returns the counter of presence events of one kind (join,
// leave, dropped).
func (g *Gateway) PresenceEvents(event string) prometheus.Counter {
	return g.presenceEvents.WithLabelValues(event)
}

// PresenceAsksRefused returns the counter of presence ops refused for one
// reason (rate, backlog, overloaded).
func (g *Gateway) PresenceAsksRefused(reason string) prometheus.Counter {
	return g.presenceRefused.WithLabelValues(reason)
}

// ObservePresence exports the presence entries this node holds: one per
// connection and presence channel it subscribes to (bounded by
// connections times --max-channels).
func (g *Gateway) ObservePresence(clients func() int) {
	factory{g.reg}.gaugeFunc("presence_clients", "Presence entries on this node: connections times the presence channels each subscribes to.", clients)
}

// HandshakesShed returns the counter of shed handshakes for one reason.
func (g *Gateway) HandshakesShed(reason string) prometheus.Counter {
	return g.handshakesShed.WithLabelValues(reason)
}

// ObservePool exports a worker pool's busy workers and queued tasks, read
// when scraped.
func (g *Gateway) ObservePool(busy, queued func() int) {
	f := factory{g.reg}
	f.gaugeFunc("workers_busy", "Worker pool goroutines running a task.", busy)
	f.gaugeFunc("tasks_queued", "Tasks waiting for a worker.", queued)
}

// ObserveHeld exports what connections hold beyond their parked state,
// read when scraped: bytes waiting in outbound queues, connections holding
// a partial frame or message, and the bytes those partial messages hold
// (bounded node-wide by --max-partial-bytes).
func (g *Gateway) ObserveHeld(queuedBytes, partial, partialBytes func() int) {
	f := factory{g.reg}
	f.gaugeFunc("outbound_queued_bytes", "Bytes waiting in connections' outbound queues for their sockets.", queuedBytes)
	f.gaugeFunc("partial_messages", "Connections holding a partly received frame or message.", partial)
	f.gaugeFunc("partial_message_bytes", "Bytes held by partly received messages, on all connections (bounded by --max-partial-bytes).", partialBytes)
}

// ObserveHub exports the channel registry's sizes, read when scraped:
// channels, subscriptions, messages held in history and their bytes,
// publications being fanned out (publish slots in use), and ops waiting on
// delivery shards.
func (g *Gateway) ObserveHub(channels, subscriptions, historyEntries, historyBytes, inFlight, queuedOps func() int) {
	f := factory{g.reg}
	f.gaugeFunc("channels", "Channels with subscribers or history on this node.", channels)
	f.gaugeFunc("subscriptions", "Subscriptions over all channels on this node.", subscriptions)
	f.gaugeFunc("history_entries", "Messages held in channels' history for recovery.", historyEntries)
	f.gaugeFunc("history_bytes", "Bytes held in channels' history: encoded frames, compressed copies included, and what holding each message costs besides (bounded by --history-max-bytes).", historyBytes)
	f.gaugeFunc("publishes_in_flight", "Publications being fanned out (publish slots in use).", inFlight)
	f.gaugeFunc("shard_queued_ops", "Ops (publications, subscribes, replies) waiting on the delivery shards.", queuedOps)
}

// Broker holds the collectors of the cluster broker; they exist only when
// a broker is configured, so that a single node has no broker_up to alert
// on.
type Broker struct {
	// Up is 1 while the broker connection is up and its stream read up to
	// date, 0 while it is down or catching up; set by Observe, read when
	// scraped.
	Up prometheus.GaugeFunc
	// Published counts publications the broker confirmed; PublishErrors
	// those it could not take (each answered with an error).
	Published     prometheus.Counter
	PublishErrors prometheus.Counter
	// PublishDuration is the time from handing a publication to the broker
	// to its confirmation, retries included.
	PublishDuration prometheus.Histogram
	// Received counts publications received from the broker (from every
	// node, this one included); Invalid those dropped as malformed.
	Received prometheus.Counter
	Invalid  prometheus.Counter
	// Lag is how many stream messages the broker holds that this node has
	// not received yet, as of the last one received (a batch of one
	// channel's publications is one message).
	Lag prometheus.Gauge
	// Reconnects counts reconnections after the broker connection was lost.
	Reconnects prometheus.Counter
	// Gaps counts jumps in a channel's offsets on this node: publications
	// the stream no longer held when this node came to read them, and
	// new epochs it started because the stream had lost publications it
	// had applied (NATS lost what it acknowledged).
	Gaps prometheus.Counter
	// With --cluster-read served: Served is how many channels this node
	// reads; Loads counts channels read from the stream for their first
	// subscriber here, LoadsAbandoned those whose subscribers were
	// answered without history because the stream could not be read in
	// time; FillErrors counts failed reads of a channel (retried).
	Served         prometheus.Gauge
	Loads          prometheus.Counter
	LoadsAbandoned prometheus.Counter
	FillErrors     prometheus.Counter

	reg prometheus.Registerer
}

// Observe exports the broker's state, read when scraped: whether it is up
// (connected, and caught up with the stream), and the publishes waiting for
// its confirmation (bounded by --max-pending-publishes).
func (b *Broker) Observe(up func() bool, pending func() int) {
	f := factory{b.reg}
	b.Up = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "broker_up",
		Help: "1 while the broker (NATS) is connected and this node is caught up with its stream, else 0."},
		func() float64 {
			if up() {
				return 1
			}
			return 0
		})
	f.register(b.Up)
	f.gaugeFunc("broker_pending_publishes", "Publishes waiting for the broker to confirm them.", pending)
}

// NewBroker creates the broker's collectors and registers them with reg.
func NewBroker(reg prometheus.Registerer) *Broker {
	f := factory{reg}
	return &Broker{
		Published: f.counter("broker_published_total",
			"Publications the broker confirmed."),
		PublishErrors: f.counter("broker_publish_errors_total",
			"Publications the broker could not take; each was answered with an error."),
		PublishDuration: f.histogram("broker_publish_duration_seconds",
			"Time from handing a publication to the broker to its confirmation.",
			prometheus.ExponentialBuckets(100e-6, 2.5, 12)), // 100µs .. 2.4s
		Received: f.counter("broker_received_total",
			"Publications received from the broker, from every node."),
		Invalid: f.counter("broker_invalid_messages_total",
			"Messages on the broker's stream that were not pushgate publications, dropped."),
		Lag: f.gauge("broker_lag_messages",
			"Messages on the broker's stream this node has not received yet (a batch of a channel's publications is one)."),
		Reconnects: f.counter("broker_reconnects_total",
			"Reconnections to the broker after the connection was lost."),
		Gaps: f.counter("broker_gaps_total",
			"Jumps in a channel's offsets: publications gone from the stream before this node read them, or, after it had, a new epoch it started."),
		Served: f.gauge("broker_channels_served",
			"Channels this node reads from the broker (--cluster-read served)."),
		Loads: f.counter("broker_channel_loads_total",
			"Channels read from the broker's stream for their first subscriber on this node."),
		LoadsAbandoned: f.counter("broker_channel_loads_abandoned_total",
			"Channels whose first subscribers were answered without their history: the stream could not be read in time."),
		FillErrors: f.counter("broker_channel_fill_errors_total",
			"Failed reads of a channel from the broker's stream; each is retried."),
		reg: reg,
	}
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

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets})
	f.register(h)
	return h
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help})
	f.register(g)
	return g
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, labels)
	f.register(g)
	return g
}

func (f factory) gaugeFunc(name, help string, fn func() int) {
	f.register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help},
		func() float64 { return float64(fn()) }))
}
