package broadcast

// ring is a channel's history: its latest publications, oldest first, with
// consecutive offsets. It grows to its bound as messages arrive, so a
// channel that is never published to holds no buffer. What it holds is
// also listed, across channels, in the hub's historyIndex (budget.go).
type ring struct {
	buf   []*publication
	start int // index of the oldest entry
	n     int
}

func (r *ring) len() int { return r.n }

func (r *ring) at(i int) *publication {
	return r.buf[(r.start+i)%len(r.buf)]
}

// push adds p, keeping at most size entries (size > 0), and returns the
// oldest entry it dropped to make room, or nil.
func (r *ring) push(p *publication, size int) (dropped *publication) {
	switch {
	case r.n < len(r.buf):
		r.buf[(r.start+r.n)%len(r.buf)] = p
		r.n++
	case len(r.buf) < size:
		if r.start != 0 { // unwrap before growing
			r.buf = append(append(make([]*publication, 0, len(r.buf)+1), r.buf[r.start:]...), r.buf[:r.start]...)
			r.start = 0
		}
		r.buf = append(r.buf, p)
		r.n++
	default:
		dropped = r.buf[r.start]
		r.buf[r.start] = p
		r.start = (r.start + 1) % len(r.buf)
	}
	return dropped
}

// popOldest removes and returns the oldest entry; the ring must not be
// empty. An emptied ring gives its buffer back.
func (r *ring) popOldest() *publication {
	p := r.buf[r.start]
	r.buf[r.start] = nil
	r.start = (r.start + 1) % len(r.buf)
	if r.n--; r.n == 0 {
		r.buf, r.start = nil, 0
	}
	return p
}

// oldest is the offset of the oldest entry; the ring must not be empty.
func (r *ring) oldest() uint64 { return r.at(0).offset }

// after returns the entries with offsets greater than offset, oldest first.
func (r *ring) after(offset uint64) []*publication {
	if r.n == 0 {
		return nil
	}
	first := 0
	if o := r.oldest(); offset >= o {
		first = int(offset - o + 1)
	}
	if first >= r.n {
		return nil
	}
	out := make([]*publication, 0, r.n-first)
	for i := first; i < r.n; i++ {
		out = append(out, r.at(i))
	}
	return out
}
