package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/pushgate/pushgate/internal/proctest"
	"github.com/pushgate/pushgate/internal/ssetest"
	"github.com/pushgate/pushgate/internal/wstest"
)

// openStream opens an event stream on addr and reads its connected event.
func openStream(t *testing.T, addr, query string) (s *ssetest.Stream, client, key string) {
	t.Helper()
	s = ssetest.MustOpen(t, addr, "/events"+query)
	m, _ := s.ExpectMsg("connected", "")
	if m.Client == "" || m.Key == "" {
		t.Fatalf("connected %s", m.Raw)
	}
	return s, m.Client, m.Key
}

// commands posts ops for a stream to addr and returns the status and
// the answer's ran.
func commands(t *testing.T, addr, client, key string, ops ...string) (int, string) {
	t.Helper()
	body := fmt.Sprintf(`{"client":%q,"key":%q,"ops":[%s]}`, client, key, strings.Join(ops, ","))
	return call(t, "POST", "http://"+addr+"/events/commands", body, "")
}

// otherKey is key with its first character changed: not the stream's.
func otherKey(key string) string {
	if key[0] == 'x' {
		return "y" + key[1:]
	}
	return "x" + key[1:]
}

// ran decodes an answer's ran.
func ran(t *testing.T, body string) int {
	t.Helper()
	var a struct{ Ran *int }
	if err := json.Unmarshal([]byte(body), &a); err != nil || a.Ran == nil {
		t.Fatalf("answer %q: %v", body, err)
	}
	return *a.Ran
}

