package broker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/protocol"
)

// resumer is a connection that subscribes with `since` where it left off
// and checks that each "subscribed" reply says recovered, and that the
// messages after it continue from there: each offset once, in order.
type resumer struct {
	mu      sync.Mutex
	last    map[string]uint64
	epoch   map[string]string
	errs    []string
	replies chan string // "subscribed <channel>" or "unsubscribed <channel>"
}

func newResumer(epochs map[string]string) *resumer {
	r := &resumer{last: map[string]uint64{}, epoch: map[string]string{}, replies: make(chan string, 16)}
	for ch, e := range epochs {
		r.epoch[ch] = e
	}
	return r
}

func (r *resumer) Encoding() protocol.Encoding { return protocol.WebSocket }

func (r *resumer) Send(frame []byte) error {
	v, payload, err := decodeFrame(frame)
	if err != nil {
		return err
	}
	r.mu.Lock()
	switch v.Type {
	case "message":
		if want := r.last[v.Channel] + 1; v.Offset != want {
			r.errs = append(r.errs, fmt.Sprintf("%s: offset %d after %d", v.Channel, v.Offset, want-1))
		}
		r.last[v.Channel] = v.Offset
	case "subscribed":
		if !v.Recovered || v.Epoch != r.epoch[v.Channel] {
			r.errs = append(r.errs, fmt.Sprintf("%s: subscribed since %d in %s answered %s", v.Channel, r.last[v.Channel], r.epoch[v.Channel], payload))
		}
	}
	r.mu.Unlock()
	if v.Type == "subscribed" || v.Type == "unsubscribed" {
		r.replies <- v.Type + " " + v.Channel
	}
	return nil
}

func (r *resumer) pos(channel string) *broadcast.Position {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &broadcast.Position{Offset: r.last[channel], Epoch: r.epoch[channel]}
}

func (r *resumer) failures() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

// Subscribers on a served node leave channels and come back to them with
// `since` where they left off, while another node publishes: the channels
// are dropped and loaded again and again (Unload, Load of the same names),
// and the stream holds every publication, so each return must be
// recovered, and continue with the next offset.
func TestServedResumeChurn(t *testing.T) {
	for _, tc := range []string{"steady", "lossy", "cut"} {
		t.Run(tc, func(t *testing.T) { servedResumeChurn(t, tc) })
	}
}

// servedResumeChurn runs TestServedResumeChurn; b reaches NATS through a
// proxy that, with trouble "lossy", drops live messages now and then (a
// slow consumer's), and with "cut", cuts b's connection now and then.
func servedResumeChurn(t *testing.T, trouble string) {
	const channels, workers = 4, 8
	rounds := 150
	if raceEnabled || testing.Short() {
		rounds = 60
	}
	nats := startNATS(t)
	proxy := newAckDropper(t, nats.URL)
	a := startServedNode(t, nats.URL, 0)
	b := servedNodeWith(t, proxy.URL, broadcast.Config{HistorySize: 100000}, (*Broker).Unload)
	troubleDone := make(chan struct{})
	var troubles sync.WaitGroup
	if trouble != "steady" {
		pause := time.Duration(50+rand.IntN(150)) * time.Millisecond
		if trouble == "cut" { // each reconnection reads every channel again
			pause = time.Duration(700+rand.IntN(800)) * time.Millisecond
		}
		troubles.Go(func() {
			for {
				select {
				case <-troubleDone:
					return
				case <-time.After(pause):
				}
				if trouble == "lossy" {
					proxy.dropLive.Store(int32(1 + rand.IntN(3)))
				} else {
					proxy.cut()
				}
			}
		})
	}
	stopTrouble := sync.OnceFunc(func() { close(troubleDone); troubles.Wait(); proxy.dropLive.Store(0) })
	defer stopTrouble()
	list := names("resume", channels)
	epochs := publishAll(t, a, list, 1, 1)

	stop := make(chan struct{})
	var pubs sync.WaitGroup
	var published atomic.Int64
	published.Store(1)
	pubs.Go(func() {
		for i := 2; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			for _, name := range list {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := a.b.Publish(ctx, name, fmt.Appendf(nil, `{"n":%d}`, i))
				cancel()
				if err != nil {
					t.Errorf("publish %d to %s: %v", i, name, err)
					return
				}
			}
			published.Store(int64(i))
		}
	})

	rs := make([]*resumer, workers)
	var churn sync.WaitGroup
	var bad atomic.Value
	for w := range rs {
		r := newResumer(epochs)
		rs[w] = r
		churn.Go(func() {
			m := b.hub.Join(r)
			defer b.hub.Leave(m)
			wait := func(want string) bool {
				select {
				case got := <-r.replies:
					if got != want {
						bad.CompareAndSwap(nil, fmt.Sprintf("got %q, want %q", got, want))
						return false
					}
					return true
				case <-time.After(20 * time.Second):
					bad.CompareAndSwap(nil, "no "+want)
					return false
				}
			}
			for round := range rounds {
				name := list[(w+round)%channels]
				if err := b.hub.Subscribe(m, name, r.pos(name)); err != nil {
					bad.CompareAndSwap(nil, err.Error())
					return
				}
				if !wait("subscribed " + name) {
					return
				}
				time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
				if err := b.hub.Unsubscribe(m, name); err != nil {
					bad.CompareAndSwap(nil, err.Error())
					return
				}
				if !wait("unsubscribed " + name) {
					return
				}
			}
		})
	}
	churn.Wait()
	close(stop)
	pubs.Wait()
	stopTrouble()
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	for w, r := range rs {
		if f := r.failures(); len(f) > 0 {
			t.Fatalf("resumer %d: %d failures, first: %v", w, len(f), f[:min(len(f), 5)])
		}
	}
	// A last return to each channel gets everything published.
	final := uint64(published.Load())
	r := rs[0]
	m := b.hub.Join(r)
	for _, name := range list {
		if err := b.hub.Subscribe(m, name, r.pos(name)); err != nil {
			t.Fatal(err)
		}
	}
	wstest.Until(t, 20*time.Second, func() error {
		for _, name := range list {
			if at := r.pos(name).Offset; at != final {
				return fmt.Errorf("%s at %d, want %d", name, at, final)
			}
		}
		return nil
	})
	if f := r.failures(); len(f) > 0 {
		t.Fatalf("final return: %v", f[:min(len(f), 5)])
	}
	t.Logf("%d rounds × %d workers; %d publications per channel; loads %v, abandoned %v, dropped live %d, reconnects %d", rounds, workers, final, testutil.ToFloat64(b.m.Loads), testutil.ToFloat64(b.m.LoadsAbandoned), proxy.droppedLive.Load(), b.b.nc.Stats().Reconnects)
}
