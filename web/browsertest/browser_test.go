package browsertest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pushgate/pushgate/internal/proctest"
)

// chromium finds Debian's Chromium. Under CI its absence fails the test:
// `make deps` installs it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (make deps installs it)")
	}
	t.Skip("chromium is not installed; run make deps")
	return ""
}

// browser starts a headless Chromium for the test, with the flags this
// machine's closed network needs, and returns a function that opens tabs.
func browser(t *testing.T) func() context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	first, cancelFirst := chromedp.NewContext(alloc)
	if err := chromedp.Do(first); err != nil { // starts the browser
		t.Fatalf("starting chromium: %v", err)
	}
	t.Cleanup(func() { cancelFirst(); cancelAlloc() })
	used := false
	return func() context.Context {
		ctx := first
		if used {
			var cancel context.CancelFunc
			ctx, cancel = chromedp.NewContext(first) // a new tab in the same browser
			t.Cleanup(cancel)
			// Open it now, on its own context: a tab opened by an action
			// under page's timeout would close when that timeout ends.
			if err := chromedp.Do(ctx); err != nil {
				t.Fatalf("opening a tab: %v", err)
			}
		}
		used = true
		return ctx
	}
}

// page runs actions in a tab, bounded in time.
func page(t *testing.T, tab context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		dumpCtx, cancelDump := context.WithTimeout(tab, 2*time.Second)
		defer cancelDump()
		shown, _ := chromedp.Run(dumpCtx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("%s: %v\nthe page shows:\n%s", what, err, shown)
	}
}

// runGateway runs the gateway, built from this repository, on addr and
// admin with args, and waits until it is ready.
func runGateway(t *testing.T, addr, admin string, args ...string) *proctest.Process {
	t.Helper()
	args = append([]string{"--addr", addr, "--admin-addr", admin, "--drain-timeout", "2s", "--close-timeout", "1s"}, args...)
	g := proctest.Start(t, "", proctest.Gateway(t), args...)
	g.WaitHTTP(t, "http://"+admin+"/readyz", http.StatusOK)
	return g
}

// publish publishes through the admin API and fails the test unless it
// is accepted.
func publish(t *testing.T, admin, body string) {
	t.Helper()
	resp, err := http.Post("http://"+admin+"/api/publish", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %s %s", resp.Status, answer)
	}
}

// waitJS waits until a JavaScript expression is true in the page.
func waitJS(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(20*time.Millisecond))
}

// joined holds while the page's subscription to the room is confirmed.
const joined = `document.querySelector('#status').textContent === 'connected' && document.body.dataset.joined === 'chat:lobby'`

// synced holds once the room's history, replayed on joining or
// reconnecting, is in.
const synced = joined + ` && document.body.dataset.synced === 'chat:lobby'`

// status is an expression that holds while the badge says state.
func status(state string) string {
	return fmt.Sprintf(`document.querySelector('#status').textContent === %q && document.querySelector('#status').dataset.state === %[1]q`, state)
}

