package streamapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/session"
	"github.com/pushgate/pushgate/wsproto"
)

// Path is where the endpoint is served.
const Path = "/events/commands"

// Commander runs ops for the stream with client id, if key is its key:
// session.Handler for this node's streams, the control plane for any
// node's.
type Commander interface {
	Command(ctx context.Context, client, key string, ops []json.RawMessage) (int, error)
}

// Config configures the endpoint.
type Config struct {
	Commander Commander
	// MaxBodyBytes bounds a request's body (default 64 KiB).
	MaxBodyBytes int64
	// Origins is the allow-list of pages that may post; nil allows all.
	Origins *wsproto.OriginPolicy
	Logger  *slog.Logger
}

// New returns the handler of Path.
func New(cfg Config) http.Handler {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &endpoint{cfg}
}

type endpoint struct{ cfg Config }

type answer struct {
	Ran     *int   `json:"ran,omitempty"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if origin := r.Header.Get("Origin"); origin != "" {
		if !e.cfg.Origins.Allows(origin) {
			write(w, http.StatusForbidden, answer{Code: "forbidden", Message: "this Origin may not post commands"})
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Add("Vary", "Origin")
	}
	switch r.Method {
	case http.MethodPost:
	case http.MethodOptions:
		// A preflight: a client that posts application/json.
		w.Header().Set("Access-Control-Allow-Methods", "POST")
		w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
		w.Header().Set("Access-Control-Max-Age", "3600")
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		w.Header().Set("Allow", "POST, OPTIONS")
		write(w, http.StatusMethodNotAllowed, answer{Code: "method_not_allowed", Message: "POST ops here"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, e.cfg.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			write(w, http.StatusRequestEntityTooLarge, answer{Code: "too_large", Message: "the body is over the limit"})
			return
		}
		write(w, http.StatusBadRequest, answer{Code: "bad_request", Message: "the body could not be read"})
		return
	}
	req, err := protocol.ParseCommandRequest(body)
	if err != nil {
		write(w, http.StatusBadRequest, answer{Code: "bad_request", Message: err.Error()})
		return
	}
	ran, err := e.cfg.Commander.Command(r.Context(), req.Client, req.Key, req.Ops)
	var unavailable *broadcast.UnavailableError
	switch {
	case err == nil:
		write(w, http.StatusOK, answer{Ran: &ran})
	case errors.Is(err, session.ErrRateLimited):
		write(w, http.StatusTooManyRequests, answer{Ran: &ran, Code: "rate_limited", Message: err.Error()})
	case errors.Is(err, session.ErrNoStream):
		write(w, http.StatusNotFound, answer{Code: "not_found", Message: err.Error()})
	case errors.Is(err, session.ErrStreamKey):
		write(w, http.StatusForbidden, answer{Code: "forbidden", Message: err.Error()})
	case errors.As(err, &unavailable):
		write(w, http.StatusServiceUnavailable, answer{Code: "unavailable", Message: err.Error()})
	default:
		e.cfg.Logger.Error("stream commands failed", "client", req.Client, "err", err)
		write(w, http.StatusInternalServerError, answer{Code: "internal", Message: "the commands could not be run"})
	}
}

func write(w http.ResponseWriter, status int, a answer) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(a)
}
