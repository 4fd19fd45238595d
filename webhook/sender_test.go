package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/pushgate/pushgate/metrics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testSecret = []byte("a webhook secret for tests")

// waitLimit only turns a hang into a failure; nothing is timed with it.
const waitLimit = 30 * time.Second

// received is one POST as the backend saw it.
type received struct {
	body      []byte
	signature string
	events    []Event
}

// backend is a webhook receiver on a loopback port. It checks each POST's
// headers and signature, decodes its body, and hands it to posts before
// answering.
type backend struct {
	url   string
	posts chan received
}

// newBackend starts a backend; answer, if not nil, returns the status of
// POST number n (from 0), or dropConnection, and may block. Without it
// every POST gets 200.
func newBackend(t *testing.T, answer func(n int, r *http.Request) int) *backend {
	t.Helper()
	b := &backend{posts: make(chan received, 1024)}
	var count atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading a POST: %v", err)
			return
		}
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" ||
			r.Header.Get("User-Agent") != "pushgate-webhook" {
			t.Errorf("%s with Content-Type %q, User-Agent %q", r.Method, r.Header.Get("Content-Type"), r.Header.Get("User-Agent"))
		}
		sig := r.Header.Get(SignatureHeader)
		if !Verify(testSecret, body, sig) {
			t.Errorf("signature %q does not verify %s", sig, body)
		}
		var batch Batch
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&batch); err != nil {
			t.Errorf("decoding %s: %v", body, err)
		}
		b.posts <- received{body: body, signature: sig, events: batch.Events}
		status := http.StatusOK
		if answer != nil {
			status = answer(int(count.Add(1)-1), r)
		}
		if status == dropConnection {
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	b.url = srv.URL
	return b
}

// dropConnection is an answer: close the connection without one.
const dropConnection = -1

// next waits for the next POST.
func (b *backend) next(t *testing.T) received {
	t.Helper()
	select {
	case p := <-b.posts:
		return p
	case <-time.After(waitLimit):
		t.Fatal("no POST arrived")
		return received{}
	}
}

// drain returns the POSTs received and not yet taken.
func (b *backend) drain() []received {
	var posts []received
	for {
		select {
		case p := <-b.posts:
			posts = append(posts, p)
		default:
			return posts
		}
	}
}

// blocker makes a backend's answers wait until it is released, or the
// sender gives up on the POST (a closing test aborts what is in flight).
func blocker(t *testing.T) (wait func(*http.Request), release func()) {
	ch := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(release)
	return func(r *http.Request) {
		select {
		case <-ch:
		case <-r.Context().Done():
		}
	}, release
}

// newSender starts a Sender posting to url with the test secret, small
// backoffs, and logs in the test's output. Call it after newBackend and
// blocker, so that it is closed first.
func newSender(t *testing.T, cfg Config) *Sender {
	t.Helper()
	cfg.Secret = testSecret
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 5*time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // give up on what a test left queued
		_ = s.Close(ctx)
	})
	return s
}

// closeSender closes s, which must deliver everything queued.
func closeSender(t *testing.T, s *Sender) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// userEvents returns n user_online events whose encodings have the same
// length.
func userEvents(n int) []Event {
	evs := make([]Event, n)
	for i := range evs {
		evs[i] = Event{Type: UserOnline, Time: 1700000000000 + int64(i), Node: "gw-1", Seq: 100000 + uint64(i),
			User: fmt.Sprintf("user%04d", i)}
	}
	return evs
}

func encodedSize(t *testing.T, ev Event) int {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return len(b)
}

// eventsOf joins the events of posts, in order.
func eventsOf(posts []received) []Event {
	var evs []Event
	for _, p := range posts {
		evs = append(evs, p.events...)
	}
	return evs
}

