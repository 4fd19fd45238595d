package web_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/pushgate/pushgate/web"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The public listener mounts Handler for every path it does not serve
// itself.
func ExampleHandler() {
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler())
	for _, path := range []string{"/", "/pushgate.js", "/missing"} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		fmt.Println(path, rec.Code, rec.Header().Get("Content-Type"))
	}
	// Output:
	// / 200 text/html; charset=utf-8
	// /pushgate.js 200 text/javascript; charset=utf-8
	// /missing 404 text/plain; charset=utf-8
}

// get does one request and returns the response with its body read.
func get(t *testing.T, srv *httptest.Server, method, path string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()
	for _, tc := range []struct {
		method, path string
		status       int
		typ          string // Content-Type, when 200
		contains     string // in the body, when a GET
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", `<script src="/pushgate.js"></script>`},
		{"GET", "/pushgate.js", 200, "text/javascript; charset=utf-8", `new WebSocket(wsURL, "pushgate.v1")`},
		{"GET", "/chat.js", 200, "text/javascript; charset=utf-8", "new Pushgate("},
		{"GET", "/chat.css", 200, "text/css; charset=utf-8", "#messages"},
		{"HEAD", "/", 200, "text/html; charset=utf-8", ""},
		{"HEAD", "/pushgate.js", 200, "text/javascript; charset=utf-8", ""},
		{"GET", "/nothing-here", 404, "", ""},
		{"GET", "/index.html", 404, "", ""},
		{"GET", "/static/index.html", 404, "", ""},
		{"GET", "/pushgate.js/", 404, "", ""},
		{"GET", "/web.go", 404, "", ""},
		{"GET", "/package.json", 404, "", ""},
		{"GET", "/pushgate.d.ts", 404, "", ""},
		{"GET", "/README.md", 404, "", ""},
		{"POST", "/", 405, "", ""},
		{"PUT", "/pushgate.js", 405, "", ""},
		{"DELETE", "/chat.css", 405, "", ""},
		{"POST", "/nothing-here", 404, "", ""},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			resp, body := get(t, srv, tc.method, tc.path, nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %s, want %d", resp.Status, tc.status)
			}
			h := resp.Header
			if allow := h.Get("Allow"); tc.status == 405 && allow != "GET, HEAD" {
				t.Errorf("Allow %q, want GET, HEAD", allow)
			}
			if tc.status != 200 {
				return
			}
			if got := h.Get("Content-Type"); got != tc.typ {
				t.Errorf("Content-Type %q, want %q", got, tc.typ)
			}
			for k, want := range map[string]string{
				"Cache-Control":          "no-cache",
				"X-Content-Type-Options": "nosniff",
			} {
				if got := h.Get(k); got != want {
					t.Errorf("%s %q, want %q", k, got, want)
				}
			}
			if h.Get("ETag") == "" {
				t.Error("no ETag")
			}
			if csp := h.Get("Content-Security-Policy"); strings.HasSuffix(tc.path, "/") != (csp != "") {
				t.Errorf("Content-Security-Policy %q on %s", csp, tc.path)
			}
			if tc.method == "HEAD" {
				if body != "" || resp.ContentLength <= 0 {
					t.Errorf("HEAD: body %q, Content-Length %d", body, resp.ContentLength)
				}
				return
			}
			if !strings.Contains(body, tc.contains) {
				t.Errorf("body lacks %q", tc.contains)
			}
		})
	}
}

// TestRevalidate checks that a browser's If-None-Match gets 304 while the
// file is unchanged, which is what Cache-Control: no-cache relies on.
func TestRevalidate(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()
	for _, path := range []string{"/", "/pushgate.js"} {
		resp, _ := get(t, srv, "GET", path, nil)
		etag := resp.Header.Get("ETag")
		resp, body := get(t, srv, "GET", path, http.Header{"If-None-Match": {etag}})
		if resp.StatusCode != http.StatusNotModified || body != "" {
			t.Errorf("GET %s with If-None-Match %s: %s %q", path, etag, resp.Status, body)
		}
		resp, _ = get(t, srv, "GET", path, http.Header{"If-None-Match": {`"stale"`}})
		if resp.StatusCode != 200 {
			t.Errorf("GET %s with a stale ETag: %s", path, resp.Status)
		}
	}
}

// TestPageContract checks what the chat page promises its browser test:
// the element ids, and that every same-origin script and stylesheet it
// loads is served.
func TestPageContract(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()
	_, page := get(t, srv, "GET", "/", nil)
	for _, id := range []string{"name", "room", "join", "text", "send", "messages", "status", "notice"} {
		if !strings.Contains(page, ` id="`+id+`"`) {
			t.Errorf("the page has no #%s", id)
		}
	}
	if !strings.Contains(page, `<span id="status" data-state="disconnected" role="status">disconnected</span>`) {
		t.Error("#status does not start as disconnected")
	}
	if !strings.Contains(page, `<p id="notice" role="alert" hidden></p>`) {
		t.Error("#notice does not start empty and hidden")
	}
	refs := regexp.MustCompile(`<(?:script|link)[^>]* (?:src|href)="(/[^"]*)"`).FindAllStringSubmatch(page, -1)
	if len(refs) < 3 {
		t.Fatalf("found %d script and stylesheet references, want pushgate.js, chat.js, chat.css", len(refs))
	}
	for _, m := range refs {
		if resp, _ := get(t, srv, "GET", m[1], nil); resp.StatusCode != 200 {
			t.Errorf("the page loads %s: %s", m[1], resp.Status)
		}
	}
	if regexp.MustCompile(`(?i)(src|href)="(https?:)?//`).MatchString(page) {
		t.Error("the page loads something from another host; it must work offline")
	}
}

// TestClientScripts checks the scripts' syntax with node, and runs
// testdata/client.mjs: pushgate.js against a scripted fake WebSocket
// (subscribe, duplicates, recovery, personal channel, outbox, backoff).
func TestClientScripts(t *testing.T) {
	node := program(t, "node")
	for _, f := range []string{"pushgate.js", "chat.js"} {
		t.Run("check "+f, func(t *testing.T) { run(t, "", node, "--check", filepath.Join("static", f)) })
	}
	t.Run("client.mjs", func(t *testing.T) { t.Logf("%s", run(t, "", node, filepath.Join("testdata", "client.mjs"))) })
}
