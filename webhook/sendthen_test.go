package webhook

import (
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// calls records which events' SendThen callbacks were called, in order.
type calls struct {
	mu  sync.Mutex
	idx []int
}

// of returns a callback recording i.
func (c *calls) of(i int) func() {
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.idx = append(c.idx, i)
	}
}

func (c *calls) get() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.idx)
}

// indexOf is the index in userEvents of ev.
func indexOf(ev Event) int { return int(ev.Seq - 100000) }

func TestSendThenDelivered(t *testing.T) {
	// POSTs 0, 1 (the first batch), 3 (the second) and 7 fail.
	failed := func(n int) bool { return n == 0 || n == 1 || n == 3 || n == 7 }
	var c calls
	var mu sync.Mutex
	var before []int // the callbacks called as each POST arrived
	b := newBackend(t, func(n int, r *http.Request) int {
		mu.Lock()
		before = append(before, len(c.get()))
		mu.Unlock()
		if failed(n) {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	s := newSender(t, Config{URL: b.url, MaxBatch: 2, Linger: time.Hour})

	// Every third event is sent without a callback.
	sent := userEvents(11)
	var want []int
	for i, ev := range sent {
		if i%3 == 2 {
			s.Send(ev)
			continue
		}
		want = append(want, i)
		if !s.SendThen(ev, c.of(i)) {
			t.Fatalf("event %d not queued", i)
		}
	}
	closeSender(t, s)
	posts := b.drain()
	var taken []Event // the events of the POSTs answered 2xx
	for n, p := range posts {
		if !failed(n) {
			taken = append(taken, p.events...)
		}
	}
	if len(posts) < 9 || !slices.Equal(taken, sent) {
		t.Fatalf("%d POSTs took %+v, want at least 9 taking %+v", len(posts), taken, sent)
	}

	// Each callback is called once, in order, and a batch's callbacks only
	// after a 2xx: the POST after a failure saw none of its batch's.
	if got := c.get(); !slices.Equal(got, want) {
		t.Errorf("callbacks of events %v called, want %v", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	called := 0
	for n, p := range posts {
		if before[n] != called {
			t.Errorf("POST %d arrived after %d callbacks, want %d", n, before[n], called)
		}
		if failed(n) {
			continue
		}
		for _, ev := range p.events {
			if indexOf(ev)%3 != 2 {
				called++
			}
		}
	}
}

func TestSendThenDropped(t *testing.T) {
	wait, release := blocker(t)
	b := newBackend(t, func(_ int, r *http.Request) int {
		wait(r)
		return http.StatusOK
	})
	size := encodedSize(t, userEvents(1)[0])
	const fits = 10
	s := newSender(t, Config{URL: b.url, MaxQueueBytes: fits*size + size/2, MaxBatch: 3, Linger: time.Hour,
		Timeout: time.Hour, Logger: slog.New(slog.DiscardHandler)})

	// Nothing is delivered until release: exactly the first ten fit.
	var c calls
	sent := userEvents(25)
	for i, ev := range sent {
		if got := s.SendThen(ev, c.of(i)); got != (i < fits) {
			t.Errorf("SendThen of event %d = %v, want %v", i, got, i < fits)
		}
	}
	release()
	closeSender(t, s)
	if got, want := c.get(), []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; !slices.Equal(got, want) {
		t.Errorf("callbacks of events %v called, want %v", got, want)
	}
	if got := eventsOf(b.drain()); !slices.Equal(got, sent[:fits]) {
		t.Errorf("received %+v, want the first %d sent", got, fits)
	}

	// After Close: refused. Close has returned, so the delivery goroutine
	// is gone and nothing could call the callback later.
	if s.SendThen(sent[0], func() { t.Error("callback of an event sent after Close called") }) {
		t.Error("SendThen after Close = true")
	}
	if posts := b.drain(); len(posts) != 0 {
		t.Errorf("%d POSTs after Close", len(posts))
	}
}

// A callback may send: each event's callback sends the next.
func TestSendThenFromCallback(t *testing.T) {
	b := newBackend(t, nil)
	s := newSender(t, Config{URL: b.url, Linger: time.Millisecond})
	sent := userEvents(5)
	done := make(chan struct{})
	var then func(i int) func()
	then = func(i int) func() {
		return func() {
			if i+1 == len(sent) {
				close(done)
				return
			}
			if !s.SendThen(sent[i+1], then(i+1)) {
				t.Errorf("event %d not queued", i+1)
			}
		}
	}
	if !s.SendThen(sent[0], then(0)) {
		t.Fatal("event 0 not queued")
	}
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("the last callback was not called")
	}
	closeSender(t, s)
	posts := b.drain()
	if got := batchSizes(posts); !slices.Equal(got, []int{1, 1, 1, 1, 1}) {
		t.Errorf("batches of %v, want each event alone", got)
	}
	if got := eventsOf(posts); !slices.Equal(got, sent) {
		t.Errorf("received %+v, want %+v", got, sent)
	}
}

func TestSendThenAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	b := newBackend(t, nil)
	ev := userEvents(1)[0]
	var n atomic.Int64
	delivered := func() { n.Add(1) }

	s := newSender(t, Config{URL: b.url, Linger: time.Hour, MaxBatch: 1 << 20})
	if a := testing.AllocsPerRun(1000, func() { s.SendThen(ev, delivered) }); a > 1 {
		t.Errorf("SendThen allocates %v times, want only the encoding", a)
	}
	if a := testing.AllocsPerRun(1000, func() { s.SendThen(ev, nil) }); a > 1 {
		t.Errorf("SendThen without a callback allocates %v times, want only the encoding", a)
	}

	full := newSender(t, Config{URL: b.url, MaxQueueBytes: 1, Logger: slog.New(slog.DiscardHandler)})
	if a := testing.AllocsPerRun(1000, func() { full.SendThen(ev, delivered) }); a != 0 {
		t.Errorf("SendThen to a full queue allocates %v times", a)
	}
}
