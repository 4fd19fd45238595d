package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The cluster scenario's clients are subscribers that follow their
// channel's offsets: each checks that it is sent every offset exactly
// once, in order, and when a node closes its connection (a drain) it
// reconnects to another live node, as through a load balancer, and
// subscribes again with since and epoch. A worker answers for all of its
// own with trackStats.

// subscriber is one client of a channel, across its connections.
type subscriber struct {
	id     int
	source net.IP

	mu         sync.Mutex
	started    bool
	start      int64 // the channel's offset when it first subscribed
	last       int64 // the last offset it was sent
	epoch      string
	n          int64 // messages it was sent
	missing    int64 // offsets skipped
	dups       int64 // offsets sent again, or out of order
	resets     int64 // resubscriptions not recovered, or a changed epoch
	closed     int64 // times a server closed its connection
	reconnects int64
	// replayTo is the channel's offset on the node it last subscribed
	// again on: offsets up to it come from that node's history.
	replayTo int64
	replayed int64  // offsets recovered from history
	failed   bool   // it could not reconnect
	problem  string // the first thing that went wrong
	node     string // where its connection is
	c        *client
}

// offsetOf finds the envelope's "offset":N.
func offsetOf(msg []byte) (int64, bool) {
	i := bytes.Index(msg, []byte(`"offset":`))
	if i < 0 {
		return 0, false
	}
	rest := msg[i+len(`"offset":`):]
	j := 0
	for j < len(rest) && j < 19 && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	n, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	return n, err == nil
}

// message checks a publication's offset against the last one.
func (s *subscriber) message(msg []byte) {
	off, ok := offsetOf(msg)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	switch {
	case !ok:
		s.fail(fmt.Sprintf("a message without an offset: %.100s", msg))
	case !s.started:
		s.fail(fmt.Sprintf("offset %d before the subscription was confirmed", off))
	case off == s.last+1:
		if off <= s.replayTo {
			s.replayed++
		}
	case off <= s.last:
		s.dups++
		s.fail(fmt.Sprintf("offset %d again, after %d", off, s.last))
	default:
		s.missing += off - s.last - 1
		s.fail(fmt.Sprintf("offset %d after %d: %d missing", off, s.last, off-s.last-1))
	}
	s.last = max(s.last, off)
}

// reply reads a message that is not a publication: a subscription
// confirmed (at first, after a reconnection, or when the channel got its
// epoch) or an error, which ends the connection.
func (s *subscriber) reply(msg []byte) error {
	var m struct {
		Type      string
		Offset    int64
		Epoch     string
		Recovered bool
		Code      string
		Message   string
	}
	if err := json.Unmarshal(msg, &m); err != nil {
		return fmt.Errorf("not JSON: %.100s", msg)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch m.Type {
	case "subscribed":
		switch {
		case !s.started:
			s.started, s.start, s.last = true, m.Offset, m.Offset
		case !m.Recovered:
			s.resets++
			s.fail(fmt.Sprintf("subscribed again with recovered:false (since %d, epoch %q; now offset %d, epoch %q)", s.last, s.epoch, m.Offset, m.Epoch))
		case s.epoch != "" && m.Epoch != s.epoch:
			s.resets++
			s.fail(fmt.Sprintf("the epoch changed from %q to %q", s.epoch, m.Epoch))
		default:
			s.replayTo = m.Offset
		}
		s.epoch = m.Epoch
	case "error":
		s.fail(fmt.Sprintf("error %s: %s", m.Code, m.Message))
		return fmt.Errorf("error %s: %s", m.Code, m.Message)
	}
	return nil
}

// fail keeps the first problem, with where the subscriber was; s.mu is
// held.
func (s *subscriber) fail(what string) {
	if s.problem == "" {
		s.problem = fmt.Sprintf("client %d on %s: %s", s.id, s.node, what)
	}
}

// tracker is a worker's subscribers and where they may reconnect.
type tracker struct {
	channel string
	subs    []*subscriber

	mu     sync.Mutex
	nodes  []string // the live nodes' WebSocket URLs, without a query
	closes map[string]int64
	// firstClose and lastResub are when the first connection was closed
	// and the last one subscribed again (Unix ns; 0: none).
	firstClose, lastResub int64

	rr           atomic.Uint64
	reconnecting atomic.Int64
	closing      atomic.Bool // the worker is closing its connections
}

func (t *tracker) add(s *subscriber) {
	t.mu.Lock()
	t.subs = append(t.subs, s)
	t.mu.Unlock()
}

// next is the live node the next reconnection goes to, round robin.
func (t *tracker) next() (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.nodes) == 0 {
		return "", false
	}
	return t.nodes[int(t.rr.Add(1)%uint64(len(t.nodes)))], true
}

