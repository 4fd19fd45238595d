// Package servertest runs a server.Server on a loopback port for a test.
package servertest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/pushgate/pushgate/server"
)

// Serve serves srv on a free loopback port until the test ends, then
// drains it (within 5 s), checks that Serve returned cleanly, and runs
// after (closing what the server used, say). It returns the address.
func Serve(t testing.TB, srv *server.Server, after ...func()) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		for _, f := range after {
			f()
		}
	})
	return ln.Addr().String()
}
