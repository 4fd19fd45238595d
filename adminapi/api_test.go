package adminapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/pushgate/pushgate/adminapi"
	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/session"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func serve(t *testing.T, key string) (*httptest.Server, *broadcast.Hub) {
	t.Helper()
	hub := broadcast.New(broadcast.Config{})
	srv := httptest.NewServer(adminapi.New(adminapi.Config{
		Hub: hub, APIKey: key, MaxBodyBytes: 256, Connections: func() int { return 7 },
		Control: session.New(session.Config{Hub: hub}),
	}))
	t.Cleanup(func() { srv.Close(); hub.Close() })
	return srv, hub
}

func do(t *testing.T, method, url, body, key string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s %s: body is not JSON: %q", method, url, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
	return resp.StatusCode, v, resp.Header
}

func TestPublish(t *testing.T) {
	srv, hub := serve(t, "")
	status, v, _ := do(t, "POST", srv.URL+"/api/publish", `{"channel":"news","data":{"a": [1, 2]}}`, "")
	if status != 200 || v["offset"] != 1.0 || v["delivered"] != 0.0 {
		t.Fatalf("got %d %v", status, v)
	}
	status, v, _ = do(t, "POST", srv.URL+"/api/publish", `{"user":"alice","data":"hi"}`, "")
	if status != 200 || v["offset"] != 1.0 {
		t.Fatalf("got %d %v", status, v)
	}
	h := hub.History("news", 0)
	if len(h.Entries) != 1 || string(h.Entries[0].Data) != `{"a":[1,2]}` {
		t.Fatalf("history %+v", h)
	}
	// The offset counts in the channel's epoch, which the answer names:
	// after a channel restarts, offsets repeat in a new epoch.
	if _, v, _ = do(t, "POST", srv.URL+"/api/publish", `{"channel":"news","data":2}`, ""); v["epoch"] != h.Epoch || h.Epoch == "" {
		t.Fatalf("publish answered epoch %v, want the channel's %q", v["epoch"], h.Epoch)
	}
	if h := hub.History("#alice", 0); len(h.Entries) != 1 {
		t.Fatalf("user history %+v", h)
	}
}

// Every bad request gets its status and a JSON error, and publishes nothing.
func TestPublishErrors(t *testing.T) {
	srv, hub := serve(t, "")
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"malformed JSON", "POST", "/api/publish", `{"channel":"news",`, 400, "bad_request"},
		{"data not JSON", "POST", "/api/publish", `{"channel":"news","data":nope}`, 400, "bad_request"},
		{"data not UTF-8", "POST", "/api/publish", "{\"channel\":\"news\",\"data\":\"\xff\"}", 400, "bad_request"},
		{"data not UTF-8, nested", "POST", "/api/publish", "{\"channel\":\"news\",\"data\":{\"a\":[\"ok\",\"\xc3\x28\"]}}", 400, "bad_request"},
		{"user not UTF-8", "POST", "/api/publish", "{\"user\":\"\xff\",\"data\":1}", 400, "invalid_user"},
		{"no data", "POST", "/api/publish", `{"channel":"news"}`, 400, "bad_request"},
		{"no channel", "POST", "/api/publish", `{"data":1}`, 400, "bad_request"},
		{"channel and user", "POST", "/api/publish", `{"channel":"news","user":"a","data":1}`, 400, "bad_request"},
		{"unknown field", "POST", "/api/publish", `{"channel":"news","data":1,"ttl":3}`, 400, "bad_request"},
		{"two values", "POST", "/api/publish", `{"channel":"news","data":1} {}`, 400, "bad_request"},
		{"channel not a string", "POST", "/api/publish", `{"channel":7,"data":1}`, 400, "bad_request"},
		{"invalid channel", "POST", "/api/publish", `{"channel":"no spaces","data":1}`, 400, "invalid_channel"},
		{"personal channel by name", "POST", "/api/publish", `{"channel":"#alice","data":1}`, 400, "invalid_channel"},
		{"invalid user", "POST", "/api/publish", `{"user":"a/b","data":1}`, 400, "invalid_user"},
		{"empty body", "POST", "/api/publish", ``, 400, "bad_request"},
		{"too large", "POST", "/api/publish", `{"channel":"news","data":"` + strings.Repeat("x", 300) + `"}`, 413, "too_large"},
		{"wrong method", "GET", "/api/publish", ``, 405, "method_not_allowed"},
		{"unknown endpoint", "GET", "/api/nope", ``, 404, "not_found"},
		{"history without channel", "GET", "/api/history", ``, 400, "invalid_channel"},
		{"history bad since", "GET", "/api/history?channel=news&since=-1", ``, 400, "bad_request"},
		{"disconnect malformed", "POST", "/api/disconnect", `{"user":`, 400, "bad_request"},
		{"disconnect nobody", "POST", "/api/disconnect", `{}`, 400, "bad_request"},
		{"disconnect user and client", "POST", "/api/disconnect", `{"user":"a","client":"b"}`, 400, "bad_request"},
		{"disconnect invalid user", "POST", "/api/disconnect", `{"user":"a b"}`, 400, "invalid_user"},
		{"disconnect reason too long", "POST", "/api/disconnect", `{"user":"a","reason":"` + strings.Repeat("r", 124) + `"}`, 400, "bad_request"},
		{"disconnect with channel", "POST", "/api/disconnect", `{"user":"a","channel":"news"}`, 400, "bad_request"},
		{"disconnect reconnect not bool", "POST", "/api/disconnect", `{"user":"a","reconnect":"no"}`, 400, "bad_request"},
		{"disconnect unknown field", "POST", "/api/disconnect", `{"user":"a","ban":true}`, 400, "bad_request"},
		{"disconnect too large", "POST", "/api/disconnect", `{"user":"a","reason":"` + strings.Repeat("x", 300) + `"}`, 413, "too_large"},
		{"disconnect wrong method", "GET", "/api/disconnect", ``, 405, "method_not_allowed"},
		{"subscribe without channel", "POST", "/api/subscribe", `{"user":"a"}`, 400, "invalid_channel"},
		{"subscribe invalid channel", "POST", "/api/subscribe", `{"user":"a","channel":"a b"}`, 400, "invalid_channel"},
		{"subscribe with reason", "POST", "/api/subscribe", `{"user":"a","channel":"news","reason":"x"}`, 400, "bad_request"},
		{"subscribe nobody", "POST", "/api/subscribe", `{"channel":"news"}`, 400, "bad_request"},
		{"unsubscribe invalid channel", "POST", "/api/unsubscribe", `{"client":"x.1","channel":"é"}`, 400, "invalid_channel"},
		{"unsubscribe wrong method", "PUT", "/api/unsubscribe", ``, 405, "method_not_allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, raw)
			}
			if tc.code == "" {
				return
			}
			var e struct{ Code, Message string }
			if err := json.Unmarshal(raw, &e); err != nil || e.Code != tc.code || e.Message == "" {
				t.Fatalf("error body %q, want code %q", raw, tc.code)
			}
			if strings.Contains(e.Message, "broadcast:") || strings.Contains(e.Message, "adminapi") {
				t.Fatalf("the message names an internal package: %q", e.Message)
			}
			if tc.name == "history without channel" && !strings.Contains(e.Message, "required") {
				t.Fatalf("a missing channel is not said to be required: %q", e.Message)
			}
		})
	}
	if s := hub.Stats(); s.Channels != 0 {
		t.Fatalf("a refused request published: %+v", s)
	}
}