// closedBy counts a connection the server ended, by its close code.
func (t *tracker) closedBy(err error, at time.Time) {
	reason := "no close frame: " + shortError(err)
	var code int
	if errors.Is(err, errClosedByServer) {
		if _, err := fmt.Sscanf(err.Error(), errClosedByServer.Error()+": %d", &code); err == nil {
			reason = strconv.Itoa(code)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closes == nil {
		t.closes = map[string]int64{}
	}
	t.closes[reason]++
	if t.firstClose == 0 || at.UnixNano() < t.firstClose {
		t.firstClose = at.UnixNano()
	}
}

func (t *tracker) resubscribed(at time.Time) {
	t.mu.Lock()
	t.lastResub = max(t.lastResub, at.UnixNano())
	t.mu.Unlock()
}

// follow waits for s's connection to end; when the server ended it, s
// reconnects to a live node and subscribes from where it was, until the
// worker closes.
func (w *worker) follow(s *subscriber) {
	t := &w.track
	for {
		s.mu.Lock()
		c := s.c
		s.mu.Unlock()
		<-c.done
		c.conn.Close()
		if t.closing.Load() {
			return
		}
		t.closedBy(c.err, time.Now())
		s.mu.Lock()
		s.closed++
		s.mu.Unlock()
		t.reconnecting.Add(1)
		nc, err := w.resume(s, errors.Is(c.err, errClosedByServer) && strings.Contains(c.err.Error(), ": 1001 "))
		t.reconnecting.Add(-1)
		if err != nil {
			s.mu.Lock()
			s.failed = true
			s.fail("could not reconnect: " + err.Error())
			s.mu.Unlock()
			w.lost.Add(1)
			return
		}
		t.resubscribed(time.Now())
		if t.closing.Load() { // closeAll may have missed it
			nc.close()
			return
		}
	}
}

// resumeFor is how long a subscriber tries to reconnect.
const resumeFor = time.Minute

// resume reconnects s to the next live node and subscribes with since and
// epoch, for resumeFor. It waits as pushgate.js does before each attempt:
// a random time under 250 ms after a drain's 1001 (soon), else under
// 250 ms doubled for each attempt, up to 10 s.
func (w *worker) resume(s *subscriber, soon bool) (*client, error) {
	t := &w.track
	deadline := time.Now().Add(resumeFor)
	for attempt := 0; ; attempt++ {
		limit := 250 * time.Millisecond
		if attempt > 0 || !soon {
			limit = min(10*time.Second, limit<<min(attempt, 6))
		}
		time.Sleep(rand.N(limit))
		url, ok := t.next()
		if !ok {
			return nil, errors.New("no live node to reconnect to")
		}
		s.mu.Lock()
		since, epoch := s.last, s.epoch
		s.mu.Unlock()
		op, _ := json.Marshal(map[string]any{"op": "subscribe", "channel": t.channel, "since": since, "epoch": epoch})
		cfg := dialConfig{Source: s.source, Timeout: 30 * time.Second, ReadyMarker: `"subscribed"`, Subscribe: []string{string(op)}, Sub: s}
		s.mu.Lock()
		s.node = url
		s.mu.Unlock()
		c, err := dial(context.Background(), s.id, url, cfg, w.rec)
		if err == nil {
			s.mu.Lock()
			s.c = c
			s.reconnects++
			s.mu.Unlock()
			return c, nil
		}
		if time.Now().After(deadline) || t.closing.Load() {
			return nil, err
		}
	}
}

// trackStats is what a worker's subscribers saw, against the channel's
// last offset.
type trackStats struct {
	Clients      int64            `json:"clients"`
	Complete     int64            `json:"complete"`     // every offset up to the last exactly once
	Behind       int64            `json:"behind"`       // nothing wrong, not yet at the last
	Missing      int64            `json:"missing"`      // clients that skipped offsets
	MissingSum   int64            `json:"missing_sum"`  // offsets skipped, over all clients
	Dups         int64            `json:"dups"`         // clients sent an offset twice (or out of order)
	Resets       int64            `json:"resets"`       // clients not recovered on resubscription
	Failed       int64            `json:"failed"`       // clients that could not reconnect
	Closed       int64            `json:"closed"`       // clients whose connection a server closed
	Reconnected  int64            `json:"reconnected"`  // clients that subscribed again elsewhere
	Reconnecting int64            `json:"reconnecting"` // reconnections under way
	Replayed     int64            `json:"replayed"`     // clients that recovered offsets from history
	ReplayedSum  int64            `json:"replayed_sum"` // offsets recovered from history, over all clients
	Messages     int64            `json:"messages"`     // messages the clients were sent
	FirstClose   int64            `json:"first_close"`  // Unix ns
	LastResub    int64            `json:"last_resub"`   // Unix ns
	Unstarted    int64            `json:"unstarted"`    // clients whose first subscription was never confirmed
	Closes       map[string]int64 `json:"closes,omitempty"`
	Problems     []string         `json:"problems,omitempty"` // the first few
}

// maxProblems is how many problems a worker reports.
const maxProblems = 5

// stats checks every subscriber against final, the channel's last offset
// (0: not known yet, so none is complete).
func (t *tracker) stats(final int64) *trackStats {
	t.mu.Lock()
	subs := t.subs
	st := &trackStats{FirstClose: t.firstClose, LastResub: t.lastResub, Reconnecting: t.reconnecting.Load()}
	if len(t.closes) > 0 {
		st.Closes = make(map[string]int64, len(t.closes))
		for k, v := range t.closes {
			st.Closes[k] = v
		}
	}
	t.mu.Unlock()
	for _, s := range subs {
		s.mu.Lock()
		st.Clients++
		st.Messages += s.n
		wrong := s.missing > 0 || s.dups > 0 || s.resets > 0 || s.failed || s.problem != ""
		switch {
		case !s.started:
			st.Unstarted++
		case !wrong && final > 0 && s.last == final && s.n == final-s.start:
			st.Complete++
		case !wrong && s.last < final:
			st.Behind++
		}
		if s.missing > 0 {
			st.Missing++
			st.MissingSum += s.missing
		}
		if s.dups > 0 {
			st.Dups++
		}
		if s.resets > 0 {
			st.Resets++
		}
		if s.failed {
			st.Failed++
		}
		if s.closed > 0 {
			st.Closed++
		}
		if s.reconnects > 0 {
			st.Reconnected++
		}
		if s.replayed > 0 {
			st.Replayed++
			st.ReplayedSum += s.replayed
		}
		if s.problem != "" && len(st.Problems) < maxProblems {
			st.Problems = append(st.Problems, s.problem)
		}
		s.mu.Unlock()
	}
	return st
}

// merge adds o's counts to st.
func (st *trackStats) merge(o *trackStats) {
	if o == nil {
		return
	}
	st.Clients += o.Clients
	st.Complete += o.Complete
	st.Behind += o.Behind
	st.Missing += o.Missing
	st.MissingSum += o.MissingSum
	st.Dups += o.Dups
	st.Resets += o.Resets
	st.Failed += o.Failed
	st.Closed += o.Closed
	st.Reconnected += o.Reconnected
	st.Reconnecting += o.Reconnecting
	st.Replayed += o.Replayed
	st.ReplayedSum += o.ReplayedSum
	st.Messages += o.Messages
	st.Unstarted += o.Unstarted
	if o.FirstClose != 0 && (st.FirstClose == 0 || o.FirstClose < st.FirstClose) {
		st.FirstClose = o.FirstClose
	}
	st.LastResub = max(st.LastResub, o.LastResub)
	for k, v := range o.Closes {
		if st.Closes == nil {
			st.Closes = map[string]int64{}
		}
		st.Closes[k] += v
	}
	for _, p := range o.Problems {
		if len(st.Problems) < 2*maxProblems {
			st.Problems = append(st.Problems, p)
		}
	}
}