func batchSizes(posts []received) []int {
	var n []int
	for _, p := range posts {
		n = append(n, len(p.events))
	}
	return n
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		url    string
		secret string
		want   string // in the error; "" for none
	}{
		{"https://backend.example/hooks/pushgate", "s", ""},
		{"http://127.0.0.1:8080/", "s", ""},
		{"https://backend.example/hooks", "", "secret is required"},
		{"", "s", "not an absolute http or https URL"},
		{"/hooks", "s", "not an absolute http or https URL"},
		{"ftp://backend.example/", "s", "not an absolute http or https URL"},
		{"http://", "s", "not an absolute http or https URL"},
		{"http://bad host/", "s", "URL"},
	} {
		t.Run(tc.url+" "+tc.secret, func(t *testing.T) {
			s, err := New(Config{URL: tc.url, Secret: []byte(tc.secret)})
			if err == nil {
				if tc.want != "" {
					t.Fatalf("New accepted it, want an error with %q", tc.want)
				}
				if err := s.Close(context.Background()); err != nil {
					t.Fatal(err)
				}
				return
			}
			if tc.want == "" || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestSignatureAndSchema(t *testing.T) {
	b := newBackend(t, nil)
	s := newSender(t, Config{URL: b.url, Linger: time.Hour})
	sent := []Event{
		{Type: UserOnline, Time: 1700000000000, Node: "gw-1", Seq: 1, User: "alice"},
		{Type: UserOffline, Time: 1700000000001, Node: "gw-1", Seq: 0, User: "bob \"the\" \\builder\n é ☃ \x01"},
		{Type: ChannelOccupied, Time: 1700000000002, Node: "gw-2", Seq: 1 << 60, Channel: "chat:42"},
		{Type: ChannelVacated, Time: 1700000000003, Node: "gw-2", Seq: math.MaxUint64, Channel: "chat:42"},
	}
	for _, ev := range sent {
		s.Send(ev)
	}
	closeSender(t, s) // lingering ends: the batch goes out
	posts := b.drain()
	if len(posts) != 1 {
		t.Fatalf("%d POSTs, want 1", len(posts))
	}
	p := posts[0]
	if !slices.Equal(p.events, sent) {
		t.Errorf("received %+v, want %+v", p.events, sent)
	}
	if want := Sign(testSecret, p.body); p.signature != want {
		t.Errorf("signature %q, want %q", p.signature, want)
	}
	if Verify([]byte("another secret"), p.body, p.signature) {
		t.Error("Verify accepted another secret")
	}
	if Verify(testSecret, bytes.Replace(p.body, []byte("alice"), []byte("mallory"), 1), p.signature) {
		t.Error("Verify accepted a tampered body")
	}

	// The exact fields: integers time and seq (always there, even 0), and
	// user or channel, never both.
	var raw struct{ Events []map[string]json.RawMessage }
	if err := json.Unmarshal(p.body, &raw); err != nil {
		t.Fatal(err)
	}
	for i, obj := range raw.Events {
		keys := slices.Sorted(maps.Keys(obj))
		want := []string{"node", "seq", "time", "type", "user"}
		if sent[i].Channel != "" {
			want = []string{"channel", "node", "seq", "time", "type"}
		}
		if !slices.Equal(keys, want) {
			t.Errorf("event %d has fields %v, want %v", i, keys, want)
		}
		if got, want := string(obj["time"]), fmt.Sprint(sent[i].Time); got != want {
			t.Errorf("event %d: time %s, want the integer %s", i, got, want)
		}
		if got, want := string(obj["seq"]), fmt.Sprint(sent[i].Seq); got != want {
			t.Errorf("event %d: seq %s, want the integer %s", i, got, want)
		}
	}
}

func TestBatching(t *testing.T) {
	t.Run("linger joins", func(t *testing.T) {
		b := newBackend(t, nil)
		s := newSender(t, Config{URL: b.url, Linger: time.Hour})
		sent := userEvents(5)
		for _, ev := range sent {
			s.Send(ev)
		}
		closeSender(t, s)
		posts := b.drain()
		if len(posts) != 1 || !slices.Equal(posts[0].events, sent) {
			t.Fatalf("batches of %v, want one of 5: %+v", batchSizes(posts), eventsOf(posts))
		}
	})

	t.Run("linger ends", func(t *testing.T) {
		b := newBackend(t, nil)
		s := newSender(t, Config{URL: b.url, Linger: time.Millisecond})
		ev := userEvents(1)[0]
		s.Send(ev)
		if p := b.next(t); !slices.Equal(p.events, []Event{ev}) {
			t.Fatalf("received %+v", p.events)
		}
	})

	size := encodedSize(t, userEvents(1)[0])
	for _, tc := range []struct {
		name string
		cfg  Config
		want []int
	}{
		{"max batch", Config{MaxBatch: 4}, []int{4, 4, 2}},
		{"max batch bytes", Config{MaxBatchBytes: len(batchHead) + 3*size + 2 + len(batchTail)}, []int{3, 3, 3, 1}},
		{"max batch bytes, not exact", Config{MaxBatchBytes: len(batchHead) + 4*size + len(batchTail)}, []int{3, 3, 3, 1}},
		{"event over max batch bytes", Config{MaxBatchBytes: size}, []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The first POST waits until every event is queued, so that
			// the split is the same every run.
			wait, release := blocker(t)
			b := newBackend(t, func(n int, r *http.Request) int {
				if n == 0 {
					wait(r)
				}
				return http.StatusNoContent
			})
			cfg := tc.cfg
			cfg.URL, cfg.Linger = b.url, time.Hour
			s := newSender(t, cfg)
			sent := userEvents(10)
			for _, ev := range sent {
				s.Send(ev)
			}
			release()
			closeSender(t, s)
			posts := b.drain()
			if got := batchSizes(posts); !slices.Equal(got, tc.want) {
				t.Errorf("batches of %v, want %v", got, tc.want)
			}
			if got := eventsOf(posts); !slices.Equal(got, sent) {
				t.Errorf("received %+v, want %+v", got, sent)
			}
			for _, p := range posts {
				if len(p.events) > 1 && len(p.body) > s.cfg.MaxBatchBytes {
					t.Errorf("a body of %d bytes, over %d", len(p.body), s.cfg.MaxBatchBytes)
				}
			}
		})
	}
}

func TestRetries(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(r *http.Request) int // how an attempt fails
	}{
		{"status 500", func(*http.Request) int { return http.StatusInternalServerError }},
		{"redirect", func(*http.Request) int { return http.StatusTemporaryRedirect }},
		{"connection closed", func(*http.Request) int { return dropConnection }},
		{"timeout", func(r *http.Request) int {
			<-r.Context().Done() // the sender gives up on this POST
			return http.StatusOK
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t, func(n int, r *http.Request) int {
				if n < 2 {
					return tc.fail(r)
				}
				return http.StatusOK
			})
			m := metrics.NewWebhook(nil)
			cfg := Config{URL: b.url, MaxBatch: 2, Linger: time.Hour, Metrics: m}
			if tc.name == "timeout" {
				// Long enough for the POSTs that are answered at once, under -race
				// on a loaded machine; the two that hang cost it twice.
				cfg.Timeout = time.Second
			}
			s := newSender(t, cfg)
			sent := userEvents(7)
			for _, ev := range sent {
				s.Send(ev)
			}
			closeSender(t, s)
			posts := b.drain()
			if len(posts) < 3 {
				t.Fatalf("%d POSTs, want the first batch 3 times and the rest", len(posts))
			}
			for i, p := range posts[:3] {
				if !bytes.Equal(p.body, posts[0].body) || p.signature != posts[0].signature {
					t.Errorf("attempt %d posted %s %s, not %s %s", i+1, p.body, p.signature, posts[0].body, posts[0].signature)
				}
			}
			if !slices.Equal(posts[0].events, sent[:2]) {
				t.Errorf("first batch %+v, want %+v", posts[0].events, sent[:2])
			}
			if got := eventsOf(posts[3:]); !slices.Equal(got, sent[2:]) {
				t.Errorf("after the retried batch %+v, want %+v", got, sent[2:])
			}
			if got := testutil.ToFloat64(m.DeliveriesError); got != 2 {
				t.Errorf("error deliveries %v, want 2", got)
			}
			if got, want := testutil.ToFloat64(m.DeliveriesOK), float64(len(posts)-2); got != want {
				t.Errorf("ok deliveries %v, want %v", got, want)
			}
			if got := testutil.ToFloat64(m.QueueBytes); got != 0 {
				t.Errorf("queue bytes %v after delivering everything", got)
			}
		})
	}
}

