// Package natstest runs an embedded NATS server with JetStream for a
// test, on a free loopback port, and can stop and start it again there.
package natstest

import (
	"net"
	"strconv"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/pushgate/pushgate/internal/proctest"
)

// Server is an embedded NATS server.
type Server struct {
	URL string // nats://127.0.0.1:<port>
	Dir string // JetStream's store

	t    testing.TB
	opts natsserver.Options
	srv  *natsserver.Server
}

// Start starts a server, tuned by options if given, and stops it when the
// test ends.
func Start(t testing.TB, options ...func(*natsserver.Options)) *Server {
	t.Helper()
	_, p, _ := net.SplitHostPort(proctest.FreeAddr(t))
	port, _ := strconv.Atoi(p)
	s := &Server{URL: "nats://127.0.0.1:" + p, Dir: t.TempDir(), t: t}
	s.opts = natsserver.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: s.Dir, NoLog: true, NoSigs: true}
	for _, o := range options {
		o(&s.opts)
	}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start starts the server again on its port (after Stop).
func (s *Server) Start() {
	s.t.Helper()
	opts := s.opts
	srv, err := natsserver.NewServer(&opts)
	if err != nil {
		s.t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		s.t.Fatal("NATS did not start")
	}
	s.srv = srv
}

// Stop shuts the server down; it may be started again.
func (s *Server) Stop() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
}
