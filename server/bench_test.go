package server_test

import (
	"bytes"
	"io"
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
