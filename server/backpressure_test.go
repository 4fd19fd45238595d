package server_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/wsproto"
)

// TestHalfFrameClients parks several times the pool's size of clients that
// each sent part of a frame, and checks that an ordinary client is served
// meanwhile and that the partial frames complete later.
func TestHalfFrameClients(t *testing.T) {
	const workers = 2
	g := start(t, server.Config{Echo: true, Workers: workers})
	type half struct {
		c    *wstest.Client
		rest []byte
		want []byte
	}
	var halves []half
	for i := range 4 * workers {
		payload := []byte(fmt.Sprintf("message %d %s", i, strings.Repeat("x", 200)))
		frame := wstest.Frame(true, 0, ws.OpText, payload)
		cut := []int{1, 2, 4, len(frame) / 2}[i%4] // inside the header or the payload
		c, _ := wstest.Dial(t, g.addr, "/echo")
		c.Write(frame[:cut])
		halves = append(halves, half{c, frame[cut:], payload})
	}
	wstest.Eventually(t, "every half frame held", func() bool { return g.gauge(t, "pushgate_partial_messages") == float64(len(halves)) })
	ordinary, _ := wstest.Dial(t, g.addr, "/echo")
	for i := range 20 {
		msg := fmt.Appendf(nil, "ordinary %d", i)
		ordinary.Write(wstest.Frame(true, 0, ws.OpText, msg))
		ordinary.ExpectMessage(ws.OpText, msg)
	}
	for _, h := range halves {
		h.c.Write(h.rest)
		h.c.ExpectMessage(ws.OpText, h.want)
	}
	wstest.Eventually(t, "no partial message left", func() bool { return g.gauge(t, "pushgate_partial_messages") == 0 })

	// A client that hangs up mid-frame releases its reader too.
	quitter, _ := wstest.Dial(t, g.addr, "/echo")
	quitter.Write(wstest.Text("never finished")[:5])
	wstest.Eventually(t, "the quitter's half frame held", func() bool { return g.gauge(t, "pushgate_partial_messages") == 1 })
	quitter.Conn.Close()
	wstest.Eventually(t, "the quitter's reader released", func() bool { return g.gauge(t, "pushgate_partial_messages") == 0 })
}

// TestSlowReader fills a client that never reads until its outbound queue
// overflows: it is closed with 1013 and counted, and another client is
// served all along.
func TestSlowReader(t *testing.T) {
	g := start(t, server.Config{Echo: true, OutboundQueueBytes: 64 << 10})
	slow, _ := wstest.Dial(t, g.addr, "/echo")
	other, _ := wstest.Dial(t, g.addr, "/echo")

	// Echoes pile up in the server: the kernel's buffers first, then the
	// queue. Stop writing once the server gives up on the slow reader.
	msg := wstest.Frame(true, 0, ws.OpBinary, bytes.Repeat([]byte{'s'}, 32<<10))
	for i := 0; count(g.m.SlowConsumers) == 0; i++ {
		if i == 10000 {
			t.Fatal("no slow-consumer close after 320 MiB")
		}
		if _, err := slow.Conn.Write(msg); err != nil {
			break // the server stopped reading once it had closed
		}
		if i%50 == 0 {
			other.Write(wstest.Text("still served?"))
			other.ExpectMessage(ws.OpText, []byte("still served?"))
		}
	}
	wstest.Eventually(t, "the slow consumer counted", func() bool { return count(g.m.SlowConsumers) == 1 })
	if count(g.m.DroppedFrames) < 1 {
		t.Errorf("no dropped frames counted")
	}
	if q := g.gauge(t, "pushgate_outbound_queued_bytes"); q <= 0 {
		t.Errorf("outbound_queued_bytes %v while a close frame waits", q)
	}
	// Reading now, the client finds the echoes the kernel held, then 1013.
	if reason := slow.ExpectClose(1013); reason != "slow consumer" {
		t.Errorf("reason %q", reason)
	}
	other.Write(wstest.Text("and after"))
	other.ExpectMessage(ws.OpText, []byte("and after"))
	slow.Conn.Close()
	wstest.Eventually(t, "the close counted", func() bool { return count(g.m.ConnectionsClosed("slow_consumer")) == 1 })
	if q := g.gauge(t, "pushgate_outbound_queued_bytes"); q != 0 {
		t.Errorf("outbound_queued_bytes %v with no queue left", q)
	}
}

