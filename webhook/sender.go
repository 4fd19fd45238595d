package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgate/pushgate/metrics"
)

// ErrUndelivered is wrapped by Close's error when it gave up with events
// still queued.
var ErrUndelivered = errors.New("webhook: events undelivered")

// Config configures a Sender. Zero values take the defaults given.
type Config struct {
	// URL is where batches are posted: an absolute http or https URL.
	// Required.
	URL string
	// Secret keys the HMAC-SHA256 signature of each POST. Required.
	Secret []byte
	// MaxQueueBytes bounds the bytes of encoded events waiting, the batch
	// in flight included; Send drops events past it. Default 8 MiB.
	MaxQueueBytes int
	// MaxBatch is the most events in one POST. Default 100.
	MaxBatch int
	// MaxBatchBytes is the most bytes in one POST's body, unless a single
	// event is larger (it then goes alone). Default 256 KiB.
	MaxBatchBytes int
	// Linger is how long an event that finds the sender idle waits for
	// others to join its batch. Default 50ms.
	Linger time.Duration
	// Timeout bounds one POST, the answer read. Default 5s.
	Timeout time.Duration
	// MinBackoff is the wait before the first retry of a batch; each
	// retry doubles it up to MaxBackoff, then draws a random wait between
	// half the value and the value. Defaults 100ms and 10s; MaxBackoff is
	// at least MinBackoff.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// Client posts the batches. Default: a client keeping connections
	// alive, at most 4 to the backend, that follows no redirect (a
	// redirected POST would be replayed as a GET, its events lost).
	Client *http.Client
	// Logger receives failed deliveries and dropped events. Default
	// slog.Default().
	Logger *slog.Logger
	// Metrics records what the sender does. Default unregistered.
	Metrics *metrics.Webhook
}

func (c Config) withDefaults() Config {
	if c.MaxQueueBytes <= 0 {
		c.MaxQueueBytes = 8 << 20
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 100
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 256 << 10
	}
	if c.Linger <= 0 {
		c.Linger = 50 * time.Millisecond
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 10 * time.Second
	}
	c.MaxBackoff = max(c.MaxBackoff, c.MinBackoff)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewWebhook(nil)
	}
	return c
}

// newClient is the default Config.Client.
func newClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxConnsPerHost = 4
	t.MaxIdleConnsPerHost = 4
	return &http.Client{
		Transport: t,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a 3xx is a failed delivery
		},
	}
}

// Sender delivers events to a webhook backend; see the package comment.
// Its methods are safe for concurrent use.
type Sender struct {
	cfg        Config
	secret     []byte
	client     *http.Client
	ownsClient bool // close its idle connections on Close
	log        *slog.Logger
	m          *metrics.Webhook
	queued     [len(eventTypes) + 1]prometheus.Counter // by typeIndex

	wake chan struct{} // cap 1: events queued, a batch filled, or closing
	// ctx ends when Close gives up: it aborts the POST in flight and the
	// delivery goroutine.
	ctx   context.Context
	abort context.CancelFunc
	done  chan struct{} // closed when the delivery goroutine returns

	// held mirrors heldBytes for Send to refuse without the lock (and
	// without encoding) while the queue is full.
	held atomic.Int64
	// Events dropped since the last warning, by reason, and when it was
	// logged (Unix nanoseconds).
	droppedFull   atomic.Int64
	droppedClosed atomic.Int64
	lastDropLog   atomic.Int64

	mu          sync.Mutex
	queue       ring // events waiting
	queuedBytes int  // their bytes
	inFlight    int  // events in the batch being delivered
	heldBytes   int  // queuedBytes plus the bytes of the batch in flight
	closed      bool
}

var eventTypes = [...]string{UserOnline, UserOffline, ChannelOccupied, ChannelVacated}

// typeIndex is t's index in eventTypes, or len(eventTypes) for any other.
func typeIndex(t string) int {
	for i, et := range eventTypes {
		if t == et {
			return i
		}
	}
	return len(eventTypes)
}

// New validates cfg and starts the Sender's delivery goroutine; Close
// stops it.
func New(cfg Config) (*Sender, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("webhook: URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook: URL %q is not an absolute http or https URL", u.Redacted())
	}
	if len(cfg.Secret) == 0 {
		return nil, errors.New("webhook: a secret is required: backends check each POST's " + SignatureHeader + " with it")
	}
	cfg = cfg.withDefaults()
	s := &Sender{
		cfg:    cfg,
		secret: bytes.Clone(cfg.Secret),
		client: cfg.Client,
		log:    cfg.Logger,
		m:      cfg.Metrics,
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	if s.client == nil {
		s.client, s.ownsClient = newClient(), true
	}
	for i, t := range eventTypes {
		s.queued[i] = s.m.Events(t)
	}
	s.queued[len(eventTypes)] = s.m.Events("other")
	s.ctx, s.abort = context.WithCancel(context.Background())
	go s.run()
	return s, nil
}

// Send queues ev for delivery. It never blocks: when the queue holds
// Config.MaxQueueBytes, or after Close, ev is dropped and counted.
func (s *Sender) Send(ev Event) { s.SendThen(ev, nil) }

