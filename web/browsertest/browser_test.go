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

// countText is an expression counting the chat lines that contain text.
func countText(text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('#messages li')].filter(li => li.textContent.includes(%q)).length`, text)
}

// The chat demo in a real browser: two pages join a room, one sends and
// the other shows it; the gateway restarts, the pages reconnect by
// themselves and show what was published meanwhile, each message once.
func TestChatInBrowser(t *testing.T) {
	newTab := browser(t)
	addr, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
	args := []string{"--client-publish", "chat:*"}
	g := runGateway(t, addr, admin, args...)

	ann, bob := newTab(), newTab()
	for name, tab := range map[string]context.Context{"ann": ann, "bob": bob} {
		page(t, tab, name+" joins",
			chromedp.Navigate("http://"+addr+"/"),
			chromedp.WaitVisible(chromedp.CSS("#name")),
			chromedp.SetValue(chromedp.CSS("#name"), name),
			chromedp.SetValue(chromedp.CSS("#room"), "lobby"),
			chromedp.Click(chromedp.CSS("#join")),
			waitJS(joined),
		)
	}
	page(t, ann, "ann sends",
		chromedp.SendKeys(chromedp.CSS("#text"), "hello from ann"),
		chromedp.Click(chromedp.CSS("#send")),
	)
	page(t, ann, "ann sees her message", waitJS(countText("hello from ann")+` === 1`))
	page(t, bob, "bob sees ann's message", waitJS(countText("hello from ann")+` === 1`))

	// Restart the gateway on the same addresses and publish at once, while
	// the pages are still reconnecting.
	if err := g.Stop(t, syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatalf("gateway exit: %v", err)
	}
	runGateway(t, addr, admin, args...)
	publish(t, admin, `{"channel":"chat:lobby","data":{"name":"ops","text":"back after restart"}}`)
	for name, tab := range map[string]context.Context{"ann": ann, "bob": bob} {
		page(t, tab, name+" catches up",
			waitJS(joined),
			waitJS(countText("back after restart")+` === 1`),
		)
	}
	page(t, bob, "bob sends after the restart",
		chromedp.SendKeys(chromedp.CSS("#text"), "bob is back"),
		chromedp.Click(chromedp.CSS("#send")),
	)
	page(t, ann, "ann sees it", waitJS(countText("bob is back")+` === 1`))
	page(t, bob, "bob sees his own message", waitJS(countText("bob is back")+` === 1`))

	// Nothing was shown twice.
	for name, tab := range map[string]context.Context{"ann": ann, "bob": bob} {
		texts, err := chromedp.Run(tab, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#messages li')].map(li => li.textContent)`))
		if err != nil {
			t.Fatalf("%s: reading the room: %v", name, err)
		}
		seen := map[string]int{}
		for _, s := range texts {
			seen[strings.TrimSpace(s)]++
		}
		for s, n := range seen {
			if n > 1 {
				t.Errorf("%s shows %q %d times: %q", name, s, n, texts)
			}
		}
		if len(seen) != 3 {
			t.Errorf("%s shows %d messages, want 3: %q", name, len(seen), texts)
		}
	}
}
