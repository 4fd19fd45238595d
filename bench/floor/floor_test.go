package floor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pushgate/pushgate/bench/refserver"
	"github.com/pushgate/pushgate/bench/refserver/reftest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startFloor(t *testing.T) (*Floor, *httptest.Server) {
	t.Helper()
	f := New()
	srv := httptest.NewServer(f.Handler())
	t.Cleanup(func() {
		srv.Close()
		f.Close()
	})
	return f, srv
}

// dialN connects n clients and waits until the floor holds them all.
func dialN(t *testing.T, f *Floor, srv *httptest.Server, n int) []*websocket.Conn {
	t.Helper()
	cs := make([]*websocket.Conn, n)
	for i := range cs {
		cs[i] = reftest.Dial(t, srv, "/ws")
	}
	reftest.WaitClients(t, f.Clients, n)
	return cs
}

// expectAll checks that every client receives want next.
func expectAll(t *testing.T, cs []*websocket.Conn, want []byte) {
	t.Helper()
	for i, c := range cs {
		if err := reftest.Read(c, want); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
}

func TestEveryClientGetsEveryPublish(t *testing.T) {
	f, srv := startFloor(t)
	cs := dialN(t, f, srv, 3)

	for i := range 20 {
		msg := fmt.Appendf(nil, "msg-%d", i)
		reftest.Publish(t, srv, "/publish", msg)
		expectAll(t, cs, msg)
	}
	// Publishes queue up in the sockets when nobody reads in between.
	var want [][]byte
	for i := range 20 {
		msg := fmt.Appendf(nil, "burst-%d", i)
		reftest.Publish(t, srv, "/publish", msg)
		want = append(want, msg)
	}
	for _, msg := range want {
		expectAll(t, cs, msg)
	}
}

func TestQueryIsIgnored(t *testing.T) {
	f, srv := startFloor(t)
	c := reftest.Dial(t, srv, "/ws?channel=elsewhere")
	reftest.WaitClients(t, f.Clients, 1)

	reftest.Publish(t, srv, "/publish", []byte("hello"))
	if err := reftest.Read(c, []byte("hello")); err != nil {
		t.Fatal(err)
	}
}

// TestLargestPublish sends a frame larger than the socket buffers, so the
// writes are partial and the publish only returns as the clients read.
func TestLargestPublish(t *testing.T) {
	f, srv := startFloor(t)
	cs := dialN(t, f, srv, 3)

	big := bytes.Repeat([]byte("y"), refserver.MaxPublishBytes)
	var wg sync.WaitGroup
	errs := make([]error, len(cs))
	for i, c := range cs {
		wg.Go(func() { errs[i] = reftest.Read(c, big) })
	}
	reftest.Publish(t, srv, "/publish", big)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("client %d: %v", i, err)
		}
	}
}

func TestPublishRejects(t *testing.T) {
	_, srv := startFloor(t)
	if code := reftest.Post(t, srv, http.MethodGet, "/publish", nil); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /publish: status %d, want 405", code)
	}
	tooBig := make([]byte, refserver.MaxPublishBytes+1)
	if code := reftest.Post(t, srv, http.MethodPost, "/publish", tooBig); code != http.StatusRequestEntityTooLarge {
		t.Errorf("POST /publish with %d bytes: status %d, want 413", len(tooBig), code)
	}
}

// TestClosedClientIsDropped closes one client: the first write to its socket
// may still succeed, so publishing goes on until a write fails and the
// descriptor is dropped, while the others keep receiving everything.
func TestClosedClientIsDropped(t *testing.T) {
	f, srv := startFloor(t)
	cs := dialN(t, f, srv, 3)

	cs[1].CloseNow()
	live := []*websocket.Conn{cs[0], cs[2]}
	deadline := time.Now().Add(reftest.Timeout)
	published := 0
	for ; f.Clients() != 2; published++ {
		if time.Now().After(deadline) {
			t.Fatalf("Clients() = %d after closing one of 3, want 2", f.Clients())
		}
		msg := fmt.Appendf(nil, "after-close-%d", published)
		reftest.Publish(t, srv, "/publish", msg)
		expectAll(t, live, msg)
	}
	t.Logf("closed client dropped after %d publishes", published)
	for i := range 5 {
		msg := fmt.Appendf(nil, "after-drop-%d", i)
		reftest.Publish(t, srv, "/publish", msg)
		expectAll(t, live, msg)
	}
}

func TestCloseDisconnectsClients(t *testing.T) {
	f, srv := startFloor(t)
	c := reftest.Dial(t, srv, "/ws")
	reftest.WaitClients(t, f.Clients, 1)

	f.Close()
	if f.Clients() != 0 {
		t.Errorf("Clients() = %d after Close, want 0", f.Clients())
	}
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
	_, srv := startFloor(t)
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
