package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/pushgate/pushgate/auth"
	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/broker"
	"github.com/pushgate/pushgate/presence"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/wsproto"
)

// envPrefix makes each flag's environment twin: --admin-addr is
// PUSHGATE_ADMIN_ADDR. A flag on the command line wins over its twin.
const envPrefix = "PUSHGATE_"

// config is every setting of the gateway. Flags bind straight to the
// server's Config fields; what the server does not take is kept beside it.
type config struct {
	Server           server.Config
	Hub              broadcast.Config
	Addr             string
	AdminAddr        string
	ClusterRead      string // --cluster-read: all or served
	AllowedOrigins   string
	APIKey           string
	APIKeyFile       string // path; its content is APIKey
	MaxPublishBytes  int64
	JWTSecret        string
	JWTSecretFile    string // path; its content is JWTSecret
	JWTPublicKey     string // path of a PEM file
	JWTLeeway        time.Duration
	ClientPublish    string
	MaxClientBacklog int
	Presence         presence.Config
	NodeLeaseTTL     time.Duration
	PresenceChannels string
	Broker           broker.Config
	LogFormat        string
	LogLevel         string
	Pprof            bool // serve /debug/pprof/ on the admin listener
	SSE              bool // serve Server-Sent Events streams on /events
	Proxy            proxyConfig
	Webhook          webhookConfig

	clientPublish protocol.Patterns // ClientPublish, parsed
}

