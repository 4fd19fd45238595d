package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// marker starts the text every bench publication carries, wherever the
// server puts it in its envelope: "pgb|<seq>|<send time, Unix ns>|" and
// padding. Searching for it is what lets the harness measure any server.
const marker = "pgb|"

// payload returns a publication text of size bytes (at least the marker
// and numbers) for sequence number seq, stamped with now.
func payload(seq int, now time.Time, size int) string {
	var b strings.Builder
	b.Grow(size)
	b.WriteString(marker)
	b.WriteString(strconv.Itoa(seq))
	b.WriteByte('|')
	b.WriteString(strconv.FormatInt(now.UnixNano(), 10))
	b.WriteByte('|')
	for b.Len() < size {
		b.WriteByte('x')
	}
	return b.String()
}

// parsePayload finds a publication in msg and returns its sequence number
// and send time.
func parsePayload(msg []byte) (seq int, sent int64, ok bool) {
	i := bytes.Index(msg, []byte(marker))
	if i < 0 {
		return 0, 0, false
	}
	rest := msg[i+len(marker):]
	s, rest, ok := cutNumber(rest)
	if !ok {
		return 0, 0, false
	}
	t, _, ok := cutNumber(rest)
	if !ok {
		return 0, 0, false
	}
	return int(s), t, true
}

// cutNumber parses decimal digits up to a '|'.
func cutNumber(b []byte) (int64, []byte, bool) {
	var n int64
	for i, c := range b {
		switch {
		case c == '|' && i > 0:
			return n, b[i+1:], true
		case c >= '0' && c <= '9' && i < 19:
			n = n*10 + int64(c-'0')
		default:
			return 0, nil, false
		}
	}
	return 0, nil, false
}

// sink is where a worker's connections report what they receive.
type sink interface {
	// message is called for every publication received, with its
	// sequence number and latency; last is the connection's previous
	// sequence number (-1 before its first), for duplicate checks.
	message(conn int, seq int, latency time.Duration, last int)
	// other is called for every other data message (replies, errors).
	other(conn int, msg []byte)
}

// client is one benchmark connection. Its goroutine reads frames with a
// small parser of its own (server frames are unmasked, and the harness
// needs no more than that), answers pings and closes, and reports
// publications to the sink.
type client struct {
	id    int
	conn  net.Conn
	wmu   sync.Mutex // serializes control-frame writes
	ready chan struct{}
	err   error // why the read loop ended; set before done closes
	done  chan struct{}
	// readyMarker, when set, is text whose arrival in a non-publication
	// message makes the connection ready (a subscription confirmed).
	readyMarker []byte
	readyOnce   sync.Once
	// sub, when set, follows the offsets of the connection's channel
	// (the cluster scenario's clients).
	sub *subscriber
}

// dialConfig is how a worker opens connections.
type dialConfig struct {
	Source      net.IP
	Timeout     time.Duration
	ReadyMarker string
	Subscribe   []string // text messages to send once connected
	// Sub, when set, checks the offsets the connection receives.
	Sub *subscriber
}

var errClosedByServer = errors.New("closed by server")

// dial opens connection id to url and starts its read loop. It returns
// once the connection is ready: upgraded, subscribe messages sent and, with
// a ready marker, the confirmation received.
func dial(ctx context.Context, id int, url string, cfg dialConfig, s sink) (*client, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if strings.HasPrefix(url, "http://") {
		return dialStream(ctx, id, url, cfg, s)
	}
	d := ws.Dialer{
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: cfg.Source}}
			return nd.DialContext(ctx, network, addr)
		},
	}
	conn, br, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	c := &client{id: id, conn: conn, ready: make(chan struct{}), done: make(chan struct{}), sub: cfg.Sub}
	if cfg.ReadyMarker != "" {
		c.readyMarker = []byte(cfg.ReadyMarker)
	} else {
		close(c.ready)
	}
	var early []byte
	if br != nil {
		early = make([]byte, br.Buffered())
		_, _ = io.ReadFull(br, early)
		ws.PutReader(br)
	}
	for _, m := range cfg.Subscribe {
		if err := c.write(ws.OpText, []byte(m)); err != nil {
			conn.Close()
			return nil, err
		}
	}
	go c.readLoop(early, s)
	return c.whenReady(ctx)
}

// whenReady waits until the read loop has seen the connection ready.
func (c *client) whenReady(ctx context.Context) (*client, error) {
	select {
	case <-c.ready:
		return c, nil
	case <-c.done:
		c.conn.Close()
		return nil, fmt.Errorf("before ready: %w", c.err)
	case <-ctx.Done():
		c.conn.Close()
		<-c.done
		return nil, fmt.Errorf("not ready: %w", ctx.Err())
	}
}

