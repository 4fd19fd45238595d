package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/proctest"
)

// The admin listener binds loopback unless told otherwise: its API
// publishes without a key by default.
func TestAdminDefaultLoopback(t *testing.T) {
	c, err := parseConfig(nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(c.AdminAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		t.Fatalf("default --admin-addr %q: want a loopback address", c.AdminAddr)
	}
	var help bytes.Buffer
	run(context.Background(), []string{"--help"}, env(nil), &help, io.Discard)
	if !strings.Contains(help.String(), "env PUSHGATE_ADMIN_ADDR, default "+c.AdminAddr+"\n") {
		t.Errorf("--help does not show the default %s:\n%s", c.AdminAddr, help.String())
	}

	// The real binary, without --admin-addr. The port is fixed, so another
	// program may hold it on this shared machine: then there is nothing to
	// learn here.
	if ln, err := net.Listen("tcp", c.AdminAddr); err != nil {
		t.Skipf("the default admin address %s is in use: %v", c.AdminAddr, err)
	} else {
		ln.Close()
	}
	p := proctest.Start(t, "", proctest.Gateway(t), "--addr", proctest.FreeAddr(t))
	p.WaitHTTP(t, "http://"+c.AdminAddr+"/readyz", http.StatusOK)
	// Another address of this host (127.0.0.2 is as much this machine as
	// 127.0.0.1, and reached :9090 when the default was ":9090").
	other := net.JoinHostPort("127.0.0.2", port)
	if conn, err := net.Dial("tcp", other); err == nil {
		conn.Close()
		t.Errorf("the admin listener answers on %s: it is not bound to loopback only", other)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial %s: %v, want connection refused", other, err)
	}
	if err := p.Stop(t, syscall.SIGTERM, 10*time.Second); err != nil {
		t.Errorf("exit: %v", err)
	}
	logs := p.Logs.String()
	if !strings.Contains(logs, "admin_addr="+c.AdminAddr) || !strings.Contains(logs, "the admin API is open") {
		t.Errorf("the start log does not name the admin address and warn of the open API:\n%s", logs)
	}
}
