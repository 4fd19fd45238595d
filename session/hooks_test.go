package session_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pushgate/pushgate/auth"
	"github.com/pushgate/pushgate/internal/ssetest"
	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/metrics"
	"github.com/pushgate/pushgate/proxy"
	"github.com/pushgate/pushgate/server"
)

// backend is a real HTTP server standing for the app's backend: answer
// decides each call, and every request's body is recorded in order.
type backend struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	calls  chan []byte // each body, as it comes
}

func newBackend(t *testing.T, answer func(w http.ResponseWriter, body []byte)) *backend {
	t.Helper()
	b := &backend{calls: make(chan []byte, 4096)}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("backend got %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
		}
		b.mu.Lock()
		b.bodies = append(b.bodies, body)
		b.mu.Unlock()
		b.calls <- body
		answer(w, body)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.bodies)
}

// next decodes the next call's body into v.
func (b *backend) next(t *testing.T, v any) {
	t.Helper()
	select {
	case body := <-b.calls:
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("backend got %q: %v", body, err)
		}
	case <-time.After(wstest.Timeout):
		t.Fatal("the backend was not called")
	}
}

func answerJSON(status int, v string) func(http.ResponseWriter, []byte) {
	return func(w http.ResponseWriter, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, v)
	}
}

// opener closes gate, what a hung backend's handlers wait on, once: when
// called, or at the end of the test, before the backend's Close waits for
// its handlers. Call it after newBackend.
func opener(t *testing.T, gate chan struct{}) (open func()) {
	var once sync.Once
	open = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open)
	return open
}

// signal notes an event on ch (buffered) without ever blocking: a
// handler that blocked would hold the backend's Close.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// recv waits for an event on ch, or fails the test.
func recv(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wstest.Timeout):
		t.Fatalf("no %s", what)
	}
}

