package session

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/url"
	"strconv"
	"strings"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/auth"
	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/metrics"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/wsproto"
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
	ClientPublish broadcast.Patterns
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
}

// Handler is the server.Handler of pushgate.v1 connections.
type Handler struct {
	hub       *broadcast.Hub
	publisher broadcast.Publisher
	publish   broadcast.Patterns
	m         *metrics.Gateway
	log       *slog.Logger
	verifier  *auth.Verifier
	backlog   int
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
	return &Handler{backlog: cfg.MaxBacklog, hub: cfg.Hub, publisher: cfg.Publisher, publish: cfg.ClientPublish, m: cfg.Metrics, log: cfg.Logger, verifier: cfg.Verifier}
}

// session is one connection's state, kept in its server.Conn.
type session struct {
	m      *broadcast.Member
	claims *auth.Claims // nil when authentication is off
}

var (
	_ server.Handler          = (*Handler)(nil)
	_ server.RateLimitHandler = (*Handler)(nil)
)

// Open joins the connection to the hub and makes the subscriptions its
// upgrade asked for.
func (h *Handler) Open(c *server.Conn, hs wsproto.Handshake, query []byte) {
	s := &session{m: h.hub.Join(c)}
	s.claims, _ = hs.State.(*auth.Claims)
	c.SetData(s)
	if s.claims != nil {
		c.SetExpiry(s.claims.Deadline)
	}
	q, err := url.ParseQuery(string(query)) // keeps the well-formed pairs
	if err != nil {
		h.reply(s, codeBadRequest, "malformed query", "")
	}
	if s.claims != nil && s.claims.User != "" {
		var pos *broadcast.Position
		if since := q.Get("user_since"); since != "" {
			off, err := strconv.ParseUint(since, 10, 64)
			if err != nil {
				h.reply(s, codeBadRequest, "user_since is not an offset", "")
			} else {
				pos = &broadcast.Position{Offset: off, Epoch: q.Get("user_epoch")}
			}
		}
		h.subscribe(s, broadcast.PersonalChannel(s.claims.User), pos)
	}
	for _, list := range q["channels"] {
		for _, name := range strings.Split(list, ",") {
			if name != "" {
				h.subscribe(s, name, nil)
			}
		}
	}
}

// RateLimited answers a message the connection sent over its message rate
// (server.Config.ClientMessageRate): the op was not run. Past
// server.MaxRateStrikes in a row it closes the connection with 1008, after
// the replies already queued.
func (h *Handler) RateLimited(c *server.Conn, strikes int) {
	s, ok := c.Data().(*session)
	if !ok {
		return
	}
	if strikes > server.MaxRateStrikes {
		h.hub.After(s.m, func() { c.Close(server.ReasonRateLimited, "rate limit exceeded") })
		return
	}
	h.reply(s, codeRateLimited, "too many messages: this one was dropped; slow down or the connection is closed (1008)", "")
}

// Closed removes the connection from the hub.
func (h *Handler) Closed(c *server.Conn) {
	if s, ok := c.Data().(*session); ok {
		h.hub.Leave(s.m)
	}
}

// command is any client op; fields an op does not use are ignored.
type command struct {
	Op      string          `json:"op"`
	Channel string          `json:"channel"`
	Since   *uint64         `json:"since"`
	Epoch   string          `json:"epoch"`
	Data    json.RawMessage `json:"data"`
	Token   string          `json:"token"`
}

// Message runs one client op.
func (h *Handler) Message(c *server.Conn, op ws.OpCode, payload []byte) {
	s := c.Data().(*session)
	if h.hub.Backlog(s.m) >= h.backlog {
		// Its shard runs its ops slower than it sends them: replying
		// would only add to the pile.
		c.Close(server.ReasonOverloaded, "too many ops in flight")
		return
	}
	if op != ws.OpText {
		h.reply(s, codeBadRequest, "pushgate.v1 messages are JSON text frames", "")
		return
	}
	var cmd command
	if err := json.Unmarshal(payload, &cmd); err != nil {
		h.reply(s, codeBadRequest, "malformed JSON", "")
		return
	}
	switch cmd.Op {
	case "subscribe":
		var pos *broadcast.Position
		if cmd.Since != nil {
			pos = &broadcast.Position{Offset: *cmd.Since, Epoch: cmd.Epoch}
		}
		h.subscribe(s, cmd.Channel, pos)
	case "unsubscribe":
		h.unsubscribe(s, cmd.Channel)
	case "publish":
		h.clientPublish(s, cmd.Channel, cmd.Data)
	case "refresh":
		h.refresh(s, c, cmd.Token)
	default:
		h.reply(s, codeBadRequest, "unknown op", "")
	}
}

