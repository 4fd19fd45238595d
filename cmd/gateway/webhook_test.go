package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgate/pushgate/internal/proctest"
	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/webhook"
)

const webhookSecret = "webhook-secret-for-tests"

// hookBackend is a real webhook backend: it checks each batch's
// signature, can fail the first deliveries, and hands on the events.
type hookBackend struct {
	*httptest.Server
	t      *testing.T
	mu     sync.Mutex
	fail   int      // deliveries still to answer 500
	bodies [][]byte // each POST's body, as it came (failed ones too)
	events chan webhook.Event
}

func newHookBackend(t *testing.T, fail int) *hookBackend {
	b := &hookBackend{t: t, fail: fail, events: make(chan webhook.Event, 10000)}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !webhook.Verify([]byte(webhookSecret), body, r.Header.Get("X-Pushgate-Signature")) {
			t.Errorf("webhook with a bad signature %q: %s", r.Header.Get("X-Pushgate-Signature"), body)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		b.mu.Lock()
		b.bodies = append(b.bodies, body)
		failing := b.fail > 0
		b.fail--
		b.mu.Unlock()
		if failing {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		var batch webhook.Batch
		if err := json.Unmarshal(body, &batch); err != nil || len(batch.Events) == 0 {
			t.Errorf("webhook body %s: %v", body, err)
		}
		for _, e := range batch.Events {
			b.events <- e
		}
	}))
	t.Cleanup(b.Close)
	return b
}

// next waits for the next event and checks its type and subject.
func (b *hookBackend) next(typ, name string) webhook.Event {
	b.t.Helper()
	select {
	case e := <-b.events:
		if e.Type != typ || e.User+e.Channel != name || e.Node == "" || e.Time == 0 {
			b.t.Fatalf("webhook event %+v, want %s of %s", e, typ, name)
		}
		return e
	case <-time.After(30 * time.Second):
		b.t.Fatalf("no %s of %s", typ, name)
	}
	return webhook.Event{}
}

// nextOf waits for the next events, in any order.
func (b *hookBackend) nextOf(want ...[2]string) {
	b.t.Helper()
	left := map[[2]string]bool{}
	for _, w := range want {
		left[w] = true
	}
	for range want {
		select {
		case e := <-b.events:
			k := [2]string{e.Type, e.User + e.Channel}
			if !left[k] {
				b.t.Fatalf("webhook event %+v, want one of %v", e, left)
			}
			delete(left, k)
		case <-time.After(30 * time.Second):
			b.t.Fatalf("no webhook events %v", left)
		}
	}
}

// userToken mints a token for user.
func userToken(t *testing.T, secret, user string, channels ...string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "channels": channels}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// quit closes a WebSocket with 1000 and waits for the server's close.
func quit(c *wstest.Client) {
	c.Write(wstest.Frame(true, 0, ws.OpClose, wstest.ClosePayload(1000, "")))
	c.ExpectClose(1000)
	c.Conn.Close()
}

// TestWebhooksEndToEnd: a user online at her first connection and offline
// only after her last has been closed for the delay; a channel occupied
// and vacated likewise; every batch signed, the first ones refused with
// 500 and delivered again byte for byte; the metrics count it all.
func TestWebhooksEndToEnd(t *testing.T) {
	jwtSecret := strings.Repeat("w", 32)
	be := newHookBackend(t, 2)
	g := runGateway(t, proctest.FreeAddr(t), proctest.FreeAddr(t), "--jwt-secret", jwtSecret,
		"--webhook", be.URL, "--webhook-secret", webhookSecret, "--webhook-offline-delay", "500ms", "--webhook-channels", "room:*")
	checked := map[string]bool{}

	a1, _ := wstest.Dial(t, g.addr, "/ws?channels=room:1&token="+userToken(t, jwtSecret, "alice", "room:*"))
	a1.ExpectMsg("subscribed", "")
	a1.ExpectMsg("subscribed", "")
	be.nextOf([2]string{webhook.UserOnline, "alice"}, [2]string{webhook.ChannelOccupied, "room:1"})
	be.mu.Lock()
	if len(be.bodies) < 3 || !bytes.Equal(be.bodies[0], be.bodies[1]) || !bytes.Equal(be.bodies[1], be.bodies[2]) {
		t.Errorf("the batch refused twice was not sent again as it was: %q", be.bodies)
	}
	be.mu.Unlock()

	a2, _ := wstest.Dial(t, g.addr, "/ws?channels=room:1&token="+userToken(t, jwtSecret, "alice", "room:*"))
	a2.ExpectMsg("subscribed", "")
	a2.ExpectMsg("subscribed", "")
	quit(a1)
	// Bob comes and goes after alice's first connection closed: his
	// offline, after the delay, is the next event, not alice's.
	b, _ := wstest.Dial(t, g.addr, "/ws?token="+userToken(t, jwtSecret, "bob"))
	b.ExpectMsg("subscribed", "")
	be.next(webhook.UserOnline, "bob")
	quit(b)
	be.next(webhook.UserOffline, "bob")

	closed := time.Now()
	quit(a2)
	be.nextOf([2]string{webhook.UserOffline, "alice"}, [2]string{webhook.ChannelVacated, "room:1"})
	if d := time.Since(closed); d < 500*time.Millisecond {
		t.Errorf("alice offline %v after her last connection closed, before the delay", d)
	}
	checkMetrics(t, g.admin, checked,
		expect{name: "pushgate_webhook_events_total", label: "type=user_online", want: 2},
		expect{name: "pushgate_webhook_events_total", label: "type=user_offline", want: 2},
		expect{name: "pushgate_webhook_events_total", label: "type=channel_occupied", want: 1},
		expect{name: "pushgate_webhook_events_total", label: "type=channel_vacated", want: 1},
		expect{name: "pushgate_webhook_deliveries_total", label: "result=error", want: 2},
		expect{name: "pushgate_webhook_deliveries_total", label: "result=ok", min: 3},
		expect{name: "pushgate_webhook_delivery_duration_seconds", min: 5},
		expect{name: "pushgate_webhook_queue_bytes", want: 0},
		expect{name: "pushgate_webhook_events_dropped_total", want: 0},
	)
}

