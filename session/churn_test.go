package session_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/server"
)

// TestSocketChurn: clients over real sockets subscribe and
// unsubscribe at random (sometimes with since), drop their connection and
// come back with since, while every channel is published to. Everything
// each socket got is decoded: within a subscription, offsets are
// consecutive from where it asked; nothing arrives outside one; clients
// subscribed throughout get every offset once, in order.
func TestSocketChurn(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bytes int // server.Config.ClientBytesRate
	}{{"unthrottled", -1}, {"throttled", 2048}} {
		t.Run(tc.name, func(t *testing.T) { socketChurn(t, tc.bytes) })
	}
}

func socketChurn(t *testing.T, bytesRate int) {
	g := start(t, options{
		hub:     broadcast.Config{Shards: 2, HistorySize: 1 << 16, HistoryChannelMaxBytes: 1 << 30},
		backlog: 1 << 16,
		tune: func(c *server.Config) {
			c.ClientMessageRate = -1
			c.ClientBytesRate = bytesRate
			if bytesRate > 0 {
				c.MaxMessageSize = 512 // the burst is a second's worth
			}
		},
	})
	const (
		nchan   = 4
		stable  = 4
		clients = 8
		rounds  = 6   // connections per client
		ops     = 120 // per connection
	)
	names := make([]string, nchan)
	for i := range names {
		names[i] = fmt.Sprintf("c%d", i)
	}
	// Stable clients, subscribed at connect.
	stables := make([]*wstest.Client, stable)
	for i := range stables {
		stables[i] = g.dial(t, "?channels="+strings.Join(names, ","))
	}
	for _, c := range stables {
		for range names {
			c.ExpectMsg("subscribed", "")
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	var published [nchan]atomic.Uint64
	var pubs sync.WaitGroup
	for i, c := range names {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			for ctx.Err() == nil {
				if _, err := g.hub.Publish(context.Background(), c, []byte(`{"x":"`+strings.Repeat("y", 40)+`"}`)); err != nil {
					t.Error(err)
					return
				}
				published[i].Add(1)
				time.Sleep(200 * time.Microsecond)
			}
		}()
	}
	stableLogs := make([][]wstest.Msg, stable)
	var readers sync.WaitGroup
	for i, c := range stables {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				m, err := c.TryReadMsg()
				if err != nil {
					t.Errorf("stable %d: %v", i, err)
					return
				}
				stableLogs[i] = append(stableLogs[i], m)
				if m.Type == "error" && m.Code == "bad_request" {
					return // the end marker
				}
			}
		}()
	}

	var wg sync.WaitGroup
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			last := map[string]broadcast.Position{}
			for round := 0; round < rounds; round++ {
				c := g.dial(t, "")
				var mu sync.Mutex
				var log []wstest.Msg
				readDone := make(chan struct{})
				go func() {
					defer close(readDone)
					for {
						m, err := c.TryReadMsg()
						if err != nil {
							return // closed by us
						}
						mu.Lock()
						log = append(log, m)
						mu.Unlock()
						if m.Type == "error" && m.Code == "bad_request" {
							return
						}
					}
				}()
				on := map[string]bool{}
				asked := map[string][]*broadcast.Position{}
				for i := 0; i < ops; i++ {
					name := names[rng.IntN(nchan)]
					if !on[name] {
						var pos *broadcast.Position
						if p, ok := last[name]; ok && rng.IntN(2) == 0 {
							pos = &p
						}
						op := fmt.Sprintf(`{"op":"subscribe","channel":%q}`, name)
						if pos != nil {
							op = fmt.Sprintf(`{"op":"subscribe","channel":%q,"since":%d,"epoch":%q}`, name, pos.Offset, pos.Epoch)
						}
						c.Send(op)
						asked[name] = append(asked[name], pos)
						on[name] = true
					} else {
						c.Send(fmt.Sprintf(`{"op":"unsubscribe","channel":%q}`, name))
						on[name] = false
					}
					if i%10 == 0 {
						time.Sleep(time.Millisecond)
					}
				}
				abrupt := round%2 == 1
				if !abrupt {
					c.Send(`{"op":"nonsense"}`) // end marker: an error reply
					<-readDone
					c.Conn.Close()
				} else {
					time.Sleep(5 * time.Millisecond)
					c.Conn.Close() // vanish; what was read so far is checked
					<-readDone
				}
				mu.Lock()
				got := log
				mu.Unlock()
				checkSocketLog(t, fmt.Sprintf("client %d round %d", w, round), got, asked, abrupt)
				epochs := map[string]string{}
				for _, m := range got {
					switch m.Type {
					case "subscribed":
						epochs[m.Channel] = m.Epoch
					case "message":
						last[m.Channel] = broadcast.Position{Offset: m.Offset, Epoch: epochs[m.Channel]}
					}
				}
			}
		}()
	}
	wg.Wait()
	stop()
	pubs.Wait()
	for _, c := range stables {
		c.Send(`{"op":"nonsense"}`)
	}
	readers.Wait()
	for i, log := range stableLogs {
		next := map[string]uint64{}
		for _, m := range log {
			if m.Type != "message" {
				continue
			}
			next[m.Channel]++
			if m.Offset != next[m.Channel] {
				t.Fatalf("stable %d: channel %s: offset %d, want %d", i, m.Channel, m.Offset, next[m.Channel])
			}
		}
		for ci, c := range names {
			if next[c] != published[ci].Load() {
				t.Fatalf("stable %d: channel %s: %d messages, want %d", i, c, next[c], published[ci].Load())
			}
		}
	}
	wstest.Eventually(t, "every churning subscription released", func() bool {
		return g.hub.Stats().Subscribers == int64(stable*nchan)
	})
	t.Logf("read throttles %v", testutil.ToFloat64(g.m.ReadThrottles))
	t.Logf("published %d %d %d %d", published[0].Load(), published[1].Load(), published[2].Load(), published[3].Load())
}

