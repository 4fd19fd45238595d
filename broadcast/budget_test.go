package broadcast

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/wsproto"
)

func payload(n int) []byte { return []byte(`"` + strings.Repeat("h", n-2) + `"`) }

// The node-wide budget drops the oldest history first, across channels:
// what it holds stays under HistoryMaxBytes and the newest messages stay.
func TestHistoryBudget(t *testing.T) {
	h := New(Config{HistoryMaxBytes: 64 << 10, HistorySize: 1000})
	defer h.Close()
	ctx := context.Background()
	for i := range 200 { // 200 KiB over 20 channels
		if _, err := h.Publish(ctx, fmt.Sprintf("c%d", i/10), payload(1<<10)); err != nil {
			t.Fatal(err)
		}
		if b := h.Stats().HistoryBytes; b > 64<<10 {
			t.Fatalf("history holds %d bytes after publish %d, over the 64 KiB budget", b, i)
		}
	}
	s := h.Stats()
	// Each message weighs its 1 KiB of data, its envelope and heldOverhead.
	if s.HistoryBytes < 62<<10 || s.History < 40 {
		t.Fatalf("history holds %d entries, %d bytes: the budget emptied more than it had to", s.History, s.HistoryBytes)
	}
	// The newest channels are whole; the oldest are gone, and dropped.
	if hist := h.History("c19", 0); len(hist.Entries) != 10 || !hist.Complete {
		t.Fatalf("the newest channel holds %d entries", len(hist.Entries))
	}
	if hist := h.History("c0", 0); len(hist.Entries) != 0 || hist.Epoch != "" {
		t.Fatalf("the oldest channel still holds %d entries (epoch %q)", len(hist.Entries), hist.Epoch)
	}
	if s.Channels > 7 {
		t.Fatalf("%d channels left: those the budget emptied were not dropped", s.Channels)
	}
}

// A channel's history is bounded in bytes too, and its newest message is
// kept however large.
func TestHistoryChannelBytes(t *testing.T) {
	h := New(Config{HistoryChannelMaxBytes: 10 << 10, HistorySize: 1000})
	defer h.Close()
	ctx := context.Background()
	for range 30 {
		if _, err := h.Publish(ctx, "news", payload(1<<10)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(h.History("news", 0).Entries); n < 5 || n > 6 { // each weighs about 1.6 KiB
		t.Fatalf("%d entries of 1 KiB under a 10 KiB cap", n)
	}
	if _, err := h.Publish(ctx, "news", payload(50<<10)); err != nil {
		t.Fatal(err)
	}
	if hist := h.History("news", 0); len(hist.Entries) != 1 || hist.Entries[0].Offset != 31 {
		t.Fatalf("after a 50 KiB message: %d entries", len(hist.Entries))
	}
	if b := h.Stats().HistoryBytes; b < 50<<10 || b > 51<<10 {
		t.Fatalf("history bytes %d, want the one 50 KiB frame", b)
	}
}

// A compressed copy built for a subscriber counts in history's bytes, and
// is given back when the message leaves.
func TestHistoryCountsCompressedCopies(t *testing.T) {
	h := New(Config{Shards: 1, HistorySize: 1})
	defer h.Close()
	r := newRecorder()
	r.compress = true
	if err := h.Subscribe(h.Join(r), "big", nil); err != nil {
		t.Fatal(err)
	}
	data := []byte(`"` + strings.Repeat("compress me ", 200) + `"`)
	if _, err := h.Publish(context.Background(), "big", data); err != nil {
		t.Fatal(err)
	}
	h.flush()
	frame := newPublication("big", 1, data, time.Time{}).wire.Encoded(protocol.WebSocket, nil)
	compressed := wsproto.AppendCompressedFrame(nil, ws.OpText, wsproto.Payload(frame))
	if b, want := h.Stats().HistoryBytes, int64(len(frame)+len(compressed)+heldOverhead); b != want {
		t.Fatalf("history bytes %d, want %d: the %d-byte frame, its %d-byte compressed copy and %d",
			b, want, len(frame), len(compressed), heldOverhead)
	}
	if _, err := h.Publish(context.Background(), "big", []byte(`1`)); err != nil { // pushes it out
		t.Fatal(err)
	}
	h.flush()
	if b := h.Stats().HistoryBytes; b > 100+heldOverhead {
		t.Fatalf("history bytes %d once the large message left", b)
	}
}

// Expiry takes what is older than the TTL from the node-wide index, and
// drops the channels it empties; what is recent stays.
func TestExpireByIndex(t *testing.T) {
	h := New(Config{HistoryTTL: time.Hour})
	defer h.Close()
	for i := range 50 {
		if _, err := h.Publish(context.Background(), fmt.Sprintf("c%d", i), []byte(`1`)); err != nil {
			t.Fatal(err)
		}
	}
	cutoff := time.Now()
	for i := range 5 {
		if _, err := h.Publish(context.Background(), fmt.Sprintf("late%d", i), []byte(`1`)); err != nil {
			t.Fatal(err)
		}
	}
	h.expire(cutoff)
	if s := h.Stats(); s.History != 5 || s.Channels != 5 {
		t.Fatalf("after expiry: %d entries in %d channels, want 5 and 5", s.History, s.Channels)
	}
}

// Clients cannot create channels past MaxNodeChannels; the API can.
func TestMaxNodeChannels(t *testing.T) {
	h := New(Config{MaxNodeChannels: 3})
	defer h.Close()
	m := h.Join(newRecorder())
	for i := range 3 {
		if err := h.Subscribe(m, fmt.Sprintf("c%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Subscribe(m, "c3", nil); !errors.Is(err, ErrChannelLimit) {
		t.Fatalf("subscribe past the limit: %v", err)
	}
	if err := h.TryPublish("c4", []byte(`1`), nil); !errors.Is(err, ErrChannelLimit) {
		t.Fatalf("client publish past the limit: %v", err)
	}
	if err := h.TryPublish("c1", []byte(`1`), nil); err != nil {
		t.Fatalf("client publish to an existing channel: %v", err)
	}
	if _, err := h.Publish(context.Background(), "c5", []byte(`1`)); err != nil {
		t.Fatalf("API publish past the limit: %v", err)
	}
	h.flush()
	if s := h.Stats(); s.InFlight != 0 {
		t.Fatalf("refused publishes hold %d slots", s.InFlight)
	}
}

// Expiring nothing costs the same however many channels hold history.
func BenchmarkExpireNothing(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			h := New(Config{HistoryTTL: time.Hour})
			defer h.Close()
			for i := range n {
				_, _ = h.Publish(context.Background(), fmt.Sprintf("c%d", i), []byte(`1`))
			}
			cutoff := time.Now().Add(-time.Minute)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				h.expire(cutoff)
			}
		})
	}
}