func connector(t *testing.T, url string, m *metrics.Proxy, tune ...func(*proxy.Config)) *proxy.Connector {
	t.Helper()
	cfg := proxy.Config{URL: url, Metrics: m, Timeout: time.Second}
	for _, f := range tune {
		f(&cfg)
	}
	k, err := proxy.NewConnector(cfg, []string{"X-Tenant"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k
}

// upgrade sends an upgrade for path with extra header lines and returns
// the answer's status and body.
func (g *gateway) upgrade(t *testing.T, path string, extra ...string) (*wstest.Client, int, string) {
	t.Helper()
	c := wstest.Connect(t, g.addr)
	c.Write([]byte(wstest.UpgradeRequest(path, append([]string{"Sec-WebSocket-Protocol: pushgate.v1"}, extra...)...)))
	resp := c.Response()
	body, _ := io.ReadAll(resp.Body)
	return c, resp.StatusCode, string(body)
}

// TestConnectProxyAdmits: a cookie-only client is admitted with the claims
// the backend answers, which the backend was asked with the request's
// headers, path, query and the client id the connection then has.
func TestConnectProxyAdmits(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, body []byte) {
		var req proxy.ConnectRequest
		json.Unmarshal(body, &req)
		if req.Headers["Cookie"] != "sid=alice-session" {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"message":"no session"}}`)
			return
		}
		io.WriteString(w, `{"user":"alice","channels":["news"],"publish":["news"],"info":{"name":"Alice"}}`)
	})
	g := start(t, options{connect: connector(t, be.URL, nil)})

	s := g.stream(t, "?channels=news", "Cookie: sid=alice-session", "User-Agent: test-agent/1", "X-Forwarded-For: 10.0.0.7", "X-Tenant: acme", "X-Other: no")
	var req proxy.ConnectRequest
	be.next(t, &req)
	if host, _, err := net.SplitHostPort(req.RemoteAddr); err != nil || host != "127.0.0.1" {
		t.Fatalf("remote_addr %q, want the test's 127.0.0.1:port", req.RemoteAddr)
	}
	want := proxy.ConnectRequest{Client: s.client, Transport: "sse", Path: "/events", Query: "channels=news", RemoteAddr: req.RemoteAddr,
		Headers: map[string]string{"Cookie": "sid=alice-session", "User-Agent": "test-agent/1", "X-Forwarded-For": "10.0.0.7", "X-Tenant": "acme"}}
	if fmt.Sprint(req) != fmt.Sprint(want) {
		t.Fatalf("backend asked %+v\nwant %+v", req, want)
	}
	// The claims: the personal channel, then the granted one.
	if m, _ := s.ExpectMsg("subscribed", ""); m.Channel != "#alice" {
		t.Fatalf("first subscription %s, want #alice", m.Raw)
	}
	if m, _ := s.ExpectMsg("subscribed", ""); m.Channel != "news" {
		t.Fatalf("second subscription %s, want news", m.Raw)
	}

	c := g.dial(t, "?channels=secret", "Cookie: sid=alice-session")
	be.next(t, &req)
	if req.Transport != "websocket" || req.Path != "/ws" || req.Query != "channels=secret" || !strings.HasPrefix(req.Client, g.sessions.Node()+".") {
		t.Fatalf("backend asked %+v", req)
	}
	if m := c.ExpectMsg("subscribed", ""); m.Channel != "#alice" {
		t.Fatalf("got %s, want #alice subscribed", m.Raw)
	}
	if m := c.ExpectMsg("error", "forbidden"); m.Channel != "secret" {
		t.Fatalf("got %s, want secret forbidden", m.Raw)
	}
	c.Send(`{"op":"publish","channel":"news","data":{"from":"alice"}}`)
	m, _ := s.ExpectMsg("message", "")
	if string(m.Data) != `{"from":"alice"}` {
		t.Fatalf("stream got %s", m.Raw)
	}

	// No cookie: the backend's 401 and message.
	_, status, body := g.upgrade(t, "/ws")
	if status != http.StatusUnauthorized || strings.TrimSpace(body) != "no session" {
		t.Fatalf("without the cookie: %d %q, want 401 no session", status, body)
	}
}

// TestConnectProxyFailures: the backend's 403 is relayed; a 5xx, a
// timeout and a malformed answer refuse with 503, each counted; after
// five failures in a row the breaker fails connections at once, without
// calling the backend, until it answers again.
func TestConnectProxyFailures(t *testing.T) {
	var mu sync.Mutex
	mode := "forbid"
	release := make(chan struct{})
	be := newBackend(t, func(w http.ResponseWriter, _ []byte) {
		mu.Lock()
		m := mode
		mu.Unlock()
		switch m {
		case "forbid":
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, "banned\n")
		case "fail":
			w.WriteHeader(http.StatusBadGateway)
		case "hang":
			<-release
		case "garbage":
			io.WriteString(w, `{"user":"not a valid user!"}`)
		case "ok":
			io.WriteString(w, `{"user":"bob","expire_at":`+fmt.Sprint(time.Now().Add(time.Hour).Unix())+`}`)
		}
	})
	defer close(release)
	pm := metrics.NewProxy(nil)
	g := start(t, options{connect: connector(t, be.URL, pm, func(c *proxy.Config) {
		c.Timeout = 300 * time.Millisecond
		c.BreakFor = 200 * time.Millisecond
	})})
	set := func(m string) { mu.Lock(); mode = m; mu.Unlock() }
	results := pm.For("connect").Results
	count := func(r metrics.ProxyResult) int { return int(testutil.ToFloat64(results[r])) }

	if _, status, body := g.upgrade(t, "/ws"); status != http.StatusForbidden || strings.TrimSpace(body) != "banned" {
		t.Fatalf("403: got %d %q", status, body)
	}
	set("fail")
	if _, status, _ := g.upgrade(t, "/ws"); status != http.StatusServiceUnavailable {
		t.Fatalf("5xx: got %d, want 503", status)
	}
	set("hang")
	if _, status, _ := g.upgrade(t, "/ws"); status != http.StatusServiceUnavailable {
		t.Fatalf("timeout: got %d, want 503", status)
	}
	set("garbage")
	if _, status, _ := g.upgrade(t, "/ws"); status != http.StatusServiceUnavailable {
		t.Fatalf("malformed answer: got %d, want 503", status)
	}
	if ok, errs, timeouts := count(metrics.ProxyOK), count(metrics.ProxyError), count(metrics.ProxyTimeout); ok != 1 || errs != 2 || timeouts != 1 {
		t.Fatalf("results ok %d error %d timeout %d, want 1 2 1", ok, errs, timeouts)
	}
	// Two more failures open the circuit: the next ones are not sent.
	set("fail")
	for range 2 {
		g.upgrade(t, "/ws")
	}
	called := be.count()
	for range 10 {
		if _, status, _ := g.upgrade(t, "/ws"); status != http.StatusServiceUnavailable {
			t.Fatalf("circuit open: got %d, want 503", status)
		}
	}
	if be.count() != called || count(metrics.ProxyCircuitOpen) != 10 || testutil.ToFloat64(pm.For("connect").Open) != 1 {
		t.Fatalf("circuit open: backend called %d more times, circuit_open %d, open gauge %v",
			be.count()-called, count(metrics.ProxyCircuitOpen), testutil.ToFloat64(pm.For("connect").Open))
	}
	// The backend is back: once the breaker tries it, connections open.
	set("ok")
	wstest.Eventually(t, "a connection admitted after the backend came back", func() bool {
		c, status, _ := g.upgrade(t, "/ws")
		c.Conn.Close()
		return status == http.StatusSwitchingProtocols
	})
	if testutil.ToFloat64(pm.For("connect").Open) != 0 {
		t.Fatal("the circuit is still marked open")
	}
}

// TestConnectProxyBehindTokens: a valid token admits without asking the
// backend; an invalid one, or none, is the backend's to decide.
func TestConnectProxyBehindTokens(t *testing.T) {
	be := newBackend(t, answerJSON(http.StatusOK, `{"user":"carol","channels":["news"]}`))
	v, err := auth.NewVerifier(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	g := start(t, options{verifier: v, connect: connector(t, be.URL, nil)})
	c := g.dial(t, "?token="+token(t, secret, jwt.MapClaims{"sub": "dave", "exp": wstest.ExpiresIn(time.Hour)}))
	if m := c.ExpectMsg("subscribed", ""); m.Channel != "#dave" {
		t.Fatalf("token: got %s", m.Raw)
	}
	c2 := g.dial(t, "?token=not-a-token")
	if m := c2.ExpectMsg("subscribed", ""); m.Channel != "#carol" {
		t.Fatalf("bad token, proxy: got %s", m.Raw)
	}
	if n := be.count(); n != 1 {
		t.Fatalf("backend called %d times, want 1 (the bad token's)", n)
	}
}

// TestConnectProxyRenewal: claims with expire_at are renewed through the
// backend when they expire; a backend that fails to answer is asked
// again; when it refuses, the connection is closed with 4001.
func TestConnectProxyRenewal(t *testing.T) {
	var mu sync.Mutex
	renewals := 0
	be := newBackend(t, func(w http.ResponseWriter, body []byte) {
		var req proxy.ConnectRequest
		json.Unmarshal(body, &req)
		mu.Lock()
		defer mu.Unlock()
		if req.Refresh {
			renewals++
			switch renewals {
			case 2: // a hiccup: asked again
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			case 3:
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
		}
		fmt.Fprintf(w, `{"user":"erin","expire_at":%d}`, time.Now().Add(time.Second).Unix()+1)
	})
	g := start(t, options{connect: connector(t, be.URL, nil), tune: func(c *server.Config) { c.PingInterval = 200 * time.Millisecond }})
	c := g.dial(t, "")
	var req proxy.ConnectRequest
	be.next(t, &req)
	client := req.Client
	c.ExpectMsg("subscribed", "")
	be.next(t, &req)
	if !req.Refresh || req.Client != client || req.User != "erin" || req.Headers != nil {
		t.Fatalf("renewal asked %+v, want refresh of %s for erin", req, client)
	}
	for _, n := range []string{"second", "third"} {
		be.next(t, &req)
		if !req.Refresh {
			t.Fatalf("%s renewal asked %+v", n, req)
		}
	}
	c.ExpectClose(4001)
}

// TestStreamConnectProxy: an event stream is admitted and refused by the
// connect proxy as a WebSocket is.
func TestStreamConnectProxy(t *testing.T) {
	be := newBackend(t, answerJSON(http.StatusUnauthorized, `{"error":{"message":"log in first"}}`))
	g := start(t, options{connect: connector(t, be.URL, nil)})
	s, err := ssetest.Open(t, g.addr, "/events?channels=news")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(s.Resp.Body)
	if s.Resp.StatusCode != http.StatusUnauthorized || strings.TrimSpace(string(body)) != "log in first" {
		t.Fatalf("got %s %q, want 401 log in first", s.Resp.Status, body)
	}
}

func ops(t *testing.T, url string, publish bool, tune ...func(*proxy.Config)) *proxy.Ops {
	t.Helper()
	cfg := proxy.Config{URL: url, Timeout: time.Second}
	for _, f := range tune {
		f(&cfg)
	}
	newOps := proxy.NewSubscriber
	if publish {
		newOps = proxy.NewPublisher
	}
	o, err := newOps(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Client().Close)
	return o
}

// TestSubscribeProxy: a subscribe the claims do not grant is the
// backend's to allow or refuse (its code and message relayed); one they
// grant, or a personal channel, is not asked; a backend that cannot
// answer is an unavailable error. The ops sent behind one being decided
// are answered after it, in order.
func TestSubscribeProxy(t *testing.T) {
	release := make(chan struct{})
	be := newBackend(t, func(w http.ResponseWriter, body []byte) {
		var req proxy.SubscribeRequest
		json.Unmarshal(body, &req)
		switch req.Channel {
		case "slow:open":
			<-release
			io.WriteString(w, `{}`)
		case "vip":
			io.WriteString(w, `{"error":{"code":"not_a_member","message":"members only"}}`)
		case "weird":
			io.WriteString(w, `{"error":{"code":"Bad Code!","message":"\u0000"}}`)
		case "broken":
			w.WriteHeader(http.StatusInternalServerError)
		default:
			io.WriteString(w, `{}`)
		}
	})
	open := opener(t, release)
	be2 := newBackend(t, answerJSON(http.StatusOK, `{"user":"frank","channels":["news"],"info":{"n":1}}`))
	g := start(t, options{connect: connector(t, be2.URL, nil), subscribeProxy: ops(t, be.URL, false)})
	c := g.dial(t, "")
	c.ExpectMsg("subscribed", "") // #frank

	c.Send(`{"op":"subscribe","channel":"slow:open"}`)
	var req proxy.SubscribeRequest
	be.next(t, &req)
	if req.Channel != "slow:open" || req.User != "frank" || string(req.Info) != `{"n":1}` || !strings.HasPrefix(req.Client, g.sessions.Node()+".") {
		t.Fatalf("backend asked %+v", req)
	}
	// Sent while the backend decides: answered after it, in order.
	c.Send(`{"op":"subscribe","channel":"news"}`)
	c.Send(`{"op":"subscribe","channel":"vip"}`)
	c.Send(`{"op":"subscribe","channel":"#grace"}`)
	c.Send(`{"op":"subscribe","channel":"weird"}`)
	c.Send(`{"op":"subscribe","channel":"broken"}`)
	open()
	for _, want := range []struct{ typ, code, channel, message string }{
		{"subscribed", "", "slow:open", ""},
		{"subscribed", "", "news", ""},
		{"error", "not_a_member", "vip", "members only"},
		{"error", "forbidden", "#grace", "not allowed to subscribe to this channel"},
		{"error", "forbidden", "weird", "not allowed to subscribe to this channel"},
		{"error", "unavailable", "broken", "the backend could not decide, try again"},
	} {
		m := c.ExpectMsg(want.typ, want.code)
		if m.Channel != want.channel || m.Message != want.message {
			t.Fatalf("got %s, want %+v", m.Raw, want)
		}
	}
	// Asked: slow:open, vip, weird, broken — not news (granted) nor #grace.
	for _, want := range []string{"vip", "weird", "broken"} {
		be.next(t, &req)
		if req.Channel != want {
			t.Fatalf("backend asked about %s, want %s", req.Channel, want)
		}
	}
	if n := be.count(); n != 4 {
		t.Fatalf("backend asked %d times, want 4", n)
	}
	g.publish(t, "slow:open", `"hello"`)
	if m := c.ExpectMsg("message", ""); m.Channel != "slow:open" || string(m.Data) != `"hello"` {
		t.Fatalf("got %s", m.Raw)
	}
}

// TestPublishProxy: every client publish is the backend's to allow,
// refuse or rewrite; subscribers get what it decided, in the order the
// client sent them, however long each decision took.
func TestPublishProxy(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, body []byte) {
		var req proxy.PublishRequest
		json.Unmarshal(body, &req)
		var data struct {
			N    int    `json:"n"`
			Text string `json:"text"`
		}
		json.Unmarshal(req.Data, &data)
		// Later publishes answered sooner: order must not follow answers.
		time.Sleep(time.Duration(20-data.N%20) * time.Millisecond)
		switch {
		case data.Text == "spam":
			io.WriteString(w, `{"error":{"code":"spam","message":"no spam"}}`)
		case data.Text == "darn":
			fmt.Fprintf(w, `{"data":{"n":%d,"text":"****","by":%q}}`, data.N, req.User)
		case !req.Granted:
			w.WriteHeader(http.StatusForbidden)
		default:
			io.WriteString(w, `{}`)
		}
	})
	g := start(t, options{publish: "room", publishProxy: ops(t, be.URL, true)})
	sub := g.dial(t, "?channels=room")
	sub.ExpectMsg("subscribed", "")
	pub := g.dial(t, "")
	const n = 40
	for i := 1; i <= n; i++ {
		text := "hi"
		switch i % 10 {
		case 3:
			text = "spam"
		case 7:
			text = "darn"
		}
		pub.Send(fmt.Sprintf(`{"op":"publish","channel":"room","data":{"n":%d,"text":%q}}`, i, text))
	}
	pub.Send(`{"op":"publish","channel":"closed","data":1}`)
	for i := 1; i <= n; i++ {
		if i%10 == 3 {
			continue
		}
		m := sub.ExpectMsg("message", "")
		want := fmt.Sprintf(`{"n":%d,"text":"hi"}`, i)
		if i%10 == 7 {
			want = fmt.Sprintf(`{"n":%d,"text":"****","by":""}`, i)
		}
		if string(m.Data) != want {
			t.Fatalf("subscriber got %s, want data %s", m.Raw, want)
		}
	}
	for i := 1; i <= n/10; i++ {
		if m := pub.ExpectMsg("error", "spam"); m.Message != "no spam" || m.Channel != "room" {
			t.Fatalf("publisher got %s", m.Raw)
		}
	}
	if m := pub.ExpectMsg("error", "forbidden"); m.Channel != "closed" {
		t.Fatalf("publisher got %s", m.Raw)
	}
}

// TestHeldOpsBound: a client that sends more ops than may wait behind a
// proxy call is closed with 1013; its held ops and its call to the
// backend are given up at once.
func TestHeldOpsBound(t *testing.T) {
	// The backend never answers; it tells when the gateway gives up its
	// request.
	asked, gaveUp := make(chan struct{}, 1), make(chan struct{}, 1)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // the server sees the client go only then
		signal(asked)
		<-r.Context().Done()
		signal(gaveUp)
	}))
	t.Cleanup(be.Close)
	pm := metrics.NewProxy(nil)
	o := ops(t, be.URL, true, func(c *proxy.Config) { c.Timeout = time.Minute })
	g := start(t, options{publishProxy: o, proxyMetrics: pm, tune: func(c *server.Config) { c.ClientMessageBurst = 1000 }})
	c := g.dial(t, "")
	c.Send(`{"op":"publish","channel":"room","data":0}`)
	recv(t, asked, "the backend asked")
	size := 0
	for i := 1; i <= 10; i++ {
		op := fmt.Sprintf(`{"op":"publish","channel":"room","data":%d}`, i)
		size += len(op)
		c.Send(op)
	}
	wstest.Eventually(t, "10 ops held, counted with their bytes", func() bool {
		return testutil.ToFloat64(pm.Held) == 10 && testutil.ToFloat64(pm.HeldBytes) == float64(size)
	})
	for i := 11; i <= 257; i++ {
		c.Send(fmt.Sprintf(`{"op":"publish","channel":"room","data":%d}`, i))
	}
	if reason := c.ExpectClose(1013); reason != "too many ops waiting for the backend" {
		t.Fatalf("closed with %q", reason)
	}
	// At once, not when the closing handshake ends (the client does not
	// answer the close): the held ops go, and so does the call.
	if held, bytes := testutil.ToFloat64(pm.Held), testutil.ToFloat64(pm.HeldBytes); held != 0 || bytes != 0 {
		t.Fatalf("%v ops (%v bytes) still held once the connection was closed", held, bytes)
	}
	recv(t, gaveUp, "the backend's request given up")
}

// TestSlowConnectProxy: while a hung backend holds every request slot of
// the connect proxy and every waiting place, further proxy connections are
// refused at once with 503 (busy), and a connection with a token upgrades
// without waiting for any of them.
func TestSlowConnectProxy(t *testing.T) {
	release := make(chan struct{})
	be := newBackend(t, func(w http.ResponseWriter, _ []byte) {
		<-release
		io.WriteString(w, `{"user":"gina"}`)
	})
	free := opener(t, release)
	v, err := auth.NewVerifier(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	pm := metrics.NewProxy(nil)
	k := connector(t, be.URL, pm, func(c *proxy.Config) {
		c.MaxInFlight, c.MaxWaiting, c.Timeout = 2, 2, 30*time.Second
	})
	g := start(t, options{verifier: v, connect: k})
	// Four connections take the two requests and the two waiting places.
	pending := make([]*wstest.Client, 4)
	for i := range pending {
		pending[i] = wstest.Connect(t, g.addr)
		pending[i].Write([]byte(wstest.UpgradeRequest("/ws", "Sec-WebSocket-Protocol: pushgate.v1")))
	}
	be.next(t, &proxy.ConnectRequest{})
	be.next(t, &proxy.ConnectRequest{})
	wstest.Eventually(t, "two connections waiting for a request slot", func() bool { return k.Client().Calls() == 4 })
	if _, status, body := g.upgrade(t, "/ws"); status != http.StatusServiceUnavailable {
		t.Fatalf("a fifth proxy connection: %d %q, want 503 at once", status, body)
	}
	if n := testutil.ToFloat64(pm.For("connect").Results[metrics.ProxyBusy]); n != 1 {
		t.Fatalf("busy counted %v times, want 1", n)
	}
	c := g.dial(t, "?token="+token(t, secret, jwt.MapClaims{"sub": "hank"}))
	if m := c.ExpectMsg("subscribed", ""); m.Channel != "#hank" {
		t.Fatalf("token connection got %s", m.Raw)
	}
	free()
	for _, p := range pending {
		if resp := p.Response(); resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("a waiting proxy connection got %s once the backend answered", resp.Status)
		}
	}
}
