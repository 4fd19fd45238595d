package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgate/pushgate/metrics"
	"github.com/pushgate/pushgate/netpoll"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/wsproto"
)

// What a browser shows when someone opens /ws or /echo as a page (with the
// status 426 and Upgrade: websocket, which clients and proxies read).
const (
	wsPage = `This is the pushgate WebSocket endpoint: it speaks WebSocket, not pages.

Connect a WebSocket client to this URL with the subprotocol pushgate.v1,
from a page for instance:

    const ws = new WebSocket("wss://" + location.host + "/ws", "pushgate.v1");

(ws:// where the page itself is served over plain http://), or load the
JavaScript client from /pushgate.js on this server. The gateway's chat demo,
at /, uses it.
`
	echoPage = `This is pushgate's RFC 6455 echo endpoint: connect a WebSocket client, e.g.
new WebSocket("ws://" + location.host + "/echo"), and every message comes back.
`
)

// readBufferSize is the size of the pooled buffer a read task reads into.
const readBufferSize = 16 << 10

// Server accepts WebSocket connections on one or more listeners and keeps
// them parked in epoll pollers. Create it with New, run listeners with
// Serve, stop it with Shutdown.
type Server struct {
	cfg Config
	log *slog.Logger
	m   *metrics.Gateway

	pool        *netpoll.Pool
	readPoller  *netpoll.Poller
	writePoller *netpoll.Poller
	conns       *connTable
	clock       atomic.Uint32
	pingMs      uint32
	pongMs      uint32
	closeMs     uint32

	handlers  [numEndpoints]Handler
	upgraders [numEndpoints]*wsproto.Upgrader
	closedBy  [numReasons]prometheus.Counter
	hsResults [wsproto.NumHandshakeResults]prometheus.Counter
	// By endpoint: its transport's open connections and messages sent.
	transport [numEndpoints]transportMetrics

	queuedBytes  atomic.Int64 // in every outbound queue
	partial      atomic.Int64 // connections holding a frame reader
	partialBytes atomic.Int64 // bytes those readers hold for messages in progress
	msgRate      rate         // ClientMessageRate, off when not positive
	byteRate     rate         // ClientBytesRate, off when not positive
	// What closing connections send is dropped at most this fast, all of
	// them together (conn.go, discard).
	discardMu     sync.Mutex
	discardBudget bucket
	msgTimeoutMs  uint32

	readers    sync.Pool // *wsproto.Reader
	readStates sync.Pool // *readState
	headBufs   sync.Pool // *[]byte, MaxHeaderBytes
	queues     sync.Pool // *outQueue

	http   *http.Server // plain HTTP requests on the public listeners
	httpLn *connQueue

	adm        *admission // bounds handshakes and plain HTTP requests
	draining   atomic.Bool
	quit       chan struct{}
	wg         sync.WaitGroup // heartbeat, HTTP server, handshakes
	handshakes sync.WaitGroup // handshakes alone

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	reading   map[net.Conn]struct{} // connections still sending their request head
	shutdown  chan struct{}         // closed when Shutdown has finished
	started   bool
}

// New builds a Server and starts its pollers, worker pool and heartbeat.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	origins, err := wsproto.NewOriginPolicy(cfg.AllowedOrigins)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		m:       cfg.Metrics,
		conns:   newConnTable(),
		pingMs:  ms(cfg.PingInterval),
		pongMs:  ms(cfg.PongTimeout),
		closeMs: ms(cfg.CloseTimeout),

		msgTimeoutMs: ms(cfg.MessageTimeout),
		msgRate:      rate{int64(cfg.ClientMessageRate), int32(min(cfg.ClientMessageBurst, 1<<30))},
		byteRate:     rate{int64(cfg.ClientBytesRate), int32(min(max(cfg.ClientBytesRate, 2*cfg.MaxMessageSize), 1<<30))},
		adm:          newAdmission(cfg),
		quit:         make(chan struct{}),
		listeners:    make(map[net.Listener]struct{}),
		reading:      make(map[net.Conn]struct{}),
		shutdown:     make(chan struct{}),
	}
	s.handlers[endpointWS] = cfg.Handler
	s.handlers[endpointEcho] = echoHandler{}
	s.handlers[endpointEvents] = cfg.Events
	s.upgraders[endpointWS] = &wsproto.Upgrader{Protocol: protocol.Subprotocol, Origins: origins, Compression: cfg.Compression, Page: wsPage}
	s.upgraders[endpointEcho] = &wsproto.Upgrader{Origins: origins, Compression: cfg.Compression, Page: echoPage}
	for r := range numReasons {
		s.closedBy[r] = s.m.ConnectionsClosed(r.String())
	}
	for r := range wsproto.NumHandshakeResults {
		s.hsResults[r] = s.m.Handshakes(r.String())
	}
	s.discardBudget.fill(discardRate, s.now())
	for ep := range numEndpoints {
		name := metrics.TransportWebSocket
		if ep == endpointEvents {
			name = metrics.TransportSSE
		}
		s.transport[ep].open, s.transport[ep].sent = s.m.Transport(name)
	}
	s.readers.New = func() any { return new(wsproto.Reader) }
	s.readStates.New = func() any { return &readState{buf: make([]byte, readBufferSize)} }
	s.headBufs.New = func() any { b := make([]byte, cfg.MaxHeaderBytes); return &b }
	s.queues.New = func() any {
		return &outQueue{frames: make([]outFrame, 0, 16), iov: make([][]byte, 0, maxIovecs), total: &s.queuedBytes}
	}

	onWaitErr := func(err error) { s.log.Error("poller wait failed", "err", err) }
	if s.readPoller, err = netpoll.NewPoller(netpoll.PollerConfig{OnWaitError: onWaitErr}); err != nil {
		return nil, fmt.Errorf("server: read poller: %w", err)
	}
	if s.writePoller, err = netpoll.NewPoller(netpoll.PollerConfig{OnWaitError: onWaitErr}); err != nil {
		s.readPoller.Close()
		return nil, fmt.Errorf("server: write poller: %w", err)
	}
	s.pool = netpoll.NewPool(netpoll.PoolConfig{
		Workers: cfg.Workers,
		Queue:   cfg.TaskQueue,
		OnPanic: func(v any) { s.log.Error("task panicked", "panic", v) },
	})
	s.m.ObservePool(s.pool.Busy, s.pool.Queued)
	s.m.ObserveHeld(func() int { return int(s.queuedBytes.Load()) }, func() int { return int(s.partial.Load()) },
		func() int { return int(s.partialBytes.Load()) })

	s.httpLn = newConnQueue()
	// A plain request reaches net/http with its whole head already read
	// (within MaxHeaderBytes and the handshake deadline) and holding its
	// admission slot, which it gives back when net/http closes it. The
	// body and the response get HandshakeTimeout each. (A long-lived HTTP
	// transport, Server-Sent Events say, will have to give its slot back
	// and lift its deadlines with http.ResponseController.)
	s.http = &http.Server{
		Handler:           s.publicMux(),
		ReadHeaderTimeout: cfg.HandshakeTimeout,
		ReadTimeout:       cfg.HandshakeTimeout,
		WriteTimeout:      cfg.HandshakeTimeout,
		IdleTimeout:       cfg.HandshakeTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ConnState:         s.httpConnState,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	// One request per TCP connection: every request then starts at the
	// listener, where upgrades are told apart. With keep-alive, a proxy
	// reusing an idle connection could send an upgrade to net/http.
	s.http.SetKeepAlivesEnabled(false)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		_ = s.http.Serve(s.httpLn)
	}()
	go s.runHeartbeat()
	return s, nil
}