func checkSocketLog(t *testing.T, who string, log []wstest.Msg, asked map[string][]*broadcast.Position, abrupt bool) {
	t.Helper()
	type state struct {
		on      bool
		next    uint64
		periods int
	}
	st := map[string]*state{}
	for i, m := range log {
		if m.Type == "error" {
			if m.Code == "bad_request" && i == len(log)-1 {
				continue
			}
			t.Errorf("%s: event %d: error %s", who, i, m.Raw)
			return
		}
		s := st[m.Channel]
		if s == nil {
			s = &state{}
			st[m.Channel] = s
		}
		switch m.Type {
		case "subscribed":
			if s.on || s.periods >= len(asked[m.Channel]) {
				t.Errorf("%s: event %d: unexpected %s", who, i, m.Raw)
				return
			}
			pos := asked[m.Channel][s.periods]
			s.on, s.periods = true, s.periods+1
			switch {
			case pos == nil:
				s.next = m.Offset + 1
			case m.Recovered:
				s.next = pos.Offset + 1
			default:
				s.next = 0
			}
		case "unsubscribed":
			if !s.on {
				t.Errorf("%s: event %d: unsubscribed while not subscribed", who, i)
				return
			}
			s.on = false
		case "message":
			if !s.on {
				t.Errorf("%s: event %d: message %s@%d while not subscribed", who, i, m.Channel, m.Offset)
				return
			}
			if s.next != 0 && m.Offset != s.next {
				t.Errorf("%s: event %d: message %s@%d, want @%d", who, i, m.Channel, m.Offset, s.next)
				return
			}
			s.next = m.Offset + 1
		default:
			t.Errorf("%s: event %d: unexpected %s", who, i, m.Raw)
			return
		}
	}
	if !abrupt {
		for ch, s := range st {
			if s.periods != len(asked[ch]) {
				t.Errorf("%s: %s: %d subscribed replies, want %d", who, ch, s.periods, len(asked[ch]))
			}
		}
	}
}