func TestOverflow(t *testing.T) {
	wait, release := blocker(t)
	b := newBackend(t, func(_ int, r *http.Request) int {
		wait(r)
		return http.StatusOK
	})
	m := metrics.NewWebhook(nil)
	logs := &logRecorder{}
	size := encodedSize(t, userEvents(1)[0])
	const fits = 10
	s := newSender(t, Config{URL: b.url, MaxQueueBytes: fits*size + size/2, MaxBatch: 3, Linger: time.Hour,
		Timeout: time.Hour, Metrics: m, Logger: slog.New(logs)})

	// Nothing is delivered until release: the batch in flight holds its
	// place in the queue, so exactly the first ten events fit.
	sent := userEvents(35)
	for _, ev := range sent {
		s.Send(ev)
		if got := testutil.ToFloat64(m.QueueBytes); got > float64(s.cfg.MaxQueueBytes) {
			t.Fatalf("queue holds %v bytes, over %d", got, s.cfg.MaxQueueBytes)
		}
	}
	if got, want := testutil.ToFloat64(m.Dropped), float64(len(sent)-fits); got != want {
		t.Errorf("dropped %v events, want %v", got, want)
	}
	if got := testutil.ToFloat64(m.Events(UserOnline)); got != fits {
		t.Errorf("queued %v events, want %v", got, fits)
	}
	if logs.dropped() == 0 {
		t.Error("no warning about dropped events")
	}

	release()
	closeSender(t, s)
	if got := eventsOf(b.drain()); !slices.Equal(got, sent[:fits]) {
		t.Errorf("received %+v, want the first %d sent", got, fits)
	}
	if got, want := logs.dropped(), int64(len(sent)-fits); got != want {
		t.Errorf("logs count %d dropped events, want %d", got, want)
	}
}