// messages is the chat lines that contain text, as an array expression.
func messages(text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('#messages li.msg')].filter(li => li.querySelector('.text').textContent === %q)`, text)
}

// countText is an expression counting the chat lines that contain text.
func countText(text string) string {
	return messages(text) + `.length`
}

// shown is what a page shows of one chat line.
type shown struct {
	State string `json:"state"` // data-state: "", "queued", "sending", "failed"
	Mark  string `json:"mark"`  // what it says about that
	Time  string `json:"time"`  // its <time datetime>, "" when it has none
	Label string `json:"label"` // the time as shown
}

// line reads the only chat line of a page whose text is text.
func line(t *testing.T, tab context.Context, text string) shown {
	t.Helper()
	got, err := chromedp.Run(tab, chromedp.Evaluate[[]shown](messages(text)+`.map(li => ({
		state: li.dataset.state || "",
		mark: li.querySelector('.mark')?.textContent || "",
		time: li.querySelector('time')?.dateTime || "",
		label: li.querySelector('time')?.textContent || "",
	}))`))
	if err != nil {
		t.Fatalf("reading the line %q: %v", text, err)
	}
	if len(got) != 1 {
		t.Fatalf("%d lines %q, want 1", len(got), text)
	}
	return got[0]
}

// sentAt checks that a chat line carries a time between from and to.
func sentAt(t *testing.T, who string, l shown, from, to time.Time) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, l.Time)
	if err != nil || l.Label == "" {
		t.Fatalf("%s: the line's time %q (shown %q): %v", who, l.Time, l.Label, err)
	}
	// The page's clock and the test's are the same machine's; ts is in ms.
	if at.Before(from.Truncate(time.Millisecond)) || at.After(to) {
		t.Errorf("%s: the line's time %s, want between %s and %s", who, at, from, to)
	}
	return at
}

// The chat demo in a real browser: two pages join a room, one sends and
// the other shows it, with the time it was sent; a third joins late and
// sees it from the gateway's history. The gateway restarts: the badges say
// "reconnecting", a message sent meanwhile shows as queued, and the pages
// reconnect by themselves, deliver it and show what was published
// meanwhile, each message once, and clear the "messages may be missing"
// banner once they have caught up. A publish the gateway refuses stays on
// the page, failed, to retry or edit.
func TestChatInBrowser(t *testing.T) {
	newTab := browser(t)
	addr, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
	// Publishing to chat:lobby only: a publish to another room is refused.
	args := []string{"--client-publish", "chat:lobby"} // and no --presence
	g := runGateway(t, addr, admin, args...)

	join := func(name string, tab context.Context, room string) {
		t.Helper()
		page(t, tab, name+" joins "+room,
			chromedp.Navigate("http://"+addr+"/"),
			chromedp.WaitVisible(chromedp.CSS("#name")),
			chromedp.SetValue(chromedp.CSS("#name"), name),
			chromedp.SetValue(chromedp.CSS("#room"), room),
			chromedp.Click(chromedp.CSS("#join")),
		)
	}
	ann, bob := newTab(), newTab()
	tabs := map[string]context.Context{"ann": ann, "bob": bob}
	for name, tab := range tabs {
		join(name, tab, "lobby")
		page(t, tab, name+" is in", waitJS(synced))
		// Without --presence there is no member list, and the page says so.
		page(t, tab, name+" says there is no member list", waitJS(`document.body.dataset.presence === 'off' && `+
			`!document.querySelector('#members').hidden && document.querySelector('#presence-note').textContent.includes("--presence 'chat:*'")`))
	}
	before := time.Now()
	page(t, ann, "ann sends",
		chromedp.SendKeys(chromedp.CSS("#text"), "hello from ann"),
		chromedp.Click(chromedp.CSS("#send")),
	)
	page(t, ann, "ann sees her message", waitJS(countText("hello from ann")+` === 1 && `+messages("hello from ann")+`[0].dataset.state === undefined`))
	page(t, bob, "bob sees ann's message", waitJS(countText("hello from ann")+` === 1`))
	sent := sentAt(t, "ann", line(t, ann, "hello from ann"), before, time.Now())
	if l := line(t, bob, "hello from ann"); l.Time != line(t, ann, "hello from ann").Time {
		t.Errorf("bob shows the time %q, ann %q", l.Time, sent)
	}

	// dave joins late: the gateway's history brings him ann's message, with
	// its time.
	dave := newTab()
	tabs["dave"] = dave
	join("dave", dave, "lobby")
	page(t, dave, "dave sees what was said before he came", waitJS(synced), waitJS(countText("hello from ann")+` === 1`))
	if at := sentAt(t, "dave", line(t, dave, "hello from ann"), before, time.Now()); !at.Equal(sent) {
		t.Errorf("dave shows ann's message sent at %s, ann %s", at, sent)
	}

	// Stop the gateway: the pages retry, and say so.
	if err := g.Stop(t, syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatalf("gateway exit: %v", err)
	}
	for name, tab := range tabs {
		page(t, tab, name+" is reconnecting", waitJS(status("reconnecting")))
	}
	page(t, ann, "ann sends while the gateway is down",
		chromedp.SendKeys(chromedp.CSS("#text"), "sent while offline"),
		chromedp.Click(chromedp.CSS("#send")),
		waitJS(countText("sent while offline")+` === 1`),
	)
	if l := line(t, ann, "sent while offline"); l.State != "queued" || l.Mark != "queued" {
		t.Errorf("ann's message sent offline shows state %q, mark %q; want queued", l.State, l.Mark)
	}
	page(t, ann, "ann is still reconnecting", waitJS(status("reconnecting")))

	// Restart it on the same addresses and publish at once, while the pages
	// are still reconnecting: a backend's message has no time.
	runGateway(t, addr, admin, args...)
	publish(t, admin, `{"channel":"chat:lobby","data":{"name":"ops","text":"back after restart"}}`)
	for name, tab := range tabs {
		page(t, tab, name+" catches up",
			waitJS(synced),
			waitJS(countText("back after restart")+` === 1`),
			waitJS(countText("sent while offline")+` === 1`),
			waitJS(`document.querySelectorAll('#messages li[data-state]').length === 0`),
		)
		// The new gateway's history does not reach back to what the page
		// saw: the log says where messages may be missing, and the banner
		// that said so has gone by itself once the page caught up.
		page(t, tab, name+" clears the banner", waitJS(`document.querySelector('#notice').hidden`))
		gaps, err := chromedp.Run(tab, chromedp.Evaluate[int](`document.querySelectorAll('#messages li.gap').length`))
		if err != nil || gaps != 1 {
			t.Errorf("%s: %d dividers for missing messages, want 1 (%v)", name, gaps, err)
		}
		if l := line(t, tab, "back after restart"); l.Time != "" || l.State != "" {
			t.Errorf("%s: the backend's message without a time shows %+v", name, l)
		}
	}
	page(t, bob, "bob sends after the restart",
		chromedp.SendKeys(chromedp.CSS("#text"), "bob is back"),
		chromedp.Click(chromedp.CSS("#send")),
	)
	for name, tab := range tabs {
		page(t, tab, name+" sees bob's message", waitJS(countText("bob is back")+` === 1`))
	}

	// Nothing was shown twice, and the restart did not leave a page
	// thinking WebSocket was blocked (its reconnects may have taken the
	// stream while the gateway came back; the WebSocket tried beside it
	// opened).
	for name, tab := range tabs {
		remembered, err := chromedp.Run(tab, chromedp.Evaluate[bool](`Number(localStorage.getItem('pushgate.fallback')) > Date.now()`))
		if err != nil || remembered {
			t.Errorf("%s remembers a fallback to event streams after a restart (%v)", name, err)
		}
		texts, err := chromedp.Run(tab, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#messages li.msg .text')].map(el => el.textContent)`))
		if err != nil {
			t.Fatalf("%s: reading the room: %v", name, err)
		}
		seen := map[string]int{}
		for _, s := range texts {
			seen[s]++
		}
		for s, n := range seen {
			if n > 1 {
				t.Errorf("%s shows %q %d times: %q", name, s, n, texts)
			}
		}
		if len(seen) != 4 {
			t.Errorf("%s shows %d messages, want 4: %q", name, len(seen), texts)
		}
	}

	// A publish the gateway refuses stays, failed with the reason; it can
	// be sent again, or taken back into the input.
	join("dave", dave, "readonly")
	failed := messages("nobody hears this") + `[0]`
	page(t, dave, "dave's publish is refused",
		waitJS(`document.body.dataset.synced === 'chat:readonly'`),
		chromedp.SendKeys(chromedp.CSS("#text"), "nobody hears this"),
		chromedp.Click(chromedp.CSS("#send")),
		waitJS(failed+`?.dataset.state === 'failed'`),
	)
	if l := line(t, dave, "nobody hears this"); !strings.Contains(l.Mark, "client publishing is not enabled for chat:readonly") {
		t.Errorf("the refused message says %q", l.Mark)
	}
	page(t, dave, "dave retries",
		chromedp.Click(chromedp.CSS(`#messages li[data-state="failed"] button[data-action="retry"]`)),
		waitJS(failed+`.dataset.sends === '2' && `+failed+`.dataset.state === 'failed'`),
		chromedp.Click(chromedp.CSS(`#messages li[data-state="failed"] button[data-action="edit"]`)),
		waitJS(countText("nobody hears this")+` === 0 && document.querySelector('#text').value === 'nobody hears this'`),
	)
}

