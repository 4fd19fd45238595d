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
