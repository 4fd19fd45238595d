package attack

import (
	"bytes"
	"compress/flate"
	"math/rand/v2"
)

// BombPayload is a pushgate.v1 message of size bytes (at least 32), an op
// the gateway refuses with an error, padded with text that deflates about
// ratio times (0: as far as deflate goes, a run of one letter).
func BombPayload(size, ratio int) []byte {
	const head, tail = `{"op":"nope","pad":"`, `"}`
	pad := max(0, size-len(head)-len(tail))
	build := func(random int) []byte {
		b := make([]byte, 0, size)
		b = append(b, head...)
		b = append(b, filler(pad, random)...)
		return append(b, tail...)
	}
	if ratio <= 0 {
		return build(0)
	}
	// The more random letters per 256 bytes, the less it deflates: find
	// the fewest that bring the ratio down to the one asked for.
	lo, hi := 0, 256
	for lo < hi {
		mid := (lo + hi) / 2
		if p := build(mid); len(p) <= ratio*len(Deflate(p)) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return build(lo)
}

// filler is n bytes in blocks of 256: random letters, then the rest of the
// block one letter.
func filler(n, random int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		if i%256 < random {
			b[i] = 'a' + byte(rng.IntN(26))
		} else {
			b[i] = 'a'
		}
	}
	return b
}

// Deflate compresses p as a permessage-deflate message (RFC 7692, no
// context takeover): a sync-flushed raw deflate stream without its final
// empty block's 4-byte tail.
func Deflate(p []byte) []byte {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestSpeed) // the level is valid
	_, _ = w.Write(p)                              // a bytes.Buffer does not fail
	_ = w.Flush()
	return bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})
}