// TestClusterWebhooks runs nats-server and gateways as processes. A user
// who moves from a draining gateway to another within the delay never
// goes offline; when the gateway holding a user's last connection is
// killed, the user goes offline within the documented bound:
// --node-lease-ttl × 4/3 + --webhook-offline-delay, plus a pass and a
// delivery.
func TestClusterWebhooks(t *testing.T) {
	natsBin := proctest.Program(t, "nats-server")
	bin := proctest.Gateway(t)
	natsAddr, natsMon := proctest.FreeAddr(t), proctest.FreeAddr(t)
	host, port, _ := net.SplitHostPort(natsAddr)
	_, monPort, _ := net.SplitHostPort(natsMon)
	nats := proctest.Start(t, "", natsBin, "-a", host, "-p", port, "-m", monPort, "-js", "-sd", t.TempDir())
	nats.WaitHTTP(t, "http://"+natsMon+"/healthz", http.StatusOK)

	jwtSecret := strings.Repeat("c", 32)
	be := newHookBackend(t, 0)
	const lease, delay = 2 * time.Second, time.Second
	type gateway struct {
		*proctest.Process
		addr, admin string
	}
	startGateway := func() gateway {
		g := gateway{addr: proctest.FreeAddr(t), admin: proctest.FreeAddr(t)}
		g.Process = proctest.Start(t, "", bin, "--addr", g.addr, "--admin-addr", g.admin, "--broker", "nats://"+natsAddr,
			"--jwt-secret", jwtSecret, "--node-lease-ttl", lease.String(), "--drain-timeout", "3s", "--close-timeout", "1s",
			"--webhook", be.URL, "--webhook-secret", webhookSecret, "--webhook-offline-delay", delay.String(), "--webhook-channels", "")
		g.WaitHTTP(t, "http://"+g.admin+"/readyz", http.StatusOK)
		return g
	}
	g1, g2 := startGateway(), startGateway()
	dial := func(g gateway, user string) *wstest.Client {
		c, _ := wstest.Dial(t, g.addr, "/ws?token="+userToken(t, jwtSecret, user))
		c.ExpectMsg("subscribed", "")
		return c
	}
	// sentinels: two users come and go; once both are offline, any
	// check due before them has been made.
	sentinels := func(g gateway) {
		for _, u := range []string{"s1", "s2"} {
			c := dial(g, u)
			be.next(webhook.UserOnline, u)
			quit(c)
			be.next(webhook.UserOffline, u)
		}
	}

	// alice on g1, which drains: she reconnects to g2 when told to.
	a := dial(g1, "alice")
	online := be.next(webhook.UserOnline, "alice")
	stopped := make(chan error, 1)
	go func() { stopped <- g1.Stop(t, syscall.SIGTERM, 10*time.Second) }()
	a.ExpectClose(1001)
	a.Conn.Close()
	a = dial(g2, "alice")
	if err := <-stopped; err != nil {
		t.Fatalf("g1 drain: %v", err)
	}
	sentinels(g2)

	// A third gateway joins; alice's only connection is on g2, killed.
	g3 := startGateway()
	killed := time.Now()
	if err := g2.Stop(t, syscall.SIGKILL, 5*time.Second); err != nil && !strings.Contains(err.Error(), "killed") {
		t.Logf("g2: %v", err)
	}
	a.Conn.Close()
	offline := be.next(webhook.UserOffline, "alice")
	took := time.Since(killed)
	bound := lease*4/3 + delay + 2*time.Second // a pass, a batch's linger, delivery, and a loaded machine
	t.Logf("offline %v after the SIGKILL of the node holding the last connection (bound %v); online from %s, offline from %s",
		took.Round(time.Millisecond), bound, online.Node, offline.Node)
	if took > bound {
		t.Errorf("offline %v after the SIGKILL, past the documented bound %v", took, bound)
	}
	// And nothing more about alice: the next events are the sentinels'
	// (next fails on any other).
	sentinels(g3)
}
