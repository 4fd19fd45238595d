package attack

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/pushgate/pushgate/wsproto"
)

// Target is the gateway under attack.
type Target struct {
	// Addr is its public listener, host:port.
	Addr string
	// Query is added to every upgrade's query, e.g. "token=<JWT>" for a
	// gateway with authentication.
	Query string
	// Sources are the loopback addresses connections are dialled from, in
	// turn (default 127.0.0.1).
	Sources []string
	// Timeout bounds a dial and its upgrade (default 5s).
	Timeout time.Duration
}

// Conn is one client connection, upgraded to pushgate.v1.
type Conn struct {
	net.Conn
	R *bufio.Reader
	// Deflate reports that permessage-deflate was negotiated.
	Deflate bool

	wmu sync.Mutex // serialises writes of frames built in pieces
}

// dialOpts are what one attack asks of its connections.
type dialOpts struct {
	query   string // added to Target.Query
	deflate bool   // offer permessage-deflate
	rcvbuf  int    // SO_RCVBUF, when positive: a reader that never reads stalls sooner
}

// Dial opens connection i (from Sources[i mod len]) and upgrades it, with
// query added to the upgrade's.
func (t *Target) Dial(ctx context.Context, i int, query string) (*Conn, error) {
	return t.dial(ctx, i, dialOpts{query: query})
}

func (t *Target) dial(ctx context.Context, i int, o dialOpts) (*Conn, error) {
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	src := "127.0.0.1"
	if len(t.Sources) > 0 {
		src = t.Sources[i%len(t.Sources)]
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: timeout}
	if o.rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.rcvbuf)
			})
			return errors.Join(err, serr)
		}
	}
	nc, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(timeout))
	query := strings.Trim(t.Query+"&"+o.query, "&")
	if query != "" {
		query = "?" + query
	}
	var req strings.Builder
	fmt.Fprintf(&req, "GET /ws%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: pushgate.v1\r\n",
		query, t.Addr)
	if o.deflate {
		req.WriteString("Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover\r\n")
	}
	req.WriteString("\r\n")
	c := &Conn{Conn: nc, R: bufio.NewReader(nc)}
	if _, err := io.WriteString(nc, req.String()); err != nil {
		nc.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(c.R, nil)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		nc.Close()
		return nil, fmt.Errorf("upgrade: %s", resp.Status)
	}
	c.Deflate = strings.Contains(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

// mask is every attack frame's masking key: the server must unmask
// whatever it is.
var mask = [4]byte{0x5a, 0x17, 0xc3, 0x8e}

// AppendFrame appends a masked client frame. rsv holds the RSV1-3 bits as
// in the first header byte: RSV1 (0x40) marks the first frame of a
// compressed message.
func AppendFrame(dst []byte, fin bool, rsv byte, op ws.OpCode, payload []byte) []byte {
	return wsproto.AppendMaskedFrame(dst, fin, rsv, op, mask, payload)
}

// Text is one masked text message.
func Text(s string) []byte { return AppendFrame(nil, true, 0, ws.OpText, []byte(s)) }

// ReadFrame reads one server frame; payloads larger than keep are
// discarded (their header is returned with a nil payload).
func (c *Conn) ReadFrame(keep int64) (ws.Header, []byte, error) {
	h, err := ws.ReadHeader(c.R)
	if err != nil {
		return h, nil, err
	}
	if h.Length > keep {
		_, err = io.CopyN(io.Discard, c.R, h.Length)
		return h, nil, err
	}
	p := make([]byte, h.Length)
	_, err = io.ReadFull(c.R, p)
	return h, p, err
}

// write writes b whole, as one frame sequence no other writer interleaves.
func (c *Conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.Conn.Write(b)
	return err
}

// drain reads what the gateway sends, discarding messages and counting
// their bytes in st.Received, until it closes: it returns the close code
// and reason (0 and "" when the connection ended without a close frame).
func (c *Conn) drain(st *Stats) (int, string) {
	for {
		h, p, err := c.ReadFrame(ws.MaxControlFramePayloadSize)
		if err != nil {
			return 0, ""
		}
		st.Received.Add(frameBytes(h))
		if h.OpCode == ws.OpClose {
			if len(p) < 2 {
				return 0, ""
			}
			return int(binary.BigEndian.Uint16(p)), string(p[2:])
		}
	}
}

// Stats counts what an attack did and how the gateway answered.
type Stats struct {
	Dials    atomic.Int64 // connections upgraded
	Refused  atomic.Int64 // dials or upgrades that failed
	Messages atomic.Int64 // messages (or first fragments) sent whole
	Bytes    atomic.Int64 // bytes written
	Received atomic.Int64 // bytes of the frames the gateway sent

	mu      sync.Mutex
	closes  map[int]int64
	reasons map[string]int64
}

func (s *Stats) closed(code int, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closes == nil {
		s.closes, s.reasons = map[int]int64{}, map[string]int64{}
	}
	s.closes[code]++
	s.reasons[strconv.Itoa(code)+" "+reason]++
}

// Tally is what Stats counted, at one moment.
type Tally struct {
	Dials    int64 `json:"dials"`    // connections upgraded
	Refused  int64 `json:"refused"`  // dials or upgrades that failed
	Messages int64 `json:"messages"` // messages (or first fragments) sent whole
	Bytes    int64 `json:"bytes"`    // bytes written
	Received int64 `json:"received"` // bytes of the frames the gateway sent
	// Closes counts the connections the gateway closed, by close code; 0
	// is a connection that ended without a close frame.
	Closes map[int]int64 `json:"closes,omitempty"`
	// Reasons counts the same closes by code and reason, as in "1013 too
	// many ops in flight" (the reason is empty without a close frame).
	Reasons map[string]int64 `json:"reasons,omitempty"`
}

// Tally reads the counts.
func (s *Stats) Tally() Tally {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Tally{Dials: s.Dials.Load(), Refused: s.Refused.Load(), Messages: s.Messages.Load(), Bytes: s.Bytes.Load(),
		Received: s.Received.Load(), Closes: maps.Clone(s.closes), Reasons: maps.Clone(s.reasons)}
}

// String sums the tally up in one line.
func (t Tally) String() string {
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(t.Closes)) {
		parts = append(parts, fmt.Sprintf("%d×%d", t.Closes[code], code))
	}
	closes := "none"
	if len(parts) > 0 {
		closes = strings.Join(parts, " ")
	}
	return fmt.Sprintf("%d connections (%d refused), %d messages, %.1f MiB sent, %.1f MiB received, closed: %s",
		t.Dials, t.Refused, t.Messages, float64(t.Bytes)/(1<<20), float64(t.Received)/(1<<20), closes)
}

