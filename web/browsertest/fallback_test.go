package browsertest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pushgate/pushgate/internal/proctest"
)

// corporateProxy runs HAProxy on a free address in front of the gateway
// at backend, refusing WebSocket upgrades (403) as some corporate proxies
// do, and passing the rest: pages, event streams, POSTs. It returns the
// proxy's address.
func corporateProxy(t *testing.T, backend string) string {
	t.Helper()
	addr := proctest.FreeAddr(t)
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	conf := fmt.Sprintf(`defaults
	mode http
	timeout connect 2s
	# Above the gateway's --ping-interval (25s): idle streams get comments.
	timeout client 60s
	timeout server 60s

frontend corporate
	bind %s
	http-request deny deny_status 403 if { hdr(upgrade) -i websocket }
	default_backend gateway

backend gateway
	server gw %s
`, addr, backend)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := proctest.Start(t, "", proctest.Program(t, "haproxy"), "-f", cfg, "-db")
	p.WaitHTTP(t, "http://"+addr+"/healthz", http.StatusOK)
	return addr
}

// Behind a proxy that refuses WebSocket upgrades, in cluster mode (the
// history outlives a gateway): the chat page falls back to an event
// stream and POSTed ops by itself, and says so; two pages chat; the
// gateway restarts while a second node takes a publish, and both pages
// reconnect, on the stream at once (the fallback is remembered), and
// recover what they missed, each message once. A bare EventSource page,
// with no SDK, recovers across the same restart from its Last-Event-ID.
func TestFallbackInBrowser(t *testing.T) {
	newTab := browser(t)
	_, natsURL := proctest.NATS(t)
	addr, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
	args := []string{"--client-publish", "chat:lobby", "--broker", natsURL}
	g := runGateway(t, addr, admin, args...)
	other := proctest.FreeAddr(t) // the second node's admin: publishes while the first is down
	runGateway(t, proctest.FreeAddr(t), other, "--broker", natsURL)
	lb := corporateProxy(t, addr)

	ann, bob, bare := newTab(), newTab(), newTab()
	tabs := map[string]context.Context{"ann": ann, "bob": bob}
	for name, tab := range tabs {
		page(t, tab, name+" joins through the proxy",
			chromedp.Navigate("http://"+lb+"/"),
			chromedp.WaitVisible(chromedp.CSS("#name")),
			chromedp.SetValue(chromedp.CSS("#name"), name),
			chromedp.SetValue(chromedp.CSS("#room"), "lobby"),
			chromedp.Click(chromedp.CSS("#join")),
			waitJS(synced),
			waitJS(`document.querySelector('#status').dataset.transport === 'sse'`),
			// The WebSocket tried again beside the stream was refused too.
			waitJS(`Number(localStorage.getItem('pushgate.fallback')) > Date.now()`),
		)
	}
	page(t, bare, "a bare EventSource",
		chromedp.Navigate("http://"+lb+"/"),
		chromedp.Evaluate[chromedp.Void](`window.got = []; window.opens = 0;
			const es = new EventSource("/events?channels=news");
			es.onopen = () => window.opens++;
			es.onmessage = (e) => window.got.push(JSON.parse(e.data));`),
		waitJS(`window.got.some(m => m.type === 'subscribed' && m.channel === 'news')`),
	)
	// The browser's streams are gzip-encoded (it accepts gzip, and
	// --sse-gzip is on): what the page read above was inflated.
	enc, err := chromedp.Run(bare, chromedp.Evaluate[string](`(async () => {
		const r = await fetch("/events?channels=probe");
		const enc = r.headers.get("content-encoding") || "none";
		await r.body.cancel();
		return enc;
	})()`, chromedp.EvalAwaitPromise))
	if err != nil || enc != "gzip" {
		t.Errorf("a stream's Content-Encoding in Chromium: %q (%v), want gzip", enc, err)
	}

	page(t, ann, "ann sends",
		chromedp.SendKeys(chromedp.CSS("#text"), "hello over sse"),
		chromedp.Click(chromedp.CSS("#send")),
		waitJS(countText("hello over sse")+` === 1 && `+messages("hello over sse")+`[0].dataset.state === undefined`),
	)
	page(t, bob, "bob sees ann's message", waitJS(countText("hello over sse")+` === 1`))
	publish(t, admin, `{"channel":"news","data":1}`)
	page(t, bare, "the bare page gets news 1", waitJS(`window.got.some(m => m.type === 'message' && m.data === 1)`))

	// The gateway stops; the other node takes publishes meanwhile.
	if err := g.Stop(t, syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatalf("gateway exit: %v", err)
	}
	for name, tab := range tabs {
		page(t, tab, name+" is reconnecting", waitJS(status("reconnecting")))
	}
	page(t, bare, "the bare page was told to reconnect", waitJS(`window.got.some(m => m.type === 'close' && m.code === 1001)`))
	publish(t, other, `{"channel":"chat:lobby","data":{"name":"ops","text":"while the gateway was down"}}`)
	publish(t, other, `{"channel":"news","data":2}`)
	runGateway(t, addr, admin, args...)
	publish(t, admin, `{"channel":"news","data":3}`)

	for name, tab := range tabs {
		page(t, tab, name+" catches up",
			waitJS(synced),
			waitJS(`document.querySelector('#status').dataset.transport === 'sse'`),
			waitJS(countText("while the gateway was down")+` === 1`),
			waitJS(`document.querySelector('#notice').hidden`),
		)
	}
	page(t, bob, "bob answers",
		chromedp.SendKeys(chromedp.CSS("#text"), "bob over sse"),
		chromedp.Click(chromedp.CSS("#send")),
	)
	for name, tab := range tabs {
		page(t, tab, name+" sees bob", waitJS(countText("bob over sse")+` === 1`))
		texts, err := chromedp.Run(tab, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#messages li.msg .text')].map(el => el.textContent)`))
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"hello over sse", "while the gateway was down", "bob over sse"}; fmt.Sprint(texts) != fmt.Sprint(want) {
			t.Errorf("%s shows %q, want %q", name, texts, want)
		}
		gaps, err := chromedp.Run(tab, chromedp.Evaluate[int](`document.querySelectorAll('#messages li.gap').length`))
		if err != nil || gaps != 0 {
			t.Errorf("%s: %d dividers for missing messages, want none: the cluster's history had them (%v)", name, gaps, err)
		}
	}

	// The bare page: news 2 recovered from its Last-Event-ID, then 3, each
	// once, and its subscription said it recovered.
	page(t, bare, "the bare page recovers", waitJS(`window.got.filter(m => m.type === 'message').length >= 3`))
	got, err := chromedp.Run(bare, chromedp.Evaluate[[]int](`window.got.filter(m => m.type === 'message').map(m => m.offset)`))
	if err != nil || fmt.Sprint(got) != "[1 2 3]" {
		t.Errorf("the bare page got offsets %v, want [1 2 3] (%v)", got, err)
	}
	recovered, err := chromedp.Run(bare, chromedp.Evaluate[bool](`window.got.filter(m => m.type === 'subscribed').at(-1).recovered === true && window.opens >= 2`))
	if err != nil || !recovered {
		t.Errorf("the bare page's second subscribed did not say recovered (%v)", err)
	}
}
