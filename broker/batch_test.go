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
	h.Set(hdrEpoch, "e1")
	if p, ok := decode(h, body); !ok || p.first != 41 || p.epoch != "e1" || len(p.entries) != 3 {
		t.Fatalf("decoded as %+v (%v), want 3 from 41 in e1", p, ok)
	}

	// A single publication is the message's data, as before batches.
	one := nats.Header{}
	one.Set(jetstream.MsgIDHeader, "n1-9")
	one.Set(hdrOffset, "7")
	es, err = entries(one, []byte(`{"b":2}`))
	if err != nil || len(es) != 1 || es[0].id != "n1-9" || string(es[0].data) != `{"b":2}` {
		t.Fatalf("single publication read as %+v (%v)", es, err)
	}
	one.Set(hdrEpoch, "e1")
	if p, ok := decode(one, []byte(`{"b":2}`)); !ok || p.first != 7 || len(p.entries) != 1 {
		t.Fatalf("decoded as %+v (%v), want 1 at 7", p, ok)
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
	// Not a publication of pushgate's: the readers drop it, and the node
	// numbering the channel starts an epoch after it.
	for name, h := range map[string]nats.Header{
		"no offset":    {hdrEpoch: {"e"}},
		"offset 0":     {hdrOffset: {"0"}, hdrEpoch: {"e"}},
		"no epoch":     {hdrOffset: {"3"}},
		"bad count":    {hdrOffset: {"3"}, hdrEpoch: {"e"}, hdrCount: {"4"}},
		"invalid data": {hdrOffset: {"3"}, hdrEpoch: {"e"}},
	} {
		data := good
		if name == "invalid data" {
			data = []byte("not json")
		}
		if _, ok := decode(h, data); ok {
			t.Errorf("%s: decoded, want it refused", name)
		}
	}
	bad := appendBatch(nil, []*request{{id: "a", data: []byte(`1`)}, {id: "b", data: []byte(`{`)}})
	if _, ok := decode(nats.Header{hdrOffset: {"3"}, hdrEpoch: {"e"}, hdrCount: {"2"}}, bad); ok {
		t.Error("a batch with one invalid publication decoded, want it refused whole")
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
