package server_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/pushgate/pushgate/internal/servertest"
	"github.com/pushgate/pushgate/metrics"
	"github.com/pushgate/pushgate/server"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// gateway is a server under test, listening on a loopback port.
type gateway struct {
	*server.Server
	addr string
	m    *metrics.Gateway
	reg  *prometheus.Registry
}

// start runs a server with cfg on 127.0.0.1 and shuts it down when the
// test ends.
func start(t testing.TB, cfg server.Config) *gateway {
	t.Helper()
	reg := prometheus.NewRegistry()
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(reg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &gateway{Server: srv, addr: servertest.Serve(t, srv), m: cfg.Metrics, reg: reg}
}

// echo is the configuration most protocol tests use.
func echo() server.Config { return server.Config{Echo: true} }

// count reads a counter or gauge.
func count(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

// gauge reads a gauge by name from g's registry (for gauges computed when
// scraped, which have no collector of their own in metrics.Gateway).
func (g *gateway) gauge(t testing.TB, name string) float64 {
	t.Helper()
	families, err := g.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}
