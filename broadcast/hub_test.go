package broadcast

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"go.uber.org/goleak"

	"github.com/pushgate/pushgate/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a Subscriber that decodes what it is sent, as a client
// would. The hub sees it as any connection.
type recorder struct {
	mu       sync.Mutex
	msgs     map[string][]uint64 // channel -> offsets received, in order
	data     map[string][]string
	replies  []map[string]any
	closed   bool
	compress bool
	got      chan struct{} // a frame arrived
}

func newRecorder() *recorder {
	return &recorder{msgs: map[string][]uint64{}, data: map[string][]string{}, got: make(chan struct{}, 1)}
}

func (r *recorder) Encoding() protocol.Encoding {
	if r.compress {
		return protocol.WebSocketDeflate
	}
	return protocol.WebSocket
}

func (r *recorder) Send(frame []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("closed")
	}
	payload := decodeFrame(frame)
	var v struct {
		Type    string          `json:"type"`
		Channel string          `json:"channel"`
		Offset  uint64          `json:"offset"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(payload, &v); err != nil {
		panic(fmt.Sprintf("bad frame %.200q: %v", payload, err))
	}
	if v.Type == "message" {
		r.msgs[v.Channel] = append(r.msgs[v.Channel], v.Offset)
		r.data[v.Channel] = append(r.data[v.Channel], string(v.Data))
	} else {
		var m map[string]any
		_ = json.Unmarshal(payload, &m)
		r.replies = append(r.replies, m)
	}
	select {
	case r.got <- struct{}{}:
	default:
	}
	return nil
}

func (r *recorder) offsets(ch string) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.msgs[ch]...)
}

func (r *recorder) reply(i int) map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i >= len(r.replies) {
		return nil
	}
	return r.replies[i]
}

// flush waits until every shard has run every op queued before it.
func (h *Hub) flush() {
	var wg sync.WaitGroup
	for _, s := range h.shards {
		wg.Add(1)
		s.push(op{kind: opCall, fn: wg.Done})
	}
	wg.Wait()
}

// registered counts the shard-side subscription entries.
func (h *Hub) registered() int {
	n := 0
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range h.shards {
		wg.Add(1)
		s.push(op{kind: opCall, fn: func() {
			defer wg.Done()
			mu.Lock()
			for _, set := range s.subs {
				n += len(set)
			}
			mu.Unlock()
		}})
	}
	wg.Wait()
	return n
}

func contiguous(t *testing.T, got []uint64, from, to uint64) {
	t.Helper()
	if len(got) != int(to-from+1) {
		t.Fatalf("got %d offsets, want %d..%d (%d): %v", len(got), from, to, to-from+1, trim(got))
	}
	for i, o := range got {
		if o != from+uint64(i) {
			t.Fatalf("offset %d at position %d, want %d: %v", o, i, from+uint64(i), trim(got))
		}
	}
}

func trim(s []uint64) []uint64 {
	if len(s) > 20 {
		return s[:20]
	}
	return s
}

func TestFanOutOrderedExactlyOnce(t *testing.T) {
	h := New(Config{Shards: 4, MaxChannels: 8})
	defer h.Close()
	const (
		channels   = 5
		publishers = 4 // per channel
		each       = 200
		subs       = 40
	)
	names := make([]string, channels)
	for i := range names {
		names[i] = fmt.Sprintf("ch%d", i)
	}
	recs := make([]*recorder, subs)
	for i := range recs {
		recs[i] = newRecorder()
		m := h.Join(recs[i])
		// subscriber i takes channels i%channels and (i+1)%channels
		for _, c := range []string{names[i%channels], names[(i+1)%channels]} {
			if err := h.Subscribe(m, c, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, c := range names {
		for p := 0; p < publishers; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					var err error
					if i%2 == 0 {
						_, err = h.Publish(ctx, c, []byte(`{"p":1}`))
					} else {
						err = h.TryPublish(c, []byte(`{"p":2}`), nil)
						for errors.Is(err, ErrOverloaded) {
							_, err = h.Publish(ctx, c, []byte(`{"p":2}`))
						}
					}
					if err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	h.flush()
	for i, r := range recs {
		for _, c := range []string{names[i%channels], names[(i+1)%channels]} {
			contiguous(t, r.offsets(c), 1, publishers*each)
		}
	}
}

func TestPublishDelivered(t *testing.T) {
	h := New(Config{Shards: 3})
	defer h.Close()
	for i := 0; i < 7; i++ {
		m := h.Join(newRecorder())
		if err := h.Subscribe(m, "news", nil); err != nil {
			t.Fatal(err)
		}
	}
	closed := newRecorder()
	closed.closed = true
	if err := h.Subscribe(h.Join(closed), "news", nil); err != nil {
		t.Fatal(err)
	}
	res, err := h.Publish(context.Background(), "news", []byte(`"hi"`))
	if err != nil {
		t.Fatal(err)
	}
	if res.Offset != 1 || res.Delivered != 7 {
		t.Fatalf("got %+v, want offset 1, delivered 7", res)
	}
	res, _ = h.Publish(context.Background(), "empty", []byte(`1`))
	if res.Offset != 1 || res.Delivered != 0 {
		t.Fatalf("no subscribers: got %+v", res)
	}
}

func TestSubscribeReplyThenLive(t *testing.T) {
	h := New(Config{})
	defer h.Close()
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		_, _ = h.Publish(ctx, "news", []byte(`{}`))
	}
	r := newRecorder()
	m := h.Join(r)
	if err := h.Subscribe(m, "news", nil); err != nil {
		t.Fatal(err)
	}
	_, _ = h.Publish(ctx, "news", []byte(`{}`))
	h.flush()
	rep := r.reply(0)
	if rep["type"] != "subscribed" || rep["offset"] != 3.0 || rep["recovered"] != false || rep["epoch"] == "" {
		t.Fatalf("reply %v", rep)
	}
	contiguous(t, r.offsets("news"), 4, 4) // no replay without since
	if err := h.Subscribe(m, "news", nil); !errors.Is(err, ErrAlreadySubscribed) {
		t.Fatalf("second subscribe: %v", err)
	}
	if err := h.Unsubscribe(m, "news"); err != nil {
		t.Fatal(err)
	}
	if err := h.Unsubscribe(m, "news"); !errors.Is(err, ErrNotSubscribed) {
		t.Fatalf("second unsubscribe: %v", err)
	}
	_, _ = h.Publish(ctx, "news", []byte(`{}`))
	h.flush()
	contiguous(t, r.offsets("news"), 4, 4)
	if rep := r.reply(1); rep["type"] != "unsubscribed" || rep["channel"] != "news" {
		t.Fatalf("reply %v", rep)
	}
}

func TestMaxChannels(t *testing.T) {
	h := New(Config{MaxChannels: 2})
	defer h.Close()
	m := h.Join(newRecorder())
	for _, c := range []string{"a", "b"} {
		if err := h.Subscribe(m, c, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Subscribe(m, "c", nil); !errors.Is(err, ErrTooManyChannels) {
		t.Fatalf("third channel: %v", err)
	}
	_ = h.Unsubscribe(m, "a")
	if err := h.Subscribe(m, "c", nil); err != nil {
		t.Fatalf("after unsubscribe: %v", err)
	}
}

// Recovery under fire: publishers never stop while a subscriber leaves and
// comes back with since; it must see every offset once, in order.
func TestRecoveryUnderFire(t *testing.T) {
	h := New(Config{Shards: 4, HistorySize: 100000, HistoryChannelMaxBytes: 1 << 30})
	defer h.Close()
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for p := 0; p < 3; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := h.Publish(context.Background(), "feed", []byte(`{"x":1}`)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var seen []uint64
	var pos *Position
	for round := 0; round < 30; round++ {
		r := newRecorder()
		m := h.Join(r)
		if err := h.Subscribe(m, "feed", pos); err != nil {
			t.Fatal(err)
		}
		<-r.got // subscribed, perhaps replay and live messages: publishes race with it
		for len(r.offsets("feed")) < 5 {
			<-r.got
		}
		h.Leave(m)
		h.flush()
		rep := r.reply(0)
		if pos != nil && rep["recovered"] != true {
			t.Fatalf("round %d: not recovered: %v", round, rep)
		}
		got := r.offsets("feed")
		seen = append(seen, got...)
		pos = &Position{Offset: got[len(got)-1], Epoch: rep["epoch"].(string)}
	}
	stop()
	wg.Wait()
	contiguous(t, seen, seen[0], seen[0]+uint64(len(seen))-1)
}

func TestRecoveryFails(t *testing.T) {
	h := New(Config{HistorySize: 5})
	defer h.Close()
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		_, _ = h.Publish(ctx, "news", []byte(fmt.Sprint(i)))
	}
	ep := h.History("news", 0).Epoch
	for _, tc := range []struct {
		name      string
		pos       Position
		recovered bool
		first     uint64 // first offset replayed, 0 for none
	}{
		{"in range", Position{17, ep}, true, 18},
		{"oldest kept", Position{15, ep}, true, 16},
		{"up to date", Position{20, ep}, true, 0},
		{"no epoch", Position{18, ""}, false, 16},
		{"too far back", Position{14, ep}, false, 16},
		{"other epoch", Position{18, "old"}, false, 16},
		{"in the future", Position{21, ep}, false, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecorder()
			m := h.Join(r)
			defer h.Leave(m)
			if err := h.Subscribe(m, "news", &tc.pos); err != nil {
				t.Fatal(err)
			}
			h.flush()
			if got := r.reply(0)["recovered"]; got != tc.recovered {
				t.Fatalf("recovered %v, want %v", got, tc.recovered)
			}
			got := r.offsets("news")
			if tc.first == 0 {
				if len(got) != 0 {
					t.Fatalf("replayed %v", got)
				}
				return
			}
			contiguous(t, got, tc.first, 20)
		})
	}
}

func TestLeaveFreesRegistry(t *testing.T) {
	h := New(Config{Shards: 4, HistorySize: -1})
	defer h.Close()
	var members []*Member
	for i := 0; i < 50; i++ {
		m := h.Join(newRecorder())
		members = append(members, m)
		for j := 0; j < 3; j++ {
			if err := h.Subscribe(m, fmt.Sprintf("c%d", (i+j)%10), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if s := h.Stats(); s.Members != 50 || s.Subscribers != 150 || s.Channels != 10 {
		t.Fatalf("stats %+v", s)
	}
	if n := h.registered(); n != 150 {
		t.Fatalf("registered %d", n)
	}
	for i, m := range members {
		if i%2 == 0 {
			h.Leave(m)
			h.Leave(m) // twice is harmless
		} else {
			for _, c := range m.Channels() {
				if err := h.Unsubscribe(m, c); err != nil {
					t.Fatal(err)
				}
			}
			h.Leave(m)
		}
	}
	h.flush()
	if s := h.Stats(); s != (Stats{}) {
		t.Fatalf("stats after leaving %+v", s)
	}
	if n := h.registered(); n != 0 {
		t.Fatalf("registered %d after leaving", n)
	}
}

func TestHistoryAndExpiry(t *testing.T) {
	h := New(Config{HistorySize: 3, HistoryTTL: time.Hour})
	defer h.Close()
	ctx := context.Background()
	for i := 1; i <= 5; i++ {
		_, _ = h.Publish(ctx, "news", []byte(fmt.Sprintf(`{"n":%d}`, i)))
	}
	hist := h.History("news", 2)
	if hist.Offset != 5 || !hist.Complete || len(hist.Entries) != 3 || string(hist.Entries[0].Data) != `{"n":3}` {
		t.Fatalf("history %+v", hist)
	}
	if hist := h.History("news", 0); hist.Complete || len(hist.Entries) != 3 {
		t.Fatalf("history from 0 %+v", hist)
	}
	if hist := h.History("none", 0); hist.Epoch != "" || len(hist.Entries) != 0 {
		t.Fatalf("missing channel %+v", hist)
	}
	h.expire(time.Now().Add(time.Minute)) // everything is older than that
	if s := h.Stats(); s.Channels != 0 {
		t.Fatalf("channel kept after its history expired: %+v", s)
	}
	// The channel starts again in a new epoch.
	_, _ = h.Publish(ctx, "news", []byte(`1`))
	if again := h.History("news", 0); again.Epoch == hist.Epoch || again.Offset != 1 {
		t.Fatalf("recreated channel %+v, old epoch %s", again, hist.Epoch)
	}
}

func TestClosedHub(t *testing.T) {
	h := New(Config{})
	m := h.Join(newRecorder())
	h.Close()
	h.Close()
	if _, err := h.Publish(context.Background(), "a", []byte(`1`)); !errors.Is(err, ErrClosed) {
		t.Fatalf("publish: %v", err)
	}
	if err := h.TryPublish("a", []byte(`1`), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("try publish: %v", err)
	}
	if err := h.Subscribe(m, "a", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("subscribe: %v", err)
	}
}

func TestCompressedFrames(t *testing.T) {
	h := New(Config{})
	defer h.Close()
	plain, deflate := newRecorder(), newRecorder()
	deflate.compress = true
	var frames [2][][]byte
	for i, r := range []*recorder{plain, deflate} {
		m := h.Join(&frameSaver{r, &frames[i]})
		_ = h.Subscribe(m, "big", nil)
	}
	big := fmt.Sprintf(`"%0900d"`, 0)
	_, _ = h.Publish(context.Background(), "big", []byte(big))
	_, _ = h.Publish(context.Background(), "big", []byte(`"small"`))
	h.flush()
	if frames[0][1][0]&0x40 != 0 || frames[1][1][0]&0x40 == 0 {
		t.Fatal("big message: want plain frame for plain, RSV1 for deflate")
	}
	if len(frames[1][1]) >= len(frames[0][1]) {
		t.Fatal("compressed frame is not smaller")
	}
	if frames[1][2][0]&0x40 != 0 {
		t.Fatal("small message compressed")
	}
}

type frameSaver struct {
	*recorder
	frames *[][]byte
}

func (f *frameSaver) Send(frame []byte) error {
	f.recorder.mu.Lock()
	*f.frames = append(*f.frames, frame)
	f.recorder.mu.Unlock()
	return f.recorder.Send(frame)
}

// decodeFrame returns the payload of a whole server frame as a client
// reads it: the header parsed, and inflated when RSV1 marks it compressed
// (permessage-deflate, RFC 7692 section 7.2.2). It panics on anything a
// client could not read.
func decodeFrame(frame []byte) []byte {
	r := bytes.NewReader(frame)
	h, err := ws.ReadHeader(r)
	if err != nil || !h.Fin || h.Masked || int64(r.Len()) != h.Length {
		panic(fmt.Sprintf("bad frame header %+v (%v) with %d bytes after it", h, err, r.Len()))
	}
	payload := frame[len(frame)-r.Len():]
	if h.Rsv1() {
		tail := []byte{0x00, 0x00, 0xff, 0xff}
		inflated, err := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(payload), bytes.NewReader(tail))))
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			panic(fmt.Sprintf("compressed frame does not inflate: %v", err))
		}
		payload = inflated
	}
	return payload
}

// TestCompressedEnvelopeSizes publishes envelopes of every size around the
// frame header's length boundaries (125/126 and 65535/65536 bytes) and
// checks that a subscriber with permessage-deflate inflates each to the
// exact envelope a plain subscriber gets.
func TestCompressedEnvelopeSizes(t *testing.T) {
	h := New(Config{})
	defer h.Close()
	plain, deflate := newRecorder(), newRecorder()
	deflate.compress = true
	var frames [2][][]byte
	for i, r := range []*recorder{plain, deflate} {
		_ = h.Subscribe(h.Join(&frameSaver{r, &frames[i]}), "sizes", nil)
	}
	// The envelope is {"type":"message","channel":"sizes","offset":N,"data":"..."}.
	overhead := len(`{"type":"message","channel":"sizes","offset":1,"data":""}`)
	sizes := []int{125, 126, 511, 512, 513, 65533, 65534, 65535, 65536, 65537}
	for i, size := range sizes {
		if i+1 >= 10 {
			size-- // offset 10 takes one more digit
		}
		data := `"` + strings.Repeat("x", size-overhead) + `"`
		if _, err := h.Publish(context.Background(), "sizes", []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	h.flush()
	for i, size := range sizes {
		want := decodeFrame(frames[0][i+1])
		if len(want) != size {
			t.Fatalf("plain envelope %d is %d bytes, want %d", i, len(want), size)
		}
		if got := decodeFrame(frames[1][i+1]); !bytes.Equal(got, want) {
			t.Errorf("%d-byte envelope: the compressed frame inflates to %d bytes that differ from the plain one", size, len(got))
		}
		if size >= protocol.CompressMin && frames[1][i+1][0]&0x40 == 0 {
			t.Errorf("%d-byte envelope sent uncompressed", size)
		}
	}
	if got := deflate.offsets("sizes"); len(got) != len(sizes) {
		t.Fatalf("deflate subscriber decoded %d messages, want %d", len(got), len(sizes))
	}
}

// A single node's channel dropped when unused (no subscriber, history
// expired) and published to again starts a new epoch: a client coming
// back with the old epoch is told it did not recover and is replayed what
// the new epoch holds, never the old offsets' numbers as if they matched.
func TestEpochAfterChannelDropped(t *testing.T) {
	// The TTL passes when the test says (expire), not when the machine
	// gets round to it: the new epoch's history must not expire too.
	h := New(Config{HistoryTTL: time.Hour})
	defer h.Close()
	ctx := context.Background()
	r := newRecorder()
	m := h.Join(r)
	if err := h.Subscribe(m, "news", nil); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := h.Publish(ctx, "news", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	h.flush()
	old := r.reply(0)["epoch"].(string)
	h.Leave(m)
	h.expire(time.Now().Add(time.Minute)) // everything is older than that
	if s := h.Stats(); s.Channels != 0 {
		t.Fatalf("unused channel kept after its history expired: %+v", s)
	}
	for i := range 2 {
		if _, err := h.Publish(ctx, "news", []byte(fmt.Sprint(10+i))); err != nil {
			t.Fatal(err)
		}
	}
	back := newRecorder()
	if err := h.Subscribe(h.Join(back), "news", &Position{Offset: 3, Epoch: old}); err != nil {
		t.Fatal(err)
	}
	h.flush()
	got := back.reply(0)
	if got["epoch"] == old || got["recovered"] != false || got["offset"] != 2.0 {
		t.Fatalf("coming back to a recreated channel: %v, want a new epoch at offset 2, not recovered", got)
	}
	contiguous(t, back.offsets("news"), 1, 2)
}

// Data that is not JSON, or JSON whose strings are not UTF-8 (which
// browsers refuse as a text frame, failing the connection), is refused at
// the hub whatever the entry: nothing is published or kept in history.
func TestPublishRefusesInvalidData(t *testing.T) {
	h := New(Config{})
	defer h.Close()
	r := newRecorder()
	if err := h.Subscribe(h.Join(r), "news", nil); err != nil {
		t.Fatal(err)
	}
	for _, data := range []string{"\"\xff\"", "{\"a\":\"\xc3\x28\"}", "nope", ""} {
		if _, err := h.Publish(context.Background(), "news", []byte(data)); !errors.Is(err, ErrInvalidData) {
			t.Errorf("Publish(%q): %v, want ErrInvalidData", data, err)
		}
		if err := h.TryPublish("news", []byte(data), nil); !errors.Is(err, ErrInvalidData) {
			t.Errorf("TryPublish(%q): %v, want ErrInvalidData", data, err)
		}
	}
	if _, err := h.Publish(context.Background(), "news", []byte(`"ok é"`)); err != nil {
		t.Fatal(err)
	}
	if hist := h.History("news", 0); len(hist.Entries) != 1 || hist.Offset != 1 {
		t.Fatalf("history %+v, want only the valid publish", hist)
	}
	if s := h.Stats(); s.InFlight != 0 {
		t.Fatalf("refused publishes hold %d publish slots", s.InFlight)
	}
}

// blockShard holds m's shard until the returned func is called: what is
// queued behind stays queued.
func blockShard(h *Hub, m *Member) (release func()) {
	held, proceed := make(chan struct{}), make(chan struct{})
	h.After(m, func() { close(held); <-proceed })
	<-held
	return func() { close(proceed) }
}

// Client publishes hold at most their share of the publish slots: past it
// they are refused, and an API publish still gets a slot at once.
func TestClientPublishShare(t *testing.T) {
	h := New(Config{Shards: 1, MaxPending: 4})
	defer h.Close()
	m := h.Join(newRecorder())
	if err := h.Subscribe(m, "busy", nil); err != nil {
		t.Fatal(err)
	}
	release := blockShard(h, m) // publications to busy stay in flight
	for i := range 2 {
		if err := h.TryPublish("busy", []byte(`1`), nil); err != nil {
			t.Fatalf("client publish %d within the share: %v", i, err)
		}
	}
	if err := h.TryPublish("busy", []byte(`1`), nil); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("client publish past the share: %v, want ErrOverloaded", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	// Accepted (a slot was free); it reports its offset when ctx ends,
	// since the shard is held.
	if res, err := h.Publish(ctx, "busy", []byte(`2`)); err != nil || res.Offset != 3 {
		t.Fatalf("API publish with clients at their share: %+v, %v", res, err)
	}
	release()
	h.flush()
	if s := h.Stats(); s.InFlight != 0 {
		t.Fatalf("%d publish slots still held", s.InFlight)
	}
	if err := h.TryPublish("busy", []byte(`1`), nil); err != nil {
		t.Fatalf("client publish once the share is free: %v", err)
	}
}

// A member's own ops count in its backlog until its shard runs them.
func TestBacklog(t *testing.T) {
	h := New(Config{Shards: 1})
	defer h.Close()
	m := h.Join(newRecorder())
	release := blockShard(h, m)
	for range 5 {
		h.Reply(m, append(protocol.Buffer(16), `{"type":"pong"}`...))
	}
	if err := h.Subscribe(m, "news", nil); err != nil {
		t.Fatal(err)
	}
	if n, q := h.Backlog(m), h.Stats().QueuedOps; n != 6 || q != 6 {
		t.Fatalf("backlog %d, queued ops %d; want 6 and 6", n, q)
	}
	release()
	h.flush()
	if n, q := h.Backlog(m), h.Stats().QueuedOps; n != 0 || q != 0 {
		t.Fatalf("backlog %d, queued ops %d once run; want 0", n, q)
	}
}

func TestChannelsListing(t *testing.T) {
	h := New(Config{HistorySize: 1})
	defer h.Close()
	var names []string
	for i := range 25 {
		name := fmt.Sprintf("room:%02d", i)
		names = append(names, name)
		for range i % 3 {
			if err := h.Subscribe(h.Join(newRecorder()), name, nil); err != nil {
				t.Fatal(err)
			}
		}
		if i%3 == 0 { // no subscriber: kept by its history
			if _, err := h.Publish(context.Background(), name, []byte("1")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := h.Subscribe(h.Join(newRecorder()), "other", nil); err != nil {
		t.Fatal(err)
	}
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		list, more := h.Channels("room:", cursor, 10)
		for _, c := range list {
			got = append(got, c.Name)
			var i int
			fmt.Sscanf(c.Name, "room:%d", &i)
			if c.Subscribers != i%3 {
				t.Fatalf("%s: %d subscribers, want %d", c.Name, c.Subscribers, i%3)
			}
		}
		if !more {
			if pages != 2 {
				t.Fatalf("%d pages, want 3", pages+1)
			}
			break
		}
		cursor = list[len(list)-1].Name
	}
	if fmt.Sprint(got) != fmt.Sprint(names) {
		t.Fatalf("listed %v", got)
	}
	if all, more := h.Channels("", "", 0); len(all) != 26 || more {
		t.Fatalf("all: %d %v", len(all), more)
	}
}
