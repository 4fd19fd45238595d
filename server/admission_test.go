package server_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/server"
)

// stall opens a connection from the loopback address from that sends part
// of a request head and stops, and waits until the server counts it among
// the handshakes in flight (want in all).
func stall(t *testing.T, g *gateway, from, part string, want int) *wstest.Client {
	t.Helper()
	c := wstest.ConnectFrom(t, from, g.addr)
	c.Write([]byte(part))
	wstest.Eventually(t, fmt.Sprintf("%d handshakes in flight", want), func() bool {
		return count(g.m.HandshakesInFlight) == float64(want)
	})
	return c
}

// TestShedWhenFull: with every handshake slot held by a client that
// stalls, a new client is not kept waiting for a slot: the oldest stalled
// handshake is shed (closed, and counted), and the new client upgrades.
func TestShedWhenFull(t *testing.T) {
	// Deadlines that never fire here: only shedding can free a slot.
	g := start(t, server.Config{Echo: true, MaxHandshakes: 8, HandshakeTimeout: time.Minute, RequestLineTimeout: time.Minute})
	var stalled []*wstest.Client
	for i := range 8 {
		from := fmt.Sprintf("127.0.0.%d", 2+i%4) // four hosts, two each: under any per-source share
		stalled = append(stalled, stall(t, g, from, "GET /echo HTTP/1.1\r\nHost: x\r\n", i+1))
	}
	c, _ := wstest.Dial(t, g.addr, "/echo")
	c.Send("through")
	c.ExpectMessage(1, []byte("through"))
	stalled[0].ExpectEOF() // the oldest
	wstest.Eventually(t, "one shed counted as full", func() bool { return count(g.m.HandshakesShed("full")) == 1 })
	if n := count(g.m.HandshakesShed("per_source")); n != 0 {
		t.Errorf("%v shed per source", n)
	}
	for _, s := range stalled[1:] {
		assertOpen(t, s)
	}
}

// TestShedPerSource: one address holding its share of stalled handshakes
// sheds its own oldest for each new connection, and the rest of the slots
// stay free for others; a burst of quick handshakes from that same address
// (a load balancer's) is never refused.
func TestShedPerSource(t *testing.T) {
	g := start(t, server.Config{Echo: true, MaxHandshakes: 64, MaxHandshakesPerSource: 4,
		HandshakeTimeout: time.Minute, RequestLineTimeout: time.Minute})
	var stalled []*wstest.Client
	for i := range 4 {
		stalled = append(stalled, stall(t, g, "127.0.0.2", "GET /echo HTTP/1.1\r\n", i+1))
	}
	other := stall(t, g, "127.0.0.3", "GET /echo HTTP/1.1\r\n", 5)
	// The address keeps opening stalled connections, as an attacker does;
	// once its oldest has stalled long enough, the next one sheds it.
	wstest.Until(t, wstest.Timeout, func() error {
		if count(g.m.HandshakesShed("per_source")) > 0 {
			return nil
		}
		c := wstest.ConnectFrom(t, "127.0.0.2", g.addr)
		c.Write([]byte("GET /echo HTTP/1.1\r\n"))
		stalled = append(stalled, c)
		return fmt.Errorf("nothing shed after %d connections from one address", len(stalled))
	})
	stalled[0].ExpectEOF()
	if n := count(g.m.HandshakesShed("per_source")); n != 1 {
		t.Fatalf("%v shed per source, want 1", n)
	}
	assertOpen(t, other)

	// 40 quick handshakes at once from the address over its share.
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 40 {
		wg.Go(func() {
			c, err := wstest.TryConnectFrom("127.0.0.2", g.addr)
			if err != nil {
				errs <- err
				return
			}
			t.Cleanup(func() { c.Conn.Close() }) // held open to the end, as a client would
			if err := c.TryUpgrade("/echo"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a quick handshake from a busy address: %v", err)
	}
	if n := count(g.m.HandshakesShed("per_source")); n > float64(len(stalled)) {
		t.Errorf("%v shed per source; only the %d stalled ones may be", n, len(stalled))
	}
	assertOpen(t, other)
}

// TestRequestLineTimeout: a connection that has not sent its request line
// within RequestLineTimeout is dropped; one that has keeps the rest of
// HandshakeTimeout.
func TestRequestLineTimeout(t *testing.T) {
	g := start(t, server.Config{Echo: true, HandshakeTimeout: time.Minute, RequestLineTimeout: 100 * time.Millisecond})
	lined := wstest.Connect(t, g.addr)
	lined.Write([]byte("GET /echo HTTP/1.1\r\nHost: x\r\n"))
	partial := wstest.Connect(t, g.addr)
	partial.Write([]byte("GET /echo HTT"))
	partial.ExpectEOF()
	wstest.Eventually(t, "the timeout counted", func() bool { return count(g.m.Handshakes("timeout")) == 1 })
	assertOpen(t, lined)
	lined.Write([]byte("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	if resp := lined.Response(); resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %s", resp.Status)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// assertOpen checks that the server has neither closed c nor written to it.
func assertOpen(t *testing.T, c *wstest.Client) {
	t.Helper()
	_ = c.Conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if b, err := c.R.ReadByte(); err == nil || !isTimeout(err) {
		t.Fatalf("the connection got %q, %v; want it left open", b, err)
	}
	_ = c.Conn.SetReadDeadline(time.Time{})
}

// TestStormPastTheBound: a connect storm of quick clients far past
// MaxHandshakes, all at once. While every slot is held by a handshake
// that is not stalled, accepting pauses (the rest wait in the kernel's
// accept queue) instead of refusing: every client upgrades, none is shed.
func TestStormPastTheBound(t *testing.T) {
	opened := make(capture, 400)
	g := start(t, server.Config{Handler: opened, MaxHandshakes: 4, MaxHandshakesPerSource: 4})
	req := []byte(wstest.UpgradeRequest("/ws"))
	const clients = 400
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			from := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%4))}
			c, err := (&net.Dialer{LocalAddr: from, Timeout: 30 * time.Second}).Dial("tcp", g.addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Write(req); err != nil {
				errs <- err
				return
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				errs <- err
				return
			}
			if resp.StatusCode != http.StatusSwitchingProtocols {
				errs <- fmt.Errorf("answered %s", resp.Status)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a storm client: %v", err)
	}
	if n := count(g.m.HandshakesShed("full")) + count(g.m.HandshakesShed("per_source")); n != 0 {
		t.Errorf("%v quick handshakes shed", n)
	}
	// A client has its 101 before the server's Open runs for it.
	wstest.Eventually(t, "every connection opened", func() bool { return len(opened) == clients })
}
