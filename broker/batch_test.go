package broker

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestBatchRoundTrip(t *testing.T) {
	reqs := []*request{
		{id: "n1-1", data: []byte(`{"a":1}`)},
		{id: "n1-2", data: []byte(`"` + string(bytes.Repeat([]byte("x"), 300)) + `"`)}, // a two-byte length
		{id: "n1-3", data: []byte(`[]`)},
	}
	body := appendBatch(nil, reqs)
	size := 0
	for _, r := range reqs {
		size += batchSize(r)
	}
	if size != len(body) {
		t.Fatalf("batchSize sums to %d, the batch is %d bytes", size, len(body))
	}
	h := nats.Header{}
	h.Set(hdrCount, "3")
	h.Set(hdrOffset, "41")
	es, err := entries(h, body)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 3 {
		t.Fatalf("%d entries, want 3", len(es))
	}
	for i, e := range es {
		if e.id != reqs[i].id || !bytes.Equal(e.data, reqs[i].data) {
			t.Fatalf("entry %d: %q %q, want %q %q", i, e.id, e.data, reqs[i].id, reqs[i].data)
		}
	}
	if last, err := lastOffset(h); err != nil || last != 43 {
		t.Fatalf("last offset %d (%v), want 43", last, err)
	}

	// A single publication is the message's data, as before batches.
	one := nats.Header{}
	one.Set(jetstream.MsgIDHeader, "n1-9")
	one.Set(hdrOffset, "7")
	es, err = entries(one, []byte(`{"b":2}`))
	if err != nil || len(es) != 1 || es[0].id != "n1-9" || string(es[0].data) != `{"b":2}` {
		t.Fatalf("single publication read as %+v (%v)", es, err)
	}
	if last, err := lastOffset(one); err != nil || last != 7 {
		t.Fatalf("last offset %d (%v), want 7", last, err)
	}
}

// A malformed batch is refused whole, never read past its end or sized
// by its count header.
func TestBatchMalformed(t *testing.T) {
	good := appendBatch(nil, []*request{{id: "a", data: []byte(`1`)}, {id: "b", data: []byte(`2`)}})
	for name, c := range map[string]struct {
		count string
		body  []byte
	}{
		"count 1":          {"1", good},
		"count 0":          {"0", good},
		"count not a num":  {"two", good},
		"count too high":   {"3", good},
		"count huge":       {"1000000000", good},
		"count too low":    {"2", append(append([]byte{}, good...), good...)},
		"trailing bytes":   {"2", append(append([]byte{}, good...), 0)},
		"length past end":  {"2", append(append([]byte{}, good[:len(good)-2]...), 9, '1')},
		"truncated varint": {"2", append(append([]byte{}, good...)[:4], 0x80)},
		"empty":            {"2", nil},
	} {
		h := nats.Header{}
		h.Set(hdrCount, c.count)
		if es, err := entries(h, c.body); err == nil {
			t.Errorf("%s: read as %d entries, want an error", name, len(es))
		}
	}
	h := nats.Header{}
	h.Set(hdrOffset, "5")
	for _, count := range []string{"1", "x", "-2"} {
		h.Set(hdrCount, count)
		if _, err := lastOffset(h); err == nil {
			t.Errorf("count %q: last offset read, want an error", count)
		}
	}
}

func FuzzEntries(f *testing.F) {
	f.Add(2, appendBatch(nil, []*request{{id: "a", data: []byte(`1`)}, {id: "b", data: []byte(`2`)}}))
	f.Add(3, []byte{1, 'a', 0x80})
	f.Fuzz(func(t *testing.T, count int, body []byte) {
		h := nats.Header{}
		h.Set(hdrCount, strconv.Itoa(count))
		es, err := entries(h, body)
		if err != nil {
			return
		}
		// What was read writes back to a batch that reads the same.
		if len(es) != count {
			t.Fatalf("%d entries from count %d", len(es), count)
		}
		reqs := make([]*request, len(es))
		for i, e := range es {
			reqs[i] = &request{id: e.id, data: e.data}
		}
		again, err := entries(h, appendBatch(nil, reqs))
		if err != nil {
			t.Fatal(err)
		}
		for i := range es {
			if again[i].id != es[i].id || !bytes.Equal(again[i].data, es[i].data) {
				t.Fatalf("entry %d reads back as %q %q, was %q %q", i, again[i].id, again[i].data, es[i].id, es[i].data)
			}
		}
	})
}