func TestClose(t *testing.T) {
	t.Run("delivers what is queued", func(t *testing.T) {
		b := newBackend(t, nil)
		m := metrics.NewWebhook(nil)
		s := newSender(t, Config{URL: b.url, MaxBatch: 3, Linger: time.Hour, Metrics: m})
		sent := userEvents(7)
		for _, ev := range sent {
			s.Send(ev)
		}
		closeSender(t, s)
		if got := eventsOf(b.drain()); !slices.Equal(got, sent) {
			t.Errorf("received %+v, want %+v", got, sent)
		}

		s.Send(userEvents(1)[0])
		if got := testutil.ToFloat64(m.Dropped); got != 1 {
			t.Errorf("dropped %v events after Close, want 1", got)
		}
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if posts := b.drain(); len(posts) != 0 {
			t.Errorf("%d POSTs after Close", len(posts))
		}
	})

	for _, tc := range []struct {
		name   string
		answer func(int, *http.Request) int
	}{
		{"failing backend", func(int, *http.Request) int { return http.StatusServiceUnavailable }},
		{"hanging backend", func(_ int, r *http.Request) int {
			<-r.Context().Done() // Close aborts the POST
			return http.StatusOK
		}},
	} {
		t.Run("expired context, "+tc.name, func(t *testing.T) {
			b := newBackend(t, tc.answer)
			s := newSender(t, Config{URL: b.url, Linger: time.Hour, MaxBatch: 2, Timeout: time.Hour,
				MinBackoff: time.Hour, MaxBackoff: time.Hour})
			var c calls
			for i, ev := range userEvents(5) {
				if !s.SendThen(ev, c.of(i)) {
					t.Fatalf("event %d not queued", i)
				}
			}
			b.next(t) // a batch is in flight, or waits to be retried

			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			err := s.Close(ctx)
			if !errors.Is(err, ErrUndelivered) || !strings.Contains(err.Error(), "5 events") {
				t.Fatalf("Close: %v, want 5 events undelivered", err)
			}
			// The callbacks of the events lost are never called.
			if got := c.get(); len(got) != 0 {
				t.Errorf("callbacks of undelivered events %v called", got)
			}
		})
	}
}

func TestSendAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	b := newBackend(t, nil)
	ev := userEvents(1)[0]

	s := newSender(t, Config{URL: b.url, Linger: time.Hour, MaxBatch: 1 << 20})
	if n := testing.AllocsPerRun(1000, func() { s.Send(ev) }); n > 1 {
		t.Errorf("Send allocates %v times, want only the encoding", n)
	}

	full := newSender(t, Config{URL: b.url, MaxQueueBytes: 1, Logger: slog.New(slog.DiscardHandler)})
	if n := testing.AllocsPerRun(1000, func() { full.Send(ev) }); n != 0 {
		t.Errorf("Send to a full queue allocates %v times", n)
	}
}

func BenchmarkSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	m := metrics.NewWebhook(nil)
	s, err := New(Config{URL: srv.URL, Secret: testSecret, Metrics: m})
	if err != nil {
		b.Fatal(err)
	}
	ev := Event{Type: UserOnline, Time: 1700000000000, Node: "gw-1", User: "alice"}
	b.ReportAllocs()
	for b.Loop() {
		s.Send(ev)
	}
	b.StopTimer()
	if err := s.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(testutil.ToFloat64(m.Dropped)/float64(b.N), "dropped/op")
}

// logRecorder keeps the counts of "events dropped" lines.
type logRecorder struct {
	mu    sync.Mutex
	total int64
	lines int
}

func (h *logRecorder) dropped() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "webhook: events dropped" {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lines++
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "queue_full" || a.Key == "after_close" {
			h.total += a.Value.Int64()
		}
		return true
	})
	return nil
}

func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }
