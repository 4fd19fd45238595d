package hub

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pushgate/pushgate/bench/refserver"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitTimeout bounds every wait in these tests.
const waitTimeout = 5 * time.Second

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

// dial connects a client to path (such as "/ws?channel=a") and closes it
// when the test ends.
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

// waitClients polls h.Clients until it reports want.
func waitClients(t *testing.T, h *Hub, want int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for h.Clients() != want {
		if time.Now().After(deadline) {
			t.Fatalf("Clients() = %d, want %d", h.Clients(), want)
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

func publish(t *testing.T, srv *httptest.Server, path string, body []byte) {
	t.Helper()
	if code := post(t, srv, http.MethodPost, path, body); code != http.StatusNoContent {
		t.Fatalf("POST %s: status %d, want 204", path, code)
	}
}

// expect reads one message from c and checks it is a text message equal to
// want.
func expect(t *testing.T, c *websocket.Conn, want []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	typ, got, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v (want %.40q)", err, want)
	}
	if typ != websocket.MessageText || !bytes.Equal(got, want) {
		t.Fatalf("read %v %.40q (%d bytes), want text %.40q (%d bytes)",
			typ, got, len(got), want, len(want))
	}
}

func TestChannelsAreSeparateAndOrdered(t *testing.T) {
	h, srv := startHub(t)
	a1 := dial(t, srv, "/ws?channel=a")
	a2 := dial(t, srv, "/ws?channel=a")
	b := dial(t, srv, "/ws?channel=b")
	waitClients(t, h, 3)

	const n = 20
	var wantA, wantB [][]byte
	for i := range n {
		ma := fmt.Appendf(nil, "a-%d", i)
		mb := fmt.Appendf(nil, "b-%d", i)
		publish(t, srv, "/publish?channel=a", ma)
		publish(t, srv, "/publish?channel=b", mb)
		wantA = append(wantA, ma)
		wantB = append(wantB, mb)
	}
	// The end markers come last on each channel, so anything leaked from
	// the other channel would arrive before them.
	publish(t, srv, "/publish?channel=a", []byte("a-end"))
	publish(t, srv, "/publish?channel=b", []byte("b-end"))
	wantA = append(wantA, []byte("a-end"))
	wantB = append(wantB, []byte("b-end"))

	for _, c := range []*websocket.Conn{a1, a2} {
		for _, m := range wantA {
			expect(t, c, m)
		}
	}
	for _, m := range wantB {
		expect(t, b, m)
	}
}

func TestDefaultChannel(t *testing.T) {
	h, srv := startHub(t)
	implicit := dial(t, srv, "/ws")
	explicit := dial(t, srv, "/ws?channel=bench")
	other := dial(t, srv, "/ws?channel=other")
	waitClients(t, h, 3)

	publish(t, srv, "/publish", []byte("one"))
	publish(t, srv, "/publish?channel=bench", []byte("two"))
	publish(t, srv, "/publish?channel=other", []byte("end"))
	for _, c := range []*websocket.Conn{implicit, explicit} {
		expect(t, c, []byte("one"))
		expect(t, c, []byte("two"))
	}
	expect(t, other, []byte("end"))
}

func TestLargestPublish(t *testing.T) {
	h, srv := startHub(t)
	c := dial(t, srv, "/ws")
	waitClients(t, h, 1)

	big := bytes.Repeat([]byte("x"), refserver.MaxPublishBytes)
	publish(t, srv, "/publish", big)
	expect(t, c, big)
}

func TestPublishRejects(t *testing.T) {
	_, srv := startHub(t)
	if code := post(t, srv, http.MethodGet, "/publish", nil); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /publish: status %d, want 405", code)
	}
	tooBig := make([]byte, refserver.MaxPublishBytes+1)
	if code := post(t, srv, http.MethodPost, "/publish", tooBig); code != http.StatusRequestEntityTooLarge {
		t.Errorf("POST /publish with %d bytes: status %d, want 413", len(tooBig), code)
	}
}

func TestDisconnectedClientIsRemoved(t *testing.T) {
	h, srv := startHub(t)
	gone := dial(t, srv, "/ws")
	stays := dial(t, srv, "/ws")
	waitClients(t, h, 2)

	gone.CloseNow()
	waitClients(t, h, 1)
	publish(t, srv, "/publish", []byte("still here"))
	expect(t, stays, []byte("still here"))
}

func TestSlowClientIsDropped(t *testing.T) {
	h, srv := startHub(t)
	dial(t, srv, "/ws") // never read
	waitClients(t, h, 1)

	// Fill the socket buffers and then the send queue.
	msg := make([]byte, 64<<10)
	deadline := time.Now().Add(waitTimeout)
	for h.Clients() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("slow client was not dropped")
		}
		publish(t, srv, "/publish", msg)
	}

	// Its writePump may still be blocked on the full socket; Close must
	// not wait out the write deadline.
	start := time.Now()
	h.Close()
	if took := time.Since(start); took > writeWait/2 {
		t.Errorf("Close took %v with a dropped slow client", took)
	}
}

func TestCloseDisconnectsClients(t *testing.T) {
	h, srv := startHub(t)
	c := dial(t, srv, "/ws")
	waitClients(t, h, 1)

	h.Close()
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
