package adminapi

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/metrics"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/session"
)

// Config configures the API handler.
type Config struct {
	// Hub is what the API reads (history, stats). Required.
	Hub *broadcast.Hub
	// Publisher is where publishes go: the cluster broker, or by default
	// Hub.
	Publisher broadcast.Publisher
	// Metrics counts API publishes. Default: unregistered collectors.
	Metrics *metrics.Gateway
	// APIKey, when set, is required as "Authorization: Bearer <key>".
	APIKey string
	// MaxBodyBytes bounds a publish request body. Default 1 MiB.
	MaxBodyBytes int64
	// Connections reports the open connections for /api/stats.
	Connections func() int
	// Node names this node in stats (and in its connections' client ids).
	Node string
	// PresenceClients reports the presence entries for /api/stats.
	PresenceClients func() int64
	// Control acts on live connections (disconnect, subscribe,
	// unsubscribe). Without it those endpoints answer 501.
	Control Control
}

// Control is what acts on live connections: this node's sessions
// (*session.Handler), or in a cluster every node's.
type Control interface {
	Disconnect(ctx context.Context, t session.Target, reconnect bool, reason string) (int, error)
	Subscribe(ctx context.Context, t session.Target, channel string) (int, error)
	Unsubscribe(ctx context.Context, t session.Target, channel string) (int, error)
	Presence(ctx context.Context, channel string) (session.PresenceList, error)
	PresenceStats(ctx context.Context, channel string) (session.PresenceStats, error)
	Channels(ctx context.Context, prefix, cursor string, limit int) (session.ChannelPage, error)
}

// New returns the handler of /api/.
func New(cfg Config) http.Handler {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.Publisher == nil {
		cfg.Publisher = cfg.Hub
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(nil)
	}
	a := &api{cfg: cfg, key: []byte(cfg.APIKey)}
	mux := http.NewServeMux()
	for _, e := range []struct {
		method, path string
		h            http.HandlerFunc
	}{
		{"POST", "/api/publish", a.publish},
		{"GET", "/api/history", a.history},
		{"GET", "/api/stats", a.stats},
		{"POST", "/api/disconnect", a.disconnect},
		{"POST", "/api/subscribe", a.subscribe},
		{"POST", "/api/unsubscribe", a.unsubscribe},
		{"GET", "/api/presence", a.presence},
		{"GET", "/api/presence_stats", a.presenceStats},
		{"GET", "/api/channels", a.channels},
	} {
		mux.HandleFunc(e.method+" "+e.path, e.h)
		mux.HandleFunc(e.path, methodNotAllowed(e.method))
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such API endpoint")
	})
	return a.authenticate(mux)
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use "+allow)
	}
}

type api struct {
	cfg Config
	key []byte
}

func (a *api) authenticate(next http.Handler) http.Handler {
	if len(a.key) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearer(r.Header.Get("Authorization"))
		if !ok || subtle.ConstantTimeCompare(got, a.key) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pushgate-admin"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "a valid API key is required as Authorization: Bearer <key>")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func bearer(h string) ([]byte, bool) {
	const prefix = "bearer "
	if len(h) <= len(prefix) || !bytes.EqualFold([]byte(h[:len(prefix)]), []byte(prefix)) {
		return nil, false
	}
	return []byte(h[len(prefix):]), true
}

type publishRequest struct {
	Channel *string         `json:"channel"`
	User    *string         `json:"user"`
	Data    json.RawMessage `json:"data"`
}

type publishResponse struct {
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	Delivered int64  `json:"delivered"`
}

// decodeBody decodes a request's JSON body into v, within MaxBodyBytes,
// and answers the error if it cannot.
func (a *api) decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large",
				"the body is over "+strconv.FormatInt(a.cfg.MaxBodyBytes, 10)+" bytes")
			return false
		}
		writeError(w, http.StatusBadRequest, "bad_request", "malformed JSON body: "+err.Error())
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "bad_request", "the body holds more than one JSON value")
		return false
	}
	return true
}

