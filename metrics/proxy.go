package metrics

import "github.com/prometheus/client_golang/prometheus"

// Proxy holds the collectors of the backend proxies (--proxy-connect,
// --proxy-subscribe, --proxy-publish), each labelled by proxy.
type Proxy struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	open     *prometheus.GaugeVec
	// Held and HeldBytes are the client ops waiting behind their
	// connection's proxy call, and their bytes, node-wide (bounded per
	// connection and per node).
	Held      prometheus.Gauge
	HeldBytes prometheus.Gauge
}

// ProxyResult is the outcome of a proxy call: its index in
// ProxyCollectors.Results and ProxyResults.
type ProxyResult int

// Proxy call results.
const (
	ProxyOK          ProxyResult = iota // the backend answered (allowed, refused or replaced)
	ProxyError                          // transport error, 5xx, or an answer that is not the schema
	ProxyTimeout                        // no answer within --proxy-timeout
	ProxyCircuitOpen                    // not sent: the backend failed repeatedly and is rested
	ProxyBusy                           // not sent: every request slot and waiting place was taken
	numProxyResults
)

// ProxyResults are the result labels, by ProxyResult.
var ProxyResults = [numProxyResults]string{"ok", "error", "timeout", "circuit_open", "busy"}

// ProxyCollectors are one proxy's collectors, resolved once.
type ProxyCollectors struct {
	Results  [numProxyResults]prometheus.Counter // by ProxyResult
	Duration prometheus.Observer
	Open     prometheus.Gauge
}

// NewProxy creates the proxies' collectors and registers them with reg
// (nil: registered nowhere).
func NewProxy(reg prometheus.Registerer) *Proxy {
	f := factory{reg}
	p := &Proxy{
		requests: f.counterVec("proxy_requests_total",
			"Calls to a backend proxy, by proxy (connect, subscribe, publish) and result: ok (answered), error (transport error, 5xx or malformed answer), timeout, circuit_open and busy (both refused without a request).",
			"proxy", "result"),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "proxy_request_duration_seconds",
			Help:    "Time from sending a request to a backend proxy to its answer or failure, by proxy.",
			Buckets: prometheus.ExponentialBuckets(250e-6, 2.5, 12)}, // 250µs .. 6s
			[]string{"proxy"}),
		open: f.gaugeVec("proxy_circuit_open",
			"1 while a backend proxy's circuit breaker is open (or half-open, trying one request): its calls fail at once.",
			"proxy"),
		Held: f.gauge("proxy_held_ops",
			"Client ops waiting behind their connection's call to the subscribe or publish proxy, node-wide."),
		HeldBytes: f.gauge("proxy_held_bytes",
			"Bytes of the client ops waiting behind their connection's call to the subscribe or publish proxy, node-wide (at most 64 MiB)."),
	}
	f.register(p.duration)
	// Every proxy's series exist from the start, at 0, configured or not:
	// a dashboard tells "no call failed" from "no such series".
	for _, name := range ProxyNames {
		p.For(name)
	}
	return p
}

// ProxyNames are the proxies, as the proxy label names them.
var ProxyNames = [...]string{"connect", "subscribe", "publish"}

// For returns the collectors of the proxy called name.
func (p *Proxy) For(name string) ProxyCollectors {
	var c ProxyCollectors
	for i, r := range ProxyResults {
		c.Results[i] = p.requests.WithLabelValues(name, r)
	}
	c.Duration = p.duration.WithLabelValues(name)
	c.Open = p.open.WithLabelValues(name)
	return c
}
