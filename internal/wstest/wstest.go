// Package wstest holds test helpers: masked client frames and a raw
// WebSocket client over a real socket, for byte-level protocol tests.
package wstest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/wsproto"
)

// Frame encodes a masked client frame. rsv holds the RSV1-3 bits as in the
// first header byte (0x40 is RSV1).
func Frame(fin bool, rsv byte, op ws.OpCode, payload []byte) []byte {
	return wsproto.AppendMaskedFrame(nil, fin, rsv, op, mask, payload)
}

// mask is every test frame's masking key.
var mask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// Text is a final text frame.
func Text(s string) []byte { return Frame(true, 0, ws.OpText, []byte(s)) }

// ClosePayload is a close frame payload: code and reason.
func ClosePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

// UpgradeRequest is a valid upgrade request for path, with extra header
// lines ("Name: value") added; an extra line replaces the default line of
// the same name, and "Name:" alone removes it.
func UpgradeRequest(path string, extra ...string) string {
	lines := []string{
		"Host: pushgate.test",
		"Upgrade: websocket",
		"Connection: Upgrade",
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
		"Sec-WebSocket-Version: 13",
	}
	for _, e := range extra {
		name, value, _ := strings.Cut(e, ":")
		i := slices.IndexFunc(lines, func(l string) bool {
			return strings.EqualFold(strings.SplitN(l, ":", 2)[0], name)
		})
		switch {
		case strings.TrimSpace(value) == "" && i >= 0:
			lines = slices.Delete(lines, i, i+1)
		case i >= 0:
			lines[i] = e
		default:
			lines = append(lines, e)
		}
	}
	return "GET " + path + " HTTP/1.1\r\n" + strings.Join(lines, "\r\n") + "\r\n\r\n"
}

// Client is a raw client connection under test.
type Client struct {
	t    testing.TB
	Conn net.Conn
	R    *bufio.Reader
}

// Timeout bounds every read a Client makes, so a broken server fails a
// test instead of hanging it.
const Timeout = 10 * time.Second

// Connect opens a TCP connection to addr.
func Connect(t testing.TB, addr string) *Client {
	t.Helper()
	return ConnectFrom(t, "", addr)
}

// ConnectFrom opens a TCP connection to addr from the loopback address
// from (127.0.0.2, say), so that a test can play several clients' hosts.
func ConnectFrom(t testing.TB, from, addr string) *Client {
	t.Helper()
	c, err := TryConnectFrom(from, addr)
	if err != nil {
		t.Fatal(err)
	}
	c.t = t
	t.Cleanup(func() { c.Conn.Close() })
	return c
}

// TryConnectFrom is ConnectFrom for a goroutine other than the test's,
// which must not fail the test: it returns the error, the caller closes
// the connection, and of the Client's methods only the Try ones may be
// used. from "" is any address.
func TryConnectFrom(from, addr string) (*Client, error) {
	var d net.Dialer
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s from %q: %w", addr, from, err)
	}
	return &Client{Conn: nc, R: bufio.NewReader(nc)}, nil
}

// TryUpgrade sends an upgrade request for path and returns an error
// unless the answer is 101.
func (c *Client) TryUpgrade(path string, extra ...string) error {
	if _, err := c.Conn.Write([]byte(UpgradeRequest(path, extra...))); err != nil {
		return err
	}
	c.deadline()
	resp, err := http.ReadResponse(c.R, nil)
	switch {
	case err != nil:
		return fmt.Errorf("upgrade %s: %w", path, err)
	case resp.StatusCode != http.StatusSwitchingProtocols:
		return fmt.Errorf("upgrade %s: got %s", path, resp.Status)
	}
	return nil
}

// Dial connects and upgrades, failing the test unless the answer is 101.
func Dial(t testing.TB, addr, path string, extra ...string) (*Client, *http.Response) {
	t.Helper()
	c := Connect(t, addr)
	c.Write([]byte(UpgradeRequest(path, extra...)))
	resp := c.Response()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade %s: got %s", path, resp.Status)
	}
	return c, resp
}

// Write writes b or fails the test.
func (c *Client) Write(b []byte) {
	c.t.Helper()
	if _, err := c.Conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// Response reads an HTTP response head (and body, if any).
func (c *Client) Response() *http.Response {
	c.t.Helper()
	c.deadline()
	resp, err := http.ReadResponse(c.R, nil)
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
	}
	return resp
}

// ReadFrame reads one server frame; server frames must not be masked.
func (c *Client) ReadFrame() (ws.Header, []byte) {
	c.t.Helper()
	h, p, err := c.TryReadFrame()
	if err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	return h, p
}

// TryReadFrame is ReadFrame returning the error.
func (c *Client) TryReadFrame() (ws.Header, []byte, error) {
	c.deadline()
	h, err := ws.ReadHeader(c.R)
	if err != nil {
		return h, nil, err
	}
	if h.Masked {
		return h, nil, errors.New("server frame is masked")
	}
	p := make([]byte, h.Length)
	_, err = io.ReadFull(c.R, p)
	return h, p, err
}

