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
	for want := uint64(1); want <= 2; want++ { // drops 1, 2
		if p := r.popOldest(); p.offset != want {
			t.Fatalf("popped %d, want %d", p.offset, want)
		}
	}
	push(2, 5) // fills the slots popping freed
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
	for r.len() > 0 {
		r.popOldest()
	}
	if r.buf != nil {
		t.Fatal("an emptied ring keeps its buffer")
	}
	// Full, a push drops the oldest and says which.
	push(5, 5)
	if d := r.push(&publication{offset: off + 1}, 5); d == nil || d.offset != off-4 {
		t.Fatalf("push into a full ring dropped %v, want offset %d", d, off-4)
	}
}
