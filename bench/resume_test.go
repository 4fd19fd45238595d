package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/internal/wstest"
)

// fakeNode is a pushgate.v1 node as far as the cluster scenario's
// clients need one. A connection subscribes to channel c with
// ?channels=c or, on a reconnection, with a subscribe op; the node
// confirms it and sends the offsets script gives for the k-th connection
// it took, then, once drain is closed, closes it with 1001.
type fakeNode struct {
	script func(k int) (subscribed string, offsets []int)
	drain  chan struct{}

	mu   sync.Mutex
	took int
	ops  []string // the subscribe ops it was sent
	errs []error
	wg   sync.WaitGroup
}

func (n *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn, _, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return
	}
	n.wg.Add(1)
	defer n.wg.Done()
	defer conn.Close()
	n.mu.Lock()
	k := n.took
	n.took++
	n.mu.Unlock()
	if r.URL.Query().Get("channels") == "" {
		op, err := readText(conn)
		n.mu.Lock()
		n.ops = append(n.ops, op)
		if err != nil {
			n.errs = append(n.errs, err)
		}
		n.mu.Unlock()
	}
	subscribed, offsets := n.script(k)
	frames := [][]byte{[]byte(subscribed)}
	for _, off := range offsets {
		frames = append(frames, fmt.Appendf(nil, `{"type":"message","channel":"c","offset":%d,"data":"%s"}`, off, payload(off, time.Now(), 40)))
	}
	for _, f := range frames {
		if err := ws.WriteFrame(conn, ws.NewTextFrame(f)); err != nil {
			return
		}
	}
	<-n.drain
	_ = ws.WriteFrame(conn, ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, "server shutting down")))
	_, _ = io.Copy(io.Discard, conn) // until the client has gone
}

// readText reads a client's (masked) text frame.
func readText(conn net.Conn) (string, error) {
	h, err := ws.ReadHeader(conn)
	if err != nil {
		return "", err
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(conn, p); err != nil {
		return "", err
	}
	ws.Cipher(p, h.Mask, 0)
	return string(p), nil
}

// workerPipe runs a worker in this process and speaks its protocol.
type workerPipe struct {
	in  io.WriteCloser
	enc *json.Encoder
	dec *json.Decoder
}

func startWorker(t *testing.T) *workerPipe {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := runWorker(inR, outW); err != nil {
			t.Error(err)
		}
		outW.Close()
	}()
	t.Cleanup(func() { inW.Close(); <-done })
	return &workerPipe{in: inW, enc: json.NewEncoder(inW), dec: json.NewDecoder(outR)}
}

// ask sends cmd and returns the answer, past progress events.
func (p *workerPipe) ask(t *testing.T, cmd command) event {
	t.Helper()
	if err := p.enc.Encode(cmd); err != nil {
		t.Fatal(err)
	}
	for {
		var ev event
		if err := p.dec.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		if ev.Ev != "progress" {
			return ev
		}
	}
}