// SendThen is Send, and then some: it reports whether ev was queued, and
// calls delivered, if not nil, once ev has been delivered.
//
// Like Send it never blocks, and it drops and counts ev when the queue
// holds Config.MaxQueueBytes or after Close: it then returns false, and
// delivered is never called. Once queued, ev is delivered, and delivered
// called exactly once, after the POST of the batch holding ev was
// answered 2xx (never after a failed attempt at it). The calls come from
// the delivery goroutine, one at a time, in the order the events were
// queued. If Close gives up with ev still queued or in flight, delivered
// is never called; no call starts or runs after Close returns.
//
// delivered runs before the next batch is posted, and Close waits for it
// even when giving up, so it must not block: hand anything slow to
// another goroutine. It may call Send and SendThen (the sender's lock is
// not held while it runs, and they never block; an event sent from it
// joins the queue like any other, and is dropped once Close was called),
// but it must not call Close, which waits for the delivery goroutine and
// so for delivered itself to return.
func (s *Sender) SendThen(ev Event, delivered func()) bool {
	size := ev.encodedLen()
	if s.held.Load()+int64(size) > int64(s.cfg.MaxQueueBytes) {
		s.drop(false) // refused before encoding: no garbage while full
		return false
	}
	enc := ev.appendJSON(make([]byte, 0, size))

	s.mu.Lock()
	if s.closed || s.heldBytes+size > s.cfg.MaxQueueBytes {
		closed := s.closed
		s.mu.Unlock()
		s.drop(closed)
		return false
	}
	s.queue.push(entry{enc, delivered})
	s.queuedBytes += size
	s.heldBytes += size
	s.held.Store(int64(s.heldBytes))
	s.m.QueueBytes.Set(float64(s.heldBytes))
	// The delivery goroutine needs waking if it may be idle, or lingering
	// on a batch that is now full.
	wake := s.queue.n == 1 || s.batchFullLocked()
	s.mu.Unlock()

	s.queued[typeIndex(ev.Type)].Inc()
	if wake {
		s.signal()
	}
	return true
}

// batchFullLocked reports whether the queue holds a full batch.
func (s *Sender) batchFullLocked() bool {
	n := s.queue.n
	return n >= s.cfg.MaxBatch || len(batchHead)+s.queuedBytes+n-1+len(batchTail) >= s.cfg.MaxBatchBytes
}

func (s *Sender) signal() {
	select {
	case s.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// drop counts a refused event and logs the drops, at most once a second.
func (s *Sender) drop(closed bool) {
	s.m.Dropped.Inc()
	if closed {
		s.droppedClosed.Add(1)
	} else {
		s.droppedFull.Add(1)
	}
	s.logDrops(false)
}

// logDrops logs the events dropped since the last line, if a second has
// passed since it or force is set.
func (s *Sender) logDrops(force bool) {
	if s.droppedFull.Load()+s.droppedClosed.Load() == 0 {
		return
	}
	now := time.Now().UnixNano()
	last := s.lastDropLog.Load()
	if !force && now-last < int64(time.Second) || !s.lastDropLog.CompareAndSwap(last, now) {
		return // not yet, or another goroutine logs them
	}
	full, closed := s.droppedFull.Swap(0), s.droppedClosed.Swap(0)
	if full+closed > 0 {
		s.log.Warn("webhook: events dropped", "queue_full", full, "after_close", closed,
			"max_queue_bytes", s.cfg.MaxQueueBytes)
	}
}

// Close stops taking events and delivers those queued, until ctx is done:
// it then aborts the POST in flight and returns an error wrapping
// ErrUndelivered with the count of events lost (whose SendThen callbacks
// are never called). It returns once the delivery goroutine has ended, the
// last callback returned. A later call waits for the first to end (or its
// own ctx). Close must not be called from a SendThen callback.
func (s *Sender) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.signal()

	select {
	case <-s.done:
	case <-ctx.Done():
		s.abort()
		<-s.done // promptly: the POST in flight and the waits watch s.ctx
	}
	if s.ownsClient {
		s.client.CloseIdleConnections()
	}
	s.logDrops(true)

	s.mu.Lock()
	lost := s.queue.n + s.inFlight
	s.mu.Unlock()
	if lost > 0 {
		return fmt.Errorf("%w: %d events", ErrUndelivered, lost)
	}
	return nil
}

// entry is a queued event: its encoding, and the callback given to
// SendThen (nil from Send).
type entry struct {
	enc       []byte
	delivered func()
}

// ring is a FIFO of queued events. It doubles when full and keeps its
// size, so that a steady flow of events allocates nothing for it.
type ring struct {
	buf  []entry // len a power of two
	head int
	n    int
}

func (r *ring) push(e entry) {
	if r.n == len(r.buf) {
		grown := make([]entry, max(2*len(r.buf), 64))
		for i := range r.n {
			grown[i] = r.at(i)
		}
		r.buf, r.head = grown, 0
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = e
	r.n++
}

// at returns the i-th event from the head.
func (r *ring) at(i int) entry { return r.buf[(r.head+i)&(len(r.buf)-1)] }

func (r *ring) pop() entry {
	e := r.buf[r.head]
	r.buf[r.head] = entry{} // the batch holds it now
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	return e
}
