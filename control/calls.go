package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/session"
)

// request is a call to other nodes, as JSON.
type request struct {
	Op        string `json:"op"`
	User      string `json:"user,omitempty"`
	Client    string `json:"client,omitempty"`
	Channel   string `json:"channel,omitempty"`
	Reconnect bool   `json:"reconnect,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Prefix    string `json:"prefix,omitempty"`
	Cursor    string `json:"cursor,omitempty"`
	Limit     int    `json:"limit,omitempty"`
	// An event stream's ops (command): its key, and the ops.
	Key string            `json:"key,omitempty"`
	Ops []json.RawMessage `json:"ops,omitempty"`
}

// reply is a node's answer.
type reply struct {
	Node        string                  `json:"node"`
	Error       string                  `json:"error,omitempty"`
	Connections int                     `json:"connections,omitempty"`
	Clients     []protocol.Client       `json:"clients,omitempty"`
	Total       int                     `json:"total,omitempty"`
	Users       []string                `json:"users,omitempty"`
	UserCount   int                     `json:"user_count,omitempty"`
	Channels    []broadcast.ChannelInfo `json:"channels,omitempty"`
	More        bool                    `json:"more,omitempty"`
	Stats       json.RawMessage         `json:"stats,omitempty"`
	// RateLimited: some of a command's ops were dropped (Connections ran).
	RateLimited bool `json:"rate_limited,omitempty"`
}

// Ops.
const (
	opDisconnect    = "disconnect"
	opSubscribe     = "subscribe"
	opUnsubscribe   = "unsubscribe"
	opPresence      = "presence"
	opPresenceStats = "presence_stats"
	opChannels      = "channels"
	opStats         = "stats"
	opCommand       = "command" // an event stream's ops, posted to any node
)

// maxUsersExact bounds the user names a node sends for presence_stats;
// past it the count is the sum of nodes' counts, an upper bound.
const maxUsersExact = 10_000

// answer runs another node's call on this node and replies, on a
// goroutine of its own (at most maxAnswering at once, then on NATS's), so
// that a command is not queued behind a big presence answer.
func (c *Cluster) answer(m *nats.Msg) {
	select {
	case c.answering <- struct{}{}:
		c.answers.Add(1)
		go func() {
			defer c.answers.Done()
			defer func() { <-c.answering }()
			c.answerNow(m)
		}()
	default:
		c.answerNow(m)
	}
}

// maxAnswering bounds the calls of other nodes answered at once.
const maxAnswering = 64

func (c *Cluster) answerNow(m *nats.Msg) {
	var req request
	rep := reply{Node: c.node}
	if err := json.Unmarshal(m.Data, &req); err != nil {
		rep.Error = "malformed request"
	} else if err := c.local(context.Background(), &req, &rep, true); err != nil {
		rep.Error = err.Error()
	}
	data := c.fit(&rep)
	if err := m.Respond(data); err != nil {
		c.log.Warn("control: answer not sent", "op", req.Op, "bytes", len(data), "err", err)
	}
}

// fit encodes rep within NATS's payload limit: a presence list is cut
// (its total kept), a user list dropped (its count kept, so that the
// merged count is the sum: an upper bound).
func (c *Cluster) fit(rep *reply) []byte {
	limit := int(c.nc.MaxPayload()) - 4096 // room for headers
	for {
		data, _ := json.Marshal(rep)
		switch {
		case len(data) <= limit:
			return data
		case len(rep.Users) > 0:
			rep.Users = nil
		case len(rep.Clients) > 0:
			rep.Clients = rep.Clients[:len(rep.Clients)/2]
		default:
			return data
		}
	}
}

// local runs req on this node into rep.
func (c *Cluster) local(ctx context.Context, req *request, rep *reply, remote bool) error {
	h := c.cfg.Local
	t := session.Target{User: req.User, Client: req.Client}
	var err error
	switch req.Op {
	case opDisconnect:
		rep.Connections, err = h.Disconnect(ctx, t, req.Reconnect, req.Reason)
	case opSubscribe:
		rep.Connections, err = h.Subscribe(ctx, t, req.Channel)
	case opUnsubscribe:
		rep.Connections, err = h.Unsubscribe(ctx, t, req.Channel)
	case opPresence:
		var p session.PresenceList
		p, err = h.Presence(ctx, req.Channel)
		rep.Clients, rep.Total = p.Clients, p.Total
	case opPresenceStats:
		clients, users, n := c.cfg.Presence.Stats(req.Channel, true)
		if !c.cfg.Presence.On(req.Channel) {
			return session.ErrPresenceOff
		}
		rep.Total, rep.UserCount = clients, n
		if n <= maxUsersExact {
			rep.Users = users
		}
	case opStats:
		if c.cfg.LocalStats != nil {
			rep.Stats, err = json.Marshal(c.cfg.LocalStats())
		}
	case opCommand:
		rep.Connections, err = h.Command(ctx, req.Client, req.Key, req.Ops)
		if errors.Is(err, session.ErrRateLimited) {
			rep.RateLimited, err = true, nil
		}
	case opChannels:
		var p session.ChannelPage
		p, err = h.Channels(ctx, req.Prefix, req.Cursor, req.Limit)
		rep.Channels, rep.More = p.Channels, p.Next != ""
	default:
		if remote {
			return errors.New("unknown op")
		}
	}
	return err
}

// ask runs req on this node and on the others it names: the node of a
// client id, or every live node. It returns every answer, this node's
// first.
func (c *Cluster) ask(ctx context.Context, req request) ([]reply, error) {
	mine := reply{Node: c.node}
	if req.Client != "" {
		node, ok := session.NodeOf(req.Client)
		if !ok {
			return []reply{mine}, nil
		}
		if node == c.node {
			err := c.local(ctx, &req, &mine, false)
			return []reply{mine}, err
		}
		return c.askNode(ctx, node, req)
	}
	if err := c.local(ctx, &req, &mine, false); err != nil {
		return nil, err
	}
	replies, missing, err := c.askAll(ctx, req)
	if err == nil && len(missing) > 0 && command(req.Op) {
		// It may hold connections of the target: the caller must know
		// the command may not have reached them.
		err = &broadcast.UnavailableError{Reason: fmt.Sprintf("node(s) %s did not answer in time; the command may not have reached their connections", strings.Join(missing, ", "))}
	}
	return append([]reply{mine}, replies...), err
}

// command reports whether op acts on connections (rather than reads).
func command(op string) bool {
	return op == opDisconnect || op == opSubscribe || op == opUnsubscribe
}

func (c *Cluster) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.Timeout)
}

// askNode sends req to one node; a node that is not there has nothing.
func (c *Cluster) askNode(ctx context.Context, node string, req request) ([]reply, error) {
	if !c.nc.IsConnected() {
		return nil, unavailable()
	}
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	data, _ := json.Marshal(req)
	m, err := c.nc.RequestWithContext(ctx, nodeSubject(c.cfg.Stream, node), data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, nil
	case err != nil:
		return nil, unavailable()
	}
	var rep reply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return nil, unavailable()
	}
	if rep.Error != "" {
		return nil, remoteError(rep.Error)
	}
	return []reply{rep}, nil
}

// askAll sends req to every other node and gathers answers until every
// live node answered or the timeout; answers from nodes that joined since
// the last listing count too. A live node that does not answer is logged:
// it is dead (its lease not yet expired) or hung, and has no answer to
// give.
func (c *Cluster) askAll(ctx context.Context, req request) (out []reply, missing []string, err error) {
	if !c.nc.IsConnected() {
		return nil, nil, unavailable()
	}
	waiting, listed := c.others()
	if !listed {
		return nil, nil, unavailable() // which nodes to wait for is not known yet
	}
	inbox := c.nc.NewRespInbox()
	ch := make(chan *nats.Msg, 1024)
	sub, err := c.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, nil, unavailable()
	}
	defer sub.Unsubscribe() //nolint:errcheck
	data, _ := json.Marshal(req)
	if err := c.nc.PublishRequest(c.subjAll, inbox, data); err != nil {
		return nil, nil, unavailable()
	}
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	for len(waiting) > 0 {
		select {
		case m := <-ch:
			var rep reply
			if json.Unmarshal(m.Data, &rep) != nil {
				continue
			}
			delete(waiting, rep.Node)
			if rep.Error != "" {
				// It refused what this node took (a node of another
				// version or settings): it has nothing to add.
				c.log.Warn("control: a node refused a call", "op", req.Op, "node", rep.Node, "error", rep.Error)
				continue
			}
			out = append(out, rep)
		case <-ctx.Done():
			missing = keys(waiting)
			c.log.Warn("control: nodes did not answer in time", "op", req.Op, "nodes", missing)
			return out, missing, nil
		}
	}
	return out, nil, nil
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func unavailable() error {
	return &broadcast.UnavailableError{Reason: "the control plane cannot reach NATS"}
}

// remoteError maps another node's error back to its sentinel, so that the
// API answers it as it would for this node.
func remoteError(msg string) error {
	for _, e := range []error{protocol.ErrChannelName, protocol.ErrUserName, session.ErrTarget, session.ErrPresenceOff,
		session.ErrNoStream, session.ErrStreamKey} {
		if msg == e.Error() {
			return e
		}
	}
	return errors.New(msg)
}

// The adminapi.Control methods, cluster-wide.

func (c *Cluster) count(ctx context.Context, req request) (int, error) {
	replies, err := c.ask(ctx, req)
	n := 0
	for _, r := range replies {
		n += r.Connections
	}
	return n, err
}

// Disconnect closes the target's connections on every node.
func (c *Cluster) Disconnect(ctx context.Context, t session.Target, reconnect bool, reason string) (int, error) {
	return c.count(ctx, request{Op: opDisconnect, User: t.User, Client: t.Client, Reconnect: reconnect, Reason: reason})
}

// Subscribe subscribes the target's connections on every node.
func (c *Cluster) Subscribe(ctx context.Context, t session.Target, channel string) (int, error) {
	return c.count(ctx, request{Op: opSubscribe, User: t.User, Client: t.Client, Channel: channel})
}

// Unsubscribe unsubscribes the target's connections on every node.
func (c *Cluster) Unsubscribe(ctx context.Context, t session.Target, channel string) (int, error) {
	return c.count(ctx, request{Op: opUnsubscribe, User: t.User, Client: t.Client, Channel: channel})
}

// Presence lists a channel's clients on every node, capped as one node's.
func (c *Cluster) Presence(ctx context.Context, channel string) (session.PresenceList, error) {
	replies, err := c.ask(ctx, request{Op: opPresence, Channel: channel})
	var p session.PresenceList
	for _, r := range replies {
		p.Total += r.Total
		room := c.cfg.Presence.MaxList() - len(p.Clients)
		p.Clients = append(p.Clients, r.Clients[:min(room, len(r.Clients))]...)
	}
	return p, err
}

// PresenceStats counts a channel's clients and users on every node: users
// are counted once across nodes while each node has at most 10,000 of
// them, else summed (an upper bound).
func (c *Cluster) PresenceStats(ctx context.Context, channel string) (session.PresenceStats, error) {
	replies, err := c.ask(ctx, request{Op: opPresenceStats, Channel: channel})
	if err != nil {
		return session.PresenceStats{}, err
	}
	var s session.PresenceStats
	users, exact, sum := map[string]bool{}, true, 0
	for _, r := range replies {
		s.Clients += r.Total
		sum += r.UserCount
		if len(r.Users) != r.UserCount {
			exact = false
		}
		for _, u := range r.Users {
			users[u] = true
		}
	}
	s.Users = sum
	if exact {
		s.Users = len(users)
	}
	return s, nil
}

// Stats returns every node's counts (Config.LocalStats), this node's first.
func (c *Cluster) Stats(ctx context.Context) ([]json.RawMessage, error) {
	replies, err := c.ask(ctx, request{Op: opStats})
	out := make([]json.RawMessage, 0, len(replies))
	for _, r := range replies {
		if len(r.Stats) > 0 {
			out = append(out, r.Stats)
		}
	}
	return out, err
}

// Channels lists the channels of every node in name order, a page at a
// time: each node sends its first page after the cursor, and the first
// limit of their union are the cluster's.
func (c *Cluster) Channels(ctx context.Context, prefix, cursor string, limit int) (session.ChannelPage, error) {
	if limit <= 0 || limit > broadcast.MaxListChannels {
		limit = broadcast.MaxListChannels
	}
	replies, err := c.ask(ctx, request{Op: opChannels, Prefix: prefix, Cursor: cursor, Limit: limit})
	if err != nil {
		return session.ChannelPage{}, err
	}
	subs := map[string]int{}
	more := false
	for _, r := range replies {
		more = more || r.More
		for _, ch := range r.Channels {
			subs[ch.Name] += ch.Subscribers
		}
	}
	names := make([]string, 0, len(subs))
	for n := range subs {
		names = append(names, n)
	}
	slices.SortFunc(names, strings.Compare)
	if len(names) > limit {
		names, more = names[:limit], true
	}
	p := session.ChannelPage{Channels: make([]broadcast.ChannelInfo, len(names))}
	for i, n := range names {
		p.Channels[i] = broadcast.ChannelInfo{Name: n, Subscribers: subs[n]}
	}
	if more && len(names) > 0 {
		p.Next = names[len(names)-1]
	}
	return p, nil
}

// Command runs an event stream's ops (streamapi) on the node holding the
// stream, which its client id names; a node that is gone holds none.
func (c *Cluster) Command(ctx context.Context, client, key string, ops []json.RawMessage) (int, error) {
	node, ok := session.NodeOf(client)
	switch {
	case !ok || !protocol.ValidName(node):
		return 0, session.ErrNoStream // no node's: not a subject to ask on
	case node == c.node:
		return c.cfg.Local.Command(ctx, client, key, ops)
	}
	replies, err := c.askNode(ctx, node, request{Op: opCommand, Client: client, Key: key, Ops: ops})
	switch {
	case err != nil:
		return 0, err
	case len(replies) == 0:
		return 0, session.ErrNoStream
	case replies[0].RateLimited:
		return replies[0].Connections, session.ErrRateLimited
	}
	return replies[0].Connections, nil
}
