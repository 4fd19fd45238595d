package session

import (
	"errors"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/pushgate/pushgate/auth"
	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/metrics"
	"github.com/pushgate/pushgate/presence"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/proxy"
	"github.com/pushgate/pushgate/server"
)

// Config configures the Handler.
type Config struct {
	// Hub is where connections subscribe. Required.
	Hub *broadcast.Hub
	// Publisher is where client publishes go: the cluster broker, or by
	// default Hub.
	Publisher broadcast.Publisher
	// Metrics counts client publishes. Default: unregistered collectors.
	Metrics *metrics.Gateway
	// ClientPublish lists the channels any client may publish to (in
	// addition to what a token grants). Default none.
	ClientPublish protocol.Patterns
	// Logger receives debug lines about refused ops. Default slog.Default().
	Logger *slog.Logger
	// Verifier checks the tokens of refresh ops; nil when authentication
	// is off (refresh is then refused).
	Verifier *auth.Verifier
	// MaxBacklog bounds a connection's ops (subscribes, unsubscribes,
	// replies) waiting for its delivery shard; a connection that sends
	// more is closed with 1013. Default 512: twice the default burst of
	// messages.
	MaxBacklog int
	// Node names this node in client ids, which are unique in a cluster
	// when nodes' names are. Default: random.
	Node string
	// Presence keeps the presence of the channels that have it, and says
	// which. Default: none.
	Presence *presence.Registry
	// Connect, SubscribeProxy and PublishProxy are the backend's proxies,
	// each optional (hooks.go); ProxyMetrics counts the ops they hold
	// (default: unregistered).
	Connect        *proxy.Connector
	SubscribeProxy *proxy.Ops
	PublishProxy   *proxy.Ops
	ProxyMetrics   *metrics.Proxy
	// RenewalRetry is how soon a proxied connection whose renewal the
	// connect proxy could not answer is asked again (default 5s, plus as
	// much jitter at most).
	RenewalRetry time.Duration
	// UserOnline, when set, is told when a user's first connection on
	// this node opens (true) and when its last one closes (false), in
	// that order for a user. It is called under a lock and must not block
	// (occupancy.Tracker.User).
	UserOnline func(user string, online bool)
	// Lookup returns the data of the open connection in a slot
	// (server.Server.Data): the index of sessions by client id. Without
	// it (set it later with SetLookup) no client id is found.
	Lookup func(slot int) any
}

// Conn is a client's connection as a session sees it, whatever transport
// carries it (server.Conn for WebSocket). Its methods are safe from any
// goroutine and never block.
type Conn interface {
	broadcast.Subscriber
	// SetExpiry closes the connection with 4001 once t has passed; the
	// zero time clears it.
	SetExpiry(t time.Time)
	// WantAppPing asks for app-level pings ({"type":"ping"}) with the
	// transport's own keepalives.
	WantAppPing()
	// Close starts closing the connection for reason, with text for the
	// client.
	Close(reason server.CloseReason, text string)
	// Slot names the connection among its server's open ones (reused once
	// it closed); the handler's Lookup finds it by slot, and what SetData
	// stored there.
	Slot() int
	SetData(v any)
	// Waiting is how many bytes wait for the connection's socket.
	Waiting() int
}

// Handler serves the pushgate.v1 protocol: it turns a connection's ops
// into calls on the hub, and keeps every live session findable by client
// id and by user (index.go) for the server's own commands (control.go).
type Handler struct {
	hub       *broadcast.Hub
	publisher broadcast.Publisher
	publish   protocol.Patterns
	m         *metrics.Gateway
	log       *slog.Logger
	verifier  *auth.Verifier
	backlog   int
	index     index
	presence  *presence.Registry
	peers     Peers // nil on a single node
	// Presence ops waiting on other nodes (presenceCluster), and big
	// channels' answers kept for a second.
	asks        singleflight.Group
	clusterAsks chan struct{}
	asking      sync.WaitGroup
	answersMu   sync.Mutex
	answers     map[string]*protocol.Wire
	// The backend's proxies (hooks.go), and the ops of deciding sessions.
	connect        *proxy.Connector
	subscribeProxy *proxy.Ops
	publishProxy   *proxy.Ops
	proxyM         *metrics.Proxy
	renewalRetry   time.Duration
	hooks          sync.WaitGroup // proxy calls out
	heldMu         sync.Mutex
	held           map[*Session]*heldOps
	heldBytes      int // under heldMu: all held ops' bytes
}

