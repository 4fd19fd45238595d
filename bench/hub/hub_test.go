package hub

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/pushgate/pushgate/bench/refserver"
	"github.com/pushgate/pushgate/bench/refserver/reftest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startHub(t *testing.T) (*Hub, *httptest.Server) {
	t.Helper()
	h := New()
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(func() {
		srv.Close()
		h.Close()
	})
	return h, srv
}

func TestChannelsAreSeparateAndOrdered(t *testing.T) {
	h, srv := startHub(t)
	a1 := reftest.Dial(t, srv, "/ws?channel=a")
	a2 := reftest.Dial(t, srv, "/ws?channel=a")
	b := reftest.Dial(t, srv, "/ws?channel=b")
	reftest.WaitClients(t, h.Clients, 3)

	const n = 20
	var wantA, wantB [][]byte
	for i := range n {
		ma := fmt.Appendf(nil, "a-%d", i)
		mb := fmt.Appendf(nil, "b-%d", i)
		reftest.Publish(t, srv, "/publish?channel=a", ma)
		reftest.Publish(t, srv, "/publish?channel=b", mb)
		wantA = append(wantA, ma)
		wantB = append(wantB, mb)
	}
	// The end markers come last on each channel, so anything leaked from
	// the other channel would arrive before them.
	reftest.Publish(t, srv, "/publish?channel=a", []byte("a-end"))
	reftest.Publish(t, srv, "/publish?channel=b", []byte("b-end"))
	wantA = append(wantA, []byte("a-end"))
	wantB = append(wantB, []byte("b-end"))

	for _, c := range []*websocket.Conn{a1, a2} {
		for _, m := range wantA {
			reftest.Expect(t, c, m)
		}
	}
	for _, m := range wantB {
		reftest.Expect(t, b, m)
	}
}

func TestDefaultChannel(t *testing.T) {
	h, srv := startHub(t)
	implicit := reftest.Dial(t, srv, "/ws")
	explicit := reftest.Dial(t, srv, "/ws?channel=bench")
	other := reftest.Dial(t, srv, "/ws?channel=other")
	reftest.WaitClients(t, h.Clients, 3)

	reftest.Publish(t, srv, "/publish", []byte("one"))
	reftest.Publish(t, srv, "/publish?channel=bench", []byte("two"))
	reftest.Publish(t, srv, "/publish?channel=other", []byte("end"))
	for _, c := range []*websocket.Conn{implicit, explicit} {
		reftest.Expect(t, c, []byte("one"))
		reftest.Expect(t, c, []byte("two"))
	}
	reftest.Expect(t, other, []byte("end"))
}

func TestLargestPublish(t *testing.T) {
	h, srv := startHub(t)
	c := reftest.Dial(t, srv, "/ws")
	reftest.WaitClients(t, h.Clients, 1)

	big := bytes.Repeat([]byte("x"), refserver.MaxPublishBytes)
	reftest.Publish(t, srv, "/publish", big)
	reftest.Expect(t, c, big)
}

func TestPublishRejects(t *testing.T) {
	_, srv := startHub(t)
	if code := reftest.Post(t, srv, http.MethodGet, "/publish", nil); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /publish: status %d, want 405", code)
	}
	tooBig := make([]byte, refserver.MaxPublishBytes+1)
	if code := reftest.Post(t, srv, http.MethodPost, "/publish", tooBig); code != http.StatusRequestEntityTooLarge {
		t.Errorf("POST /publish with %d bytes: status %d, want 413", len(tooBig), code)
	}
}

func TestDisconnectedClientIsRemoved(t *testing.T) {
	h, srv := startHub(t)
	gone := reftest.Dial(t, srv, "/ws")
	stays := reftest.Dial(t, srv, "/ws")
	reftest.WaitClients(t, h.Clients, 2)

	gone.CloseNow()
	reftest.WaitClients(t, h.Clients, 1)
	reftest.Publish(t, srv, "/publish", []byte("still here"))
	reftest.Expect(t, stays, []byte("still here"))
}

func TestSlowClientIsDropped(t *testing.T) {
	h, srv := startHub(t)
	// Every write deadline the hub sets for this client is at least
	// writeWait after this.
	dialed := time.Now()
	reftest.Dial(t, srv, "/ws") // never read
	reftest.WaitClients(t, h.Clients, 1)

	// Fill the socket buffers and then the send queue.
	msg := make([]byte, 64<<10)
	deadline := time.Now().Add(reftest.Timeout)
	for h.Clients() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("slow client was not dropped")
		}
		reftest.Publish(t, srv, "/publish", msg)
	}

	// Its writePump may still be blocked on the full socket; Close must
	// not wait out the write deadline: it returns before any deadline of
	// that client could have passed.
	h.Close()
	if at := time.Now(); !at.Before(dialed.Add(writeWait)) {
		t.Errorf("Close returned %v after the slow client connected, when its write deadline (%v) could have passed", at.Sub(dialed), writeWait)
	}
}

func TestCloseDisconnectsClients(t *testing.T) {
	h, srv := startHub(t)
	c := reftest.Dial(t, srv, "/ws")
	reftest.WaitClients(t, h.Clients, 1)

	h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), reftest.Timeout)
	defer cancel()
	if _, _, err := c.Read(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("read after Close: err %v, ctx %v; want the connection closed", err, ctx.Err())
	}
	if code := reftest.Post(t, srv, http.MethodPost, "/publish", []byte("late")); code != http.StatusServiceUnavailable {
		t.Errorf("publish after Close: status %d, want 503", code)
	}
}

func TestMetricsAndHealth(t *testing.T) {
	_, srv := startHub(t)
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d, err %v", resp.StatusCode, err)
	}
	for _, name := range []string{"process_resident_memory_bytes", "go_goroutines", "\nrefserver_clients 0\n"} {
		if !bytes.Contains(body, []byte(name)) {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	resp, err = srv.Client().Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Errorf("GET /healthz: %d %q, want 200 \"ok\"", resp.StatusCode, body)
	}
}
