package server

import (
	"sync/atomic"
	"testing"
)

// A slow consumer's close drops the events not begun, but never the data
// of an event whose id line the socket took, even when the write ended
// exactly between the two: the stream would name a position it did not
// deliver.
func TestDropUnstartedKeepsAnEventWhoseIDLeft(t *testing.T) {
	q := &outQueue{total: new(atomic.Int64)}
	id1, data1 := []byte("id: a,e,1\n"), []byte("data: {\"n\":1}\n\n")
	q.push(id1, false, false)
	q.push(data1, false, true)
	q.push([]byte("id: a,e,2\n"), false, false)
	q.push([]byte("data: {\"n\":2}\n\n"), false, true)
	q.advance(len(id1)) // the writev ended right after the first id
	if n := q.dropUnstarted(); n != 1 {
		t.Fatalf("dropped %d events, want 1 (the second)", n)
	}
	if v := q.vec(); len(v) != 1 || string(v[0]) != string(data1) || q.size != len(data1) {
		t.Fatalf("left %q (%d bytes), want the first event's data", v, q.size)
	}
}