// dialStream opens connection id as an event stream (GET of an http://
// URL answered with text/event-stream, Server-Sent Events) and starts its
// read loop; each event's data is a message, as a WebSocket's.
func dialStream(ctx context.Context, id int, rawURL string, cfg dialConfig, s sink) (*client, error) {
	u, err := neturl.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: cfg.Source}}
	conn, err := nd.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", u.RequestURI(), u.Host); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 2048)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		conn.Close()
		return nil, fmt.Errorf("event stream: %s", resp.Status)
	}
	_ = conn.SetDeadline(time.Time{})
	c := &client{id: id, conn: conn, ready: make(chan struct{}), done: make(chan struct{}), sub: cfg.Sub}
	if cfg.ReadyMarker != "" {
		c.readyMarker = []byte(cfg.ReadyMarker)
	} else {
		close(c.ready)
	}
	go c.readEvents(br, s)
	return c.whenReady(ctx)
}

// readEvents is readLoop for an event stream: its events' data lines,
// joined, are the messages; comments and other fields are skipped.
func (c *client) readEvents(r *bufio.Reader, s sink) {
	defer close(c.done)
	last := -1
	var data, long []byte // long: a line longer than r's buffer
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) && len(long) < 16<<20 {
			long = append(long, line...)
			continue
		}
		if err != nil {
			c.err = err
			return
		}
		if len(long) > 0 {
			line = append(long, line...)
			long = long[:0]
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if len(data) > 0 {
				if c.err = c.handle(data, &last, s); c.err != nil {
					return
				}
			}
			data = data[:0]
		case bytes.HasPrefix(line, []byte("data:")):
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, bytes.TrimPrefix(line[5:], []byte(" "))...)
			if len(data) > 16<<20 {
				c.err = errors.New("an event over 16 MiB")
				return
			}
		}
	}
}

// write sends one masked frame, as a client must.
func (c *client) write(op ws.OpCode, p []byte) error {
	f := ws.MaskFrameInPlace(ws.NewFrame(op, true, append([]byte(nil), p...)))
	c.wmu.Lock()
	defer c.wmu.Unlock()
	// Long enough for a worker starved of CPU on a loaded machine: a
	// client that gave up on its own write would be taken for one the
	// server dropped.
	_ = c.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	return ws.WriteFrame(c.conn, f)
}

// close ends the connection abruptly (the harness measures servers, not
// close handshakes) and waits for its read loop.
func (c *client) close() {
	c.conn.Close()
	<-c.done
}

func (c *client) readLoop(early []byte, s sink) {
	defer close(c.done)
	r := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(early), c.conn), 2048)
	var scratch []byte // the payload of the frame being handled
	var frag []byte    // a fragmented message being assembled
	last := -1
	var hdr [14]byte
	for {
		if _, err := io.ReadFull(r, hdr[:2]); err != nil {
			c.err = err
			return
		}
		fin, op := hdr[0]&0x80 != 0, ws.OpCode(hdr[0]&0x0f)
		if hdr[1]&0x80 != 0 {
			c.err = errors.New("masked frame from server")
			return
		}
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(r, hdr[2:4]); err != nil {
				c.err = err
				return
			}
			n = uint64(binary.BigEndian.Uint16(hdr[2:4]))
		case 127:
			if _, err := io.ReadFull(r, hdr[2:10]); err != nil {
				c.err = err
				return
			}
			n = binary.BigEndian.Uint64(hdr[2:10])
		}
		if n > 16<<20 {
			c.err = fmt.Errorf("frame of %d bytes", n)
			return
		}
		if uint64(cap(scratch)) < n {
			scratch = make([]byte, n)
		}
		p := scratch[:n]
		if _, err := io.ReadFull(r, p); err != nil {
			c.err = err
			return
		}
		switch op {
		case ws.OpPing:
			if err := c.write(ws.OpPong, p); err != nil {
				c.err = err
				return
			}
			continue
		case ws.OpPong:
			continue
		case ws.OpClose:
			_ = c.write(ws.OpClose, p)
			c.err = errClosedByServer
			if len(p) >= 2 {
				c.err = fmt.Errorf("%w: %d %s", errClosedByServer, binary.BigEndian.Uint16(p), p[2:])
			}
			return
		}
		msg := p
		switch {
		case op == ws.OpContinuation:
			frag = append(frag, p...)
			msg = frag
		case !fin:
			frag = append(frag[:0], p...)
		}
		if !fin {
			continue
		}
		if c.err = c.handle(msg, &last, s); c.err != nil {
			return
		}
		frag = frag[:0]
	}
}

// handle reports a whole message to the sink: a publication, or another
// message (which may make the connection ready). last is the connection's
// previous sequence number.
func (c *client) handle(msg []byte, last *int, s sink) error {
	if seq, sent, ok := parsePayload(msg); ok {
		s.message(c.id, seq, time.Duration(time.Now().UnixNano()-sent), *last)
		*last = seq
		if c.sub != nil {
			c.sub.message(msg)
		}
		return nil
	}
	if c.sub != nil {
		if err := c.sub.reply(msg); err != nil {
			return err
		}
	}
	if c.readyMarker != nil && bytes.Contains(msg, c.readyMarker) {
		c.readyOnce.Do(func() { close(c.ready) })
	}
	s.other(c.id, msg)
	return nil
}

// counter is an atomic counter padded to its own cache line: thousands of
// connection goroutines add to it.
type counter struct {
	atomic.Int64
	_ [56]byte
}