// A worker's clients follow their channel's offsets across a drain: each
// counts what it was sent, reconnects to a live node when closed, and
// subscribes again with since and epoch; a duplicate and a gap on the
// node they moved to are each seen by the client they were sent to.
func TestTrackedReconnect(t *testing.T) {
	const sub = `{"type":"subscribed","channel":"c","offset":%d,"epoch":"e1","recovered":%v}`
	a := &fakeNode{drain: make(chan struct{}), script: func(int) (string, []int) {
		return fmt.Sprintf(sub, 1, false), []int{2, 3}
	}}
	b := &fakeNode{drain: make(chan struct{}), script: func(k int) (string, []int) {
		return fmt.Sprintf(sub, 5, true), [][]int{{4, 5}, {4, 5, 5}, {5}}[k]
	}}
	sa, sb := httptest.NewServer(a), httptest.NewServer(b)
	t.Cleanup(func() { // after the worker's, which closes its clients
		close(b.drain)
		sa.Close()
		sb.Close()
	})
	w := startWorker(t)
	ev := w.ask(t, command{Cmd: "connect", Track: true, Channel: "c", URLs: []string{"ws" + strings.TrimPrefix(sa.URL, "http") + "/ws?channels=c"},
		Sources: []string{"127.0.0.1"}, Count: 3, Rate: 1000, ReadyMarker: `"subscribed"`, Timeout: 5 * time.Second})
	if ev.Connected != 3 {
		t.Fatalf("connected %d of 3: %v", ev.Connected, ev.Errors)
	}
	w.ask(t, command{Cmd: "nodes", URLs: []string{"ws" + strings.TrimPrefix(sb.URL, "http") + "/ws"}})
	offsets := func(final int64) *trackStats { return w.ask(t, command{Cmd: "offsets", Final: final}).Track }
	wstest.Until(t, 10*time.Second, func() error {
		if st := offsets(3); st.Complete != 3 {
			return fmt.Errorf("before the drain: %+v", st)
		}
		return nil
	})

	close(a.drain)
	var st *trackStats
	wstest.Until(t, 10*time.Second, func() error {
		if st = offsets(5); st.Reconnected != 3 || st.Reconnecting != 0 || st.Messages != 2*3+2+3+1 {
			return fmt.Errorf("after the drain: %+v", st)
		}
		return nil
	})
	if st.Clients != 3 || st.Complete != 1 || st.Dups != 1 || st.Missing != 1 || st.MissingSum != 1 ||
		st.Closed != 3 || st.Failed != 0 || st.Resets != 0 || st.Closes["1001"] != 3 || len(st.Closes) != 1 ||
		st.Replayed != 2 || st.ReplayedSum != 4 { // 4 and 5, up to the offset resubscribed at
		t.Errorf("stats %+v", st)
	}
	if st.FirstClose == 0 || st.LastResub < st.FirstClose {
		t.Errorf("first close %d, last resubscribed %d", st.FirstClose, st.LastResub)
	}
	on := " on ws" + strings.TrimPrefix(sb.URL, "http") + "/ws: "
	for _, want := range []string{on + "offset 5 after 3: 1 missing", on + "offset 5 again, after 5"} {
		if !slices.ContainsFunc(st.Problems, func(p string) bool { return strings.HasSuffix(p, want) }) {
			t.Errorf("problems %q: none ends %q", st.Problems, want)
		}
	}
	if len(st.Problems) != 2 {
		t.Errorf("problems %q, want 2", st.Problems)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.errs) > 0 {
		t.Fatal(b.errs)
	}
	for _, op := range b.ops {
		var m struct {
			Op, Channel, Epoch string
			Since              int64
		}
		if err := json.Unmarshal([]byte(op), &m); err != nil || m != (struct {
			Op, Channel, Epoch string
			Since              int64
		}{"subscribe", "c", "e1", 3}) {
			t.Errorf("resubscribed with %s", op)
		}
	}
	if len(b.ops) != 3 {
		t.Errorf("%d resubscriptions, want 3", len(b.ops))
	}
}

// A client whose resubscription is not recovered, or whose channel's
// epoch changed, counts as reset; an offset before its subscription is
// confirmed, or an error reply, is a problem.
func TestSubscriberChecks(t *testing.T) {
	s := &subscriber{id: 7, node: "n1"}
	s.message([]byte(`{"type":"message","offset":3}`))
	if err := s.reply([]byte(`{"type":"subscribed","offset":3,"epoch":"e1","recovered":false}`)); err != nil {
		t.Fatal(err)
	}
	s.message([]byte(`{"type":"message","offset":4}`))
	_ = s.reply([]byte(`{"type":"subscribed","offset":9,"epoch":"e2","recovered":false}`))
	_ = s.reply([]byte(`{"type":"subscribed","offset":9,"epoch":"e3","recovered":true}`))
	if err := s.reply([]byte(`{"type":"error","code":"forbidden","message":"no"}`)); err == nil {
		t.Error("an error reply did not end the connection")
	}
	if s.start != 3 || s.last != 4 || s.resets != 2 || s.epoch != "e3" || s.problem != "client 7 on n1: offset 3 before the subscription was confirmed" {
		t.Errorf("%+v", s)
	}
	if off, ok := offsetOf([]byte(`{"offset":12345,"data":"pgb|1|2|"}`)); !ok || off != 12345 {
		t.Errorf("offset %d, %v", off, ok)
	}
	if _, ok := offsetOf([]byte(`{"data":1}`)); ok {
		t.Error("an offset found where there is none")
	}
}
