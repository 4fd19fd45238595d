package floor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pushgate/pushgate/bench/refserver"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitTimeout bounds every wait in these tests.
const waitTimeout = 5 * time.Second

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

// dial connects a client to path and closes it when the test ends.
func dial(t *testing.T, srv *httptest.Server, path string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+path,
		&websocket.DialOptions{HTTPClient: srv.Client()})
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	c.SetReadLimit(2 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// dialN connects n clients and waits until the floor holds them all.
func dialN(t *testing.T, f *Floor, srv *httptest.Server, n int) []*websocket.Conn {
	t.Helper()
	cs := make([]*websocket.Conn, n)
	for i := range cs {
		cs[i] = dial(t, srv, "/ws")
	}
	waitClients(t, f, n)
	return cs
}

// waitClients polls f.Clients until it reports want.
func waitClients(t *testing.T, f *Floor, want int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for f.Clients() != want {
		if time.Now().After(deadline) {
			t.Fatalf("Clients() = %d, want %d", f.Clients(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func post(t *testing.T, srv *httptest.Server, method, path string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func publish(t *testing.T, srv *httptest.Server, body []byte) {
	t.Helper()
	if code := post(t, srv, http.MethodPost, "/publish", body); code != http.StatusNoContent {
		t.Fatalf("POST /publish: status %d, want 204", code)
	}
}

// read reads one message from c and reports how it differs from a text
// message holding want; it is safe to call from any goroutine.
func read(c *websocket.Conn, want []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	typ, got, err := c.Read(ctx)
	if err != nil {
		return fmt.Errorf("read: %w (want %.40q)", err, want)
	}
	if typ != websocket.MessageText || !bytes.Equal(got, want) {
		return fmt.Errorf("read %v %.40q (%d bytes), want text %.40q (%d bytes)",
			typ, got, len(got), want, len(want))
	}
	return nil
}

// expectAll checks that every client receives want next.
func expectAll(t *testing.T, cs []*websocket.Conn, want []byte) {
	t.Helper()
	for i, c := range cs {
		if err := read(c, want); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
}

func TestEveryClientGetsEveryPublish(t *testing.T) {
	f, srv := startFloor(t)
	cs := dialN(t, f, srv, 3)

	for i := range 20 {
		msg := fmt.Appendf(nil, "msg-%d", i)
		publish(t, srv, msg)
		expectAll(t, cs, msg)
	}
	// Publishes queue up in the sockets when nobody reads in between.
	var want [][]byte
	for i := range 20 {
		msg := fmt.Appendf(nil, "burst-%d", i)
		publish(t, srv, msg)
		want = append(want, msg)
	}
	for _, msg := range want {
		expectAll(t, cs, msg)
	}
}

func TestQueryIsIgnored(t *testing.T) {
	f, srv := startFloor(t)
	c := dial(t, srv, "/ws?channel=elsewhere")
	waitClients(t, f, 1)

	publish(t, srv, []byte("hello"))
	if err := read(c, []byte("hello")); err != nil {
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
		wg.Go(func() { errs[i] = read(c, big) })
	}
	publish(t, srv, big)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("client %d: %v", i, err)
		}
	}
}

func TestPublishRejects(t *testing.T) {
	_, srv := startFloor(t)
	if code := post(t, srv, http.MethodGet, "/publish", nil); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /publish: status %d, want 405", code)
	}
	tooBig := make([]byte, refserver.MaxPublishBytes+1)
	if code := post(t, srv, http.MethodPost, "/publish", tooBig); code != http.StatusRequestEntityTooLarge {
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
	deadline := time.Now().Add(waitTimeout)
	published := 0
	for ; f.Clients() != 2; published++ {
		if time.Now().After(deadline) {
			t.Fatalf("Clients() = %d after closing one of 3, want 2", f.Clients())
		}
		msg := fmt.Appendf(nil, "after-close-%d", published)
		publish(t, srv, msg)
		expectAll(t, live, msg)
	}
	t.Logf("closed client dropped after %d publishes", published)
	for i := range 5 {
		msg := fmt.Appendf(nil, "after-drop-%d", i)
		publish(t, srv, msg)
		expectAll(t, live, msg)
	}
}

func TestCloseDisconnectsClients(t *testing.T) {
	f, srv := startFloor(t)
	c := dial(t, srv, "/ws")
	waitClients(t, f, 1)

	f.Close()
	if f.Clients() != 0 {
		t.Errorf("Clients() = %d after Close, want 0", f.Clients())
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, _, err := c.Read(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("read after Close: err %v, ctx %v; want the connection closed", err, ctx.Err())
	}
	if code := post(t, srv, http.MethodPost, "/publish", []byte("late")); code != http.StatusServiceUnavailable {
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
