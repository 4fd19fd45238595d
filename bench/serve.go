package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/pushgate/pushgate/bench/floor"
	"github.com/pushgate/pushgate/bench/hub"
)

// serveMain runs a reference server until SIGTERM or SIGINT: the harness
// starts them this way, and users can run one by hand.
func serveMain(args []string) int {
	if len(args) == 0 || (args[0] != "hub" && args[0] != "floor") {
		fmt.Fprintln(os.Stderr, "usage: go run ./bench serve hub|floor [--addr 127.0.0.1:9000]")
		return 2
	}
	fs := flag.NewFlagSet("serve "+args[0], flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:9000", "listen address")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	var h http.Handler
	var closeFn func()
	switch args[0] {
	case "hub":
		s := hub.New()
		h, closeFn = s.Handler(), s.Close
	case "floor":
		s := floor.New()
		h, closeFn = s.Handler(), s.Close
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &http.Server{Handler: h}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		closeFn()
		_ = srv.Close()
	}()
	fmt.Fprintf(os.Stderr, "%s listening on %s\n", args[0], ln.Addr())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
