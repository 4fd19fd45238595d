package session_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pushgate/pushgate/auth"
	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/internal/ssetest"
	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/session"
)

// stream opens an event stream with the query and extra header lines.
func (g *gateway) stream(t testing.TB, query string, header ...string) *stream {
	t.Helper()
	s := ssetest.MustOpen(t, g.addr, "/events"+query, header...)
	m, e := s.ExpectMsg("connected", "")
	if m.Client == "" || m.Key == "" || e.HasID {
		t.Fatalf("first event %s (id %q)", m.Raw, e.LastEventID)
	}
	return &stream{Stream: s, client: m.Client, key: m.Key}
}

// stream is an event stream past its connected event, which named its
// client id and key.
type stream struct {
	*ssetest.Stream
	client, key string
}

// position is what an event id says of one channel.
func position(t *testing.T, id, channel string) (epoch string, offset uint64) {
	t.Helper()
	pos, err := protocol.ParseEventID(id)
	if err != nil {
		t.Fatalf("event id %q: %v", id, err)
	}
	for _, p := range pos {
		if p.Channel == channel {
			return p.Epoch, p.Offset
		}
	}
	t.Fatalf("event id %q names no %s", id, channel)
	return "", 0
}

// TestStreamEvents: a bare stream gets the same envelopes as a WebSocket,
// each message with an id naming its position in every channel.
func TestStreamEvents(t *testing.T) {
	g := start(t, options{})
	s := g.stream(t, "?channels=news,sport")
	news, e := s.ExpectMsg("subscribed", "")
	if news.Channel != "news" || news.Offset != 0 || news.Recovered || !e.HasID || e.LastEventID != "news,"+news.Epoch+",0" {
		t.Fatalf("subscribed %s, id %q", news.Raw, e.LastEventID)
	}
	sport, _ := s.ExpectMsg("subscribed", "")
	for i := 1; i <= 3; i++ {
		if _, err := g.hub.Publish(context.Background(), "news", fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := g.hub.Publish(context.Background(), "sport", []byte(`"goal"`)); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		m, e := s.ExpectMsg("message", "")
		if m.Channel != "news" || m.Offset != uint64(i) || string(m.Data) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("message %s", m.Raw)
		}
		if want := fmt.Sprintf("news,%s,%d;sport,%s,0", news.Epoch, i, sport.Epoch); e.LastEventID != want || !e.HasID {
			t.Fatalf("id %q, want %q", e.LastEventID, want)
		}
	}
	m, e := s.ExpectMsg("message", "")
	if want := fmt.Sprintf("news,%s,3;sport,%s,1", news.Epoch, sport.Epoch); m.Channel != "sport" || e.LastEventID != want {
		t.Fatalf("message %s id %q, want %q", m.Raw, e.LastEventID, want)
	}
}

// TestStreamRecoveryAcrossReconnects: a stream cut again and again while
// a publisher runs comes back each time with the Last-Event-ID a browser
// sends, and ends with every offset exactly once, in order.
func TestStreamRecoveryAcrossReconnects(t *testing.T) {
	g := start(t, options{hub: broadcast.Config{HistorySize: 100000, HistoryChannelMaxBytes: 1 << 30, HistoryMaxBytes: 1 << 30}})
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var published atomic.Uint64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			res, err := g.hub.Publish(ctx, "feed", fmt.Append(nil, i))
			if err != nil && ctx.Err() == nil {
				t.Error(err)
				return
			}
			published.Store(res.Offset)
		}
	}()
	var last uint64
	id := ""
	for round := range 8 {
		var s *stream
		if round == 0 {
			s = g.stream(t, "?channels=feed")
		} else {
			s = g.stream(t, "?channels=feed", "Last-Event-ID: "+id)
		}
		sub, e := s.ExpectMsg("subscribed", "")
		if round > 0 && (!sub.Recovered || e.LastEventID != id) {
			t.Fatalf("round %d: %s, id %q after %q", round, sub.Raw, e.LastEventID, id)
		}
		id = e.LastEventID
		if round == 0 {
			last = sub.Offset // the publisher began first
		}
		for target := sub.Offset + 50; last < target; {
			m, e := s.ExpectMsg("message", "")
			if m.Offset != last+1 {
				t.Fatalf("round %d: offset %d after %d", round, m.Offset, last)
			}
			last, id = m.Offset, e.LastEventID
			if _, off := position(t, id, "feed"); off != last {
				t.Fatalf("round %d: message %d with id %q", round, last, id)
			}
		}
		s.Conn.Close() // cut mid-stream: events may be in flight
	}
	stop()
	wg.Wait()
	t.Logf("8 reconnects, every offset through %d once (%d published)", last, published.Load())
}

