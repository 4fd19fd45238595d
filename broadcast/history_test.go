package broadcast

import (
	"testing"
	"time"
)

func TestRing(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var r ring
	var off uint64
	push := func(n, size int) {
		for i := 0; i < n; i++ {
			off++
			r.push(&publication{offset: off, at: t0.Add(time.Duration(off) * time.Second)}, size)
		}
	}
	check := func(from uint64) {
		t.Helper()
		got := r.after(0)
		if len(got) != int(off-from+1) {
			t.Fatalf("ring holds %d entries, want %d..%d", len(got), from, off)
		}
		for i, p := range got {
			if p.offset != from+uint64(i) {
				t.Fatalf("entry %d is offset %d, want %d", i, p.offset, from+uint64(i))
			}
		}
	}
	push(3, 5)
	check(1)
	if n := r.expire(t0.Add(3 * time.Second)); n != 2 { // drops 1, 2
		t.Fatalf("expired %d", n)
	}
	push(2, 5) // fills the slots expiry freed
	check(3)
	push(4, 5) // wraps, then grows past the old buffer while wrapped
	check(off - 4)
	push(7, 5)
	check(off - 4)
	if got := r.after(off - 2); len(got) != 2 || got[0].offset != off-1 {
		t.Fatalf("after(%d) = %d entries", off-2, len(got))
	}
	if got := r.after(off); got != nil {
		t.Fatalf("after(latest) = %v", got)
	}
	r.expire(t0.Add(time.Hour))
	if r.len() != 0 || r.buf != nil {
		t.Fatal("an emptied ring keeps its buffer")
	}
	push(1, 0)
	if r.len() != 0 {
		t.Fatal("size 0 keeps history")
	}
}