// TestHeartbeatClosesSilent checks that a client that never answers pings
// is closed with 1001 and counted. Whatever the machine's speed, the mute
// client stays silent, so the short timeouts decide nothing but the
// test's length.
func TestHeartbeatClosesSilent(t *testing.T) {
	g := start(t, server.Config{Echo: true, PingInterval: 50 * time.Millisecond, PongTimeout: 50 * time.Millisecond})
	mute, _ := wstest.Dial(t, g.addr, "/echo")
	if h, _ := mute.ReadFrame(); h.OpCode != ws.OpPing {
		t.Fatalf("got %v, want a ping", h.OpCode)
	}
	if reason := mute.ExpectClose(1001); reason != "ping timeout" {
		t.Errorf("reason %q", reason)
	}
	mute.ExpectEOF()
	wstest.Eventually(t, "the eviction counted", func() bool { return count(g.m.Evictions) == 1 })
	if n := count(g.m.HeartbeatPings); n != 1 {
		t.Errorf("%v pings, want the one the mute client left unanswered", n)
	}
}

// TestHeartbeatKeepsAnswering checks that a client that answers pings is
// kept and pinged again after each answer, while one that does not answer
// is not pinged again. The server pings a connection again only once its
// previous ping was answered, so a third ping to the lively client is the
// event that shows its pongs were taken. The pong timeout is longer than
// the test, so no scheduling delay can evict a client that answers; the
// eviction itself is TestHeartbeatClosesSilent's.
func TestHeartbeatKeepsAnswering(t *testing.T) {
	g := start(t, server.Config{Echo: true, PingInterval: 20 * time.Millisecond, PongTimeout: time.Hour})
	mute, _ := wstest.Dial(t, g.addr, "/echo")
	lively, _ := wstest.Dial(t, g.addr, "/echo")

	// Each client reports the frames it gets; the lively one answers
	// every ping.
	type frame struct {
		op      ws.OpCode
		payload string
	}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	frames := func(c *wstest.Client, answer bool) <-chan frame {
		got := make(chan frame, 1)
		go func() {
			defer close(got)
			for {
				h, p, err := c.TryReadFrame()
				if err != nil {
					return
				}
				if h.OpCode == ws.OpPing && answer {
					if _, err := c.Conn.Write(wstest.Frame(true, 0, ws.OpPong, p)); err != nil {
						return
					}
				}
				select {
				case got <- frame{h.OpCode, string(p)}:
				case <-stop:
					return
				}
			}
		}()
		return got
	}
	mutes, livelies := frames(mute, false), frames(lively, true)

	if f := <-mutes; f.op != ws.OpPing {
		t.Fatalf("mute client got %v, want a ping", f.op)
	}
	for i := range 3 {
		if f, ok := <-livelies; !ok || f.op != ws.OpPing {
			t.Fatalf("lively client: frame %d is %v %q (open %v), want a ping", i+1, f.op, f.payload, ok)
		}
	}
	lively.Write(wstest.Text("alive"))
	for {
		f, ok := <-livelies
		if !ok {
			t.Fatal("the lively client's connection ended before its echo")
		}
		if f.op == ws.OpText && f.payload == "alive" {
			break
		}
		if f.op != ws.OpPing {
			t.Fatalf("lively client got %v %q, want pings and its echo", f.op, f.payload)
		}
	}
	// The mute client's one ping is still unanswered: it got no other.
	select {
	case f, ok := <-mutes:
		t.Fatalf("mute client got %v %q (open %v) after its unanswered ping", f.op, f.payload, ok)
	default:
	}
	if n := count(g.m.Evictions); n != 0 {
		t.Errorf("%v evictions with an hour's pong timeout", n)
	}
}