func newFlagSet(c *config) *flag.FlagSet {
	fs := flag.NewFlagSet("pushgate", flag.ContinueOnError)
	s := &c.Server
	fs.StringVar(&c.Addr, "addr", ":8080", "public listener: WebSocket (/ws, /echo), Server-Sent Events (/events) and HTTP (/, /healthz, /readyz)")
	fs.StringVar(&c.AdminAddr, "admin-addr", "127.0.0.1:9090", "admin listener: publish API, /metrics, /healthz, /readyz; loopback unless set (e.g. :9090, with --api-key-file)")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve /debug/pprof/ on the admin listener (behind --api-key when set)")
	fs.BoolVar(&s.Echo, "echo", false, "serve the RFC 6455 echo endpoint on /echo")
	fs.BoolVar(&c.SSE, "sse", true, "serve Server-Sent Events streams on /events (--sse=false: /events is 404)")
	fs.BoolVar(&s.EventsGzip, "sse-gzip", true, "gzip-encode the event streams of clients that accept it (no compressor is kept per stream)")
	fs.StringVar(&c.AllowedOrigins, "allowed-origins", "", "comma-separated Origin allow-list (https://app.example.com, https://*.example.com); empty allows any")
	fs.BoolVar(&s.Compression, "compression", false, "negotiate permessage-deflate (no context takeover)")
	fs.IntVar(&s.MaxMessageSize, "max-message-bytes", wsproto.DefaultMaxMessageSize, "largest client message, after decompression; larger ones close with 1009")
	fs.IntVar(&s.MaxPartialBytes, "max-partial-bytes", 64<<20, "bytes all connections' messages in progress may hold at once; the connection that would pass it is closed with 1013")
	fs.DurationVar(&s.MessageTimeout, "message-timeout", 10*time.Second, "time a client has to finish a message it began; past it the connection is closed with 1008")
	fs.IntVar(&s.ClientMessageRate, "client-message-rate", 100, "messages per second one /ws connection (or one event stream, by POST /events/commands) may send (-1: no limit); over it: rate_limited errors, then 1008")
	fs.IntVar(&s.ClientMessageBurst, "client-message-burst", 256, "messages one /ws connection or event stream may send at once beyond --client-message-rate")
	fs.IntVar(&s.ClientBytesRate, "client-bytes-rate", 1<<20, "message bytes per second (after decompression) one /ws connection may send, with bursts of one second's worth or twice --max-message-bytes, whichever is larger (-1: no limit); over it the connection is not read until the budget refills")
	fs.IntVar(&s.MaxInflateRatio, "max-inflate-ratio", 128, "how many times its compressed size a /ws message over 16 KiB may inflate to (-1: no limit); past it the connection is closed with 1008")
	fs.IntVar(&s.MaxHeaderBytes, "max-header-bytes", 8<<10, "largest request head on the public listener, upgrade or plain HTTP; larger ones get 431")
	fs.DurationVar(&s.HandshakeTimeout, "handshake-timeout", 5*time.Second, "time a new connection has to complete its upgrade (a plain HTTP request: to send itself, and again to take its response)")
	fs.IntVar(&s.MaxHandshakes, "max-handshakes", 1024, "handshakes and plain HTTP requests in progress at once; past it the oldest stalled one is shed, or accepting pauses while none is")
	fs.IntVar(&s.MaxHandshakesPerSource, "max-handshakes-per-source", 64, "one client address's share of --max-handshakes (IPv6: its /64): past it, its own oldest stalled handshake is shed; quick ones are never refused")
	fs.DurationVar(&s.RequestLineTimeout, "request-line-timeout", 2*time.Second, "time a new connection has to send its request line, within --handshake-timeout")
	fs.IntVar(&s.Workers, "workers", 0, "worker goroutines serving ready sockets (0: 8 x GOMAXPROCS)")
	fs.IntVar(&s.TaskQueue, "task-queue", 8192, "tasks waiting for a worker before the poller waits")
	fs.IntVar(&s.OutboundQueueBytes, "outbound-queue-bytes", 1<<20, "bytes one connection's socket refused (not the frame being written, nor a paced history replay) before it is closed with 1013")
	fs.DurationVar(&s.PingInterval, "ping-interval", 25*time.Second, "silence after which a connection is pinged")
	fs.DurationVar(&s.PongTimeout, "pong-timeout", 10*time.Second, "time a pinged connection has to answer before it is closed")
	fs.DurationVar(&s.CloseTimeout, "close-timeout", 3*time.Second, "time the peer has to answer a close frame")
	fs.DurationVar(&s.DrainTimeout, "drain-timeout", 10*time.Second, "on SIGTERM: close frames are spread over this minus --close-timeout; the process exits within it")
	fs.StringVar(&c.APIKey, "api-key", "", "key the admin API requires as Authorization: Bearer; empty leaves /api/ open (a warning is logged)")
	fs.StringVar(&c.APIKeyFile, "api-key-file", "", "file holding --api-key (a trailing newline is ignored); exclusive with --api-key")
	fs.Int64Var(&c.MaxPublishBytes, "max-publish-bytes", 1<<20, "largest POST /api/publish body; larger ones get 413")
	fs.StringVar(&c.JWTSecret, "jwt-secret", "", "HS256 secret (32+ bytes) that signs client tokens; enables authentication on /ws")
	fs.StringVar(&c.JWTSecretFile, "jwt-secret-file", "", "file holding --jwt-secret (a trailing newline is ignored); exclusive with --jwt-secret")
	fs.StringVar(&c.JWTPublicKey, "jwt-public-key", "", "PEM file with the RS256 or ES256 (P-256) public key of client tokens; enables authentication on /ws")
	fs.DurationVar(&c.JWTLeeway, "jwt-leeway", 30*time.Second, "clock skew allowed when checking a token's exp and nbf")
	fs.StringVar(&c.ClientPublish, "client-publish", "", "channel patterns any client may publish to, e.g. 'chat:*' (tokens may grant more)")
	h := &c.Hub
	fs.IntVar(&h.Shards, "shards", 0, "registry and delivery shards (0: 4 x GOMAXPROCS)")
	fs.IntVar(&h.HistorySize, "history-size", 100, "messages each channel keeps for recovery (-1 disables history)")
	fs.DurationVar(&h.HistoryTTL, "history-ttl", 5*time.Minute, "how long a message stays in a channel's history")
	bytesVar(fs, &h.HistoryMaxBytes, "history-max-bytes", 256<<20, "`bytes` all channels' history may hold (frames, compressed copies and 512 bytes a message for holding it included; 268435456, 256MiB, 1GB); past it the node's oldest messages go first")
	bytesVar(fs, &h.HistoryChannelMaxBytes, "history-max-channel-bytes", 4<<20, "`bytes` one channel's history may hold; its newest message is kept however large")
	fs.IntVar(&h.MaxNodeChannels, "max-node-channels", 1_000_000, "channels clients may create on this node by subscribing or publishing (API publishes are not refused); past it they get channel_limit")
	fs.IntVar(&h.MaxChannels, "max-channels", 128, "channels one connection may subscribe to (at most 65535)")
	fs.IntVar(&h.MaxPending, "max-pending-publishes", 4096, "publications fanned out at once; API publishes wait past it, client publishes get 'overloaded'")
	fs.IntVar(&h.MaxClientPending, "max-pending-client-publishes", 0, "the share of --max-pending-publishes client publishes may hold, so API publishes always find room (0: half)")
	fs.StringVar(&c.PresenceChannels, "presence", "", "comma-separated channel patterns that keep presence and send join/leave events (chat:*, room:*); empty: none")
	fs.IntVar(&c.Presence.EventRate, "presence-event-rate", 50, "join and leave events one presence channel sends per second; past it one presence_lagging notice, then the rest are dropped until the next second")
	fs.IntVar(&c.Presence.MaxList, "presence-max-list", 1000, "clients one presence answer lists at most (then \"truncated\":true)")
	fs.IntVar(&c.MaxClientBacklog, "max-client-backlog", 512, "one connection's ops waiting for its delivery shard; past it the connection is closed with 1013")
	p := &c.Proxy
	fs.StringVar(&p.Connect, "proxy-connect", "", "backend URL asked about each new connection without a valid token (its cookies, headers and query): its answer admits it as a token's claims would, or refuses it")
	fs.StringVar(&p.Subscribe, "proxy-subscribe", "", "backend URL asked about each subscribe to a channel the connection's claims do not grant: it allows or refuses")
	fs.StringVar(&p.Publish, "proxy-publish", "", "backend URL asked about each client publish: it allows, refuses or replaces the data")
	fs.DurationVar(&p.Timeout, "proxy-timeout", 2*time.Second, "time a backend proxy has to answer a call (connect: within --handshake-timeout); past it the call fails (503, or an unavailable error)")
	fs.IntVar(&p.MaxInFlight, "proxy-max-inflight", 64, "requests one backend proxy may have out at once (its keep-alive connections); four times as many calls may wait, the rest fail at once as busy")
	fs.StringVar(&p.Headers, "proxy-headers", "", "comma-separated request headers the connect proxy sees besides Cookie, Authorization, Origin, User-Agent and X-Forwarded-For")
	w := &c.Webhook
	fs.StringVar(&w.URL, "webhook", "", "backend URL that receives signed batches of user_online, user_offline, channel_occupied and channel_vacated events (needs --webhook-secret)")
	fs.StringVar(&w.Secret, "webhook-secret", "", "key of the webhooks' X-Pushgate-Signature (HMAC-SHA256 of the body)")
	fs.StringVar(&w.SecretFile, "webhook-secret-file", "", "file holding --webhook-secret (a trailing newline is ignored); exclusive with --webhook-secret")
	fs.DurationVar(&w.OfflineDelay, "webhook-offline-delay", 5*time.Second, "how long a user has had no connection (a channel no subscriber) on any node before user_offline (channel_vacated) is sent")
	fs.StringVar(&w.Channels, "webhook-channels", "*", "channel patterns whose channel_occupied and channel_vacated are sent (empty: none)")
	bytesVar(fs, &w.MaxQueueBytes, "webhook-queue-bytes", 8<<20, "`bytes` of webhook events waiting for delivery; past it events are dropped and counted")
	b := &c.Broker
	fs.StringVar(&b.URL, "broker", "", "NATS URL(s) of the cluster broker, e.g. nats://nats:4222 (JetStream enabled); empty: a single node with the in-memory broker")
	fs.StringVar(&b.Stream, "broker-stream", "PUSHGATE", "JetStream stream the cluster's gateways share (and its subject prefix)")
	fs.IntVar(&b.Replicas, "broker-replicas", 1, "replicas of the stream when the gateway creates it (3 on a NATS cluster)")
	fs.DurationVar(&c.NodeLeaseTTL, "node-lease-ttl", 15*time.Second, "cluster mode: how long a node that stopped renewing its lease (it died) still counts as live; within it the others tell presence subscribers to ask again")
	fs.DurationVar(&b.PublishTimeout, "broker-publish-timeout", 5*time.Second, "time a publish has for the broker to confirm it before it is answered with an error")
	fs.StringVar(&c.ClusterRead, "cluster-read", "all", "cluster mode: which publications a node reads: all (every channel's, so any channel's history is at hand) or served (only the channels it has subscribers for, each read from the stream for its first subscriber)")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.SetOutput(io.Discard)
	return fs
}

