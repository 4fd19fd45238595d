package server_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/server"
)

// TestChurnKeepsCountExact opens and closes connections from several
// goroutines at once, so that the kernel hands a closing connection's
// descriptor number to a new one as often as it can. The count of open
// connections must come back to zero, and a drain with nothing connected
// must find nothing to wait for.
func TestChurnKeepsCountExact(t *testing.T) {
	g := start(t, server.Config{Echo: true})
	const workers, cycles = 8, 250
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for i := range cycles {
				// Half close cleanly, half just vanish.
				if err := churnOnce(g.addr, i%2 == 0); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// The table and the gauge agree once every close is through.
	wstest.Eventually(t, "every connection to be released", func() bool { return g.Len() == 0 && count(g.m.ConnectionsOpen) == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatalf("drain with nothing connected: %v", err)
	}
	// A client that arrives after the drain is refused: nothing was left
	// behind to hold the server open.
	if c, err := net.Dial("tcp", g.addr); err == nil {
		c.Close()
		t.Fatal("listener still open after Shutdown")
	}
}

// churnOnce opens an echo connection and closes it, cleanly (close
// handshake first) or not.
func churnOnce(addr string, clean bool) error {
	c, err := wstest.TryConnectFrom("", addr)
	if err != nil {
		return err
	}
	defer c.Conn.Close()
	if err := c.TryUpgrade("/echo"); err != nil || !clean {
		return err
	}
	if _, err := c.Conn.Write(wstest.Frame(true, 0, ws.OpClose, wstest.ClosePayload(1000, ""))); err != nil {
		return err
	}
	switch code, _, err := c.TryReadClose(); {
	case err != nil:
		return err
	case code != 1000:
		return fmt.Errorf("close code %d, want 1000", code)
	}
	return nil
}