func TestAPIKey(t *testing.T) {
	srv, _ := serve(t, "s3cret")
	for _, key := range []string{"", "wrong", "s3cret2"} {
		status, v, h := do(t, "GET", srv.URL+"/api/stats", "", key)
		if status != 401 || v["code"] != "unauthorized" || h.Get("WWW-Authenticate") == "" {
			t.Fatalf("key %q: %d %v", key, status, v)
		}
	}
	status, _, _ := do(t, "POST", srv.URL+"/api/publish", `{"channel":"a","data":1}`, "wrong")
	if status != 401 {
		t.Fatalf("publish with a wrong key: %d", status)
	}
	if status, _, _ := do(t, "POST", srv.URL+"/api/publish", `{"channel":"a","data":1}`, "s3cret"); status != 200 {
		t.Fatalf("publish with the key: %d", status)
	}
}

func TestHistoryAndStats(t *testing.T) {
	srv, _ := serve(t, "")
	for _, d := range []string{`1`, `2`, `3`} {
		do(t, "POST", srv.URL+"/api/publish", `{"channel":"news","data":`+d+`}`, "")
	}
	status, v, _ := do(t, "GET", srv.URL+"/api/history?channel=news&since=1", "", "")
	pubs, _ := v["publications"].([]any)
	if status != 200 || v["offset"] != 3.0 || v["complete"] != true || v["epoch"] == "" || len(pubs) != 2 {
		t.Fatalf("history: %d %v", status, v)
	}
	if first := pubs[0].(map[string]any); first["offset"] != 2.0 || first["data"] != 2.0 {
		t.Fatalf("first entry %v", first)
	}
	_, v, _ = do(t, "GET", srv.URL+"/api/history?channel=unknown", "", "")
	if v["offset"] != 0.0 || len(v["publications"].([]any)) != 0 {
		t.Fatalf("unknown channel: %v", v)
	}
	_, v, _ = do(t, "GET", srv.URL+"/api/stats", "", "")
	if v["connections"] != 7.0 || v["channels"] != 1.0 || v["subscribers"] != 0.0 || v["history"] != 3.0 ||
		v["history_bytes"].(float64) < 3*512 || v["presence_clients"] != 0.0 || v["in_flight"] != 0.0 || v["queued_ops"] != 0.0 || len(v) != 8 {
		t.Fatalf("stats %v", v)
	}
}

func TestControlNobodyConnected(t *testing.T) {
	srv, _ := serve(t, "")
	for _, c := range []struct{ path, body string }{
		{"/api/disconnect", `{"user":"alice"}`},
		{"/api/disconnect", `{"client":"abc.1","reconnect":false,"reason":"bye"}`},
		{"/api/subscribe", `{"user":"alice","channel":"news"}`},
		{"/api/unsubscribe", `{"client":"abc.1","channel":"#alice"}`},
	} {
		status, v, _ := do(t, "POST", srv.URL+c.path, c.body, "")
		if status != 200 || v["connections"] != 0.0 || len(v) != 1 {
			t.Fatalf("%s %s: %d %v", c.path, c.body, status, v)
		}
	}
}