// parseConfig reads flags from args and their twins from getenv.
func parseConfig(args []string, getenv func(string) string) (config, error) {
	var c config
	fs := newFlagSet(&c)
	if err := setFromEnv(fs, getenv, nil); err != nil {
		return c, err
	}
	err := fs.Parse(args)
	if err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if _, err := c.logLevel(); err != nil {
		return c, err
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return c, fmt.Errorf("invalid --log-format %q: want text or json", c.LogFormat)
	}
	c.Server.AllowedOrigins = splitList(c.AllowedOrigins)
	if c.clientPublish, err = protocol.ParsePatterns(c.ClientPublish); err != nil {
		return c, fmt.Errorf("invalid --client-publish %q: %v", c.ClientPublish, err)
	}
	if c.Presence.Channels, err = protocol.ParsePatterns(c.PresenceChannels); err != nil {
		return c, fmt.Errorf("invalid --presence %q: %v", c.PresenceChannels, err)
	}
	if err := c.readSecretFiles(); err != nil {
		return c, err
	}
	if c.JWTSecret != "" && c.JWTPublicKey != "" {
		return c, errors.New("--jwt-secret and --jwt-public-key are exclusive: give one")
	}
	if c.MaxPublishBytes <= 0 {
		return c, errors.New("--max-publish-bytes must be positive")
	}
	if c.Hub.MaxChannels < 1 || c.Hub.MaxChannels > 65535 {
		return c, errors.New("--max-channels must be 1 to 65535")
	}
	if c.Hub.HistoryMaxBytes <= 0 || c.Hub.HistoryChannelMaxBytes <= 0 {
		return c, errors.New("--history-max-bytes and --history-max-channel-bytes must be positive")
	}
	if err := c.Proxy.check(c.Server.HandshakeTimeout); err != nil {
		return c, err
	}
	if err := c.Webhook.check(); err != nil {
		return c, err
	}
	if c.Broker.URL != "" {
		for u := range strings.SplitSeq(c.Broker.URL, ",") {
			if !strings.HasPrefix(strings.TrimSpace(u), "nats://") && !strings.HasPrefix(strings.TrimSpace(u), "tls://") {
				return c, fmt.Errorf("invalid --broker %q: want nats://host:port (comma-separated for several)", c.Broker.URL)
			}
		}
		if c.Broker.Replicas < 1 || c.Broker.Replicas > 5 {
			return c, errors.New("--broker-replicas must be 1 to 5")
		}
		if c.Broker.PublishTimeout <= 0 {
			return c, errors.New("--broker-publish-timeout must be positive")
		}
		switch c.ClusterRead {
		case "all":
		case "served":
			c.Broker.ReadServed = true
		default:
			return c, fmt.Errorf("invalid --cluster-read %q: want all or served", c.ClusterRead)
		}
		c.Hub.Clustered = true
		c.Broker.HistoryTTL = c.Hub.HistoryTTL
		c.Broker.MaxPending = c.Hub.MaxPending
		c.Broker.MaxClientPending = c.Hub.MaxClientPending
	}
	return c, nil
}