func (h *Handler) subscribe(s *session, name string, pos *broadcast.Position) {
	if !broadcast.ValidName(name) {
		h.reply(s, codeInvalidChannel, msgInvalidChannel, "")
		return
	}
	if !s.maySubscribe(name) {
		h.reply(s, codeForbidden, "not allowed to subscribe to this channel", name)
		return
	}
	switch err := h.hub.Subscribe(s.m, name, pos); {
	case errors.Is(err, broadcast.ErrAlreadySubscribed):
		h.reply(s, codeAlreadySubscribed, "already subscribed", name)
	case errors.Is(err, broadcast.ErrTooManyChannels):
		h.reply(s, codeTooManyChannels, "too many channels on one connection", name)
	case errors.Is(err, broadcast.ErrChannelLimit):
		h.m.ChannelsRefused.Inc()
		h.reply(s, codeChannelLimit, "the gateway holds too many channels, try again later", name)
	case err != nil:
		h.reply(s, codeUnavailable, "the gateway is shutting down", name)
	}
}

func (h *Handler) unsubscribe(s *session, name string) {
	if !broadcast.ValidName(name) {
		h.reply(s, codeInvalidChannel, msgInvalidChannel, "")
		return
	}
	if err := h.hub.Unsubscribe(s.m, name); err != nil {
		h.reply(s, codeNotSubscribed, "not subscribed", name)
	}
}

func (h *Handler) clientPublish(s *session, name string, data json.RawMessage) {
	if !broadcast.ValidName(name) {
		h.reply(s, codeInvalidChannel, msgInvalidChannel, "")
		return
	}
	if !h.mayPublish(s, name) {
		h.reply(s, codeForbidden, "client publishing is not allowed on this channel", name)
		return
	}
	if len(data) == 0 {
		h.reply(s, codeBadRequest, "publish needs data", name)
		return
	}
	switch err := h.publisher.TryPublish(name, data, func(error) {
		h.m.PublishesUnavailable.Inc()
		h.reply(s, codeUnavailable, "the broker could not take the publish, try again", name)
	}); {
	case err == nil:
		h.m.PublishesClient.Inc()
	case errors.Is(err, broadcast.ErrOverloaded):
		h.m.PublishesOverloaded.Inc()
		h.reply(s, codeOverloaded, "too many messages in flight, try again", name)
	case errors.Is(err, broadcast.ErrInvalidData):
		h.reply(s, codeBadRequest, "publish data must be valid JSON", name)
	case errors.Is(err, broadcast.ErrChannelLimit):
		h.m.ChannelsRefused.Inc()
		h.reply(s, codeChannelLimit, "the gateway holds too many channels, try again later", name)
	case errors.Is(err, broadcast.ErrUnavailable):
		h.m.PublishesUnavailable.Inc()
		h.reply(s, codeUnavailable, "the broker is unavailable, try again", name)
	default:
		h.m.PublishesUnavailable.Inc()
		h.reply(s, codeUnavailable, "the gateway is shutting down", name)
	}
}

// refresh replaces the connection's token with a fresh one for the same
// user, before the old one expires. The new claims govern later ops;
// subscriptions already made stay.
func (h *Handler) refresh(s *session, c *server.Conn, token string) {
	if h.verifier == nil || s.claims == nil {
		h.reply(s, codeBadRequest, "authentication is off: there is no token to refresh", "")
		return
	}
	claims, err := h.verifier.Verify(token)
	if err != nil {
		h.reply(s, codeInvalidToken, auth.Reason(err), "")
		return
	}
	if claims.User != s.claims.User {
		h.reply(s, codeForbidden, "the token is for another user", "")
		return
	}
	s.claims = claims
	c.SetExpiry(claims.Deadline)
	var expires int64
	if !claims.ExpiresAt.IsZero() {
		expires = claims.ExpiresAt.Unix()
	}
	h.hub.Reply(s.m, appendRefreshed(expires))
}

func (s *session) maySubscribe(name string) bool {
	if user, ok := broadcast.Personal(name); ok {
		return s.claims != nil && s.claims.User != "" && user == s.claims.User
	}
	return s.claims == nil || s.claims.Channels.Match(name)
}

func (h *Handler) mayPublish(s *session, name string) bool {
	// Match never matches a personal channel.
	return h.publish.Match(name) || (s.claims != nil && s.claims.Publish.Match(name))
}