// A compressed copy built for history already held (a compressing client
// recovering it) grows history past its bounds; the hub brings it back
// under them without waiting for the next publish.
func TestCompressedCopiesStayInBudget(t *testing.T) {
	h := New(Config{Shards: 1, HistoryMaxBytes: 64 << 10, HistoryChannelMaxBytes: 48 << 10, HistorySize: 1000})
	defer h.Close()
	ctx := context.Background()
	for i := range 60 { // incompressible data: a compressed copy is as large as the frame
		b := make([]byte, 500)
		for j := range b {
			b[j] = byte((i*7919 + j*104729) % 251)
		}
		if _, err := h.Publish(ctx, "news", []byte(`"`+hex.EncodeToString(b)+`"`)); err != nil {
			t.Fatal(err)
		}
	}
	before := h.Stats().HistoryBytes
	if before > 48<<10 {
		t.Fatalf("history holds %d bytes before the replay, over the channel's 48 KiB", before)
	}
	held := len(h.History("news", 0).Entries)
	r := newRecorder()
	r.compress = true
	if err := h.Subscribe(h.Join(r), "news", &Position{Offset: 0, Epoch: h.History("news", 0).Epoch}); err != nil {
		t.Fatal(err)
	}
	h.flush()
	// The copies counted: history gave up older messages to make room.
	wstest.Eventually(t, "history back under its bounds", func() bool {
		return h.Stats().HistoryBytes <= 48<<10 && len(h.History("news", 0).Entries) < held
	})
	t.Logf("history %d bytes in %d messages before the replay, %d bytes in %d after",
		before, held, h.Stats().HistoryBytes, len(h.History("news", 0).Entries))
}

// What history weighs is what it costs: for small messages the memory a
// held message takes beyond its frame (the publication, its place in the
// ring) is most of it, so HistoryMaxBytes bounds the memory history holds
// only if that counts too. (It did not: 50,000 messages of a few bytes
// weighed 77 bytes each and took 526 bytes of heap each, so a client
// flooding small messages held seven times the budget.)
func TestHistoryBytesAreMemory(t *testing.T) {
	h := New(Config{HistorySize: 100, HistoryMaxBytes: 1 << 40})
	defer h.Close()
	const channels, each = 500, 100
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range channels * each {
		if _, err := h.Publish(context.Background(), fmt.Sprintf("chat:c%d", i%channels), []byte(`"xxxxxx"`)); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := float64(after.HeapAlloc-before.HeapAlloc) / (channels * each)
	weight := float64(h.Stats().HistoryBytes) / (channels * each)
	t.Logf("a held message of 8 bytes of data: %.0f bytes of heap, weighs %.0f", heap, weight)
	if heap > 1.25*weight || weight > 2*heap {
		t.Fatalf("a held message takes %.0f bytes of heap and weighs %.0f", heap, weight)
	}
}
