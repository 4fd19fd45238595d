package server

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/pushgate/pushgate/metrics"
	"github.com/pushgate/pushgate/wsproto"
)

// Config configures a Server. Each field's comment gives its default; the
// zero value is a working server with the echo endpoint off.
type Config struct {
	// Logger receives the server's logs (default: discarded).
	Logger *slog.Logger
	// Metrics records what the server does (default: collectors that are
	// not registered anywhere).
	Metrics *metrics.Gateway

	// Handler serves connections on /ws (default: one that answers every
	// message with an error, for a gateway without channels).
	Handler Handler
	// Events, when set, serves Server-Sent Events streams on /events
	// (stream.go); its Message is never called. Without it /events is a
	// plain HTTP path (404).
	Events Handler
	// EventsGzip gzip-encodes the streams of clients that accept it
	// (Accept-Encoding: gzip), with no compressor per stream (see
	// protocol.SSEGzip).
	EventsGzip bool
	// Echo enables the RFC 6455 echo endpoint on /echo.
	Echo bool
	// Pages serves the public listener's plain HTTP requests other than
	// /healthz and /readyz (default: 404).
	Pages http.Handler
	// ReadyCheck, when set, is asked by /readyz besides draining: an error
	// makes it answer 503 with the error (a cluster broker that is down).
	ReadyCheck func() error

	// AllowedOrigins is the Origin allow-list for upgrades (default: any
	// origin). See wsproto.OriginPolicy for the patterns.
	AllowedOrigins []string
	// Compression enables permessage-deflate negotiation.
	Compression bool
	// Authorize, when set, checks each /ws handshake (see
	// wsproto.Upgrader.Authorize) and each /events request, once every
	// other check passed. slot is the one the connection will have
	// (Conn.Slot), remote its peer's address. It runs on the handshake's
	// goroutine, which holds an admission slot (MaxHandshakes) and is
	// bounded by HandshakeTimeout: it may wait, as a connect proxy does,
	// within those bounds.
	Authorize func(head []byte, slot int, remote net.Addr) (any, error)
	// Expired, when set, is called by the heartbeat for a connection whose
	// expiry (Conn.SetExpiry) has passed, before it closes it with 4001:
	// returning true leaves the connection open with no expiry, for the
	// handler to renew (SetExpiry) or close. It holds no lock of the
	// server's and must not block.
	Expired func(c *Conn) bool
	// MaxMessageSize bounds a client message, after decompression
	// (default 64 KiB); larger ones close the connection with 1009.
	MaxMessageSize int
	// MaxPartialBytes bounds, node-wide, the bytes held by messages that
	// have begun to arrive and are not complete (default 64 MiB); the
	// connection whose message would pass it is closed with 1013.
	MaxPartialBytes int
	// MessageTimeout is the time a client has to finish a message once it
	// began it (default 10s); past it the connection is closed with 1008.
	MessageTimeout time.Duration
	// ClientMessageRate bounds the messages per second a /ws connection
	// may send (default 100), with bursts of ClientMessageBurst (default
	// 256); over it a message is refused (see RateLimitHandler), and after
	// 10 in a row the connection is closed with 1008. Negative: no limit.
	ClientMessageRate  int
	ClientMessageBurst int
	// ClientBytesRate bounds the message bytes per second (after
	// decompression) a /ws connection may send (default 1 MiB), with
	// bursts of one second's worth or twice MaxMessageSize, whichever is
	// larger; over it the connection is not read until the budget
	// refills. Negative: no limit.
	ClientBytesRate int
	// MaxInflateRatio bounds how many times its compressed size a /ws
	// message may inflate to, for messages over 16 KiB inflated (default
	// 128); past it the connection is closed with 1008. Negative: no limit.
	MaxInflateRatio int
	// MaxHeaderBytes bounds a request head on the public listener,
	// upgrade or plain HTTP (default 8 KiB); larger ones get 431.
	MaxHeaderBytes int
	// HandshakeTimeout bounds the time from accept to a complete upgrade
	// (default 5s). A plain HTTP request has it to send its head and body,
	// and again to take its response.
	HandshakeTimeout time.Duration
	// MaxHandshakes bounds the connections on the public listener that are
	// not WebSocket connections: handshakes in progress and plain HTTP
	// requests (default 1024). Past it a new connection sheds the oldest
	// stalled one; while none is stalled, accepting pauses.
	MaxHandshakes int
	// MaxHandshakesPerSource is one client address's share of
	// MaxHandshakes (default 64; an IPv6 address counts by its /64): an
	// address holding that many sheds its own oldest stalled handshake for
	// each new connection it opens. Its quick handshakes are never refused,
	// so all the clients behind one load balancer get in.
	MaxHandshakesPerSource int
	// RequestLineTimeout bounds the time a new connection has to send its
	// request line, within HandshakeTimeout (default 2s).
	RequestLineTimeout time.Duration

	// Workers is the size of the worker pool that reads and writes ready
	// sockets (default 8 × GOMAXPROCS).
	Workers int
	// TaskQueue bounds the tasks waiting for a worker (default 8192).
	TaskQueue int
	// OutboundQueueBytes bounds the bytes queued for one connection that
	// the socket could not take yet (default 1 MiB); past it the
	// connection is closed with 1013.
	OutboundQueueBytes int

	// PingInterval is how long a connection may stay silent before it is
	// pinged (default 25s).
	PingInterval time.Duration
	// AppPing is the frame sent with each ping to connections that want
	// one (Conn.WantAppPing). Default none.
	AppPing []byte
	// PongTimeout is how long a pinged connection has to answer before it
	// is closed (default 10s).
	PongTimeout time.Duration
	// CloseTimeout bounds the closing handshake: after sending a close
	// frame, the server waits this long for the peer's before dropping the
	// TCP connection (default 3s).
	CloseTimeout time.Duration
	// DrainTimeout bounds Shutdown when its context has no deadline
	// (default 10s). Close frames are spread over DrainTimeout minus
	// CloseTimeout, so a whole fleet of clients does not reconnect at once.
	DrainTimeout time.Duration
}

