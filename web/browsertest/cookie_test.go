package browsertest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/pushgate/pushgate/internal/proctest"
	"github.com/pushgate/pushgate/internal/wstest"
)

// displayNames are the users the backend knows, with the names it gives
// them in its claims' info.
var displayNames = map[string]string{"alice": "Alice Liddell", "bob": "Bob Ross"}

// loginBackend is an app's backend on loopback: GET /login?user=alice
// logs the browser in with a session cookie, and POST /connect, the
// gateway's connect proxy, admits a connection that carries one. It
// records what the gateway asked it.
type loginBackend struct {
	addr string

	mu       sync.Mutex
	sessions map[string]string // sid -> user
	sids     map[string]string // user -> the sid it was given
	calls    []connectCall     // the connect proxy's questions, in order
}

// connectCall is one question of the connect proxy, as the backend read
// it from the JSON body (the schema of the README's "Backend hooks"),
// and its answer.
type connectCall struct {
	Client    string            `json:"client"`
	Transport string            `json:"transport"`
	Path      string            `json:"path"`
	Query     string            `json:"query"`
	Headers   map[string]string `json:"headers"`
	Status    int               `json:"-"` // what the backend answered
	User      string            `json:"-"` // whom it admitted, "" if none
}

// startBackend serves a loginBackend on a free loopback port until the
// test ends.
func startBackend(t *testing.T) *loginBackend {
	t.Helper()
	b := &loginBackend{sessions: map[string]string{}, sids: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", b.login)
	mux.HandleFunc("POST /connect", b.connect)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = ln.Addr().String()
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // http.ErrServerClosed once Close runs
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return b
}

// login starts a session for the user the query names.
func (b *loginBackend) login(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	name, ok := displayNames[user]
	if !ok {
		http.Error(w, "no such user", http.StatusNotFound)
		return
	}
	sid := rand.Text()
	b.mu.Lock()
	b.sessions[sid] = user
	b.sids[user] = sid
	b.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "sid", Value: sid, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, "<!doctype html><title>logged in</title><p id=\"who\">logged in as %s</p>\n", html.EscapeString(name))
}

// connect is the connect proxy: the session cookie the gateway forwards
// admits its user to the chat rooms; without one, 401.
func (b *loginBackend) connect(w http.ResponseWriter, r *http.Request) {
	var c connectCall
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&c); err != nil {
		http.Error(w, "not a connect request: "+err.Error(), http.StatusBadRequest)
		return
	}
	var sid string
	if cookies, err := http.ParseCookie(c.Headers["Cookie"]); err == nil {
		for _, k := range cookies {
			if k.Name == "sid" {
				sid = k.Value
			}
		}
	}
	b.mu.Lock()
	c.User = b.sessions[sid]
	c.Status = http.StatusOK
	if c.User == "" {
		c.Status = http.StatusUnauthorized
	}
	b.calls = append(b.calls, c)
	b.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(c.Status)
	if c.User == "" {
		_, _ = io.WriteString(w, `{"error":{"message":"log in first"}}`)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"user":     c.User,
		"channels": []string{"chat:*"},
		"publish":  []string{"chat:*"},
		"info":     map[string]string{"name": displayNames[c.User]},
	})
}

// asked returns the connect proxy's questions so far.
func (b *loginBackend) asked() []connectCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]connectCall(nil), b.calls...)
}

// sid returns the session id the backend gave user's browser.
func (b *loginBackend) sid(user string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sids[user]
}

// refusals is what a tab's browser saw of its refused connections: the
// errors of its WebSockets, and the statuses of its event streams.
type refusals struct {
	mu       sync.Mutex
	wsErrors []string
	streams  []int64
}

// watch records a tab's refused connections from now on.
func (f *refusals) watch(t *testing.T, tab context.Context) {
	t.Helper()
	err := chromedp.Listen(tab, func(ev any) {
		f.mu.Lock()
		defer f.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventWebSocketFrameError:
			f.wsErrors = append(f.wsErrors, e.ErrorMessage)
		case *network.EventResponseReceived:
			if strings.Contains(e.Response.URL, "/events?") {
				f.streams = append(f.streams, e.Response.Status)
			}
		}
	})
	if err != nil {
		t.Fatalf("listening to the tab: %v", err)
	}
}

// seen returns the refusals recorded so far.
func (f *refusals) seen() ([]string, []int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.wsErrors...), append([]int64(nil), f.streams...)
}

