package broadcast

import "time"

// ring is a channel's history: its latest publications, oldest first, with
// consecutive offsets. It grows to its bound as messages arrive, so a
// channel that is never published to holds no buffer.
type ring struct {
	buf   []*publication
	start int // index of the oldest entry once buf is full
	n     int
}

func (r *ring) len() int { return r.n }

func (r *ring) at(i int) *publication {
	return r.buf[(r.start+i)%len(r.buf)]
}

// push adds p, dropping the oldest entry beyond size entries. It returns
// by how much the ring grew: 1, or 0 when full or disabled.
func (r *ring) push(p *publication, size int) int {
	switch {
	case size <= 0:
		return 0
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
		r.buf[r.start] = p
		r.start = (r.start + 1) % len(r.buf)
		return 0
	}
	return 1
}

// clear empties the ring and returns how many entries it held.
func (r *ring) clear() int {
	n := r.n
	r.buf, r.start, r.n = nil, 0, 0
	return n
}

// expire drops entries published before cutoff and returns how many.
func (r *ring) expire(cutoff time.Time) int {
	dropped := 0
	for r.n > 0 && r.buf[r.start].at.Before(cutoff) {
		r.buf[r.start] = nil
		r.start = (r.start + 1) % len(r.buf)
		r.n--
		dropped++
	}
	if r.n == 0 {
		r.buf, r.start = nil, 0 // an idle channel gives its buffer back
	}
	return dropped
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
