package broker

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/protocol"
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

// BenchmarkPublishHotChannel publishes from 64 goroutines per core to one
// channel, each waiting for its publish: a busy channel's rate in cluster
// mode (a price ticker fed by several backends, a busy chat room).
func BenchmarkPublishHotChannel(b *testing.B) {
	n := benchNode(b)
	data := []byte(`{"price":101.25}`)
	b.SetParallelism(64)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := n.b.Publish(context.Background(), "prices", data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkTryPublishHotChannel is clients publishing to one channel:
// TryPublish queues without waiting, up to MaxClientPending at once; the
// benchmark ends when this node has applied every publication.
func BenchmarkTryPublishHotChannel(b *testing.B) {
	n := benchNode(b)
	data := []byte(`{"price":101.25}`)
	done := make(chan struct{}, 1)
	var applied, target atomic.Int64 // target: set once all are queued
	counter := countingSubscriber(func() {
		if n := applied.Add(1); n == target.Load() {
			done <- struct{}{}
		}
	})
	if err := n.hub.Subscribe(n.hub.Join(counter), "prices", nil); err != nil {
		b.Fatal(err)
	}
	want := int64(0)
	for b.Loop() {
		want++
		for {
			err := n.b.TryPublish("prices", data, func(err error) { b.Error(err) })
			if err == nil {
				break
			}
			if !errors.Is(err, broadcast.ErrOverloaded) {
				b.Fatal(err)
			}
			runtime.Gosched()
		}
	}
	target.Store(want)
	if applied.Load() < want {
		<-done
	}
}

// countingSubscriber calls itself for every message it is sent.
type countingSubscriber func()

func (c countingSubscriber) Encoding() protocol.Encoding { return protocol.WebSocket }
func (c countingSubscriber) Send([]byte) error           { c(); return nil }

func benchNode(b *testing.B) *node {
	b.Helper()
	nats := startNATS(b)
	return startNode(b, nats.URL, Config{})
}