// New returns the Handler for cfg.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Publisher == nil {
		cfg.Publisher = cfg.Hub
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(nil)
	}
	if cfg.MaxBacklog <= 0 {
		cfg.MaxBacklog = 512
	}
	if cfg.Node == "" {
		cfg.Node = randomNode()
	}
	if cfg.Presence == nil {
		cfg.Presence = presence.New(presence.Config{})
	}
	h := &Handler{backlog: cfg.MaxBacklog, hub: cfg.Hub, publisher: cfg.Publisher, publish: cfg.ClientPublish,
		m: cfg.Metrics, log: cfg.Logger, verifier: cfg.Verifier, presence: cfg.Presence,
		clusterAsks: make(chan struct{}, maxClusterAsks),
		connect:     cfg.Connect, subscribeProxy: cfg.SubscribeProxy, publishProxy: cfg.PublishProxy, proxyM: cfg.ProxyMetrics,
		held: make(map[*Session]*heldOps)}
	if h.proxyM == nil {
		h.proxyM = metrics.NewProxy(nil)
	}
	h.renewalRetry = cfg.RenewalRetry
	if h.renewalRetry <= 0 {
		h.renewalRetry = 5 * time.Second
	}
	h.index.init(cfg.Node, cfg.Lookup)
	h.index.online = cfg.UserOnline
	return h
}

// Session is one client connection's protocol state.
//
// mu makes the session the single owner of its hub Member: the client's
// ops (from its connection's read task) and the server's commands (from
// API goroutines) run one at a time under it. Lock order: Session.mu, then
// the index's locks, then the hub's (see LOCKS.md).
type Session struct {
	mu         sync.Mutex
	state      sessionState      // under mu: ended, kicked, deciding, shedding
	presenceAt uint16            // under mu: presence ops' rate (presenceAllowed)
	id         uint32            // the client id's serial on this node (index.go)
	m          *broadcast.Member // its connection is m's Subscriber
	// claims are the token's (replaced by refresh, under mu); in open
	// mode nil, or the info the client gave (Open).
	claims *auth.Claims
}

// sessionState is a session's flags.
type sessionState uint8

const (
	ended    sessionState = 1 << iota // End has run; commands do nothing
	kicked                            // the server is closing it (Disconnect)
	deciding                          // a proxy decides an op of its: later ops wait (hooks.go)
	shedding                          // closed for the ops it sent (hooks.go): later ones are dropped
)

func (s *Session) is(f sessionState) bool { return s.state&f != 0 }
func (s *Session) set(f sessionState)     { s.state |= f }
func (s *Session) clear(f sessionState)   { s.state &^= f }

// Start begins the session of a new connection: it joins the hub, is
// indexed, and makes the subscriptions of the connection's query
// (channels=a,b, and the personal channel of the claims' user, recovered
// from user_since and user_epoch). claims is nil when authentication is
// off; the client may then give its info itself (info=<JSON object>), for
// presence. ping=1 asks for app-level pings. An event stream's query may
// hold last_event_id (sse.go): the channels it names are recovered from
// there. Call End when the connection has closed.
func (h *Handler) Start(c Conn, claims *auth.Claims, query []byte) *Session {
	return h.start(c, claims, 0, query)
}