// TestStreamCommands: an event stream's client subscribes, publishes and
// asks presence by POST, and gets the replies on its stream, ids
// included; every refusal has its status, and a flood is refused at the
// stream's message rate, then closes the stream with 1008.
func TestStreamCommands(t *testing.T) {
	g := runGateway(t, proctest.FreeAddr(t), proctest.FreeAddr(t), "--client-publish", "chat:*", "--presence", "chat:*",
		"--client-message-rate", "5", "--client-message-burst", "5", "--allowed-origins", "https://app.example")
	s, client, key := openStream(t, g.addr, "")
	status, body := commands(t, g.addr, client, key,
		`{"op":"subscribe","channel":"chat:lobby"}`, `{"op":"publish","channel":"chat:lobby","data":{"text":"hi"}}`)
	if status != http.StatusOK || ran(t, body) != 2 {
		t.Fatalf("commands: %d %s", status, body)
	}
	sub, e := s.ExpectMsg("subscribed", "")
	if sub.Channel != "chat:lobby" || !e.HasID {
		t.Fatalf("subscribed %s (id %q)", sub.Raw, e.LastEventID)
	}
	for {
		m, e := s.Msg()
		if m.Type == "join" {
			continue // its own presence
		}
		if m.Type != "message" || string(m.Data) != `{"text":"hi"}` || e.LastEventID != fmt.Sprintf("chat:lobby,%s,1", sub.Epoch) {
			t.Fatalf("got %s (id %q)", m.Raw, e.LastEventID)
		}
		break
	}
	if status, body := commands(t, g.addr, client, key, `{"op":"presence","channel":"chat:lobby"}`); status != http.StatusOK {
		t.Fatalf("presence: %d %s", status, body)
	}
	if m, _ := s.ExpectMsg("presence", ""); !strings.Contains(string(m.Raw), client) {
		t.Fatalf("presence %s", m.Raw)
	}

	// Refusals. A WebSocket's client id is no stream's.
	ws, _ := wstest.Dial(t, g.addr, "/ws?channels=chat:room", "Sec-WebSocket-Protocol: pushgate.v1")
	ws.ExpectMsg("subscribed", "")
	var join struct{ Client string }
	if err := json.Unmarshal(ws.ExpectMsg("join", "").Raw, &join); err != nil {
		t.Fatal(err)
	}
	op := `{"op":"unsubscribe","channel":"chat:lobby"}`
	for _, c := range []struct {
		what, method, body, origin string
		status                     int
		code                       string
	}{
		{"GET", "GET", "", "", 405, "method_not_allowed"},
		{"malformed", "POST", `{"client":`, "", 400, "bad_request"},
		{"no ops", "POST", fmt.Sprintf(`{"client":%q,"key":%q,"ops":[]}`, client, key), "", 400, "bad_request"},
		{"too many ops", "POST", fmt.Sprintf(`{"client":%q,"key":%q,"ops":[%s]}`, client, key, strings.Repeat(op+",", 100)+op), "", 400, "bad_request"},
		{"too large", "POST", fmt.Sprintf(`{"client":%q,"key":%q,"ops":["%s"]}`, client, key, strings.Repeat("x", 70<<10)), "", 413, "too_large"},
		{"wrong key", "POST", fmt.Sprintf(`{"client":%q,"key":%q,"ops":[%s]}`, client, otherKey(key), op), "", 403, "forbidden"},
		{"no such client", "POST", fmt.Sprintf(`{"client":"nowhere.1","key":%q,"ops":[%s]}`, key, op), "", 404, "not_found"},
		{"a WebSocket", "POST", fmt.Sprintf(`{"client":%q,"key":%q,"ops":[%s]}`, join.Client, key, op), "", 404, "not_found"},
		{"another origin", "POST", fmt.Sprintf(`{"client":%q,"key":%q,"ops":[%s]}`, client, key, op), "https://evil.example", 403, "forbidden"},
	} {
		req, _ := http.NewRequest(c.method, "http://"+g.addr+"/events/commands", strings.NewReader(c.body))
		req.Header.Set("Content-Type", "text/plain")
		if c.origin != "" {
			req.Header.Set("Origin", c.origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var a struct{ Code string }
		err = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if resp.StatusCode != c.status || a.Code != c.code || err != nil {
			t.Errorf("%s: %d %q (%v), want %d %q", c.what, resp.StatusCode, a.Code, err, c.status, c.code)
		}
	}
	// An allowed page reads the answer.
	req, _ := http.NewRequest("POST", "http://"+g.addr+"/events/commands",
		strings.NewReader(fmt.Sprintf(`{"client":%q,"key":%q,"ops":[{"op":"subscribe","channel":"news"}]}`, client, key)))
	req.Header.Set("Origin", "https://app.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("allowed origin: %d %v", resp.StatusCode, resp.Header)
	}
	if m, _ := s.ExpectMsg("subscribed", ""); m.Channel != "news" {
		t.Fatalf("got %s", m.Raw)
	}

	// A flood: past the burst each op is dropped and answered on the
	// stream (10 in a row); the 11th closes it.
	flood := make([]string, 40)
	for i := range flood {
		flood[i] = fmt.Sprintf(`{"op":"publish","channel":"chat:lobby","data":%d}`, i)
	}
	status, body = commands(t, g.addr, client, key, flood...)
	if n := ran(t, body); status != http.StatusTooManyRequests || n < 1 || n > 10 {
		t.Fatalf("flood: %d %s", status, body)
	}
	published, limited := 0, 0
	for {
		e := s.Event()
		var m struct {
			Type string
			Code any // a close event's is a number
		}
		if err := json.Unmarshal([]byte(e.Data), &m); err != nil {
			t.Fatalf("event %q: %v", e.Data, err)
		}
		switch {
		case m.Type == "message":
			published++
		case m.Type == "error" && m.Code == "rate_limited":
			limited++
		case m.Type == "close":
			if e.Data != `{"type":"close","code":1008,"reason":"rate limit exceeded"}` || limited != 10 || published != ran(t, body) {
				t.Fatalf("closed %s after %d published, %d rate_limited", e.Data, published, limited)
			}
			return
		default:
			t.Fatalf("got %s", e.Data)
		}
	}
}

// TestClusterStreamCommands: two gateway processes on Debian's
// nats-server, no sticky sessions: a stream held by node A takes ops
// posted to node B, forwarded over NATS, with A's refusals passed back.
func TestClusterStreamCommands(t *testing.T) {
	_, natsURL := proctest.NATS(t)
	bin := proctest.Gateway(t)
	var addrs []string
	for range 2 {
		addr, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
		p := proctest.Start(t, "", bin, "--addr", addr, "--admin-addr", admin, "--broker", natsURL, "--client-publish", "chat:*")
		p.WaitHTTP(t, "http://"+admin+"/readyz", http.StatusOK)
		addrs = append(addrs, addr)
	}
	s, client, key := openStream(t, addrs[0], "")
	status, body := commands(t, addrs[1], client, key, `{"op":"subscribe","channel":"chat:lobby"}`)
	if status != http.StatusOK || ran(t, body) != 1 {
		t.Fatalf("through B: %d %s", status, body)
	}
	if m, _ := s.ExpectMsg("subscribed", ""); m.Channel != "chat:lobby" {
		t.Fatalf("got %s", m.Raw)
	}
	// A publish posted to B reaches the stream on A through the broker.
	if status, body := commands(t, addrs[1], client, key, `{"op":"publish","channel":"chat:lobby","data":"hi"}`); status != http.StatusOK {
		t.Fatalf("publish through B: %d %s", status, body)
	}
	// The channel's first publish gives it its epoch: a subscribed event
	// names it (recovered: nothing was missed) before the message.
	if m, _ := s.ExpectMsg("subscribed", ""); m.Epoch == "" || !m.Recovered {
		t.Fatalf("got %s", m.Raw)
	}
	if m, e := s.ExpectMsg("message", ""); string(m.Data) != `"hi"` || m.Offset != 1 || !strings.HasPrefix(e.LastEventID, "chat:lobby,") {
		t.Fatalf("got %s (id %q)", m.Raw, e.LastEventID)
	}
	if status, body := commands(t, addrs[1], client, otherKey(key), `{"op":"unsubscribe","channel":"chat:lobby"}`); status != http.StatusForbidden {
		t.Fatalf("wrong key through B: %d %s", status, body)
	}
	node, _, _ := strings.Cut(client, ".")
	if status, body := commands(t, addrs[1], node+".zz", key, `{"op":"unsubscribe","channel":"chat:lobby"}`); status != http.StatusNotFound {
		t.Fatalf("a closed stream through B: %d %s", status, body)
	}
	if status, body := commands(t, addrs[1], "gone.1", key, `{"op":"unsubscribe","channel":"chat:lobby"}`); status != http.StatusNotFound {
		t.Fatalf("a node that is not there: %d %s", status, body)
	}
}
