// Package reftest holds what the tests of the reference servers share: a
// real WebSocket client (coder/websocket) and HTTP helpers against an
// httptest server, every wait bounded by Timeout.
package reftest

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

	"github.com/pushgate/pushgate/internal/wstest"
)

// Timeout bounds every wait.
const Timeout = 5 * time.Second

// Dial connects a client to path (such as "/ws?channel=a") and closes it
// when the test ends.
func Dial(t testing.TB, srv *httptest.Server, path string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
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

// WaitClients waits until clients reports want.
func WaitClients(t testing.TB, clients func() int, want int) {
	t.Helper()
	wstest.Eventually(t, fmt.Sprintf("%d clients", want), func() bool { return clients() == want })
}

// Post sends body to path and returns the response status.
func Post(t testing.TB, srv *httptest.Server, method, path string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// Publish posts body to path and requires 204.
func Publish(t testing.TB, srv *httptest.Server, path string, body []byte) {
	t.Helper()
	if code := Post(t, srv, http.MethodPost, path, body); code != http.StatusNoContent {
		t.Fatalf("POST %s: status %d, want 204", path, code)
	}
}

// Read reads one message from c and reports how it differs from a text
// message holding want; it is safe to call from any goroutine.
func Read(c *websocket.Conn, want []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
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

// Expect reads one message from c and requires it to be text equal to want.
func Expect(t testing.TB, c *websocket.Conn, want []byte) {
	t.Helper()
	if err := Read(c, want); err != nil {
		t.Fatal(err)
	}
}
