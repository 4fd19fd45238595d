package server

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// How long a connection waiting on its client is safe from shedding. A
// real client sends its request head at once, in one segment or a few
// back to back, right behind the TCP handshake, and is served within
// milliseconds. One that has sent nothing a quarter second after it was
// taken in, or that has sent part of its request and then nothing (or
// taken nothing of its response) for 50ms, is stalling.
const (
	silentGrace = 250 * time.Millisecond
	stallGrace  = 50 * time.Millisecond
)

// admission bounds the connections on the public listeners that are not
// WebSocket connections (yet): handshakes reading their request head or
// being answered, and plain HTTP requests being served. Each holds a slot
// from the moment it is taken in until it is upgraded, refused, or (plain
// HTTP) closed by net/http.
//
//   - At most MaxHandshakes slots are held. A connection that finds them
//     all held sheds the oldest stalled one; while none is stalled (a burst
//     of quick handshakes), accepting pauses until a slot frees.
//   - A source address (IPv6: its /64) that holds MaxHandshakesPerSource
//     slots sheds its own oldest stalled one for each new connection it
//     opens. Its new connections are never refused: a load balancer's
//     burst of quick handshakes all get in, whatever the share.
//   - Stalled means waiting on the client (blocked reading its request or
//     writing its response) with no progress for stallGrace, or for
//     silentGrace if it has sent nothing yet. A connection the server has
//     not read yet, or one doing the server's own work (an upgrade being
//     answered), is never shed.
//
// Shedding closes the connection without an answer (it has not sent a
// request to answer) and counts it in pushgate_handshakes_shed_total.
type admission struct {
	max, perSource int
	timeout, line  time.Duration // HandshakeTimeout, RequestLineTimeout
	log            *slog.Logger
	inFlight       prometheus.Gauge
	shedCount      [2]prometheus.Counter // by shedReason

	freed chan struct{} // a slot was released (capacity 1)

	mu      sync.Mutex
	held    int
	queue   pendingList // every slot holder, oldest first
	sources map[netip.Prefix]*source
}

// source is one client address's share of the slots.
type source struct {
	held  int
	queue pendingList // its slot holders, oldest first
}

func newAdmission(cfg Config) *admission {
	m := cfg.Metrics
	return &admission{
		max: cfg.MaxHandshakes, perSource: cfg.MaxHandshakesPerSource,
		timeout: cfg.HandshakeTimeout, line: min(cfg.RequestLineTimeout, cfg.HandshakeTimeout),
		log: cfg.Logger, inFlight: m.HandshakesInFlight,
		shedCount: [2]prometheus.Counter{m.HandshakesShed(shedFull.String()), m.HandshakesShed(shedPerSource.String())},
		freed:     make(chan struct{}, 1),
		queue:     pendingList{which: byAll},
		sources:   make(map[netip.Prefix]*source),
	}
}

// admit takes a slot for nc, shedding stalled connections as the bounds
// require, and waits while every slot is held by one that is not stalled.
// It returns nil, having closed nc, if quit closes first.
func (a *admission) admit(nc net.Conn, quit <-chan struct{}) *pendingConn {
	key := sourceOf(nc.RemoteAddr())
	a.mu.Lock()
	if src := a.sources[key]; src != nil && src.held >= a.perSource {
		a.shedOldestLocked(&src.queue, shedPerSource)
	}
	for a.held >= a.max {
		if a.shedOldestLocked(&a.queue, shedFull) {
			continue
		}
		a.mu.Unlock()
		if !a.wait(quit) {
			nc.Close()
			return nil
		}
		a.mu.Lock()
	}
	src := a.sources[key]
	if src == nil {
		src = &source{queue: pendingList{which: bySource}}
		a.sources[key] = src
	}
	pc := &pendingConn{Conn: nc, adm: a, src: src, key: key, taken: time.Now(), held: true, lineDue: true}
	a.held++
	src.held++
	a.queue.pushBack(pc)
	src.queue.pushBack(pc)
	a.mu.Unlock()
	a.inFlight.Inc()
	// Until its request line is in, a connection has the shorter deadline.
	_ = nc.SetDeadline(pc.taken.Add(a.line))
	return pc
}

// wait waits for a slot to be released, or for a held one to age into
// being sheddable; it reports false if quit closed.
func (a *admission) wait(quit <-chan struct{}) bool {
	t := time.NewTimer(stallGrace / 2)
	defer t.Stop()
	select {
	case <-a.freed:
	case <-t.C:
	case <-quit:
		return false
	}
	return true
}

// shedReason is why a connection was shed: the label of
// pushgate_handshakes_shed_total.
type shedReason uint8

const (
	shedFull      shedReason = iota // every slot held
	shedPerSource                   // its address over its share
)

func (r shedReason) String() string { return [...]string{"full", "per_source"}[r] }