// Len is the number of open WebSocket connections.
func (s *Server) Len() int { return s.conns.len() }

// Data returns the Handler's data (Conn.SetData) of the open connection in
// slot (Conn.Slot), nil if there is none. The handler checks that it is
// the connection it means: slots are reused.
func (s *Server) Data(slot int) any {
	if c := s.conns.get(slot); c != nil {
		return c.Data()
	}
	return nil
}

// Ready reports whether the server takes new connections: false once
// Shutdown has begun.
func (s *Server) Ready() bool { return !s.draining.Load() }

// Serve accepts connections on ln until ln fails or Shutdown closes it,
// which makes Serve return nil. Plain HTTP requests go to the public
// handlers; upgrades to /ws and /echo become parked WebSocket connections.
//
// A WebSocket connection is parked as its raw descriptor, so ln must hand
// out connections that have one: a *net.TCPListener or *net.UnixListener,
// or a listener that, like them, implements syscall.Conn. Any other (a
// crypto/tls listener above all) is refused at once with an error wrapping
// netpoll.ErrNoDescriptor, and ln is left open: terminate TLS in front of
// pushgate, at the load balancer.
func (s *Server) Serve(ln net.Listener) error {
	if _, ok := ln.(syscall.Conn); !ok {
		return fmt.Errorf("server: a %T cannot serve WebSockets: %w (terminate TLS at the load balancer and listen on plain TCP)",
			ln, netpoll.ErrNoDescriptor)
	}
	if !s.track(ln) {
		ln.Close()
		return nil
	}
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.draining.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of descriptors and the like: back off, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; retrying", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
				continue
			case <-s.quit:
				return nil
			}
		}
		delay = 0
		pc := s.adm.admit(nc, s.quit)
		if pc == nil {
			return nil
		}
		if !s.startHandshake(pc) {
			s.adm.release(pc)
			nc.Close()
			return nil
		}
		go s.handshake(pc)
	}
}

func (s *Server) track(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return false
	}
	s.listeners[ln] = struct{}{}
	return true
}

// startHandshake records a new connection as reading its request head,
// which Shutdown may cut short; it reports false once Shutdown has begun.
func (s *Server) startHandshake(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return false
	}
	s.reading[nc] = struct{}{}
	s.wg.Add(1)
	s.handshakes.Add(1)
	return true
}

// headRead records that nc's request head is in: what is left of its
// handshake is bounded local work, and an upgrade that completes during
// Shutdown is closed with 1001 like any other connection.
func (s *Server) headRead(nc net.Conn) {
	s.mu.Lock()
	delete(s.reading, nc)
	s.mu.Unlock()
}

// endHandshake ends nc's handshake goroutine.
func (s *Server) endHandshake(nc net.Conn) {
	s.headRead(nc)
	s.handshakes.Done()
	s.wg.Done()
}

// Origins is the Origin allow-list of upgrades and streams
// (Config.AllowedOrigins), for the public listener's other endpoints.
func (s *Server) Origins() *wsproto.OriginPolicy { return s.upgraders[endpointWS].Origins }

// transportMetrics are one transport's series.
type transportMetrics struct {
	open prometheus.Gauge
	sent prometheus.Counter
}

// route maps a request path to an endpoint.
func (s *Server) route(path []byte) (endpoint, bool) {
	switch string(path) {
	case "/ws":
		return endpointWS, true
	case "/echo":
		return endpointEcho, s.cfg.Echo
	case "/events":
		return endpointEvents, s.handlers[endpointEvents] != nil
	}
	return 0, false
}
