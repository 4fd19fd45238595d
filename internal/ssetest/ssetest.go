// Package ssetest reads Server-Sent Events as a browser's EventSource
// does (the HTML standard's "interpreting an event stream"), over a real
// socket, so that tests check what a page would get, not the bytes they
// expect.
package ssetest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"encoding/json"

	"github.com/pushgate/pushgate/internal/wstest"
)

// Event is one dispatched event.
type Event struct {
	Type        string // "message" unless the event named another
	Data        string
	LastEventID string // the stream's last event id when it was dispatched
	HasID       bool   // the event itself carried an id field
}

// Parser turns a stream's bytes into events and comments.
type Parser struct {
	r           *bufio.Reader
	started     bool
	lastEventID string
	// Comments counts comment lines read; Retry is the last retry field.
	Comments int
	Retry    int
}

// NewParser reads the event stream body from r.
func NewParser(r io.Reader) *Parser { return &Parser{r: bufio.NewReader(r)} }

// line reads one line ended by CRLF, LF or CR, without its end.
func (p *Parser) line() (string, error) {
	var b []byte
	for {
		c, err := p.r.ReadByte()
		if err != nil {
			return "", err
		}
		switch c {
		case '\n':
			return string(b), nil
		case '\r':
			if next, err := p.r.Peek(1); err == nil && next[0] == '\n' {
				_, _ = p.r.ReadByte()
			}
			return string(b), nil
		}
		b = append(b, c)
	}
}

// Next returns the next dispatched event, or the read's error (io.EOF
// when the stream ended).
func (p *Parser) Next() (Event, error) {
	var data bytes.Buffer
	typ, hasID := "", false
	for {
		l, err := p.line()
		if err != nil {
			return Event{}, err
		}
		if !p.started {
			p.started = true
			l = strings.TrimPrefix(l, "\uFEFF")
		}
		if l == "" {
			if data.Len() == 0 {
				typ, hasID = "", false
				continue
			}
			d := strings.TrimSuffix(data.String(), "\n")
			if typ == "" {
				typ = "message"
			}
			return Event{Type: typ, Data: d, LastEventID: p.lastEventID, HasID: hasID}, nil
		}
		if l[0] == ':' {
			p.Comments++
			continue
		}
		field, value, found := strings.Cut(l, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "event":
			typ = value
		case "data":
			data.WriteString(value)
			data.WriteByte('\n')
		case "id":
			if !strings.ContainsRune(value, 0) {
				p.lastEventID, hasID = value, true
			}
		case "retry":
			if n, err := strconv.Atoi(value); err == nil && value != "" && strings.Trim(value, "0123456789") == "" {
				p.Retry = n
			}
		}
	}
}

// Timeout bounds every read of a Stream.
const Timeout = 10 * time.Second

// Stream is an open event stream.
type Stream struct {
	*Parser
	t    testing.TB
	Conn net.Conn
	Resp *http.Response
}

// Open sends GET target to addr with the extra header lines ("Name:
// value") and reads the response head. A response other than 200 is
// returned with its body read into Body, and no parser.
func Open(t testing.TB, addr, target string, header ...string) (*Stream, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	req := "GET " + target + " HTTP/1.1\r\nHost: pushgate.test\r\nAccept: text/event-stream\r\n"
	for _, h := range header {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(Timeout))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	s := &Stream{t: t, Conn: conn, Resp: resp}
	if resp.StatusCode != http.StatusOK {
		return s, nil
	}
	var body io.Reader = readDeadline{conn, br}
	if resp.Header.Get("Content-Encoding") == "gzip" {
		// Read as a browser does, inflating as it goes.
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, fmt.Errorf("gzip-encoded stream: %w", err)
		}
		body = zr
	}
	s.Parser = NewParser(body)
	return s, nil
}

// MustOpen is Open that fails the test unless the stream opened with 200.
func MustOpen(t testing.TB, addr, target string, header ...string) *Stream {
	t.Helper()
	s, err := Open(t, addr, target, header...)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	if s.Resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(s.Resp.Body)
		t.Fatalf("GET %s: %s %q", target, s.Resp.Status, body)
	}
	return s
}

// Event returns the next event, failing the test on an error.
func (s *Stream) Event() Event {
	s.t.Helper()
	e, err := s.Next()
	if err != nil {
		s.t.Fatalf("reading the event stream: %v", err)
	}
	return e
}

// String shows an event in failure messages.
func (e Event) String() string {
	return fmt.Sprintf("{%s id=%q data=%s}", e.Type, e.LastEventID, e.Data)
}

// readDeadline renews the read deadline before each read of the body.
type readDeadline struct {
	conn net.Conn
	r    io.Reader
}

func (r readDeadline) Read(p []byte) (int, error) {
	_ = r.conn.SetReadDeadline(time.Now().Add(Timeout))
	return r.r.Read(p)
}

// Msg reads the next event and decodes its data as a pushgate.v1
// envelope, failing the test unless it is one.
func (s *Stream) Msg() (wstest.Msg, Event) {
	s.t.Helper()
	e := s.Event()
	var m wstest.Msg
	if err := json.Unmarshal([]byte(e.Data), &m); err != nil || m.Type == "" || e.Type != "message" {
		s.t.Fatalf("event %v is not an envelope: %v", e, err)
	}
	m.Raw = []byte(e.Data)
	return m, e
}

// ExpectMsg is Msg for an envelope of type typ (and error code, if any).
func (s *Stream) ExpectMsg(typ, code string) (wstest.Msg, Event) {
	s.t.Helper()
	m, e := s.Msg()
	if m.Type != typ || m.Code != code {
		s.t.Fatalf("got %s, want type %q code %q", m.Raw, typ, code)
	}
	return m, e
}
