package attack

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// StreamOps: each attacker opens an event stream (GET /events), reads its
// connected event, and posts op (a pushgate.v1 message) to POST
// /events/commands, 100 to a request, as fast as the gateway answers,
// reading the stream meanwhile; when the gateway closes the stream (1008,
// past its message rate) it opens another. Messages counts the ops the
// gateway said it ran; Closes the streams' close events by code.
func (t *Target) StreamOps(ctx context.Context, n int, op string, st *Stats) {
	body := func(client, key string) []byte {
		ops := strings.TrimSuffix(strings.Repeat(op+",", 100), ",")
		return fmt.Appendf(nil, `{"client":%q,"key":%q,"ops":[%s]}`, client, key, ops)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	defer client.CloseIdleConnections()
	open := func(int) (*stream, error) { return t.openStream(ctx) }
	keep(ctx, n, st, open, func(ctx context.Context, s *stream, _ int) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() { s.drain(st); cancel() }() // the stream ended: stop posting
		b := body(s.client, s.key)
		for ctx.Err() == nil {
			ran, err := t.postOps(ctx, client, b)
			if err != nil {
				return // the stream is gone (404), or ctx ended
			}
			st.Messages.Add(int64(ran))
			st.Bytes.Add(int64(len(b)))
		}
	})
}

// stream is an event stream an attacker reads, and the client id and
// key its connected event gave.
type stream struct {
	net.Conn
	r           *bufio.Reader
	client, key string
}

// openStream opens an event stream with the target's query and reads
// its connected event.
func (t *Target) openStream(ctx context.Context) (*stream, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*stream, error) { conn.Close(); return nil, err }
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET /events?%s HTTP/1.1\r\nHost: pushgate\r\n\r\n", t.Query); err != nil {
		return fail(err)
	}
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return fail(err)
	}
	if resp.StatusCode != http.StatusOK {
		return fail(fmt.Errorf("GET /events: %s", resp.Status))
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return fail(err)
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var c struct{ Type, Client, Key string }
		if json.Unmarshal([]byte(data), &c) == nil && c.Type == "connected" {
			_ = conn.SetDeadline(time.Time{})
			return &stream{conn, r, c.Client, c.Key}, nil
		}
	}
}

// drain reads the stream to its end, counting its bytes and its close
// event's code and reason.
func (s *stream) drain(st *Stats) {
	const closeEvent = `data: {"type":"close","code":`
	for {
		line, err := s.r.ReadSlice('\n')
		st.Received.Add(int64(len(line)))
		if rest, ok := bytes.CutPrefix(line, []byte(closeEvent)); ok {
			digits, _, _ := bytes.Cut(rest, []byte(","))
			code, _ := strconv.Atoi(string(digits))
			var ev struct{ Reason string }
			_ = json.Unmarshal(bytes.TrimPrefix(line, []byte("data: ")), &ev)
			st.closed(code, ev.Reason)
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

// postOps posts body to the target's commands endpoint and returns how
// many ops the gateway ran; an error when the stream is gone.
func (t *Target) postOps(ctx context.Context, client *http.Client, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+t.Addr+"/events/commands", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "text/plain")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var a struct{ Ran int }
	_ = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&a)
	switch resp.StatusCode {
	case http.StatusOK, http.StatusTooManyRequests:
		return a.Ran, nil
	}
	return 0, fmt.Errorf("POST /events/commands: %s", resp.Status)
}
