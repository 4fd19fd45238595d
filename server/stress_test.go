package server_test

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/wsproto"
)

// stressHandler echoes each message back with Send (from the read task)
// and hands out the connections, for a fan-out goroutine to write to.
type stressHandler struct {
	mu    sync.Mutex
	conns map[*server.Conn]bool
	open  chan *server.Conn
}

func (h *stressHandler) Open(c *server.Conn, _ wsproto.Handshake, _ []byte) {
	h.mu.Lock()
	h.conns[c] = true
	h.mu.Unlock()
	h.open <- c
}

func (h *stressHandler) Message(c *server.Conn, _ ws.OpCode, p []byte) {
	_ = c.Send(wsproto.AppendFrame(nil, ws.OpText, append([]byte("echo:"), p...)))
}

func (h *stressHandler) Closed(c *server.Conn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
}

// TestConnStress: every path that sets a bit of a Conn at once on
// the same connections: the read task (echo, byte-rate throttling:
// rbits, flagReading, flagThrottled), a fan-out goroutine (Queue, Flush,
// Send: wbits, flagBehind), the heartbeat (pings, resume), and closing
// handshakes or vanishing clients. Each client checks the fan-out's
// numbered frames and its echoes arrive in order, once; -race checks the
// rest.
func TestConnStress(t *testing.T) {
	h := &stressHandler{conns: map[*server.Conn]bool{}, open: make(chan *server.Conn, 64)}
	g := start(t, server.Config{
		Handler:            h,
		OutboundQueueBytes: 256 << 10,
		ClientBytesRate:    8 << 10,
		MaxMessageSize:     1 << 10, // the byte-rate burst is a second's worth
		ClientMessageRate:  -1,
		PingInterval:       150 * time.Millisecond,
		PongTimeout:        5 * time.Second,
	})
	const (
		clients = 12
		frames  = 3000
		msgs    = 300
	)
	type client struct {
		c    *wstest.Client
		conn *server.Conn
	}
	cs := make([]client, clients)
	for i := range cs {
		cs[i].c, _ = wstest.Dial(t, g.addr, "/ws")
		cs[i].conn = <-h.open
	}
	var wg sync.WaitGroup
	var fanned atomic.Int64
	// Fan-out: as a shard does, frames queued in runs and flushed, or
	// sent alone.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 1; k <= frames; k++ {
			f := wsproto.AppendFrame(nil, ws.OpText, []byte("f:"+strconv.Itoa(k)))
			for _, c := range cs {
				if k%3 == 0 {
					_ = c.conn.Send(f)
				} else {
					_ = c.conn.Queue(f)
				}
			}
			if k%5 == 0 {
				for _, c := range cs {
					c.conn.Flush()
				}
			}
			fanned.Store(int64(k))
			if k%50 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		for _, c := range cs {
			c.conn.Flush()
		}
	}()
	for i, c := range cs {
		// writer: messages to echo, pongs from the reader below
		var wmu sync.Mutex
		var sentClose bool
		write := func(b []byte) error {
			wmu.Lock()
			defer wmu.Unlock()
			if sentClose {
				return fmt.Errorf("closed")
			}
			if ws.OpCode(b[0]&0x0f) == ws.OpClose {
				sentClose = true
			}
			_, err := c.c.Conn.Write(b)
			return err
		}
		closing := i%3 != 2 // a third vanish, the others close cleanly
		stopAt := frames / 2
		if i%2 == 0 {
			stopAt = frames // half stay to the end
		}
		done := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < msgs; j++ {
				select {
				case <-done:
					return
				default:
				}
				if write(wstest.Text(fmt.Sprintf("m:%d:%s", j, strings.Repeat("x", 60)))) != nil {
					return
				}
				if j%20 == 0 {
					time.Sleep(2 * time.Millisecond)
				}
			}
		}()
		go func() {
			defer wg.Done()
			defer close(done)
			nextF, nextE := 1, 0
			for {
				hd, p, err := c.c.TryReadFrame()
				if err != nil {
					if closing || nextF <= stopAt {
						t.Errorf("client %d: %v after f:%d, echo %d", i, err, nextF-1, nextE)
					}
					return
				}
				switch {
				case hd.OpCode == ws.OpPing:
					_ = write(wstest.Frame(true, 0, ws.OpPong, p))
					continue
				case hd.OpCode == ws.OpClose:
					if !closing {
						t.Errorf("client %d: close %v", i, p)
					}
					return
				case hd.OpCode != ws.OpText:
					t.Errorf("client %d: frame %v", i, hd.OpCode)
					return
				}
				s := string(p)
				switch {
				case strings.HasPrefix(s, "f:"):
					k, _ := strconv.Atoi(s[2:])
					if k != nextF {
						t.Errorf("client %d: frame f:%d, want f:%d", i, k, nextF)
						return
					}
					nextF++
				case strings.HasPrefix(s, "echo:m:"):
					j, _ := strconv.Atoi(strings.SplitN(s[7:], ":", 2)[0])
					if j != nextE {
						t.Errorf("client %d: echo %d, want %d", i, j, nextE)
						return
					}
					nextE++
				default:
					t.Errorf("client %d: %.40q", i, s)
					return
				}
				if nextF > stopAt && nextE >= msgs || nextF > frames {
					if closing {
						_ = write(wstest.Frame(true, 0, ws.OpClose, binary.BigEndian.AppendUint16(nil, 1000)))
						continue // read on until the server's close
					}
					c.c.Conn.Close()
					return
				}
			}
		}()
	}
	wg.Wait()
	wstest.Eventually(t, "every connection released", func() bool { return g.Len() == 0 })
	t.Logf("fanned %d frames; throttles %v, pings %v", fanned.Load(), count(g.m.ReadThrottles), count(g.m.HeartbeatPings))
}