// start is Start for a connection whose client id's serial was reserved
// (Authorize), or 0.
func (h *Handler) start(c Conn, claims *auth.Claims, serial uint32, query []byte) *Session {
	s := &Session{m: h.hub.Join(c), claims: claims, presenceAt: presenceTick(time.Now()), id: serial}
	s.mu.Lock()
	defer s.mu.Unlock()
	h.index.add(s)
	// Findable by client id before its first join event names it.
	c.SetData(s)
	if _, ok := c.(*eventConn); ok {
		h.connected(s) // its first event
	}
	q, err := url.ParseQuery(string(query)) // keeps the well-formed pairs
	if err != nil {
		h.reply(s, protocol.CodeBadRequest, "malformed query", "")
	}
	if claims != nil {
		c.SetExpiry(claims.Deadline)
	} else if raw := q.Get("info"); raw != "" {
		if info, err := auth.ParseInfo([]byte(raw)); err != nil {
			h.reply(s, protocol.CodeBadRequest, "info must be a JSON object of at most 1024 bytes", "")
		} else {
			s.claims = &auth.Claims{Info: info, Open: true}
		}
	}
	if q.Get("ping") == "1" {
		c.WantAppPing()
	}
	stream, _ := c.(*eventConn)
	var from []protocol.SSEPosition
	if id := q.Get("last_event_id"); stream != nil && id != "" {
		var err error
		if from, err = protocol.ParseEventID(id); err != nil {
			h.reply(s, protocol.CodeBadRequest, "Last-Event-ID is not an id this gateway wrote: its channels are subscribed without recovery", "")
		}
	}
	subscribe := func(name string, pos *broadcast.Position) {
		if stream != nil && pos == nil {
			pos = recoveryFrom(from, name)
		}
		h.subscribe(s, name, pos)
	}
	if user := s.user(); user != "" {
		var pos *broadcast.Position
		if since := q.Get("user_since"); since != "" {
			off, err := strconv.ParseUint(since, 10, 64)
			if err != nil {
				h.reply(s, protocol.CodeBadRequest, "user_since is not an offset", "")
			} else {
				pos = &broadcast.Position{Offset: off, Epoch: q.Get("user_epoch")}
			}
		}
		subscribe(protocol.PersonalChannel(user), pos)
	}
	for _, list := range q["channels"] {
		for _, name := range strings.Split(list, ",") {
			if name != "" {
				// A copy: the name is held as long as the subscription,
				// and a part of the query would hold all of it (up to the
				// head's limit).
				subscribe(strings.Clone(name), nil)
			}
		}
	}
	return s
}

// recoveryFrom is the position an event id names for channel, nil if none.
func recoveryFrom(from []protocol.SSEPosition, channel string) *broadcast.Position {
	for _, p := range from {
		if p.Channel == channel {
			return &broadcast.Position{Offset: p.Offset, Epoch: p.Epoch}
		}
	}
	return nil
}

// End removes a closed connection's session from the hub and the index.
func (h *Handler) End(s *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.is(ended) {
		return
	}
	s.set(ended)
	if s.is(deciding) {
		h.dropHeld(s)
	}
	h.index.remove(s)
	if h.presence.Any() { // else no channel list to make for every close
		for _, name := range s.m.Channels() {
			h.left(s, name)
		}
	}
	h.hub.Leave(s.m)
}

// authed reports whether authentication is on: the claims are a token's.
func (s *Session) authed() bool { return s.claims != nil && !s.claims.Open }

// conn is the session's connection.
func (s *Session) conn() Conn { return s.m.Subscriber().(Conn) }

// user is the session's user, "" when anonymous. s.mu is held.
func (s *Session) user() string {
	if s.claims == nil {
		return ""
	}
	return s.claims.User
}

// Handle runs one client op, a JSON text message.
func (h *Handler) Handle(s *Session, payload []byte) { h.handle(s, payload) }

// handle is Handle, reporting whether the op was run (answered, if only
// with an error): not when the session has ended, nor when its backlog
// closes it.
func (h *Handler) handle(s *Session, payload []byte) bool {
	if h.hub.Backlog(s.m) >= h.backlog {
		// Its shard runs its ops slower than it sends them: replying
		// would only add to the pile.
		s.conn().Close(server.ReasonOverloaded, "too many ops in flight")
		return false
	}
	cmd, err := protocol.ParseCommand(payload)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.is(ended) || s.is(shedding) {
		return false
	}
	if s.is(deciding) {
		return h.hold(s, payload)
	}
	h.run(s, cmd, err)
	return true
}

