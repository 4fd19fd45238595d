package broadcast

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// apply applies offsets from..to of channel in epoch, waiting for each
// fan-out.
func apply(t *testing.T, h *Hub, channel, epoch string, offsets ...uint64) (gaps int) {
	t.Helper()
	for _, o := range offsets {
		done := make(chan Result, 1)
		msg := Message{Channel: channel, Epoch: epoch, Offset: o, Data: []byte(`{"o":1}`), Time: time.Now(), Load: h.loadOf(channel)}
		how, err := h.Apply(context.Background(), msg, func(r Result) { done <- r })
		if err != nil {
			t.Fatal(err)
		}
		if how == AppliedAfterGap {
			gaps++
		}
		if r := <-done; r.Offset != o {
			t.Fatalf("applied offset %d reported as %d", o, r.Offset)
		}
	}
	return gaps
}

func seq(from, to uint64) []uint64 {
	var s []uint64
	for o := from; o <= to; o++ {
		s = append(s, o)
	}
	return s
}

func TestApplyKeepsBrokerNumbering(t *testing.T) {
	h := New(Config{Shards: 2, Clustered: true})
	defer h.Close()
	r := newRecorder()
	m := h.Join(r)
	if err := h.Subscribe(m, "news", nil); err != nil {
		t.Fatal(err)
	}
	h.flush()
	if got := r.reply(0); got["epoch"] != "" || got["offset"] != 0.0 {
		t.Fatalf("a clustered channel the broker has not named yet: %v, want epoch \"\" offset 0", got)
	}
	if gaps := apply(t, h, "news", "e1", 1, 2, 3); gaps != 0 {
		t.Fatalf("%d gaps in 1 2 3", gaps)
	}
	h.flush()
	// The broker named the epoch: the subscriber learns it before offset 1,
	// and missed nothing.
	if got := r.reply(1); got["type"] != "subscribed" || got["epoch"] != "e1" || got["offset"] != 0.0 || got["recovered"] != true {
		t.Fatalf("when the channel got its epoch the subscriber was sent %v, want subscribed e1 at 0, recovered", got)
	}
	apply(t, h, "news", "e1", 2, 3) // delivered again after a reconnect: skipped
	h.flush()
	if got := r.offsets("news"); !slices.Equal(got, seq(1, 3)) {
		t.Fatalf("offsets %v, want 1..3 once each", got)
	}
	hist := h.History("news", 0)
	if hist.Epoch != "e1" || hist.Offset != 3 || len(hist.Entries) != 3 || !hist.Complete {
		t.Fatalf("history %+v, want epoch e1 with 1..3", hist)
	}

	// A gap (the stream dropped what this node missed) keeps offsets but
	// restarts history: recovery from before the gap is not complete.
	if gaps := apply(t, h, "news", "e1", 7); gaps != 1 {
		t.Fatalf("a jump from 3 to 7 reported %d gaps, want 1", gaps)
	}
	if hist := h.History("news", 3); hist.Complete || len(hist.Entries) != 1 || hist.Entries[0].Offset != 7 {
		t.Fatalf("after a gap, history from 3: %+v, want incomplete with 7 only", hist)
	}
	// A new epoch restarts the channel.
	apply(t, h, "news", "e2", 1)
	if hist := h.History("news", 0); hist.Epoch != "e2" || hist.Offset != 1 || len(hist.Entries) != 1 {
		t.Fatalf("after a new epoch: %+v, want e2 with offset 1 only", hist)
	}
	if s := h.Stats(); s.History != 1 {
		t.Fatalf("history entries %d, want 1", s.History)
	}
	h.flush()
	if got := r.offsets("news"); !slices.Equal(got, []uint64{1, 2, 3, 7, 1}) {
		t.Fatalf("live subscriber got %v, want 1 2 3 7 1", got)
	}
	// ... and is told, before offset 1 of e2, that the epoch changed and
	// what it had is gone: it must resync.
	if got := r.reply(2); got["type"] != "subscribed" || got["epoch"] != "e2" || got["offset"] != 0.0 || got["recovered"] != false {
		t.Fatalf("on the new epoch the subscriber was sent %v, want subscribed e2 at 0, not recovered", got)
	}
	if r.reply(3) != nil {
		t.Fatalf("one more reply than expected: %v", r.reply(3))
	}
}