// swarm runs n attackers until ctx ends. Attacker i dials (dial number i
// picks its source), plays, and when play returns (the gateway dropped
// it) dials again (see keep).
func (t *Target) swarm(ctx context.Context, n int, st *Stats, o dialOpts, play func(ctx context.Context, c *Conn, i int)) {
	keep(ctx, n, st, func(i int) (*Conn, error) { return t.dial(ctx, i, o) }, play)
}

// keep runs n attackers until ctx ends: attacker i opens a connection,
// plays it, closes it when play returns (the gateway dropped it) or ctx
// ends, and opens another; a failed open waits a moment before the next,
// so that a gateway that refuses is not spun on.
func keep[C io.Closer](ctx context.Context, n int, st *Stats, open func(i int) (C, error), play func(ctx context.Context, c C, i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				c, err := open(i)
				if err != nil {
					if ctx.Err() == nil {
						st.Refused.Add(1)
					}
					sleep(ctx, 50*time.Millisecond)
					continue
				}
				st.Dials.Add(1)
				stop := context.AfterFunc(ctx, func() { c.Close() })
				play(ctx, c, i)
				stop()
				c.Close()
			}
		})
	}
	wg.Wait()
}

// pump runs a connection that writes: next is called for the bytes of
// the next write (and the messages they hold; nil ends the writing) until
// a write fails, while the gateway's answers are drained. Its context ends
// when the gateway closes the connection, so a next that waits stops
// waiting. pump returns once the gateway closed the connection (counted
// in st) or ctx ended.
func (c *Conn) pump(ctx context.Context, st *Stats, next func(ctx context.Context) ([]byte, int)) {
	wctx, cancel := context.WithCancel(ctx)
	closed := make(chan struct{})
	go func() {
		code, reason := c.drain(st)
		if ctx.Err() == nil {
			st.closed(code, reason)
		}
		cancel()
		c.Close() // a write in progress fails at once
		close(closed)
	}()
	for wctx.Err() == nil {
		b, msgs := next(wctx)
		if b == nil {
			break
		}
		if err := c.write(b); err != nil {
			break
		}
		st.Messages.Add(int64(msgs))
		st.Bytes.Add(int64(len(b)))
	}
	<-closed
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
