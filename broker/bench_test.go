package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/internal/proctest"
	"github.com/pushgate/pushgate/internal/wstest"
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

// countingSubscriber calls itself for every publication it is sent (not
// for the other envelopes).
type countingSubscriber func()

func (c countingSubscriber) Encoding() protocol.Encoding { return protocol.WebSocket }
func (c countingSubscriber) Send(frame []byte) error {
	if bytes.Contains(frame, []byte(`"type":"message"`)) {
		c()
	}
	return nil
}

func benchNode(b *testing.B) *node {
	b.Helper()
	nats := startNATS(b)
	return startNode(b, nats.URL, Config{})
}

// BenchmarkClusterRead is what every node reading every publication costs
// as nodes are added: clients' publishes on one node to 1,000 channels,
// until each of K nodes (in this process, on the same cores as NATS) has
// applied them all. The time a publication per extra node is a node's
// reading cost.
func BenchmarkClusterRead(b *testing.B) {
	for _, k := range []int{1, 2, 4, 7} {
		b.Run(fmt.Sprintf("nodes=%d", k), func(b *testing.B) {
			nats := startNATS(b)
			nodes := make([]*node, k)
			for i := range nodes {
				nodes[i] = startNode(b, nats.URL, Config{})
			}
			data := []byte(`{"price":101.25}`)
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := range b.N {
				ch := "prices." + strconv.Itoa(i%1000)
				for {
					err := nodes[0].b.TryPublish(ch, data, func(err error) { b.Error(err) })
					if err == nil {
						break
					}
					if !errors.Is(err, broadcast.ErrOverloaded) {
						b.Fatal(err)
					}
					runtime.Gosched()
				}
			}
			want := float64(b.N)
			for _, n := range nodes {
				wstest.Until(b, time.Minute, func() error {
					if got := testutil.ToFloat64(n.m.Received); got < want {
						return fmt.Errorf("a node received %v of %v", got, want)
					}
					return nil
				})
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/pub")
		})
	}
}

// BenchmarkClusterReadServed is BenchmarkClusterRead with
// --cluster-read served, each of the 1,000 channels subscribed to on one
// node (as personal channels and rooms are): a node reads its own
// channels' publications and no other's. The CPU counted is all nodes'
// and NATS's, which republishes each stored message once.
func BenchmarkClusterReadServed(b *testing.B) {
	for _, k := range []int{1, 2, 4, 7} {
		b.Run(fmt.Sprintf("nodes=%d", k), func(b *testing.B) {
			nats := startNATS(b)
			nodes := make([]*node, k)
			for i := range nodes {
				nodes[i] = startServedNode(b, nats.URL, 0)
			}
			const channels = 1000
			for c := range channels {
				n := nodes[c%k]
				if err := n.hub.Subscribe(n.hub.Join(discard{}), "prices."+strconv.Itoa(c), nil); err != nil {
					b.Fatal(err)
				}
			}
			for _, n := range nodes {
				wstest.Until(b, time.Minute, func() error {
					if got := testutil.ToFloat64(n.m.Loads); got < float64(channels/k) {
						return fmt.Errorf("a node loaded %v channels", got)
					}
					return nil
				})
			}
			data := []byte(`{"price":101.25}`)
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := range b.N {
				ch := "prices." + strconv.Itoa(i%channels)
				for {
					err := nodes[0].b.TryPublish(ch, data, func(err error) { b.Error(err) })
					if err == nil {
						break
					}
					if !errors.Is(err, broadcast.ErrOverloaded) {
						b.Fatal(err)
					}
					runtime.Gosched()
				}
			}
			wstest.Until(b, time.Minute, func() error {
				var got float64
				for _, n := range nodes {
					got += testutil.ToFloat64(n.m.Received)
				}
				if got < float64(b.N) {
					return fmt.Errorf("the nodes received %v of %v", got, b.N)
				}
				return nil
			})
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/pub")
		})
	}
}

// discard is a connection that takes every frame and keeps none.
type discard struct{}

func (discard) Send([]byte) error           { return nil }
func (discard) Encoding() protocol.Encoding { return protocol.WebSocket }

// cpuTime is the CPU time this process (NATS included) has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkServedChannelMemory: what a connection subscribed to a channel
// of its own (a user's notifications) costs a node in heap, with each
// --cluster-read: with served, the channel's state in the broker and its
// NATS subscription come on top, and loading it takes a JetStream request
// (Debian's nats-server, in its own process).
func BenchmarkServedChannelMemory(b *testing.B) {
	for _, read := range []string{"all", "served"} {
		b.Run("read="+read, func(b *testing.B) {
			_, url := proctest.NATS(b) // its own process: the heap is the node's alone
			var n *node
			if read == "served" {
				n = startServedNode(b, url, 0)
			} else {
				n = startNode(b, url, Config{})
			}
			const channels = 10000
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			for c := range channels {
				if err := n.hub.Subscribe(n.hub.Join(discard{}), "user."+strconv.Itoa(c), nil); err != nil {
					b.Fatal(err)
				}
			}
			if read == "served" {
				wstest.Until(b, time.Minute, func() error {
					if got := testutil.ToFloat64(n.m.Loads); got < channels {
						return fmt.Errorf("%v channels loaded", got)
					}
					return nil
				})
			}
			took := time.Since(start)
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/channels, "B/channel")
			b.ReportMetric(float64(took.Microseconds())/channels, "µs/channel")
			for range b.N {
			}
		})
	}
}