func (c Config) withDefaults() (Config, error) {
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Metrics == nil {
		c.Metrics = metrics.New(nil)
	}
	if c.Handler == nil {
		c.Handler = unsupportedHandler{}
	}
	if c.Pages == nil {
		c.Pages = http.NotFoundHandler()
	}
	setDefault(&c.MaxMessageSize, wsproto.DefaultMaxMessageSize)
	setDefault(&c.MaxPartialBytes, 64<<20)
	setDefault(&c.MessageTimeout, 10*time.Second)
	setDefault(&c.ClientMessageRate, 100)
	setDefault(&c.ClientMessageBurst, 256)
	setDefault(&c.ClientBytesRate, 1<<20)
	setDefault(&c.MaxInflateRatio, 128)
	setDefault(&c.MaxHeaderBytes, 8<<10)
	setDefault(&c.HandshakeTimeout, 5*time.Second)
	setDefault(&c.MaxHandshakes, 1024)
	setDefault(&c.MaxHandshakesPerSource, 64)
	setDefault(&c.RequestLineTimeout, 2*time.Second)
	setDefault(&c.OutboundQueueBytes, 1<<20)
	setDefault(&c.PingInterval, 25*time.Second)
	setDefault(&c.PongTimeout, 10*time.Second)
	setDefault(&c.CloseTimeout, 3*time.Second)
	setDefault(&c.DrainTimeout, 10*time.Second)
	switch {
	case c.MaxHeaderBytes < 512:
		return c, errors.New("server: MaxHeaderBytes below 512")
	case c.MaxMessageSize < 0, c.Workers < 0, c.TaskQueue < 0, c.OutboundQueueBytes < 0, c.MaxHandshakes < 0,
		c.MaxPartialBytes < 0, c.ClientMessageBurst < 0:
		return c, errors.New("server: negative size")
	case c.MessageTimeout < 0:
		return c, errors.New("server: negative MessageTimeout")
	case c.MaxHandshakesPerSource < 0:
		return c, errors.New("server: negative MaxHandshakesPerSource")
	case c.RequestLineTimeout < 0:
		return c, errors.New("server: negative RequestLineTimeout")
	case c.HandshakeTimeout < 0, c.PingInterval < 0, c.PongTimeout < 0, c.CloseTimeout < 0, c.DrainTimeout < 0:
		return c, errors.New("server: negative duration")
	}
	return c, nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}
