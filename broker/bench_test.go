package broker

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
)

// BenchmarkPublishOneChannel is the cost of one publish through the broker
// to one channel, waited for: a JetStream round trip (numbering it after
// the channel's last) and this node's fan-out. Publishes of one channel go
// out one at a time, so this is also a channel's publish rate.
func BenchmarkPublishOneChannel(b *testing.B) {
	n := benchNode(b)
	data := []byte(`{"price":101.25}`)
	for b.Loop() {
		if _, err := n.b.Publish(context.Background(), "prices", data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishManyChannels publishes from 64 goroutines per core to
// 1,000 channels: channels go out in parallel.
func BenchmarkPublishManyChannels(b *testing.B) {
	n := benchNode(b)
	data := []byte(`{"price":101.25}`)
	var next atomic.Uint64
	b.SetParallelism(64)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ch := "prices." + strconv.FormatUint(next.Add(1)%1000, 10)
			if _, err := n.b.Publish(context.Background(), ch, data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func benchNode(b *testing.B) *node {
	b.Helper()
	nats := startNATS(b)
	return startNode(b, nats.URL, Config{})
}
