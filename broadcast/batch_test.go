package broadcast

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// batcher is a recorder that batches: Queue keeps frames, Flush hands
// them on and records how many each flush carried.
type batcher struct {
	*recorder
	mu      sync.Mutex
	pending [][]byte
	flushes []int
}

func (b *batcher) Queue(frame []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending = append(b.pending, frame)
	return nil
}

func (b *batcher) Flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.pending) == 0 {
		return
	}
	for _, f := range b.pending {
		_ = b.recorder.Send(f)
	}
	b.flushes = append(b.flushes, len(b.pending))
	b.pending = nil
}

func (b *batcher) resetFlushes() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushes = nil
}

func (b *batcher) flushSizes() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.flushes...)
}

// blockShards holds every shard in an op until the returned release is
// called, so the ops pushed meanwhile form one batch.
func (h *Hub) blockShards() (release func()) {
	gate := make(chan struct{})
	var started sync.WaitGroup
	for _, s := range h.shards {
		started.Add(1)
		s.push(op{kind: opCall, fn: func() { started.Done(); <-gate }})
	}
	started.Wait()
	return func() { close(gate) }
}

// Publications that queue up while a shard is busy reach a batching
// connection in one flush, in order, and a waiting Publish returns only
// once they were flushed.
func TestBatchedDelivery(t *testing.T) {
	h := New(Config{Shards: 1})
	defer h.Close()
	b := &batcher{recorder: newRecorder()}
	plain := newRecorder()
	for _, sub := range []Subscriber{b, plain} {
		if err := h.Subscribe(h.Join(sub), "a", nil); err != nil {
			t.Fatal(err)
		}
	}
	h.flush()
	b.resetFlushes() // the subscribe reply may have been one

	release := h.blockShards()
	for i := range 10 {
		if err := h.TryPublish("a", fmt.Appendf(nil, "%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan Result)
	go func() {
		res, err := h.Publish(context.Background(), "a", []byte("11"))
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	h.waitQueued(t, 11)
	release()
	res := <-done
	if res.Delivered != 2 {
		t.Errorf("delivered %d, want 2", res.Delivered)
	}
	// Publish returned: the batch was flushed before it.
	contiguous(t, b.offsets("a"), 1, 11)
	if got := b.flushSizes(); len(got) != 1 || got[0] != 11 {
		t.Errorf("flushes %v, want one of 11 frames", got)
	}
	h.flush()
	contiguous(t, plain.offsets("a"), 1, 11)
}

// A connection never has more than maxQueued frames waiting, however long
// the batch.
func TestBatchFlushesEveryMaxQueued(t *testing.T) {
	h := New(Config{Shards: 1})
	defer h.Close()
	b := &batcher{recorder: newRecorder()}
	if err := h.Subscribe(h.Join(b), "a", nil); err != nil {
		t.Fatal(err)
	}
	h.flush()
	b.resetFlushes()
	release := h.blockShards()
	const n = 3*maxQueued + 5
	for i := range n {
		if err := h.TryPublish("a", fmt.Appendf(nil, "%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	release()
	h.flush()
	contiguous(t, b.offsets("a"), 1, n)
	total := 0
	for _, f := range b.flushSizes() {
		if f > maxQueued {
			t.Errorf("a flush carried %d frames, more than %d", f, maxQueued)
		}
		total += f
	}
	if total != n {
		t.Errorf("flushed %d frames, want %d", total, n)
	}
}

// waitQueued waits until the one shard has n ops queued.
func (h *Hub) waitQueued(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := h.shards[0]
		s.mu.Lock()
		queued := len(s.queue)
		s.mu.Unlock()
		if queued >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d ops queued, want %d", queued, n)
		}
		runtime.Gosched()
	}
}
