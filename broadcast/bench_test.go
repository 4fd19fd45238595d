package broadcast

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/pushgate/pushgate/protocol"
)

// counter is the cheapest Subscriber: it counts the bytes it is handed, so
// the benchmark measures the hub (encode, shard queues, iteration), not
// sockets. server's BenchmarkSend measures one socket write.
type counter struct{ n atomic.Int64 }

func (c *counter) Send(frame []byte) error     { c.n.Add(int64(len(frame))); return nil }
func (c *counter) Encoding() protocol.Encoding { return protocol.WebSocket }

// BenchmarkPublish is one 100-byte publish to n subscribers of a channel,
// timed until every shard has handed the frame to each of them.
func BenchmarkPublish(b *testing.B) {
	for _, n := range []int{1, 1000, 15000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			h := New(Config{HistorySize: -1})
			defer h.Close()
			for i := 0; i < n; i++ {
				if err := h.Subscribe(h.Join(&counter{}), "news", nil); err != nil {
					b.Fatal(err)
				}
			}
			h.flush()
			data := []byte(fmt.Sprintf(`"%040d"`, 0))
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if res, err := h.Publish(ctx, "news", data); err != nil || res.Delivered != int64(n) {
					b.Fatalf("%+v %v", res, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/delivery")
		})
	}
}

// BenchmarkEvent10k is one join event (Hub.Event) to a channel of 10,000
// subscribers, timed until each was handed it: what a presence channel's
// join or leave costs the node.
func BenchmarkEvent10k(b *testing.B) {
	const n = 10_000
	h := New(Config{HistorySize: -1})
	defer h.Close()
	subs := make([]*counter, n)
	for i := range subs {
		subs[i] = &counter{}
		if err := h.Subscribe(h.Join(subs[i]), "room", nil); err != nil {
			b.Fatal(err)
		}
	}
	h.flush()
	env := protocol.AppendPresenceEvent(nil, protocol.EventJoin, "room", &protocol.Client{Client: "abcdefgh.1z", User: "alice", Info: []byte(`{"name":"Alice"}`)})
	b.ReportAllocs()
	for b.Loop() {
		h.Event("room", append(protocol.Buffer(len(env)), env...))
		h.flush()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/delivery")
}