// run runs one parsed op. s.mu is held.
func (h *Handler) run(s *Session, cmd protocol.Command, err error) {
	if err != nil {
		h.reply(s, protocol.CodeBadRequest, "malformed JSON", "")
		return
	}
	switch cmd.Op {
	case protocol.OpSubscribe:
		var pos *broadcast.Position
		if cmd.Since != nil {
			pos = &broadcast.Position{Offset: *cmd.Since, Epoch: cmd.Epoch}
		}
		h.subscribe(s, cmd.Channel, pos)
	case protocol.OpUnsubscribe:
		h.unsubscribe(s, cmd.Channel)
	case protocol.OpPublish:
		h.clientPublish(s, cmd.Channel, cmd.Data)
	case protocol.OpRefresh:
		h.refresh(s, cmd.Token)
	case protocol.OpPresence:
		h.presenceOp(s, cmd.Channel)
	case protocol.OpPong: // its bytes were the answer
	default:
		h.reply(s, protocol.CodeBadRequest, "unknown op", "")
	}
}

// The ops, each with s.mu held.

func (h *Handler) subscribe(s *Session, name string, pos *broadcast.Position) {
	if !protocol.ValidName(name) {
		h.reply(s, protocol.CodeInvalidChannel, protocol.MsgInvalidChannel, "")
		return
	}
	// An event stream's ids name the position it recovers from as soon as
	// it asks, whatever its subscribe waits for (a proxy, an op before
	// it), until the subscribed reply settles it (sse.go), a refusal
	// drops it, or a reconnect recovers from it. One it already follows
	// keeps its position, and is refused as already subscribed.
	stream, _ := s.conn().(*eventConn)
	if stream != nil && pos != nil && !stream.follows(name) {
		stream.recoverFrom(name, *pos)
	}
	if s.is(deciding) {
		// A subscribe of the query's, behind one the proxy decides.
		h.holdSubscribe(s, name, pos)
		return
	}
	if !s.maySubscribe(name) {
		if _, personal := protocol.Personal(name); !personal && h.subscribeProxy != nil {
			h.askSubscribe(s, name, pos)
			return
		}
		h.refuseSubscribe(s, protocol.CodeForbidden, "not allowed to subscribe to this channel", name)
		return
	}
	h.subscribeAllowed(s, name, pos)
}

// subscribeAllowed subscribes s to name, which it may. s.mu is held.
func (h *Handler) subscribeAllowed(s *Session, name string, pos *broadcast.Position) {
	if !h.join(s, name, pos, false) {
		h.dropRecovery(s, name)
	}
}

// refuseSubscribe replies a refused subscribe. s.mu is held.
func (h *Handler) refuseSubscribe(s *Session, code protocol.Code, message, name string) {
	h.reply(s, code, message, name)
	h.dropRecovery(s, name)
}

// dropRecovery forgets the position an event stream was to recover name
// from, its subscribe refused: the stream does not follow it. s.mu is
// held.
func (h *Handler) dropRecovery(s *Session, name string) {
	if stream, ok := s.conn().(*eventConn); ok && stream.recovers(name) {
		stream.abandon(name)
	}
}

// join subscribes s to the channel name, valid and permitted, and
// reports whether it did; a refusal is replied, but an existing
// subscription is not when quiet (a server's command).
func (h *Handler) join(s *Session, name string, pos *broadcast.Position, quiet bool) bool {
	switch err := h.hub.Subscribe(s.m, name, pos); {
	case err == nil:
		h.joined(s, name)
		return true
	case errors.Is(err, broadcast.ErrAlreadySubscribed) && quiet:
	case errors.Is(err, broadcast.ErrAlreadySubscribed):
		h.reply(s, protocol.CodeAlreadySubscribed, "already subscribed", name)
	case errors.Is(err, broadcast.ErrTooManyChannels):
		h.reply(s, protocol.CodeTooManyChannels, "too many channels on one connection", name)
	case errors.Is(err, broadcast.ErrChannelLimit):
		h.m.ChannelsRefused.Inc()
		h.reply(s, protocol.CodeChannelLimit, "the gateway holds too many channels, try again later", name)
	default:
		h.reply(s, protocol.CodeUnavailable, "the gateway is shutting down", name)
	}
	return false
}

func (h *Handler) unsubscribe(s *Session, name string) {
	if !protocol.ValidName(name) {
		h.reply(s, protocol.CodeInvalidChannel, protocol.MsgInvalidChannel, "")
		return
	}
	if err := h.hub.Unsubscribe(s.m, name); err != nil {
		h.reply(s, protocol.CodeNotSubscribed, "not subscribed", name)
		return
	}
	h.left(s, name)
}

