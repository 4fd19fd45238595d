package server_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/metrics"
	"github.com/pushgate/pushgate/netpoll"
	"github.com/pushgate/pushgate/server"
)

// TestServeRefusesTLSListener: a crypto/tls listener's connections have no
// descriptor to park in epoll, so Serve refuses it at once instead of
// upgrading connections it then cannot hold.
func TestServeRefusesTLSListener(t *testing.T) {
	srv, err := server.New(server.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Shutdown(context.Background()) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(tls.NewListener(ln, &tls.Config{})) }()
	select {
	case err := <-served:
		if !errors.Is(err, netpoll.ErrNoDescriptor) {
			t.Fatalf("Serve: %v, want an error wrapping netpoll.ErrNoDescriptor", err)
		}
		t.Logf("Serve: %v", err)
	case <-time.After(wstest.Timeout):
		ln.Close()
		<-served
		t.Fatal("Serve took a TLS listener")
	}
}

// opaqueListener has a descriptor of its own but hands out connections
// that do not expose theirs, as a wrapping listener might.
type opaqueListener struct{ *net.TCPListener }

func (l opaqueListener) Accept() (net.Conn, error) {
	c, err := l.TCPListener.Accept()
	if err != nil {
		return nil, err
	}
	return struct{ net.Conn }{c}, nil
}

// TestNoUpgradeWithoutDescriptor: a connection that cannot be detached is
// refused with 500 before any 101 is written, and is closed, not leaked.
func TestNoUpgradeWithoutDescriptor(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	srv, err := server.New(server.Config{Echo: true, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(opaqueListener{ln}) }()
	defer func() {
		_ = srv.Shutdown(context.Background())
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	c := wstest.Connect(t, ln.Addr().String())
	c.Write([]byte(wstest.UpgradeRequest("/echo")))
	if resp := c.Response(); resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status %s, want 500", resp.Status)
	}
	c.ExpectEOF()
	wstest.Eventually(t, "the refusal counted", func() bool { return count(m.Handshakes("internal_error")) == 1 })
	if n := srv.Len(); n != 0 {
		t.Fatalf("%d connections registered", n)
	}
}