// node asks the gateway's admin API for its node name, its client ids'
// prefix.
func node(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/api/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var stats struct {
		Node string `json:"node"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&stats); err != nil || stats.Node == "" {
		t.Fatalf("/api/stats: node %q (%v)", stats.Node, err)
	}
	return stats.Node
}

// A browser with nothing but a session cookie logs in to the chat room
// through the connect proxy (--proxy-connect, no --jwt-secret). Before it
// logs in, its WebSocket upgrade and the event stream it falls back to
// are both refused with 401, and the page keeps reconnecting without
// joining. Once the backend's /login has set an HttpOnly cookie on
// 127.0.0.1, which the browser sends to the gateway on another port of
// the same host, the page joins as the backend's user, named by its
// info, with no token in the URL; a second user, in a browser context of
// its own, sees the first one's message and name. The backend was asked
// with the cookie it set, the page's Origin and User-Agent, and the
// client id the connection has.
func TestCookieLoginInBrowser(t *testing.T) {
	newTab := browser(t)
	b := startBackend(t)
	addr, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
	// No --client-publish: the backend's claims grant publishing.
	runGateway(t, addr, admin, "--proxy-connect", "http://"+b.addr+"/connect", "--presence", "chat:*")
	gateway := "http://" + addr
	join := func(who string, tab context.Context) {
		t.Helper()
		page(t, tab, who+" opens the chat",
			chromedp.Navigate(gateway+"/"),
			chromedp.WaitVisible(chromedp.CSS("#name")),
			chromedp.SetValue(chromedp.CSS("#name"), who),
			chromedp.Click(chromedp.CSS("#join")),
		)
	}

	// Not logged in: the backend refuses the WebSocket and then the event
	// stream pushgate.js falls back to, and the browser sees both refused.
	alice := newTab()
	var refused refusals
	refused.watch(t, alice)
	join("alice", alice)
	wstest.Eventually(t, "the backend to refuse a WebSocket and an event stream", func() bool {
		transports := map[string]bool{}
		for _, c := range b.asked() {
			transports[c.Transport] = true
		}
		return transports["websocket"] && transports["sse"]
	})
	for _, c := range b.asked() {
		if c.Status != http.StatusUnauthorized || c.Headers["Cookie"] != "" {
			t.Errorf("before logging in the backend was asked %+v and answered %d, want no cookie and 401", c, c.Status)
		}
		if want := map[string]string{"websocket": "/ws", "sse": "/events"}[c.Transport]; c.Path != want {
			t.Errorf("a %s connection's path %q, want %q", c.Transport, c.Path, want)
		}
	}
	wstest.Eventually(t, "the browser to report the refusals", func() bool {
		ws, streams := refused.seen()
		return len(ws) > 0 && len(streams) > 0
	})
	wsErrors, streams := refused.seen()
	// Chromium names a 401 to a WebSocket handshake as HTTP
	// authentication failing; the stream's status it gives as it is.
	for _, e := range wsErrors {
		if !strings.Contains(e, "401") && !strings.Contains(e, "Authentication") {
			t.Errorf("Chromium's WebSocket failed with %q, want a 401", e)
		}
	}
	for _, s := range streams {
		if s != http.StatusUnauthorized {
			t.Errorf("the event stream got %d, want 401", s)
		}
	}
	// What the page shows: it keeps trying, and never joins. The browser
	// does not give a page the status of a refused upgrade, so chat.js has
	// no reason to show, only the badge.
	page(t, alice, "alice's page is refused",
		waitJS(status("reconnecting")),
		waitJS(`document.body.dataset.joined === undefined && document.querySelector('#members').hidden`),
		waitJS(`document.querySelector('#me').textContent === 'you are alice unverified'`),
	)

	// Logging in sets an HttpOnly cookie, which the page cannot read.
	page(t, alice, "alice logs in",
		chromedp.Navigate("http://"+b.addr+"/login?user=alice"),
		waitJS(`document.querySelector('#who')?.textContent === 'logged in as Alice Liddell' && document.cookie === ''`),
	)
	before := len(b.asked())
	join("alice", alice)
	page(t, alice, "alice is in, as the backend's Alice Liddell",
		waitJS(synced),
		waitJS(`document.querySelector('#status').dataset.transport === 'websocket' && !location.search`),
		// Her own join names her: the page takes its name from it.
		waitJS(`document.querySelector('#me').textContent === 'you are Alice Liddell'`),
		waitJS(`document.querySelector('#name').value === 'Alice Liddell' && document.querySelector('#name').readOnly`),
		waitJS(memberNames+` === 'Alice Liddell' && document.querySelectorAll('#member-list li .unverified').length === 0`),
	)

	// bob, in a browser context of his own (his own cookies), logs in too.
	bob, closeBob := chromedp.NewContext(alice, chromedp.WithNewBrowserContext())
	t.Cleanup(closeBob)
	if err := chromedp.Do(bob); err != nil { // opens it (see browser)
		t.Fatalf("opening bob's tab: %v", err)
	}
	page(t, bob, "bob logs in",
		chromedp.Navigate("http://"+b.addr+"/login?user=bob"),
		waitJS(`document.querySelector('#who')?.textContent === 'logged in as Bob Ross'`),
	)
	join("bob", bob)
	page(t, bob, "bob is in, as Bob Ross",
		waitJS(synced),
		waitJS(`document.querySelector('#me').textContent === 'you are Bob Ross'`),
		waitJS(memberNames+` === 'Alice Liddell,Bob Ross'`),
	)
	page(t, alice, "alice sees Bob Ross join",
		waitJS(logged("Bob Ross joined")),
		waitJS(memberNames+` === 'Alice Liddell,Bob Ross' && document.querySelectorAll('#member-list li .unverified').length === 0`),
	)

	// alice's message reaches bob under her name, and the gateway's
	// history holds it: the claims' "publish" let her send it.
	text := "hello from a cookie"
	page(t, alice, "alice sends",
		chromedp.SendKeys(chromedp.CSS("#text"), text),
		chromedp.Click(chromedp.CSS("#send")),
		waitJS(countText(text)+` === 1 && `+messages(text)+`[0].dataset.state === undefined`),
	)
	page(t, bob, "bob sees alice's message", waitJS(countText(text)+` === 1`))
	from, err := chromedp.Run(bob, chromedp.Evaluate[string](messages(text)+`[0].querySelector('.name').textContent`))
	if err != nil || from != "Alice Liddell" {
		t.Errorf("bob shows the message from %q (%v), want Alice Liddell", from, err)
	}
	resp, err := http.Get("http://" + admin + "/api/history?channel=chat:lobby")
	if err != nil {
		t.Fatal(err)
	}
	var history struct {
		Publications []struct {
			Data struct {
				Name string `json:"name"`
				Text string `json:"text"`
			} `json:"data"`
		} `json:"publications"`
	}
	err = json.NewDecoder(resp.Body).Decode(&history)
	resp.Body.Close()
	if err != nil || len(history.Publications) != 1 || history.Publications[0].Data.Name != "Alice Liddell" || history.Publications[0].Data.Text != text {
		t.Errorf("chat:lobby's history holds %+v (%v), want alice's message alone", history.Publications, err)
	}

	// What the backend was asked for each page: the cookie it set, the
	// page's Origin and User-Agent, and the client id the page has.
	clientID := regexp.MustCompile(`^` + regexp.QuoteMeta(node(t, admin)) + `\.[0-9a-z]+$`)
	calls := b.asked()[before:]
	type pageID struct {
		Client    string `json:"client"` // the page's, as presence names it
		UserAgent string `json:"ua"`
	}
	for _, who := range []struct {
		user string
		tab  context.Context
	}{{"alice", alice}, {"bob", bob}} {
		self, err := chromedp.Run(who.tab, chromedp.Evaluate[pageID](`({
			client: document.querySelector('#member-list li.self').dataset.client,
			ua: navigator.userAgent,
		})`))
		if err != nil {
			t.Fatalf("%s's client id: %v", who.user, err)
		}
		var found []connectCall
		for _, c := range calls {
			if c.Client == self.Client {
				found = append(found, c)
			}
		}
		if len(found) != 1 {
			t.Errorf("the backend was asked %d times about %s's connection %q, want once; it was asked %+v", len(found), who.user, self.Client, calls)
			continue
		}
		c := found[0]
		if !clientID.MatchString(c.Client) {
			t.Errorf("%s's client id %q is not <node>.<base36> (%s)", who.user, c.Client, clientID)
		}
		if c.Status != http.StatusOK || c.User != who.user {
			t.Errorf("%s's connection: the backend answered %d for %q", who.user, c.Status, c.User)
		}
		if c.Transport != "websocket" || c.Path != "/ws" || !strings.Contains("&"+c.Query+"&", "&ping=1&") {
			t.Errorf("%s's connection: transport %q, path %q, query %q; want websocket, /ws, ping=1", who.user, c.Transport, c.Path, c.Query)
		}
		if want := "sid=" + b.sid(who.user); c.Headers["Cookie"] != want {
			t.Errorf("%s's connection: Cookie %q, want %q", who.user, c.Headers["Cookie"], want)
		}
		if c.Headers["Origin"] != gateway {
			t.Errorf("%s's connection: Origin %q, want %q", who.user, c.Headers["Origin"], gateway)
		}
		if c.Headers["User-Agent"] != self.UserAgent || self.UserAgent == "" {
			t.Errorf("%s's connection: User-Agent %q, the page's %q", who.user, c.Headers["User-Agent"], self.UserAgent)
		}
	}
}
