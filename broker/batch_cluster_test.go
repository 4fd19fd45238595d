package broker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/internal/wstest"
)

// A publisher whose context has a short deadline joins a batch: the
// others of the batch, whose contexts have seconds left, must not fail
// because of it. Before batching each publish had its own deadline.
func TestBatchShortDeadlineFailsOnlyItself(t *testing.T) {
	nats := startNATS(t)
	a := startNodeHistory(t, nats.URL, Config{PublishTimeout: 5 * time.Second}, 10000)
	sub := a.client(t, "hot", nil)
	const patient, each, hasty = 24, 30, 8
	var patientFailed, hastyFailed, ok atomic.Int32
	var firstErr atomic.Value
	var fmu sync.Mutex
	failedData := map[string]bool{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for p := range patient {
		wg.Go(func() {
			for i := range each {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := a.b.Publish(ctx, "hot", fmt.Appendf(nil, `{"p":%d,"i":%d}`, p, i))
				cancel()
				if err != nil {
					patientFailed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					fmu.Lock()
					failedData[fmt.Sprintf(`{"p":%d,"i":%d}`, p, i)] = true
					fmu.Unlock()
				} else {
					ok.Add(1)
				}
			}
		})
	}
	var hw sync.WaitGroup
	for h := range hasty {
		hw.Go(func() {
			untilStopped(stop, func(i int) {
				d := time.Duration(200+rand.IntN(1500)) * time.Microsecond
				ctx, cancel := context.WithTimeout(context.Background(), d)
				_, err := a.b.Publish(ctx, "hot", fmt.Appendf(nil, `{"h":%d,"i":%d}`, h, i))
				cancel()
				if err != nil {
					hastyFailed.Add(1)
				}
				time.Sleep(time.Millisecond)
			})
		})
	}
	wg.Wait()
	close(stop)
	hw.Wait()
	last := publish(t, a.b, "hot", -1)
	sub.waitOffsets(t, "hot", seq(1, last.Offset))
	sub.mu.Lock()
	delivered := 0
	for _, d := range sub.data["hot"] {
		if failedData[d] {
			delivered++
		}
	}
	sub.mu.Unlock()
	t.Logf("patient: %d ok, %d failed (first: %v), of which %d were delivered all the same; hasty failed %d",
		ok.Load(), patientFailed.Load(), firstErr.Load(), delivered, hastyFailed.Load())
	if n := patientFailed.Load(); n > 0 {
		t.Fatalf("%d publishes with 10 s to go failed, because a publish with a short deadline was in their batch: %v", n, firstErr.Load())
	}
}

// NATS restarts while a hot channel is published to from two nodes, by
// waiting publishers and by clients. Every subscriber on both nodes must
// end with 1..N exactly once, the same data everywhere, each confirmed
// publish at the offset it was told, and the slots all given back.
func TestBatchHotChannelNATSRestart(t *testing.T) {
	nats := startNATS(t)
	const history = 20000
	a := startNodeHistory(t, nats.URL, Config{PublishTimeout: 2 * time.Second}, history)
	b := startNodeHistory(t, nats.URL, Config{PublishTimeout: 2 * time.Second}, history)
	onA, onB := a.client(t, "ticker", nil), b.client(t, "ticker", nil)

	var mu sync.Mutex
	told := map[uint64]string{} // offset → data, as confirmed
	var epochs = map[string]bool{}
	var unexpected []error
	var failed, clientFailed atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	publishUntil(&wg, []*node{a, b}, 16, "ticker", 10*time.Second, stop, func(data string, r broadcast.Result, err error) {
		mu.Lock()
		switch {
		case err == nil:
			if prev, dup := told[r.Offset]; dup {
				unexpected = append(unexpected, fmt.Errorf("offset %d given to %s and %s", r.Offset, prev, data))
			}
			told[r.Offset] = data
			epochs[r.Epoch] = true
		case errors.Is(err, broadcast.ErrUnavailable):
			failed.Add(1)
		default:
			unexpected = append(unexpected, err)
		}
		mu.Unlock()
		if err != nil {
			time.Sleep(20 * time.Millisecond)
		}
	})
	for c := range 2 {
		n := []*node{a, b}[c]
		wg.Go(func() {
			untilStopped(stop, func(i int) {
				err := n.b.TryPublish("ticker", fmt.Appendf(nil, `{"c":%d,"i":%d}`, c, i), func(error) { clientFailed.Add(1) })
				if err != nil {
					time.Sleep(5 * time.Millisecond)
				} else if i%8 == 0 {
					time.Sleep(time.Millisecond)
				}
			})
		})
	}
	wstest.Until(t, 10*time.Second, func() error {
		if len(onA.got("ticker")) < 2000 {
			return errors.New("waiting for publishes to flow")
		}
		return nil
	})
	for range 2 {
		nats.Stop()
		time.Sleep(300 * time.Millisecond)
		nats.Start()
		for _, n := range []*node{a, b} {
			wstest.Until(t, 20*time.Second, func() error { return n.b.Ready() })
		}
		time.Sleep(500 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if len(unexpected) > 0 {
		t.Fatalf("unexpected: %v", unexpected[:min(5, len(unexpected))])
	}
	if len(epochs) != 1 {
		t.Fatalf("epochs %v, want one (the stream was kept)", epochs)
	}
	// Client publishes (TryPublish) may still be in flight: the last
	// publish is numbered after them once every slot is given back.
	for _, n := range []*node{a, b} {
		wstest.Until(t, 10*time.Second, func() error {
			if s, c := len(n.b.slots), len(n.b.clientSlots); s != 0 || c != 0 {
				return fmt.Errorf("slots %d, client slots %d still taken", s, c)
			}
			n.b.mu.Lock()
			w := len(n.b.waiters)
			n.b.mu.Unlock()
			if w != 0 || n.b.nwait.Load() != 0 {
				return fmt.Errorf("%d waiters left", w)
			}
			return nil
		})
	}
	last := publish(t, a.b, "ticker", -1)
	for _, c := range []*client{onA, onB} {
		c.waitOffsets(t, "ticker", seq(1, last.Offset))
	}
	got := onA.dataOf("ticker")
	onB.mu.Lock()
	same := slices.Equal(onB.data["ticker"], got)
	onB.mu.Unlock()
	if !same {
		t.Fatal("the nodes' subscribers got different data at the same offsets")
	}
	seen := map[string]int{}
	for _, d := range got {
		if seen[d]++; seen[d] == 2 {
			t.Errorf("%s delivered twice", d)
		}
	}
	wantTold(t, got, told)
	pub := testutil.ToFloat64(a.m.Published) + testutil.ToFloat64(b.m.Published)
	errs := testutil.ToFloat64(a.m.PublishErrors) + testutil.ToFloat64(b.m.PublishErrors)
	t.Logf("%d offsets, %d confirmed to waiting publishers, %d failed, %d client publishes failed; published_total %v, errors_total %v, received a %v",
		last.Offset, len(told), failed.Load(), clientFailed.Load(), pub, errs, testutil.ToFloat64(a.m.Received))
	if pub > float64(last.Offset) {
		t.Errorf("broker_published_total %v over both nodes, but only %d publications on the stream", pub, last.Offset)
	}
}

// Contexts cancelled while publications wait for their channel, and while
// their batch is in flight: every Publish returns, a cancelled one that
// returned an error is not delivered, one that returned a result is at
// its offset, and every slot and waiter is given back.
func TestBatchCancelMidBatch(t *testing.T) {
	nats := startNATS(t)
	a := startNodeHistory(t, nats.URL, Config{}, 20000)
	b := startNodeHistory(t, nats.URL, Config{}, 20000)
	sub := a.client(t, "room", nil)
	var mu sync.Mutex
	told := map[uint64]string{}
	notPublished := map[string]bool{}
	var unexpected []error
	var wg sync.WaitGroup
	for p := range 24 {
		n := []*node{a, b}[p%2]
		wg.Go(func() {
			for i := range 60 {
				data := fmt.Sprintf(`{"p":%d,"i":%d}`, p, i)
				ctx, cancel := context.WithCancel(context.Background())
				if i%3 == 0 {
					go func() {
						time.Sleep(time.Duration(rand.IntN(400)) * time.Microsecond)
						cancel()
					}()
				}
				r, err := n.b.Publish(ctx, "room", []byte(data))
				cancel()
				mu.Lock()
				switch {
				case err == nil:
					told[r.Offset] = data
				case errors.Is(err, context.Canceled):
					notPublished[data] = true
				case errors.Is(err, broadcast.ErrUnavailable): // may or may not have been published
				default:
					unexpected = append(unexpected, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(unexpected) > 0 {
		t.Fatal(unexpected)
	}
	last := publish(t, a.b, "room", -1)
	sub.waitOffsets(t, "room", seq(1, last.Offset))
	got := sub.dataOf("room")
	for _, d := range got {
		if notPublished[d] {
			t.Errorf("%s was refused with context.Canceled, but delivered", d)
		}
	}
	wantTold(t, got, told)
	if int(last.Offset)-1 < len(told) {
		t.Errorf("%d offsets on the stream before the last, %d confirmed", last.Offset-1, len(told))
	}
	t.Logf("%d confirmed, %d cancelled", len(told), len(notPublished))
	for _, n := range []*node{a, b} {
		if s := len(n.b.slots); s != 0 {
			t.Errorf("%d slots still taken", s)
		}
		n.b.mu.Lock()
		w := len(n.b.waiters)
		n.b.mu.Unlock()
		if w != 0 {
			t.Errorf("%d waiters left", w)
		}
		if e := testutil.ToFloat64(n.m.PublishErrors); e == 0 {
			t.Log("no publish errors counted on a node")
		}
	}
}

// ackDropper is a TCP proxy between a node and NATS that can drop
// JetStream's publish acknowledgements on their way back to the node (a
// lost confirmation), leaving everything else of the protocol intact.
type ackDropper struct {
	URL     string
	drop    atomic.Int32 // acknowledgements still to drop
	dropped atomic.Int32
	delay   atomic.Int64 // while set, acknowledgements are held this long (other traffic is not)
	delayed atomic.Int32
	// dropLive drops that many live messages (served.go) on their way to
	// the node, as a slow consumer's would be; refuse closes connections
	// as they come, and cut closes those open (a partition).
	dropLive    atomic.Int32
	droppedLive atomic.Int32
	// delayLive, while set, holds live messages this long (other traffic
	// is not)
	delayLive atomic.Int64
	refuse    atomic.Bool
	// streamAPI, when set, drops NATS's answers about the stream (create,
	// update, info): the node cannot set it up
	streamAPI atomic.Bool
	conns     sync.Map
	ln        net.Listener
	wg        sync.WaitGroup
}

func newAckDropper(t *testing.T, natsURL string) *ackDropper {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &ackDropper{URL: "nats://" + ln.Addr().String(), ln: ln}
	target := strings.TrimPrefix(natsURL, "nats://")
	conns := &p.conns
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if p.refuse.Load() {
				c.Close()
				continue
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			conns.Store(c, s)
			p.wg.Go(func() { io.Copy(s, c); s.Close(); c.Close() })
			p.wg.Go(func() { p.serverToClient(c, s); s.Close(); c.Close() })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(k, v any) bool { k.(net.Conn).Close(); v.(net.Conn).Close(); return true })
		p.wg.Wait()
	})
	return p
}

// cut closes the connections open through p.
func (p *ackDropper) cut() {
	p.conns.Range(func(k, v any) bool { k.(net.Conn).Close(); v.(net.Conn).Close(); p.conns.Delete(k); return true })
}

func (p *ackDropper) serverToClient(c, s net.Conn) {
	r := bufio.NewReaderSize(s, 64<<10)
	var wmu sync.Mutex
	w := bufio.NewWriter(c)
	type held struct {
		at  time.Time
		msg []byte
	}
	lane := make(chan held, 1<<16)
	defer close(lane)
	go func() {
		for h := range lane {
			time.Sleep(time.Until(h.at))
			wmu.Lock()
			w.Write(h.msg)
			w.Flush()
			wmu.Unlock()
		}
	}()
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var payload []byte
		if bytes.HasPrefix(line, []byte("MSG ")) || bytes.HasPrefix(line, []byte("HMSG ")) {
			f := strings.Fields(string(line))
			n, _ := strconv.Atoi(f[len(f)-1])
			payload = make([]byte, n+2)
			if _, err := io.ReadFull(r, payload); err != nil {
				return
			}
		}
		if payload != nil && p.streamAPI.Load() && bytes.Contains(payload, []byte(`"type":"io.nats.jetstream.api.v1.stream_`)) {
			continue
		}
		if bytes.HasPrefix(line, []byte("HMSG "+liveToken+".")) && p.dropLive.Add(-1) >= 0 {
			p.droppedLive.Add(1)
			continue
		}
		if d := p.delayLive.Load(); d > 0 && bytes.HasPrefix(line, []byte("HMSG "+liveToken+".")) {
			lane <- held{time.Now().Add(time.Duration(d)), append(line, payload...)}
			continue
		}
		if payload != nil && bytes.Contains(payload, []byte(`"seq":`)) && !bytes.Contains(payload, []byte(`"error"`)) &&
			!bytes.Contains(payload, []byte(`"duplicate"`)) && bytes.Contains(payload, []byte(`"stream":"PUSHGATE"`)) {
			if p.drop.Add(-1) >= 0 {
				p.dropped.Add(1)
				continue
			}
			p.drop.Store(0)
			if d := p.delay.Load(); d > 0 {
				p.delayed.Add(1)
				lane <- held{time.Now().Add(time.Duration(d)), append(line, payload...)}
				continue
			}
		}
		wmu.Lock()
		w.Write(line)
		w.Write(payload)
		var ferr error
		if r.Buffered() == 0 {
			ferr = w.Flush()
		}
		wmu.Unlock()
		if ferr != nil {
			return
		}
	}
}

// Confirmations of batches are lost while two nodes publish to one
// channel: the retries must find their batch stored (duplicate), take its
// numbering, and every subscriber must end with 1..N once, with each
// publisher told the offset its data is at.
func TestBatchLostConfirmationOfBatch(t *testing.T) {
	nats := startNATS(t)
	proxy := newAckDropper(t, nats.URL)
	a := startNodeHistory(t, proxy.URL, Config{PublishTimeout: 6 * time.Second}, 20000)
	b := startNodeHistory(t, nats.URL, Config{PublishTimeout: 6 * time.Second}, 20000)
	onA, onB := a.client(t, "ticker", nil), b.client(t, "ticker", nil)
	var mu sync.Mutex
	told := map[uint64]string{}
	var errs []error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	publishUntil(&wg, []*node{a, b}, 16, "ticker", 20*time.Second, stop, func(data string, r broadcast.Result, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			return
		}
		if prev, dup := told[r.Offset]; dup {
			errs = append(errs, fmt.Errorf("offset %d given to %s and %s", r.Offset, prev, data))
		}
		told[r.Offset] = data
	})
	wstest.Until(t, 10*time.Second, func() error {
		if len(onA.got("ticker")) < 500 {
			return errors.New("waiting for publishes to flow")
		}
		return nil
	})
	proxy.drop.Store(3)
	wstest.Until(t, 20*time.Second, func() error {
		if proxy.dropped.Load() < 3 {
			return fmt.Errorf("%d acknowledgements dropped", proxy.dropped.Load())
		}
		return nil
	})
	time.Sleep(3 * time.Second) // let the last retry go through
	close(stop)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d errors: %v", len(errs), errs[:min(len(errs), 5)])
	}
	last := publish(t, a.b, "ticker", -1)
	for _, c := range []*client{onA, onB} {
		c.waitOffsets(t, "ticker", seq(1, last.Offset))
	}
	got := onA.dataOf("ticker")
	wantTold(t, got, told)
	if len(told) != int(last.Offset)-1 {
		t.Fatalf("%d publications on the stream, %d confirmed", last.Offset-1, len(told))
	}
	t.Logf("%d publications, %d acknowledgements dropped; published_total a %v", last.Offset, proxy.dropped.Load(), testutil.ToFloat64(a.m.Published))
}

// JetStream is slow to acknowledge for a while (each ack held 2.5 s for
// 2.2 s; pings still answered; the publish timeout is 3 s). The batch in
// flight may be confirmed too late for its publishers, who are told it
// may or may not have been published (with batching that is a batch, not
// one publish); a publish told it was not published (refused unsent) never
// is.
func TestBatchSlowAcksTellTheTruth(t *testing.T) {
	nats := startNATS(t)
	proxy := newAckDropper(t, nats.URL)
	a := startNodeHistory(t, proxy.URL, Config{PublishTimeout: 3 * time.Second}, 50000)
	sub := a.client(t, "ticker", nil)
	var mu sync.Mutex
	failed := map[string]error{}
	var ok atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	publishUntil(&wg, []*node{a}, 64, "ticker", time.Minute, stop, func(data string, _ broadcast.Result, err error) {
		if err != nil {
			mu.Lock()
			failed[data] = err
			mu.Unlock()
		} else {
			ok.Add(1)
		}
		time.Sleep(5 * time.Millisecond)
	})
	wstest.Until(t, 10*time.Second, func() error {
		if len(sub.got("ticker")) < 200 {
			return errors.New("waiting for publishes to flow")
		}
		return nil
	})
	proxy.delay.Store(int64(2500 * time.Millisecond))
	time.Sleep(2200 * time.Millisecond)
	proxy.delay.Store(0)
	time.Sleep(4 * time.Second)
	close(stop)
	wg.Wait()
	last := publish(t, a.b, "ticker", -1)
	sub.waitOffsets(t, "ticker", seq(1, last.Offset))
	sub.mu.Lock()
	delivered, maybe := 0, 0
	for _, d := range sub.data["ticker"] {
		switch err := failed[d]; {
		case err == nil:
		case strings.Contains(err.Error(), "may or may not"):
			maybe++
		default:
			delivered++
			t.Errorf("%s was told %q and was delivered", d, err)
		}
	}
	sub.mu.Unlock()
	t.Logf("%d acks delayed; %d publishes ok, %d failed, %d of them told they may or may not have been published were", proxy.delayed.Load(), ok.Load(), len(failed), maybe)
}

// A publication about to time out at the head of a batch is refused
// unsent; it does not take down the others, queued just now.
func TestBatchHeadAboutToExpireFailsOnlyItself(t *testing.T) {
	nats := startNATS(t)
	const timeout = 3 * time.Second
	a := startNode(t, nats.URL, Config{PublishTimeout: timeout})
	cs := &chanState{subject: subjectFor(a.b.prefix, "hot")}
	now := time.Now()
	var reqs []*request
	for i := range 10 {
		queued := now
		if i == 0 {
			queued = now.Add(-timeout + 200*time.Microsecond) // 200 µs to go
		}
		a.b.slots <- struct{}{} // as Publish takes one
		reqs = append(reqs, &request{ctx: context.Background(), queued: queued, data: fmt.Appendf(nil, `%d`, i), id: a.b.msgID(), result: make(chan error, 1)})
	}
	kept, err := a.b.send(cs, slices.Clone(reqs))
	for _, r := range kept {
		a.b.finish(r, err)
	}
	failed := 0
	for i, r := range reqs {
		if e := <-r.result; e != nil {
			failed++
			if i > 0 && failed == 2 {
				t.Logf("publication %d, queued just now: %v", i, e)
			}
		}
	}
	if failed > 1 {
		t.Fatalf("%d of 10 publications failed; only the one queued %v ago should have", failed, timeout)
	}
}

// A rolling update (deploy/k8s uses RollingUpdate) runs nodes from before
// batches beside nodes with them, on one stream. An old node reads a
// batch's Pushgate-Offset as the channel's last offset and numbers its
// next publish first+1, which the stream accepts (the expected last
// sequence is right): new nodes take it for one they have (AppliedBefore)
// and drop it silently, while its publisher was told it is at first+1.

// While a node that cannot read batches is live (Config.Batches false),
// every publication goes alone, however many wait.
func TestNoBatchesWhileANodeCannotRead(t *testing.T) {
	nats := startNATS(t)
	var allRead atomic.Bool
	a := startNodeHistory(t, nats.URL, Config{Batches: allRead.Load}, 2000)
	sub := a.client(t, "ticker", nil)
	var wg sync.WaitGroup
	for p := range 32 {
		wg.Go(func() {
			for i := range 10 {
				publish(t, a.b, "ticker", p*100+i)
			}
		})
	}
	wg.Wait()
	sub.waitOffsets(t, "ticker", seq(1, 320))
	info, err := (*a.b.stream.Load()).Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 320 {
		t.Fatalf("%d stream messages for 320 publications while a node cannot read batches", info.State.Msgs)
	}
}

// publishUntil starts n publishers on wg, alternating over nodes, each
// publishing {"p":…,"i":…} to channel, waiting up to timeout for each,
// until stop closes; each outcome goes to got.
func publishUntil(wg *sync.WaitGroup, nodes []*node, n int, channel string, timeout time.Duration, stop <-chan struct{}, got func(data string, r broadcast.Result, err error)) {
	for p := range n {
		node := nodes[p%len(nodes)]
		wg.Go(func() {
			untilStopped(stop, func(i int) {
				data := fmt.Sprintf(`{"p":%d,"i":%d}`, p, i)
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				r, err := node.b.Publish(ctx, channel, []byte(data))
				cancel()
				got(data, r, err)
			})
		})
	}
}

// A batch stops at its bounds: 3,000 client publishes queued at once go
// out in batches of at most maxBatch (and one reaches it), and 40
// publications of 60 KiB in batches of at most batchBytes; every
// subscriber still gets 1..N once, in order.
func TestBatchBounds(t *testing.T) {
	nats := startNATS(t)
	a := startNodeHistory(t, nats.URL, Config{MaxPending: 8192, MaxClientPending: 4096}, 0)
	sub := a.client(t, "many", nil)
	const small = 3000
	for i := range small {
		if err := a.b.TryPublish("many", fmt.Appendf(nil, `%d`, i), func(err error) { t.Error(err) }); err != nil {
			t.Fatal(err)
		}
	}
	sub.waitOffsets(t, "many", seq(1, small))
	big := a.client(t, "big", nil)
	const bigs = 40
	payload := `"` + strings.Repeat("x", 60<<10) + `"` // under 64 KiB: the test client reads 16-bit lengths
	var wg sync.WaitGroup
	for range bigs {
		wg.Go(func() { publishData(t, a.b, "big", payload) })
	}
	wg.Wait()
	big.waitOffsets(t, "big", seq(1, bigs))

	// What the stream holds: each message's count and size.
	stream := *a.b.stream.Load()
	info, err := stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	most := map[string]int{}
	for s := uint64(1); s <= info.State.LastSeq; s++ {
		m, err := stream.GetMsg(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		p, ok := decode(m.Header, m.Data)
		if !ok {
			t.Fatalf("message %d is not a publication", s)
		}
		name, _ := channelOf(a.b.prefix, m.Subject)
		most[name] = max(most[name], len(p.entries))
		if len(p.entries) > maxBatch {
			t.Fatalf("message %d holds %d publications, over %d", s, len(p.entries), maxBatch)
		}
		if len(p.entries) > 1 && len(m.Data) > batchBytes {
			t.Fatalf("message %d is a batch of %d bytes, over %d", s, len(m.Data), batchBytes)
		}
	}
	if most["many"] != maxBatch {
		t.Errorf("the largest batch of 3,000 queued at once holds %d publications, want the bound, %d", most["many"], maxBatch)
	}
	if most["big"] != 4 {
		t.Errorf("the largest batch of 60 KiB publications holds %d, want 4 (256 KiB)", most["big"])
	}
}

func publishData(t *testing.T, b *Broker, channel, data string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.Publish(ctx, channel, []byte(data)); err != nil {
		t.Errorf("publish to %s: %v", channel, err)
	}
}

// untilStopped calls f with 0, 1, 2, … until stop is closed.
func untilStopped(stop <-chan struct{}, f func(i int)) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		f(i)
	}
}
