package wsproto

import "unicode/utf8"

// UTF8Validator checks text that arrives in pieces, as a text message does
// across frames and reads. It rejects a byte as soon as no valid sequence can
// contain it, so an invalid message fails on its first bad byte rather than
// at its end. The zero value is ready to use.
type UTF8Validator struct {
	need   uint8 // continuation bytes still expected by the current rune
	lo, hi uint8 // range allowed for the next continuation byte
}

// Reset forgets any partial rune.
func (v *UTF8Validator) Reset() { *v = UTF8Validator{} }

// Complete reports whether the text so far ends on a rune boundary.
func (v *UTF8Validator) Complete() bool { return v.need == 0 }

// Write feeds p and reports whether the text so far is a valid prefix of
// UTF-8 text.
func (v *UTF8Validator) Write(p []byte) bool {
	i := 0
	for v.need > 0 && i < len(p) {
		if !v.step(p[i]) {
			return false
		}
		i++
	}
	p = p[i:]
	// Validate all complete runes in bulk (utf8.Valid has an ASCII fast path)
	// and step through a trailing incomplete rune byte by byte.
	cut := len(p)
	for k := 1; k <= utf8.UTFMax-1 && k <= len(p); k++ {
		b := p[len(p)-k]
		if b&0xC0 == 0x80 {
			continue // continuation byte: look further back for the start
		}
		if b >= 0xC0 && seqLen(b) > k {
			cut = len(p) - k
		}
		break
	}
	if !utf8.Valid(p[:cut]) {
		return false
	}
	for _, b := range p[cut:] {
		if !v.step(b) {
			return false
		}
	}
	return true
}

// step advances the validator by one byte (RFC 3629 table 3-7).
func (v *UTF8Validator) step(b byte) bool {
	if v.need > 0 {
		if b < v.lo || b > v.hi {
			return false
		}
		v.need--
		v.lo, v.hi = 0x80, 0xBF
		return true
	}
	v.lo, v.hi = 0x80, 0xBF
	switch {
	case b < 0x80:
		return true
	case b >= 0xC2 && b <= 0xDF:
		v.need = 1
	case b == 0xE0:
		v.need, v.lo = 2, 0xA0
	case b == 0xED:
		v.need, v.hi = 2, 0x9F // no UTF-16 surrogates
	case b >= 0xE1 && b <= 0xEF:
		v.need = 2
	case b == 0xF0:
		v.need, v.lo = 3, 0x90
	case b >= 0xF1 && b <= 0xF3:
		v.need = 3
	case b == 0xF4:
		v.need, v.hi = 3, 0x8F // nothing above U+10FFFF
	default:
		return false
	}
	return true
}

// seqLen is the length of the sequence a start byte announces, or 1 for a
// byte that cannot start one (utf8.Valid rejects those).
func seqLen(b byte) int {
	switch {
	case b >= 0xC2 && b <= 0xDF:
		return 2
	case b >= 0xE0 && b <= 0xEF:
		return 3
	case b >= 0xF0 && b <= 0xF4:
		return 4
	}
	return 1
}