// verifier builds the token verifier, or nil when authentication is off.
func (c config) verifier() (*auth.Verifier, error) {
	switch {
	case c.JWTSecret != "":
		return auth.NewVerifier(auth.Config{Secret: []byte(c.JWTSecret), Leeway: c.JWTLeeway})
	case c.JWTPublicKey != "":
		pem, err := os.ReadFile(c.JWTPublicKey)
		if err != nil {
			return nil, fmt.Errorf("--jwt-public-key: %v", err)
		}
		v, err := auth.NewVerifier(auth.Config{PublicKeyPEM: pem, Leeway: c.JWTLeeway})
		if err != nil {
			return nil, fmt.Errorf("--jwt-public-key %s: %v", c.JWTPublicKey, err)
		}
		return v, nil
	}
	return nil, nil
}

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// setFromEnv sets the flags of fs whose environment twin is set, all of
// them or those only allows (when not nil). Flags parsed afterwards win.
func setFromEnv(fs *flag.FlagSet, getenv func(string) string, only func(name string) bool) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := envName(f.Name)
		if v := getenv(name); v != "" && err == nil && (only == nil || only(f.Name)) {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("invalid value %q for %s: %v", v, name, e)
			}
		}
	})
	return err
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func (c config) logLevel() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return 0, fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	return l, nil
}

func (c config) logger(w io.Writer) *slog.Logger {
	level, _ := c.logLevel() // checked by parseConfig
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// usage prints every flag with its environment twin and default.
func usage(w io.Writer) {
	var c config
	fs := newFlagSet(&c)
	fmt.Fprintf(w, "Usage: pushgate [flags]\n       pushgate token [flags]   (prints a client token: pushgate token --help)\n\n"+
		"pushgate is a WebSocket push gateway. Every flag has an environment twin.\n\nFlags:\n")
	printFlags(w, fs, nil)
}

// printFlags prints the flags of fs with their defaults and, for all of
// them or those twin allows (when not nil), their environment twins.
func printFlags(w io.Writer, fs *flag.FlagSet, twin func(name string) bool) {
	fs.VisitAll(func(f *flag.Flag) {
		typ, help := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s\n        %s\n", strings.TrimSpace(f.Name+" "+typ), help)
		var more []string
		if twin == nil || twin(f.Name) {
			more = append(more, "env "+envName(f.Name))
		}
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
			more = append(more, "default "+f.DefValue)
		}
		if len(more) > 0 {
			fmt.Fprintf(w, "        %s\n", strings.Join(more, ", "))
		}
	})
}
