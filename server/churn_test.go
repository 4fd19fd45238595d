package server_test

import (
	"context"
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
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range cycles {
				c, _ := wstest.Dial(t, g.addr, "/echo")
				if i%2 == 0 {
					// Half close cleanly, half just vanish.
					c.Write(wstest.Frame(true, 0, ws.OpClose, wstest.ClosePayload(1000, "")))
					c.ExpectClose(1000)
				}
				c.Conn.Close()
			}
		}()
	}
	wg.Wait()
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
