package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/internal/proctest"
	"github.com/pushgate/pushgate/internal/wstest"
)

// running is a gateway run in-process by run, as main runs it.
type running struct {
	addr, admin string
	logs        *wstest.SyncBuffer
	stop        func() int // drains and returns the exit code
}

// runGateway starts run with args plus the listen addresses and waits
// until the admin listener answers /readyz.
func runGateway(t *testing.T, addr, admin string, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &wstest.SyncBuffer{}
	code := make(chan int, 1)
	args = append([]string{"--addr", addr, "--admin-addr", admin, "--drain-timeout", "2s", "--close-timeout", "1s"}, args...)
	go func() { code <- run(ctx, args, env(nil), io.Discard, logs) }()
	var once sync.Once
	var exit int
	r := &running{addr: addr, admin: admin, logs: logs, stop: func() int {
		once.Do(func() { cancel(); exit = <-code })
		return exit
	}}
	t.Cleanup(func() { r.stop() })
	wstest.Eventually(t, "the gateway to be ready", func() bool {
		select {
		case c := <-code:
			t.Fatalf("gateway exited with %d:\n%s", c, logs.String())
		default:
		}
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return r
}

func (r *running) post(t *testing.T, path, body, key string) (int, string) {
	t.Helper()
	return call(t, "POST", "http://"+r.admin+path, body, key)
}

// The whole path as wired by main: a publish through the admin API reaches
// a subscriber on /ws, and a client publishes to a chat channel.
func TestPublishEndToEnd(t *testing.T) {
	g := runGateway(t, proctest.FreeAddr(t), proctest.FreeAddr(t), "--api-key", "k3y", "--client-publish", "chat:*")
	c, resp := wstest.Dial(t, g.addr, "/ws?channels=news,chat:lobby", "Sec-WebSocket-Protocol: pushgate.v1")
	if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != "pushgate.v1" {
		t.Fatalf("subprotocol %q", p)
	}
	c.ExpectMsg("subscribed", "")
	c.ExpectMsg("subscribed", "")
	if status, _ := g.post(t, "/api/publish", `{"channel":"news","data":1}`, ""); status != http.StatusUnauthorized {
		t.Fatalf("publish without the key: %d", status)
	}
	status, body := g.post(t, "/api/publish", `{"channel":"news","data":{"x":1}}`, "k3y")
	var res struct {
		Offset    uint64
		Epoch     string
		Delivered int
	}
	if err := json.Unmarshal([]byte(body), &res); status != http.StatusOK || err != nil || res.Offset != 1 || res.Epoch == "" || res.Delivered != 1 {
		t.Fatalf("publish: %d %s", status, body)
	}
	c.ExpectMessage(ws.OpText, []byte(`{"type":"message","channel":"news","offset":1,"data":{"x":1}}`))
	c.Send(`{"op":"publish","channel":"chat:lobby","data":"hi"}`)
	c.ExpectMessage(ws.OpText, []byte(`{"type":"message","channel":"chat:lobby","offset":1,"data":"hi"}`))
	if code := g.stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(g.logs.String(), "authentication is off") {
		t.Errorf("open mode not logged:\n%s", g.logs.String())
	}
	if strings.Contains(g.logs.String(), "admin API is open") {
		t.Errorf("open admin API logged with a key set:\n%s", g.logs.String())
	}
}

func TestAuthEndToEnd(t *testing.T) {
	g := runGateway(t, proctest.FreeAddr(t), proctest.FreeAddr(t), "--jwt-secret", strings.Repeat("s", 32))
	c := wstest.Connect(t, g.addr)
	c.Write([]byte(wstest.UpgradeRequest("/ws")))
	if resp := c.Response(); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %s", resp.Status)
	}
	if !strings.Contains(g.logs.String(), "admin API is open") {
		t.Errorf("open admin API not logged:\n%s", g.logs.String())
	}
}