// shedOldestLocked sheds the oldest stalled connection of q, if there is
// one.
func (a *admission) shedOldestLocked(q *pendingList, why shedReason) bool {
	now := time.Now()
	for pc := q.head; pc != nil; pc = pc.links[q.which].next {
		if now.Sub(pc.taken) < stallGrace {
			return false // the rest are younger still
		}
		if pc.stalledLocked(now) {
			pc.shed.Store(true)
			a.dropLocked(pc)
			pc.Conn.Close()
			a.shedCount[why].Inc()
			a.log.Debug("handshake shed", "remote", pc.RemoteAddr(), "reason", why.String(), "age", now.Sub(pc.taken))
			return true
		}
	}
	return false
}

// stalledLocked reports whether pc waits on its client and has made no
// progress for long enough to be shed.
func (pc *pendingConn) stalledLocked(now time.Time) bool {
	if pc.pinned || pc.blocked.Load() == 0 {
		return false
	}
	if last := pc.progress.Load(); last != 0 {
		return now.UnixNano()-last >= int64(stallGrace)
	}
	return now.Sub(pc.taken) >= silentGrace
}

// release gives pc's slot back; it does nothing if pc was shed or already
// released.
func (a *admission) release(pc *pendingConn) {
	a.mu.Lock()
	if pc.held {
		a.dropLocked(pc)
	}
	a.mu.Unlock()
}

func (a *admission) dropLocked(pc *pendingConn) {
	pc.held = false
	a.held--
	a.queue.remove(pc)
	pc.src.held--
	pc.src.queue.remove(pc)
	if pc.src.held == 0 {
		delete(a.sources, pc.key)
	}
	a.inFlight.Dec()
	select {
	case a.freed <- struct{}{}:
	default:
	}
}

// pin keeps pc from being shed while the server works on it (answers its
// upgrade); it reports false if pc was shed already.
func (a *admission) pin(pc *pendingConn) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	pc.pinned = pc.held
	return pc.held
}

// unpin makes pc sheddable again (a refusal being written and lingered
// over).
func (a *admission) unpin(pc *pendingConn) {
	a.mu.Lock()
	pc.pinned = false
	a.mu.Unlock()
}

// sourceOf is the address a connection is counted against: the client's
// IPv4 address, or the /64 of its IPv6 address (a single host commonly
// has a whole /64).
func sourceOf(addr net.Addr) netip.Prefix {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return netip.Prefix{}
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return netip.Prefix{}
	}
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// pendingConn is a connection holding an admission slot. It records when
// the server waits on the client (for shedding), moves the deadline from
// the request line's to the whole handshake's once the line is in, and
// replays the bytes of the request head to net/http.
type pendingConn struct {
	net.Conn
	adm   *admission
	src   *source
	key   netip.Prefix
	taken time.Time

	blocked  atomic.Int32 // Reads and Writes in progress: waiting on the client
	progress atomic.Int64 // when the last bytes went either way (UnixNano), or 0
	shed     atomic.Bool

	// Owned by the handshake goroutine, then (prefix) by net/http.
	lineDue bool   // the request line's deadline is still set
	prefix  []byte // the head already read, for net/http

	// Guarded by adm.mu.
	held   bool // holds a slot: not shed or released yet
	pinned bool
	links  [2]link // in adm.queue and in src.queue
}

func (c *pendingConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	c.blocked.Add(1)
	n, err := c.Conn.Read(p)
	c.blocked.Add(-1)
	if n > 0 {
		c.progress.Store(time.Now().UnixNano())
	}
	if c.lineDue && bytes.IndexByte(p[:n], '\n') >= 0 {
		c.lineDue = false
		_ = c.Conn.SetDeadline(c.taken.Add(c.adm.timeout))
	}
	return n, err
}

func (c *pendingConn) Write(p []byte) (int, error) {
	c.blocked.Add(1)
	n, err := c.Conn.Write(p)
	c.blocked.Add(-1)
	if n > 0 {
		c.progress.Store(time.Now().UnixNano())
	}
	return n, err
}

// CloseWrite half-closes a TCP connection (see lingerClose).
func (c *pendingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// Which of a pendingConn's links a list uses.
const (
	byAll = iota
	bySource
)

type link struct{ prev, next *pendingConn }

// pendingList is an intrusive doubly linked list of pendingConns, in the
// order they were taken in.
type pendingList struct {
	head, tail *pendingConn
	which      int
}

func (l *pendingList) pushBack(pc *pendingConn) {
	pc.links[l.which] = link{prev: l.tail}
	if l.tail != nil {
		l.tail.links[l.which].next = pc
	} else {
		l.head = pc
	}
	l.tail = pc
}

func (l *pendingList) remove(pc *pendingConn) {
	lk := pc.links[l.which]
	if lk.prev != nil {
		lk.prev.links[l.which].next = lk.next
	} else {
		l.head = lk.next
	}
	if lk.next != nil {
		lk.next.links[l.which].prev = lk.prev
	} else {
		l.tail = lk.prev
	}
	pc.links[l.which] = link{}
}