// TestHeartbeatKeepsSlowReaders: a client that reads, but more slowly than
// its messages come, has its ping wait in the server's queue behind them;
// its pong cannot come until it has read that far. While the socket takes
// bytes it is alive, and it is not evicted, however far behind it is; it
// gets everything, in order. (Evicted, it would reconnect and fall behind
// again: on an overloaded cluster that cascaded.)
func TestHeartbeatKeepsSlowReaders(t *testing.T) {
	g, client, conn := smallWindowClient(t, 100*time.Millisecond, 2*time.Second)
	// 32 MiB queued at once, far more than the sockets hold.
	const frames, size = 512, 64 << 10
	for i := range frames {
		payload := bytes.Repeat([]byte{byte('a' + i%26)}, size)
		binary.BigEndian.PutUint32(payload, uint32(i))
		if err := conn.Send(wsproto.AppendFrame(nil, ws.OpBinary, payload)); err != nil {
			t.Fatal(err)
		}
	}
	// Read at about 8 MiB a second at most: 4 s or more, twice the pong
	// timeout, answering each ping when it comes.
	next, pongs := 0, 0
	for next < frames || pongs == 0 { // and a ping after the last frame, answered
		h, p, err := client.TryReadFrame()
		if err != nil {
			t.Fatalf("after %d of %d frames: %v (evictions %v)", next, frames, err, count(g.m.Evictions))
		}
		switch h.OpCode {
		case ws.OpPing:
			client.Write(wstest.Frame(true, 0, ws.OpPong, p))
			pongs++
		case ws.OpBinary:
			if got := int(binary.BigEndian.Uint32(p)); got != next || len(p) != size {
				t.Fatalf("frame %d of %d bytes, want %d of %d", got, len(p), next, size)
			}
			if next++; next == frames {
				pongs = 0
			}
			time.Sleep(8 * time.Millisecond) // a slow reader, not a synchronisation
		case ws.OpClose:
			t.Fatalf("closed after %d of %d frames: %q (evictions %v)", next, frames, p, count(g.m.Evictions))
		}
	}
	if n := count(g.m.Evictions); n != 0 {
		t.Fatalf("%v evictions of a client that kept reading", n)
	}
}

// TestHeartbeatEvictsStalledReader: the other side of
// TestHeartbeatKeepsSlowReaders. A peer that stops reading with bytes
// queued for it (a dead one behind a live TCP stack) fills the socket's
// buffers; the socket stops taking bytes, and PongTimeout later it is
// evicted as any silent peer, however much its queue still holds.
func TestHeartbeatEvictsStalledReader(t *testing.T) {
	g, _, conn := smallWindowClient(t, 50*time.Millisecond, 300*time.Millisecond)
	// 16 MiB queued at once, far more than the sockets hold; never read.
	frame := wsproto.AppendFrame(nil, ws.OpBinary, bytes.Repeat([]byte{'x'}, 64<<10))
	for range 256 {
		if err := conn.Send(frame); err != nil {
			t.Fatal(err)
		}
	}
	wstest.Eventually(t, "the stalled reader evicted", func() bool { return count(g.m.Evictions) == 1 })
	wstest.Eventually(t, "its connection closed", func() bool { return count(g.m.ConnectionsClosed("heartbeat_timeout")) == 1 })
}

// smallWindowClient starts a gateway with a 64 MiB outbound bound and the
// heartbeat given, and dials it with a 64 KiB receive buffer. The ping's
// wait in the kernel's buffers is the peer's to bear within the pong
// timeout (the server cannot see how far the peer has read there); a small
// receive buffer keeps that part under a second, as the server's send
// buffer (4 MiB at most here) does.
func smallWindowClient(t *testing.T, ping, pong time.Duration) (*gateway, *wstest.Client, *server.Conn) {
	t.Helper()
	opened := make(capture, 1)
	g := start(t, server.Config{Handler: opened, PingInterval: ping, PongTimeout: pong, OutboundQueueBytes: 64 << 20})
	client, _ := wstest.Dial(t, g.addr, "/ws")
	if err := client.Conn.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	return g, client, <-opened
}
