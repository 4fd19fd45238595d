package server_test

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/wsproto"
)

// capture is a Handler that hands over each opened connection.
type capture chan *server.Conn

func (c capture) Open(conn *server.Conn, _ wsproto.Handshake, _ []byte) { c <- conn }
func (capture) Message(*server.Conn, ws.OpCode, []byte)                 {}
func (capture) Closed(*server.Conn)                                     {}

// BenchmarkSend measures handing one shared, pre-encoded 100-byte frame to
// a connection whose client keeps reading: the steady state of fan-out.
func BenchmarkSend(b *testing.B) {
	opened := make(capture, 1)
	g := start(b, server.Config{Handler: opened, OutboundQueueBytes: 64 << 20})
	client, _ := wstest.Dial(b, g.addr, "/ws")
	conn := <-opened
	go io.Copy(io.Discard, client.Conn)
	frame := wsproto.AppendFrame(nil, ws.OpText, bytes.Repeat([]byte{'x'}, 100))
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if err := conn.Send(frame); err != nil {
			b.Fatal(err)
		}
	}
}

// nothing is a Handler that leaves every connection parked.
type nothing struct{}

func (nothing) Open(*server.Conn, wsproto.Handshake, []byte) {}
func (nothing) Message(*server.Conn, ws.OpCode, []byte)      {}
func (nothing) Closed(*server.Conn)                          {}

// BenchmarkUpgrade is a connection's way in: TCP accept, the request head
// read, the upgrade answered and the socket parked in the poller, then the
// client's close noticed and the connection let go. Clients dial from 16
// goroutines on the same cores (their cost is in ns/op and allocs/op too).
// upgrades/s is the rate the machine takes connections at.
func BenchmarkUpgrade(b *testing.B) {
	g := start(b, server.Config{Handler: nothing{}})
	req := []byte(wstest.UpgradeRequest("/ws"))
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		head := make([]byte, 512)
		for pb.Next() {
			c, err := net.Dial("tcp", g.addr)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Write(req); err != nil {
				b.Fatal(err)
			}
			// The 101 is one small write: read until its blank line.
			n := 0
			for !bytes.Contains(head[:n], []byte("\r\n\r\n")) {
				k, err := c.Read(head[n:])
				if err != nil {
					b.Fatal(err)
				}
				n += k
			}
			if !bytes.HasPrefix(head[:n], []byte("HTTP/1.1 101 ")) {
				b.Fatalf("answer %q", head[:n])
			}
			c.Close()
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "upgrades/s")
}