// memberNames is the names a page lists as in the room, comma-separated.
const memberNames = `[...document.querySelectorAll('#member-list li .member-name')].map(e => e.textContent).join()`

// logged is an expression that holds once the page's log announces text.
func logged(text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('#messages li.event')].some(li => li.textContent.startsWith(%q))`, text)
}

// adminPost posts body to the admin API and returns the answer, failing
// the test unless it is 200.
func adminPost(t *testing.T, admin, path, body string) string {
	t.Helper()
	resp, err := http.Post("http://"+admin+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s %s", path, resp.Status, answer)
	}
	return string(answer)
}

// Presence in the chat page, on a gateway with --presence 'chat:*' in
// open mode: three pages in one room list each other, by the names they
// gave (marked unverified), and their logs announce a join and a leave;
// a page the backend disconnects without reconnect stays disconnected and
// says why.
func TestPresenceInBrowser(t *testing.T) {
	newTab := browser(t)
	addr, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
	runGateway(t, addr, admin, "--presence", "chat:*")
	join := func(name string, tab context.Context) {
		t.Helper()
		page(t, tab, name+" joins",
			chromedp.Navigate("http://"+addr+"/"),
			chromedp.WaitVisible(chromedp.CSS("#name")),
			chromedp.SetValue(chromedp.CSS("#name"), name),
			chromedp.Click(chromedp.CSS("#join")),
			waitJS(synced),
		)
	}
	ann, bob, cat := newTab(), newTab(), newTab()
	join("ann", ann)
	join("bob", bob)
	page(t, ann, "ann sees bob join", waitJS(logged("bob joined")), waitJS(memberNames+` === 'ann,bob'`))
	join("cat", cat)
	tabs := map[string]context.Context{"ann": ann, "bob": bob, "cat": cat}
	for name, tab := range tabs {
		page(t, tab, name+" lists the room",
			waitJS(`document.body.dataset.presence === 'chat:lobby'`),
			waitJS(memberNames+` === 'ann,bob,cat'`),
			// Open mode: every name is what its page says.
			waitJS(`document.querySelectorAll('#member-list li .unverified').length === 3`),
			waitJS(fmt.Sprintf(`document.querySelector('#member-list li.self .member-name')?.textContent === %q`, name)),
			waitJS(fmt.Sprintf(`document.querySelector('#me').textContent === 'you are %s unverified'`, name)),
		)
	}
	for _, name := range []string{"ann", "bob"} {
		page(t, tabs[name], name+" sees cat join", waitJS(logged("cat joined")))
	}

	// bob closes his tab: the others see him leave.
	if err := chromedp.Cancel(bob); err != nil {
		t.Fatalf("closing bob's tab: %v", err)
	}
	for _, name := range []string{"ann", "cat"} {
		page(t, tabs[name], name+" sees bob leave", waitJS(logged("bob left")), waitJS(memberNames+` === 'ann,cat'`))
	}

	// The backend disconnects cat's page, and asks it not to come back.
	// The badge's states from now on: pushgate.js says "reconnecting" as a
	// connection closes if it is going to retry.
	page(t, cat, "cat watches its badge", chromedp.Evaluate[chromedp.Void](`window.badge = [];
		new MutationObserver(() => badge.push(document.querySelector('#status').dataset.state))
			.observe(document.querySelector('#status'), {attributes: true});`))
	client, err := chromedp.Run(cat, chromedp.Evaluate[string](`document.querySelector('#member-list li.self').dataset.client`))
	if err != nil {
		t.Fatalf("cat's client id: %v", err)
	}
	if got := adminPost(t, admin, "/api/disconnect", fmt.Sprintf(`{"client":%q,"reconnect":false,"reason":"kicked by a moderator"}`, client)); strings.TrimSpace(got) != `{"connections":1}` {
		t.Fatalf("disconnect: %s", got)
	}
	page(t, cat, "cat is disconnected and says why",
		waitJS(status("disconnected")),
		waitJS(`document.body.dataset.kicked === 'true' && !document.querySelector('#notice').hidden`),
		waitJS(`document.querySelector('#notice').textContent.includes('Disconnected by the server: kicked by a moderator')`),
		waitJS(`document.querySelector('#send').disabled`),
	)
	page(t, ann, "ann sees cat leave", waitJS(logged("cat left")), waitJS(memberNames+` === 'ann'`))
	// cat's page did not retry: its badge went from connected to
	// disconnected and nowhere else, and the gateway holds ann's
	// connection alone.
	page(t, cat, "cat stays disconnected", waitJS(`badge.length > 0 && badge.every(s => s === 'disconnected')`))
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"pushgate_connections 1\n", "pushgate_presence_clients 1\n"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the gateway's metrics lack %q", want)
		}
	}
	page(t, ann, "ann saw cat join once", waitJS(`[...document.querySelectorAll('#messages li.event')].filter(li => li.textContent.startsWith('cat joined')).length === 1`))
}
