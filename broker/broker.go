package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/metrics"
)

// Headers a publication carries on the stream, beside JetStream's own
// Nats-Msg-Id.
const (
	hdrOffset = "Pushgate-Offset"
	hdrEpoch  = "Pushgate-Epoch"
	hdrNode   = "Pushgate-Node"
)

// How often the broker pings NATS, and how many unanswered pings make the
// connection stale (then it reconnects and the node is not ready).
const (
	pingInterval = time.Second
	maxPingsOut  = 2
)

// Config configures a Broker. Zero values take the defaults.
type Config struct {
	// URL is the NATS server, or several comma-separated. Required.
	URL string
	// Stream is the JetStream stream's name, and its subjects' prefix.
	// Gateways of one cluster share it. Default "PUSHGATE".
	Stream string
	// Replicas is the stream's replica count (1, or 3 on a NATS cluster).
	Replicas int
	// HistoryTTL is how long the stream keeps each publication: the hub's
	// history TTL. Every publication is kept that long, not only the last
	// HistorySize of each channel, so that a node may fall that far behind
	// (a pause, a slow start) without losing any. Default 5m.
	HistoryTTL time.Duration
	// PublishTimeout bounds one publish, retries included. Default 5s.
	PublishTimeout time.Duration
	// MaxPending bounds publishes waiting for the broker; past it Publish
	// waits and TryPublish fails with broadcast.ErrOverloaded. Default 4096.
	MaxPending int
	// MaxClientPending is the share of MaxPending client publishes
	// (TryPublish) may hold, so that API publishes always find room.
	// Default MaxPending/2; at most MaxPending.
	MaxClientPending int
	// Hub receives every publication of the stream. It must be Clustered.
	Hub *broadcast.Hub
	// Metrics and Gateway record what the broker does; default unregistered.
	Metrics *metrics.Broker
	Gateway *metrics.Gateway
	// Logger receives the broker's logs. Default slog.Default().
	Logger *slog.Logger
	// Node names this gateway in NATS and on its publications. Default the
	// host name and a random suffix.
	Node string
	// ReadServed makes the node read only the channels its hub holds
	// (see served.go) rather than every publication of the stream. The
	// hub must call Load and Unload (broadcast.Config). The stream must
	// republish what it stores, as streams this package creates do; a
	// stream created without it by an earlier version, on a NATS before
	// 2.10 (which cannot add it), makes the node not ready, with why.
	ReadServed bool
	// Batches reports whether every node reading the stream reads
	// batches; while it reports false, every publication goes alone. Nil
	// means they all do.
	Batches func() bool
}