func (a *api) publish(w http.ResponseWriter, r *http.Request) {
	var req publishRequest
	if !a.decodeBody(w, r, &req) {
		return
	}
	var channel string
	switch {
	case (req.Channel == nil) == (req.User == nil):
		writeError(w, http.StatusBadRequest, "bad_request", `give exactly one of "channel" and "user"`)
		return
	case req.Channel != nil:
		channel = *req.Channel
		if !protocol.ValidChannel(channel) {
			writeError(w, http.StatusBadRequest, "invalid_channel", protocol.ChannelNameRule)
			return
		}
	default:
		if !protocol.ValidUser(*req.User) {
			writeError(w, http.StatusBadRequest, "invalid_user", protocol.UserNameRule)
			return
		}
		channel = protocol.PersonalChannel(*req.User)
	}
	if len(req.Data) == 0 {
		writeError(w, http.StatusBadRequest, "bad_request", `"data" is required (any JSON value)`)
		return
	}
	if !broadcast.ValidData(req.Data) {
		writeError(w, http.StatusBadRequest, "bad_request", `"data" is not valid UTF-8: subscribers get it in a text frame`)
		return
	}
	res, err := a.cfg.Publisher.Publish(r.Context(), channel, compact(req.Data))
	if err != nil {
		a.cfg.Metrics.PublishesUnavailable.Inc()
	}
	switch {
	case err == nil:
		a.cfg.Metrics.PublishesAPI.Inc()
	case errors.Is(err, broadcast.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the gateway is shutting down")
		return
	case errors.Is(err, broadcast.ErrUnavailable):
		w.Header().Set("Retry-After", "1")
		msg := "the cluster broker (NATS) cannot take the publish"
		if ue := (*broadcast.UnavailableError)(nil); errors.As(err, &ue) {
			msg += ": " + ue.Reason
		}
		writeError(w, http.StatusServiceUnavailable, "broker_unavailable", msg)
		return
	case errors.Is(err, broadcast.ErrInvalidData):
		writeError(w, http.StatusBadRequest, "bad_request", `"data" must be one JSON value in UTF-8`)
		return
	default: // the client went away while waiting for a slot
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the request ended while waiting for a publish slot: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, publishResponse{Offset: res.Offset, Epoch: res.Epoch, Delivered: res.Delivered})
}

// compact removes insignificant whitespace, so that a pretty-printed body
// makes one-line messages; data is valid JSON.
func compact(data []byte) []byte {
	var b bytes.Buffer
	if json.Compact(&b, data) != nil {
		return data
	}
	return b.Bytes()
}

type historyEntry struct {
	Offset uint64          `json:"offset"`
	Time   time.Time       `json:"time"`
	Data   json.RawMessage `json:"data"`
}

type historyResponse struct {
	Channel      string         `json:"channel"`
	Epoch        string         `json:"epoch"`
	Offset       uint64         `json:"offset"`
	Complete     bool           `json:"complete"`
	Publications []historyEntry `json:"publications"`
}

func (a *api) history(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	channel := q.Get("channel")
	switch {
	case channel == "":
		writeError(w, http.StatusBadRequest, "invalid_channel", "channel is required: ?channel=news (a user's channel, #alice, is %23alice in a URL)")
		return
	case !protocol.ValidName(channel):
		writeError(w, http.StatusBadRequest, "invalid_channel", protocol.ChannelNameRule+", or #<user> (%23 in a URL)")
		return
	}
	var since uint64
	if s := q.Get("since"); s != "" {
		var err error
		if since, err = strconv.ParseUint(s, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "since must be an offset (a non-negative integer)")
			return
		}
	}
	h := a.cfg.Hub.History(channel, since)
	out := historyResponse{Channel: channel, Epoch: h.Epoch, Offset: h.Offset, Complete: h.Complete,
		Publications: make([]historyEntry, len(h.Entries))}
	for i, e := range h.Entries {
		out.Publications[i] = historyEntry{Offset: e.Offset, Time: e.Time.UTC(), Data: e.Data}
	}
	writeJSON(w, http.StatusOK, out)
}

// NodeStats is one node's part of /api/stats.
type NodeStats struct {
	Node            string `json:"node,omitempty"`
	Connections     int    `json:"connections"`
	Channels        int64  `json:"channels"`
	Subscribers     int64  `json:"subscribers"`
	History         int64  `json:"history"`
	HistoryBytes    int64  `json:"history_bytes"`
	PresenceClients int64  `json:"presence_clients"`
	InFlight        int    `json:"in_flight"`
	QueuedOps       int64  `json:"queued_ops"`
}

// statsResponse is /api/stats: this node's counts, or in a cluster the
// sums over the nodes that answered, with each node's in Nodes.
type statsResponse struct {
	NodeStats
	Nodes []NodeStats `json:"nodes,omitempty"`
}

// StatsGatherer is a Control that asks every node of a cluster for its
// NodeStats (as JSON).
type StatsGatherer interface {
	Stats(ctx context.Context) ([]json.RawMessage, error)
}

// LocalStats returns this node's counts.
func LocalStats(cfg Config) NodeStats {
	s := cfg.Hub.Stats()
	out := NodeStats{Node: cfg.Node, Channels: s.Channels, Subscribers: s.Subscribers, History: s.History, HistoryBytes: s.HistoryBytes,
		InFlight: s.InFlight, QueuedOps: s.QueuedOps}
	if cfg.Connections != nil {
		out.Connections = cfg.Connections()
	}
	if cfg.PresenceClients != nil {
		out.PresenceClients = cfg.PresenceClients()
	}
	return out
}

func (a *api) stats(w http.ResponseWriter, r *http.Request) {
	g, ok := a.cfg.Control.(StatsGatherer)
	if !ok {
		writeJSON(w, http.StatusOK, statsResponse{NodeStats: LocalStats(a.cfg)})
		return
	}
	nodes, err := g.Stats(r.Context())
	if err != nil {
		a.answerControl(w, 0, err)
		return
	}
	var out statsResponse
	for _, raw := range nodes {
		var n NodeStats
		if json.Unmarshal(raw, &n) != nil {
			continue
		}
		out.Nodes = append(out.Nodes, n)
		out.Connections += n.Connections
		out.Channels += n.Channels // a channel on several nodes counts on each
		out.Subscribers += n.Subscribers
		out.History += n.History
		out.HistoryBytes += n.HistoryBytes
		out.PresenceClients += n.PresenceClients
		out.InFlight += n.InFlight
		out.QueuedOps += n.QueuedOps
	}
	writeJSON(w, http.StatusOK, out)
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, apiError{Code: code, Message: message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