func (h *Handler) clientPublish(s *Session, name string, data []byte) {
	if !protocol.ValidName(name) {
		h.reply(s, protocol.CodeInvalidChannel, protocol.MsgInvalidChannel, "")
		return
	}
	if len(data) == 0 {
		h.reply(s, protocol.CodeBadRequest, "publish needs data", name)
		return
	}
	granted := h.mayPublish(s, name)
	if _, personal := protocol.Personal(name); !personal && h.publishProxy != nil {
		h.askPublish(s, name, data, granted)
		return
	}
	if !granted {
		h.reply(s, protocol.CodeForbidden, "client publishing is not allowed on this channel", name)
		return
	}
	h.publishNow(s, name, data)
}

// publishNow publishes a client's data, permitted, to name. s.mu is held.
func (h *Handler) publishNow(s *Session, name string, data []byte) {
	switch err := h.publisher.TryPublish(name, data, func(error) {
		h.m.PublishesUnavailable.Inc()
		h.replyLater(s, protocol.CodeUnavailable, "the broker could not take the publish, try again", name)
	}); {
	case err == nil:
		h.m.PublishesClient.Inc()
	case errors.Is(err, broadcast.ErrOverloaded):
		h.m.PublishesOverloaded.Inc()
		h.reply(s, protocol.CodeOverloaded, "too many messages in flight, try again", name)
	case errors.Is(err, broadcast.ErrInvalidData):
		h.reply(s, protocol.CodeBadRequest, "publish data must be valid JSON", name)
	case errors.Is(err, broadcast.ErrChannelLimit):
		h.m.ChannelsRefused.Inc()
		h.reply(s, protocol.CodeChannelLimit, "the gateway holds too many channels, try again later", name)
	case errors.Is(err, broadcast.ErrUnavailable):
		h.m.PublishesUnavailable.Inc()
		h.reply(s, protocol.CodeUnavailable, "the broker is unavailable, try again", name)
	default:
		h.m.PublishesUnavailable.Inc()
		h.reply(s, protocol.CodeUnavailable, "the gateway is shutting down", name)
	}
}

// refresh replaces the connection's token with a fresh one for the same
// user, before the old one expires. The new claims govern later ops;
// subscriptions already made stay.
func (h *Handler) refresh(s *Session, token string) {
	if h.verifier == nil || !s.authed() {
		h.reply(s, protocol.CodeBadRequest, "authentication is off: there is no token to refresh", "")
		return
	}
	claims, err := h.verifier.Verify(token)
	if err != nil {
		h.reply(s, protocol.CodeInvalidToken, auth.Reason(err), "")
		return
	}
	if claims.User != s.claims.User {
		h.reply(s, protocol.CodeForbidden, "the token is for another user", "")
		return
	}
	s.claims = claims
	s.conn().SetExpiry(claims.Deadline)
	var expires int64
	if !claims.ExpiresAt.IsZero() {
		expires = claims.ExpiresAt.Unix()
	}
	h.hub.Reply(s.m, protocol.AppendRefreshed(protocol.Buffer(48), expires))
}

func (s *Session) maySubscribe(name string) bool {
	if user, ok := protocol.Personal(name); ok {
		return user != "" && user == s.user()
	}
	return !s.authed() || s.claims.Channels.Match(name)
}

func (h *Handler) mayPublish(s *Session, name string) bool {
	// Match never matches a personal channel.
	return h.publish.Match(name) || (s.claims != nil && s.claims.Publish.Match(name))
}

// reply sends an error reply, in order with the hub's replies. s.mu is
// held.
func (h *Handler) reply(s *Session, code protocol.Code, message, channel string) {
	h.hub.Reply(s.m, protocol.AppendError(protocol.Buffer(64+len(message)+len(channel)), code, message, channel))
	h.log.Debug("refused client op", "code", code, "channel", channel)
}

// replyLater is reply from a goroutine that does not hold s.mu (a broker's
// callback).
func (h *Handler) replyLater(s *Session, code protocol.Code, message, channel string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.is(ended) {
		h.reply(s, code, message, channel)
	}
}
