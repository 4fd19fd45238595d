package adminapi

import (
	"errors"
	"net/http"
	"unicode/utf8"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/session"
)

// The control endpoints act on live connections, named by user (all of
// the user's connections) or by client id, and answer how many they acted
// on: {"connections":n}.

type targetRequest struct {
	User    string `json:"user"`
	Client  string `json:"client"`
	Channel string `json:"channel"`
	// disconnect only
	Reconnect *bool  `json:"reconnect"`
	Reason    string `json:"reason"`
}

type controlResponse struct {
	Connections int `json:"connections"`
}

// maxCloseReason is the longest close reason: a close frame's payload is
// 125 bytes, two of them the code.
const maxCloseReason = 123

func (a *api) disconnect(w http.ResponseWriter, r *http.Request) {
	var req targetRequest
	if !a.decodeControl(w, r, &req) {
		return
	}
	if req.Channel != "" {
		writeError(w, http.StatusBadRequest, "bad_request", `disconnect takes "user" or "client", "reconnect" and "reason"`)
		return
	}
	if len(req.Reason) > maxCloseReason || !utf8.ValidString(req.Reason) {
		writeError(w, http.StatusBadRequest, "bad_request", `"reason" is at most 123 bytes of UTF-8: it travels in the close frame`)
		return
	}
	reconnect := req.Reconnect == nil || *req.Reconnect
	n, err := a.cfg.Control.Disconnect(r.Context(), req.target(), reconnect, req.Reason)
	a.answerControl(w, n, err)
}

func (a *api) subscribe(w http.ResponseWriter, r *http.Request) {
	var req targetRequest
	if !a.decodeControl(w, r, &req) || !req.channelOnly(w) {
		return
	}
	n, err := a.cfg.Control.Subscribe(r.Context(), req.target(), req.Channel)
	a.answerControl(w, n, err)
}

func (a *api) unsubscribe(w http.ResponseWriter, r *http.Request) {
	var req targetRequest
	if !a.decodeControl(w, r, &req) || !req.channelOnly(w) {
		return
	}
	n, err := a.cfg.Control.Unsubscribe(r.Context(), req.target(), req.Channel)
	a.answerControl(w, n, err)
}

func (a *api) decodeControl(w http.ResponseWriter, r *http.Request, req *targetRequest) bool {
	if a.cfg.Control == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "this gateway has no control of connections")
		return false
	}
	if !a.decodeBody(w, r, req) {
		return false
	}
	switch {
	case (req.User == "") == (req.Client == ""):
		writeError(w, http.StatusBadRequest, "bad_request", `give exactly one of "user" and "client"`)
		return false
	case req.User != "" && !protocol.ValidUser(req.User):
		writeError(w, http.StatusBadRequest, "invalid_user", protocol.UserNameRule)
		return false
	}
	return true
}

func (req *targetRequest) channelOnly(w http.ResponseWriter) bool {
	switch {
	case req.Reconnect != nil || req.Reason != "":
		writeError(w, http.StatusBadRequest, "bad_request", `"reconnect" and "reason" belong to /api/disconnect`)
		return false
	case req.Channel == "":
		writeError(w, http.StatusBadRequest, "invalid_channel", `"channel" is required`)
		return false
	case !protocol.ValidName(req.Channel):
		writeError(w, http.StatusBadRequest, "invalid_channel", protocol.ChannelNameRule+", or #<user>")
		return false
	}
	return true
}

func (req *targetRequest) target() session.Target {
	return session.Target{User: req.User, Client: req.Client}
}

func (a *api) answerControl(w http.ResponseWriter, n int, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, controlResponse{Connections: n})
	case errors.Is(err, broadcast.ErrUnavailable):
		w.Header().Set("Retry-After", "1")
		msg := "the cluster broker (NATS) cannot reach the other nodes"
		if ue := (*broadcast.UnavailableError)(nil); errors.As(err, &ue) {
			msg = ue.Reason
		}
		writeError(w, http.StatusServiceUnavailable, "broker_unavailable", msg)
	case errors.Is(err, protocol.ErrChannelName):
		writeError(w, http.StatusBadRequest, "invalid_channel", protocol.ChannelNameRule+", or #<user>")
	case errors.Is(err, protocol.ErrUserName):
		writeError(w, http.StatusBadRequest, "invalid_user", protocol.UserNameRule)
	case errors.Is(err, session.ErrTarget):
		writeError(w, http.StatusBadRequest, "bad_request", `give exactly one of "user" and "client"`)
	default: // the request ended while waiting for other nodes
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the command did not complete: "+err.Error())
	}
}