// TestStreamCannotRecover: when history no longer reaches back, or the
// epoch is another, the stream is told recovered:false and gets what
// history holds, its id moving with that replay.
func TestStreamCannotRecover(t *testing.T) {
	g := start(t, options{hub: broadcast.Config{HistorySize: 3}})
	s := g.stream(t, "?channels=news")
	sub, _ := s.ExpectMsg("subscribed", "")
	publish := func(n int) {
		for range n {
			if _, err := g.hub.Publish(context.Background(), "news", []byte(`1`)); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(2)
	s.ExpectMsg("message", "")
	_, e := s.ExpectMsg("message", "")
	s.Conn.Close()
	publish(8) // offsets 3..10; history keeps 8..10

	for _, c := range []struct{ name, id string }{
		{"history gone", e.LastEventID},
		{"another epoch", "news,0000000000000000-9,2"},
	} {
		s = g.stream(t, "?channels=news", "Last-Event-ID: "+c.id)
		m, e := s.ExpectMsg("subscribed", "")
		if m.Recovered || m.Offset != 10 || m.Epoch != sub.Epoch || e.LastEventID != "news,"+sub.Epoch+",0" {
			t.Fatalf("%s: %s, id %q", c.name, m.Raw, e.LastEventID)
		}
		for off := uint64(8); off <= 10; off++ {
			m, e := s.ExpectMsg("message", "")
			if m.Offset != off || e.LastEventID != fmt.Sprintf("news,%s,%d", sub.Epoch, off) {
				t.Fatalf("%s: replay %s, id %q", c.name, m.Raw, e.LastEventID)
			}
		}
		s.Conn.Close()
	}

	// An id the gateway did not write: an error, and a plain subscribe.
	s = g.stream(t, "?channels=news", "Last-Event-ID: 42")
	if m, _ := s.ExpectMsg("error", "bad_request"); !strings.Contains(m.Message, "Last-Event-ID") {
		t.Fatalf("error %s", m.Raw)
	}
	if m, _ := s.ExpectMsg("subscribed", ""); m.Recovered || m.Offset != 10 {
		t.Fatalf("subscribed %s", m.Raw)
	}
	// last_event_id in the query, for clients that cannot set the header.
	s = g.stream(t, "?channels=news&last_event_id=news,"+sub.Epoch+",9")
	if m, _ := s.ExpectMsg("subscribed", ""); !m.Recovered {
		t.Fatalf("subscribed %s", m.Raw)
	}
	if m, _ := s.ExpectMsg("message", ""); m.Offset != 10 {
		t.Fatalf("replay %s", m.Raw)
	}
}

// TestStreamPermissions: a stream's token (query or header) grants
// exactly what it grants a WebSocket, its user's personal channel
// included, recovered from the id like the others.
func TestStreamPermissions(t *testing.T) {
	v, err := auth.NewVerifier(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	g := start(t, options{verifier: v})
	tok := token(t, secret, jwt.MapClaims{"sub": "alice", "channels": []string{"news"}})
	if s, err := ssetest.Open(t, g.addr, "/events?channels=news"); err != nil || s.Resp.StatusCode != 401 {
		t.Fatalf("no token: %v %v", s.Resp.Status, err)
	}
	s := g.stream(t, "?channels=news,secret,%23bob&token="+tok)
	personal, _ := s.ExpectMsg("subscribed", "")
	if personal.Channel != "#alice" {
		t.Fatalf("first %s", personal.Raw)
	}
	s.ExpectMsg("subscribed", "")
	for _, ch := range []string{"secret", "#bob"} {
		if m, _ := s.ExpectMsg("error", "forbidden"); m.Channel != ch {
			t.Fatalf("refusal %s", m.Raw)
		}
	}
	if _, err := g.hub.Publish(context.Background(), "#alice", []byte(`"for alice"`)); err != nil {
		t.Fatal(err)
	}
	m, e := s.ExpectMsg("message", "")
	if m.Channel != "#alice" || string(m.Data) != `"for alice"` {
		t.Fatalf("personal message %s", m.Raw)
	}
	s.Conn.Close()
	if _, err := g.hub.Publish(context.Background(), "#alice", []byte(`"missed"`)); err != nil {
		t.Fatal(err)
	}
	s = g.stream(t, "?channels=news", "Authorization: Bearer "+tok, "Last-Event-ID: "+e.LastEventID)
	if m, _ := s.ExpectMsg("subscribed", ""); m.Channel != "#alice" || !m.Recovered {
		t.Fatalf("personal channel %s", m.Raw)
	}
	m, e = s.ExpectMsg("message", "")
	if string(m.Data) != `"missed"` {
		t.Fatalf("recovered %s", m.Raw)
	}
	news, _ := s.ExpectMsg("subscribed", "")
	// A channel the server unsubscribes leaves the id. The first stream,
	// closed by the client, must be gone first: it would be counted.
	wstest.Eventually(t, "one open connection", func() bool { return testutil.ToFloat64(g.m.ConnectionsOpen) == 1 })
	if n, err := g.sessions.Unsubscribe(context.Background(), session.Target{User: "alice"}, "news"); n != 1 || err != nil {
		t.Fatalf("the server's unsubscribe: %d %v", n, err)
	}
	m, e2 := s.ExpectMsg("unsubscribed", "")
	epoch, off := position(t, e.LastEventID, "#alice")
	if want := fmt.Sprintf("#alice,%s,%d", epoch, off); m.Channel != "news" || e2.LastEventID != want || news.Channel != "news" {
		t.Fatalf("%s id %q, want %q", m.Raw, e2.LastEventID, want)
	}
}

// TestStreamClosedByServer: a stream's token expiring and the backend's
// disconnect end it as they end a WebSocket, with a close event carrying
// the code a WebSocket would get.
func TestStreamClosedByServer(t *testing.T) {
	g := startAuth(t, "")
	exp := wstest.ExpiresIn(time.Second)
	s := g.stream(t, "?token="+token(t, secret, jwt.MapClaims{"sub": "alice", "exp": exp}))
	s.ExpectMsg("subscribed", "")
	if e := s.Event(); e.Data != `{"type":"close","code":4001,"reason":"token expired"}` || e.HasID {
		t.Fatalf("close %v", e)
	}
	if now := time.Now().Unix(); now < exp {
		t.Fatalf("closed at %d, before the token's exp %d", now, exp)
	}

	s = g.stream(t, "?token="+token(t, secret, jwt.MapClaims{"sub": "bob"}))
	s.ExpectMsg("subscribed", "")
	if n, err := g.sessions.Disconnect(context.Background(), session.Target{User: "bob"}, false, "banned"); n != 1 || err != nil {
		t.Fatalf("disconnect: %d %v", n, err)
	}
	if e := s.Event(); e.Data != `{"type":"close","code":4003,"reason":"banned"}` {
		t.Fatalf("close %v", e)
	}
	if _, err := s.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the close event: %v, want the end of the stream", err)
	}
}

// TestStreamCommandRecovery: a subscribe with a position that a stream's
// client sends by POST (Handler.Command) recovers as one in its query
// does: its subscribed event's id names where the client was, not the
// channel's head, so a stream cut during the replay resumes within it;
// a refused one leaves the id as it was.
func TestStreamCommandRecovery(t *testing.T) {
	g := start(t, options{})
	for i := range 3 {
		g.publish(t, "feed", fmt.Sprint(i))
	}
	epoch := g.hub.History("feed", 0).Epoch
	s := g.stream(t, "?channels=news")
	s.ExpectMsg("subscribed", "")
	ops := []json.RawMessage{json.RawMessage(fmt.Sprintf(`{"op":"subscribe","channel":"feed","since":1,"epoch":%q}`, epoch))}
	if n, err := g.sessions.Command(context.Background(), s.client, s.key, ops); n != 1 || err != nil {
		t.Fatalf("command: %d %v", n, err)
	}
	sub, e := s.ExpectMsg("subscribed", "")
	if epochOf, off := position(t, e.LastEventID, "feed"); !sub.Recovered || epochOf != epoch || off != 1 {
		t.Fatalf("subscribed %s, id %q: want recovered, feed at 1", sub.Raw, e.LastEventID)
	}
	for want := uint64(2); want <= 3; want++ {
		m, e := s.ExpectMsg("message", "")
		if _, off := position(t, e.LastEventID, "feed"); m.Offset != want || off != want {
			t.Fatalf("message %s, id %q: want offset %d", m.Raw, e.LastEventID, want)
		}
	}
	// Asked again from 0: refused (already subscribed), the id unmoved.
	ops[0] = json.RawMessage(fmt.Sprintf(`{"op":"subscribe","channel":"feed","since":0,"epoch":%q}`, epoch))
	if _, err := g.sessions.Command(context.Background(), s.client, s.key, ops); err != nil {
		t.Fatal(err)
	}
	s.ExpectMsg("error", "already_subscribed")
	g.publish(t, "feed", "3")
	if m, e := s.ExpectMsg("message", ""); m.Offset != 4 || !strings.Contains(e.LastEventID, "feed,"+epoch+",4") {
		t.Fatalf("message %s, id %q", m.Raw, e.LastEventID)
	}
}

// TestStreamGzip: a client that accepts gzip gets its stream gzip-encoded
// (read here inflating as it goes, as a browser does): large events
// compressed, small ones and ids stored, the same envelopes and ids as a
// plain stream, recovery included; one that does not, or refuses it with
// q=0, gets it plain.
func TestStreamGzip(t *testing.T) {
	g := start(t, options{tune: func(c *server.Config) { c.EventsGzip = true }})
	s := g.stream(t, "?channels=news", "Accept-Encoding: br, gzip;q=0.8")
	if ce := s.Resp.Header.Get("Content-Encoding"); ce != "gzip" {
		t.Fatalf("Content-Encoding %q", ce)
	}
	sub, _ := s.ExpectMsg("subscribed", "")
	big := `"` + strings.Repeat("compressible text ", 200) + `"`
	g.publish(t, "news", big)
	g.publish(t, "news", `"small"`)
	for i, want := range []string{big, `"small"`} {
		m, e := s.ExpectMsg("message", "")
		if string(m.Data) != want || e.LastEventID != fmt.Sprintf("news,%s,%d", sub.Epoch, i+1) {
			t.Fatalf("message %.60s id %q", m.Raw, e.LastEventID)
		}
	}
	s.Conn.Close()
	g.publish(t, "news", big)
	s = g.stream(t, "?channels=news", "Accept-Encoding: gzip", "Last-Event-ID: news,"+sub.Epoch+",2")
	if m, _ := s.ExpectMsg("subscribed", ""); !m.Recovered {
		t.Fatalf("subscribed %s", m.Raw)
	}
	if m, e := s.ExpectMsg("message", ""); m.Offset != 3 || string(m.Data) != big || e.LastEventID != "news,"+sub.Epoch+",3" {
		t.Fatalf("recovered %.60s id %q", m.Raw, e.LastEventID)
	}
	for _, accept := range []string{"X-No-Accept-Encoding: 1", "Accept-Encoding: gzip;q=0", "Accept-Encoding: deflate"} {
		s := g.stream(t, "?channels=news", accept)
		if ce := s.Resp.Header.Get("Content-Encoding"); ce != "" {
			t.Errorf("%q: Content-Encoding %q", accept, ce)
		}
		s.ExpectMsg("subscribed", "")
	}
}