// ExpectMessage reads a frame and checks it is a final data frame with
// the given opcode and payload.
func (c *Client) ExpectMessage(op ws.OpCode, payload []byte) {
	c.t.Helper()
	h, p := c.ReadFrame()
	if h.OpCode != op || !h.Fin || string(p) != string(payload) {
		c.t.Fatalf("got frame op=%v fin=%v len=%d %.40q, want op=%v len=%d %.40q", h.OpCode, h.Fin, len(p), p, op, len(payload), payload)
	}
}

// ExpectClose reads frames until a close frame, checks its code, and
// returns its reason. Data frames before it are skipped.
func (c *Client) ExpectClose(code ws.StatusCode) string {
	c.t.Helper()
	got, reason, err := c.TryReadClose()
	switch {
	case err != nil:
		c.t.Fatalf("read frame: %v", err)
	case got != code && got == 0:
		c.t.Fatalf("close frame without a code, want %d", code)
	case got != code:
		c.t.Fatalf("close code %d (%q), want %d", got, reason, code)
	}
	return reason
}

// TryReadClose reads frames until a close frame and returns its code (0
// for none) and reason. Data frames before it are skipped.
func (c *Client) TryReadClose() (ws.StatusCode, string, error) {
	for {
		h, p, err := c.TryReadFrame()
		switch {
		case err != nil:
			return 0, "", err
		case h.OpCode != ws.OpClose:
			continue
		case len(p) < 2:
			return 0, "", nil
		}
		return ws.StatusCode(binary.BigEndian.Uint16(p)), string(p[2:]), nil
	}
}

// ExpectEOF checks that the server ends the TCP connection cleanly: end of
// stream (a FIN), with no more bytes before it and no reset.
func (c *Client) ExpectEOF() {
	c.t.Helper()
	c.deadline()
	var b [1]byte
	n, err := c.R.Read(b[:])
	switch {
	case n > 0:
		c.t.Fatalf("got byte %#x, want end of stream", b[0])
	case err == io.EOF:
	case isTimeout(err):
		c.t.Fatalf("connection still open after %v", Timeout)
	default:
		c.t.Fatalf("got %v, want a clean end of stream", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (c *Client) deadline() { _ = c.Conn.SetReadDeadline(time.Now().Add(Timeout)) }

// Eventually polls cond until it holds, failing the test after Timeout.
// It is for states with no event to wait on (counters, registries).
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Msg is a decoded pushgate.v1 server message.
type Msg struct {
	Type      string          `json:"type"`
	Channel   string          `json:"channel"`
	Offset    uint64          `json:"offset"`
	Epoch     string          `json:"epoch"`
	Recovered bool            `json:"recovered"`
	Code      string          `json:"code"`
	Message   string          `json:"message"`
	Data      json.RawMessage `json:"data"`
	Client    string          `json:"client"`
	Key       string          `json:"key"`
	Raw       []byte          `json:"-"` // the whole payload
}

// ReadMsg reads a text frame and decodes it as a pushgate.v1 message.
func (c *Client) ReadMsg() Msg {
	c.t.Helper()
	m, err := c.TryReadMsg()
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}

// TryReadMsg is ReadMsg returning the error, for goroutines other than
// the test's.
func (c *Client) TryReadMsg() (Msg, error) {
	h, p, err := c.TryReadFrame()
	if err != nil {
		return Msg{}, fmt.Errorf("read frame: %w", err)
	}
	if h.OpCode != ws.OpText || !h.Fin {
		return Msg{}, fmt.Errorf("got frame op=%v fin=%v %.60q, want a text message", h.OpCode, h.Fin, p)
	}
	var m Msg
	if err := json.Unmarshal(p, &m); err != nil {
		return Msg{}, fmt.Errorf("server sent invalid JSON %.200q: %v", p, err)
	}
	m.Raw = p
	return m, nil
}

// ExpectMsg reads a message and checks its type (and code, for errors).
func (c *Client) ExpectMsg(typ, code string) Msg {
	c.t.Helper()
	m := c.ReadMsg()
	if m.Type != typ || m.Code != code {
		c.t.Fatalf("got %s, want type %q code %q", m.Raw, typ, code)
	}
	return m
}

// Send writes s as one masked text message.
func (c *Client) Send(s string) {
	c.t.Helper()
	c.Write(Text(s))
}

// SyncBuffer is a bytes.Buffer a logger and a test can share.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Until polls cond until it returns nil, failing the test with cond's last
// error after d.
func Until(t testing.TB, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", d, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ExpiresIn returns a JWT exp (Unix seconds) at least d from now: d is
// what a test has to use a token before it expires. exp is whole seconds,
// so now+d rounded down would leave anything from d-1s to d.
func ExpiresIn(d time.Duration) int64 {
	return time.Now().Add(d + time.Second - time.Nanosecond).Unix()
}
