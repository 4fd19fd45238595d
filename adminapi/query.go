package adminapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/session"
)

// The read side of the control API: who is in a channel, how many, and
// which channels there are.

type presenceResponse struct {
	Channel   string            `json:"channel"`
	Clients   []protocol.Client `json:"clients"`
	Total     int               `json:"total"`
	Truncated bool              `json:"truncated,omitempty"`
}

type presenceStatsResponse struct {
	Channel string `json:"channel"`
	Clients int    `json:"clients"`
	Users   int    `json:"users"`
}

type channelEntry struct {
	Channel     string `json:"channel"`
	Subscribers int    `json:"subscribers"`
}

type channelsResponse struct {
	Channels []channelEntry `json:"channels"`
	Next     string         `json:"next,omitempty"`
}

// presenceQuery returns the channel of a presence request, or answers the
// error.
func (a *api) presenceQuery(w http.ResponseWriter, r *http.Request) (string, bool) {
	if a.cfg.Control == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "this gateway keeps no presence")
		return "", false
	}
	channel := r.URL.Query().Get("channel")
	if channel == "" || !protocol.ValidChannel(channel) {
		writeError(w, http.StatusBadRequest, "invalid_channel", "channel is required: ?channel=room; "+protocol.ChannelNameRule)
		return "", false
	}
	return channel, true
}

func (a *api) presence(w http.ResponseWriter, r *http.Request) {
	channel, ok := a.presenceQuery(w, r)
	if !ok {
		return
	}
	p, err := a.cfg.Control.Presence(r.Context(), channel)
	if err != nil {
		a.answerPresenceError(w, err)
		return
	}
	if p.Clients == nil {
		p.Clients = []protocol.Client{}
	}
	writeJSON(w, http.StatusOK, presenceResponse{Channel: channel, Clients: p.Clients, Total: p.Total, Truncated: p.Total > len(p.Clients)})
}

func (a *api) presenceStats(w http.ResponseWriter, r *http.Request) {
	channel, ok := a.presenceQuery(w, r)
	if !ok {
		return
	}
	s, err := a.cfg.Control.PresenceStats(r.Context(), channel)
	if err != nil {
		a.answerPresenceError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, presenceStatsResponse{Channel: channel, Clients: s.Clients, Users: s.Users})
}

func (a *api) answerPresenceError(w http.ResponseWriter, err error) {
	if errors.Is(err, session.ErrPresenceOff) {
		writeError(w, http.StatusNotFound, "presence_off", "this channel keeps no presence: only channels matching --presence do")
		return
	}
	a.answerControl(w, 0, err)
}

func (a *api) channels(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Control == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "this gateway cannot list channels")
		return
	}
	q := r.URL.Query()
	limit := broadcast.MaxListChannels
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > broadcast.MaxListChannels {
			writeError(w, http.StatusBadRequest, "bad_request", "limit must be 1 to "+strconv.Itoa(broadcast.MaxListChannels))
			return
		}
		limit = n
	}
	page, err := a.cfg.Control.Channels(r.Context(), q.Get("prefix"), q.Get("cursor"), limit)
	if err != nil {
		a.answerControl(w, 0, err)
		return
	}
	out := channelsResponse{Channels: make([]channelEntry, len(page.Channels)), Next: page.Next}
	for i, c := range page.Channels {
		out.Channels[i] = channelEntry{Channel: c.Name, Subscribers: c.Subscribers}
	}
	writeJSON(w, http.StatusOK, out)
}
