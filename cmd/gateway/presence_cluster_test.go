package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/proctest"
	"github.com/pushgate/pushgate/internal/wstest"
)

// Two gateway processes on Debian's nats-server: presence is the union of
// both nodes, commands on one node reach connections on the other, and a
// node killed with SIGKILL leaves presence at once and, within its lease,
// the other node tells its presence subscribers to ask again.
func TestClusterPresenceEndToEnd(t *testing.T) {
	_, natsURL := proctest.NATS(t)
	bin := proctest.Gateway(t)
	type gw struct {
		*proctest.Process
		addr, admin string
	}
	var gws []gw
	for range 2 {
		g := gw{addr: proctest.FreeAddr(t), admin: proctest.FreeAddr(t)}
		g.Process = proctest.Start(t, "", bin, "--addr", g.addr, "--admin-addr", g.admin, "--broker", natsURL,
			"--presence", "chat:*", "--node-lease-ttl", "3s", "--drain-timeout", "2s")
		gws = append(gws, g)
	}
	for _, g := range gws {
		g.WaitHTTP(t, "http://"+g.admin+"/readyz", http.StatusOK)
	}
	join := func(g gw, name string) (*wstest.Client, string) {
		c, _ := wstest.Dial(t, g.addr, "/ws?channels=chat:lobby&info="+url.QueryEscape(`{"name":"`+name+`"}`), "Sec-WebSocket-Protocol: pushgate.v1")
		c.ExpectMsg("subscribed", "")
		for { // its own join; another's, relayed, may come first
			var j struct {
				Client string
				Info   struct{ Name string }
			}
			if err := json.Unmarshal(c.ExpectMsg("join", "").Raw, &j); err != nil {
				t.Fatal(err)
			}
			if j.Info.Name == name {
				return c, j.Client
			}
		}
	}
	a, _ := join(gws[0], "ann")
	// Until both nodes list each other's leases, b's join may not count
	// a as live; wait for the union to show on a.
	b, bID := join(gws[1], "bob")
	wstest.Until(t, 20*time.Second, func() error {
		_, body := get(t, "http://"+gws[0].admin+"/api/presence?channel=chat:lobby", "")
		var p struct{ Total int }
		_ = json.Unmarshal([]byte(body), &p)
		if p.Total != 2 {
			return errors.New("presence on a: " + body)
		}
		return nil
	})
	// Events cross nodes: a hears b's join (it may have come before a
	// listed b: the events do not depend on leases).
	if m := skipEvents(t, a, "join"); !strings.Contains(string(m.Raw), `"name":"bob"`) {
		t.Fatalf("a got %s", m.Raw)
	}
	// A command on a for bob on b.
	status, body := call(t, "POST", "http://"+gws[0].admin+"/api/subscribe", `{"client":"`+bID+`","channel":"news"}`, "")
	if status != http.StatusOK || !strings.Contains(body, `"connections":1`) {
		t.Fatalf("subscribe bob through a: %d %s", status, body)
	}
	if m := skipEvents(t, b, "subscribed"); m.Channel != "news" {
		t.Fatalf("bob got %s", m.Raw)
	}
	// Stats are the cluster's: both nodes, and their sums (once b has
	// listed a: until it has listed the nodes at all it answers 503).
	wstest.Until(t, 10*time.Second, func() error {
		_, body := get(t, "http://"+gws[1].admin+"/api/stats", "")
		var st struct {
			Connections     int
			PresenceClients int `json:"presence_clients"`
			Nodes           []struct{ Node string }
		}
		if err := json.Unmarshal([]byte(body), &st); err != nil || len(st.Nodes) != 2 || st.PresenceClients != 2 || st.Connections != 2 {
			return errors.New("cluster stats: " + body)
		}
		return nil
	})
	// And the other commands: unsubscribe, then disconnect for good.
	status, body = call(t, "POST", "http://"+gws[0].admin+"/api/unsubscribe", `{"client":"`+bID+`","channel":"news"}`, "")
	if status != http.StatusOK || !strings.Contains(body, `"connections":1`) {
		t.Fatalf("unsubscribe bob through a: %d %s", status, body)
	}
	if m := skipEvents(t, b, "unsubscribed"); m.Channel != "news" {
		t.Fatalf("bob got %s", m.Raw)
	}
	status, body = call(t, "POST", "http://"+gws[0].admin+"/api/disconnect", `{"client":"`+bID+`","reconnect":false,"reason":"bye"}`, "")
	if status != http.StatusOK || !strings.Contains(body, `"connections":1`) {
		t.Fatalf("disconnect bob through a: %d %s", status, body)
	}
	if reason := b.ExpectClose(4003); reason != "bye" {
		t.Fatalf("bob closed with %q", reason)
	}
	if m := skipEvents(t, a, "leave"); !strings.Contains(string(m.Raw), `"name":"bob"`) {
		t.Fatalf("a got %s", m.Raw)
	}
	// cy, on b, is there when b dies.
	join(gws[1], "cy")
	if m := skipEvents(t, a, "join"); !strings.Contains(string(m.Raw), `"name":"cy"`) {
		t.Fatalf("a got %s", m.Raw)
	}
	// b dies.
	_ = gws[1].Stop(t, syscall.SIGKILL, 10*time.Second)
	killed := time.Now()
	_, body = get(t, "http://"+gws[0].admin+"/api/presence?channel=chat:lobby", "")
	var p struct {
		Total   int
		Clients []struct{ Info struct{ Name string } }
	}
	if err := json.Unmarshal([]byte(body), &p); err != nil || p.Total != 1 || p.Clients[0].Info.Name != "ann" {
		t.Fatalf("presence on a after b died: %s", body)
	}
	if m := skipEvents(t, a, "error"); m.Code != "presence_lagging" || m.Channel != "chat:lobby" {
		t.Fatalf("got %s", m.Raw)
	}
	t.Logf("presence_lagging %v after SIGKILL (lease 3s)", time.Since(killed).Round(time.Millisecond))
}

// skipEvents reads c's frames until one of type typ, skipping the join
// and leave events of others: one relayed from another node may come late.
func skipEvents(t *testing.T, c *wstest.Client, typ string) wstest.Msg {
	t.Helper()
	for {
		m := c.ReadMsg()
		if m.Type == typ && (typ != "join" || !strings.Contains(string(m.Raw), `"name":"ann"`)) {
			return m
		}
		if m.Type != "join" && m.Type != "leave" {
			t.Fatalf("got %s, want %s", m.Raw, typ)
		}
	}
}
