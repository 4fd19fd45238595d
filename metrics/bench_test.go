package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The hot paths record with collectors resolved once: a frame sent is one
// Counter.Inc (MessagesSent), a write one Counter.Add (BytesSent), a
// publication one Histogram.Observe (FanoutDuration). These benchmarks
// measure those against a label lookup per event, which the hot paths
// avoid. Run: go test -run '^$' -bench . -benchmem ./metrics

func BenchmarkCounterInc(b *testing.B) {
	g := New(prometheus.NewRegistry())
	for b.Loop() {
		g.MessagesSent.Inc()
	}
}

func BenchmarkCounterAdd(b *testing.B) {
	g := New(prometheus.NewRegistry())
	for b.Loop() {
		g.BytesSent.Add(137)
	}
}

func BenchmarkCounterIncParallel(b *testing.B) {
	g := New(prometheus.NewRegistry())
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			g.MessagesSent.Inc()
		}
	})
}

func BenchmarkHistogramObserve(b *testing.B) {
	g := New(prometheus.NewRegistry())
	for b.Loop() {
		g.FanoutDuration.Observe(0.0042)
	}
}

// BenchmarkLabelLookupInc is what the hot paths do not do: resolve the
// labelled series on every event.
func BenchmarkLabelLookupInc(b *testing.B) {
	g := New(prometheus.NewRegistry())
	for b.Loop() {
		g.connectionsClosed.WithLabelValues("client_close").Inc()
	}
}