// The order a live subscriber sees: the new epoch's subscribed reply
// comes after the old epoch's last message and before the new one's first.
func TestApplyEpochChangeOrder(t *testing.T) {
	h := New(Config{Shards: 1, Clustered: true})
	defer h.Close()
	r := newRecorder()
	var frames [][]byte
	if err := h.Subscribe(h.Join(&frameSaver{r, &frames}), "news", nil); err != nil {
		t.Fatal(err)
	}
	apply(t, h, "news", "e1", 1, 2)
	apply(t, h, "news", "e2", 1)
	h.flush()
	var got []string
	for _, f := range frames {
		var v struct {
			Type, Epoch string
			Offset      uint64
		}
		if err := json.Unmarshal(decodeFrame(f), &v); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %s %d", v.Type, v.Epoch, v.Offset))
	}
	want := []string{"subscribed  0", "subscribed e1 0", "message  1", "message  2", "subscribed e2 0", "message  1"}
	if !slices.Equal(got, want) {
		t.Fatalf("frames %q, want %q", got, want)
	}
}

// A client that saw offsets on another node, which this node has not
// applied yet, is told it recovered and is sent only what follows them.
func TestApplySubscriberAheadOfNode(t *testing.T) {
	h := New(Config{Shards: 2, Clustered: true})
	defer h.Close()
	apply(t, h, "news", "e1", 1, 2, 3)
	ahead, behind, other := newRecorder(), newRecorder(), newRecorder()
	for _, c := range []struct {
		r   *recorder
		pos *Position
	}{{ahead, &Position{Offset: 5, Epoch: "e1"}}, {behind, &Position{Offset: 2, Epoch: "e1"}}, {other, &Position{Offset: 5, Epoch: "e0"}}} {
		if err := h.Subscribe(h.Join(c.r), "news", c.pos); err != nil {
			t.Fatal(err)
		}
	}
	h.flush()
	if got := ahead.reply(0); got["offset"] != 5.0 || got["recovered"] != true || got["epoch"] != "e1" {
		t.Fatalf("subscriber ahead of the node: %v, want offset 5 recovered", got)
	}
	if got := other.reply(0); got["recovered"] != false {
		t.Fatalf("subscriber from another epoch: %v, want recovered false", got)
	}
	apply(t, h, "news", "e1", 4, 5, 6, 7)
	h.flush()
	if got := ahead.offsets("news"); !slices.Equal(got, seq(6, 7)) {
		t.Fatalf("subscriber ahead got %v, want 6 7", got)
	}
	if got := behind.offsets("news"); !slices.Equal(got, seq(3, 7)) {
		t.Fatalf("subscriber behind got %v, want 3..7", got)
	}

	// A skip belongs to its epoch: a new epoch's offsets are all sent.
	late := newRecorder()
	if err := h.Subscribe(h.Join(late), "news", &Position{Offset: 9, Epoch: "e1"}); err != nil {
		t.Fatal(err)
	}
	apply(t, h, "news", "e2", 1, 2)
	h.flush()
	if got := late.offsets("news"); !slices.Equal(got, seq(1, 2)) {
		t.Fatalf("after a new epoch the skipping subscriber got %v, want 1 2", got)
	}
	if got := late.reply(1); got["epoch"] != "e2" || got["recovered"] != false {
		t.Fatalf("the skipping subscriber was told %v of the new epoch, want e2, not recovered", got)
	}
}

func TestFanoutDurationObserved(t *testing.T) {
	hist := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "f"})
	h := New(Config{Shards: 2, FanoutDuration: hist})
	defer h.Close()
	for range 3 {
		if err := h.Subscribe(h.Join(newRecorder()), "news", nil); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		if _, err := h.Publish(context.Background(), "news", []byte(`1`)); err != nil {
			t.Fatal(err)
		}
	}
	var m dto.Metric
	if err := hist.Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetHistogram().GetSampleCount(); n != 5 {
		t.Fatalf("fan-out durations observed: %d, want one per publication (5)", n)
	}
}

// loadOf is the id of the Load channel is loading or loaded for (0: none,
// or the hub does not hold it): what a broker that has seen every Load
// would name in Apply and Loaded.
func (h *Hub) loadOf(channel string) uint64 {
	t, ch := h.lockChannel(channel, lookup)
	if ch == nil {
		return 0
	}
	defer unlockChannel(t, ch)
	return ch.load
}

// loaded is Loaded for the channel's current load.
func loaded(h *Hub, channel string) { h.Loaded(channel, h.loadOf(channel)) }