func (c Config) withDefaults() Config {
	if c.Stream == "" {
		c.Stream = "PUSHGATE"
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.HistoryTTL <= 0 {
		c.HistoryTTL = 5 * time.Minute
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 4096
	}
	if c.MaxClientPending <= 0 {
		c.MaxClientPending = max(c.MaxPending/2, 1)
	}
	c.MaxClientPending = min(c.MaxClientPending, c.MaxPending)
	if c.Metrics == nil {
		c.Metrics = metrics.NewBroker(nil)
	}
	if c.Gateway == nil {
		c.Gateway = metrics.New(nil)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Node == "" {
		host, _ := os.Hostname()
		c.Node = host + "-" + randomHex(3)
	}
	return c
}

// Broker is a gateway's link to the cluster: a broadcast.Publisher whose
// publications reach every node's hub.
type Broker struct {
	cfg    Config
	prefix string // subjects are prefix + channel token
	log    *slog.Logger
	m      *metrics.Broker
	nc     *nats.Conn
	js     jetstream.JetStream
	stream atomic.Pointer[jetstream.Stream] // once created or found

	slots chan struct{} // one per publish waiting for the broker
	// clientSlots: one per client publish waiting, besides its slot
	clientSlots chan struct{}
	nextID      atomic.Uint64

	mu      sync.Mutex
	chans   map[string]*chanState            // channels this node publishes to
	waiters map[string]chan broadcast.Result // by message ID: publishers awaiting their local fan-out
	nwait   atomic.Int32                     // len(waiters), read without the lock

	serving *serving // ReadServed

	applyMu       sync.Mutex    // one apply at a time, across consumers
	streamCreated time.Time     // creation time of the stream read; under applyMu
	applied       atomic.Uint64 // stream sequence of the last publication applied
	target        atomic.Uint64 // the stream's last sequence when reading began
	consuming     atomic.Bool
	setupErr      atomic.Value // string: why the last setup failed, "" once it did not
	caughtUp      atomic.Bool
	kick          chan struct{}
	ctx           context.Context
	cancel        context.CancelFunc
	wg            sync.WaitGroup // supervisor and publishers
	closeOnce     sync.Once
}

var _ broadcast.Publisher = (*Broker)(nil)

// New connects to NATS and starts reading the stream into cfg.Hub. NATS
// need not be up yet: the broker connects, creates the stream when it is
// missing, and reconnects by itself; until then Ready reports why not.
func New(cfg Config) (*Broker, error) {
	if cfg.URL == "" {
		return nil, errors.New("broker: no NATS URL")
	}
	if cfg.Hub == nil {
		return nil, errors.New("broker: no hub")
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		cfg:    cfg,
		prefix: cfg.Stream + ".",
		log:    cfg.Logger.With("broker", cfg.URL),
		m:      cfg.Metrics,
		slots:  make(chan struct{}, cfg.MaxPending),

		clientSlots: make(chan struct{}, cfg.MaxClientPending),
		chans:       make(map[string]*chanState),
		waiters:     make(map[string]chan broadcast.Result),
		kick:        make(chan struct{}, 1),
		ctx:         ctx,
		cancel:      cancel,
	}
	nc, err := nats.Connect(cfg.URL,
		nats.Name("pushgate "+cfg.Node),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		// Publishing while disconnected fails at once rather than being
		// buffered and sent later, after its caller was told it failed.
		nats.ReconnectBufSize(-1),
		// A NATS that hangs (stopped, swapping, a dead route) keeps its
		// TCP connection open: only unanswered pings tell. With the
		// defaults (2 minutes, 2 pings) a node would stay "ready" and
		// let every publish time out for minutes; this way it notices
		// within pingInterval × (maxPingsOut+1), about 3 seconds.
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		nats.ConnectHandler(func(*nats.Conn) {
			b.log.Info("broker connected")
			b.poke()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			b.log.Warn("broker disconnected; serving local subscribers, refusing publishes", "err", err)
			b.poke()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) && sub != nil && b.serving != nil {
				// Live messages of a channel were dropped: read it again.
				if t, ok := strings.CutPrefix(sub.Subject, liveToken+"."); ok {
					if name, ok := channelOf(b.prefix, t); ok {
						b.request(serveReq{kind: reqRefill, name: name})
					}
				}
			}
			b.log.Warn("broker: NATS error", "err", err)
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			b.m.Reconnects.Inc()
			b.log.Info("broker reconnected")
			b.poke()
		}),
	)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("broker: %w", err)
	}
	b.nc = nc
	b.m.Observe(func() bool { return b.Ready() == nil }, func() int { return len(b.slots) })
	if b.js, err = jetstream.New(nc); err != nil {
		nc.Close()
		cancel()
		return nil, fmt.Errorf("broker: %w", err)
	}
	if cfg.ReadServed {
		b.serving = newServing()
		b.wg.Add(1 + fillWorkers)
		go b.serve()
		for range fillWorkers {
			go b.fillWorker()
		}
	}
	b.wg.Add(1)
	go b.supervise()
	return b, nil
}

// Close stops reading the stream, fails publishes still waiting, and
// closes the NATS connection.
func (b *Broker) Close() {
	b.closeOnce.Do(func() {
		b.cancel()
		b.wg.Wait()
		b.nc.Close()
	})
}

// Ready reports nil while the node is connected to NATS and has read the
// stream up to where it stood when reading began; else why not.
func (b *Broker) Ready() error {
	switch {
	case !b.nc.IsConnected():
		return errors.New("broker: not connected to NATS")
	case !b.consuming.Load():
		if why, _ := b.setupErr.Load().(string); why != "" {
			return errors.New("broker: not reading the stream: " + why)
		}
		return errors.New("broker: not reading the stream yet")
	case !b.caughtUp.Load():
		return fmt.Errorf("broker: reading the stream's history (%d of %d)", b.applied.Load(), b.target.Load())
	}
	return nil
}

func (b *Broker) poke() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// unavailable is the error of a publish the broker could not take.
func unavailable(format string, args ...any) error {
	return &broadcast.UnavailableError{Reason: fmt.Sprintf(format, args...)}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
