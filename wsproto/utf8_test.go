package wsproto_test

import (
	"testing"
	"unicode/utf8"

	"github.com/pushgate/pushgate/wsproto"
)

var utf8Cases = []string{
	"", "hello", "κόσμε", "€", "𝄞 music", "\u007f\u0080\u07ff\u0800\uffff\U00010000\U0010ffff",
	"\xed\x9f\xbf", "\xee\x80\x80", // around the surrogates
	"\xff", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
	"abc\x80", "\xce\xba\xe1", "\xce\xba\xe1\xbd", "a\xf0\x9f\x98", "\xf0\x9f\x98\x80\x80",
}

// validateSplit feeds s in two parts cut at cut.
func validateSplit(s string, cut int) bool {
	var v wsproto.UTF8Validator
	return v.Write([]byte(s[:cut])) && v.Write([]byte(s[cut:])) && v.Complete()
}

func TestUTF8Validator(t *testing.T) {
	for _, s := range utf8Cases {
		want := utf8.ValidString(s)
		for cut := 0; cut <= len(s); cut++ {
			if got := validateSplit(s, cut); got != want {
				t.Errorf("%q cut at %d: valid=%v, want %v", s, cut, got, want)
			}
		}
		var v wsproto.UTF8Validator
		ok := true
		for i := 0; i < len(s) && ok; i++ {
			ok = v.Write([]byte{s[i]})
		}
		if got := ok && v.Complete(); got != want {
			t.Errorf("%q byte by byte: valid=%v, want %v", s, got, want)
		}
	}
}

// TestUTF8FailsFast checks that a sequence is rejected at the first byte
// that no valid text could continue with.
func TestUTF8FailsFast(t *testing.T) {
	for _, prefix := range []string{"\xff", "\xc0", "\xc1", "\xf5", "\xe0\x80", "\xed\xa0", "\xf0\x8f", "\xf4\x90", "ok\xc3\x28"} {
		var v wsproto.UTF8Validator
		if v.Write([]byte(prefix)) {
			t.Errorf("%q accepted as a prefix", prefix)
		}
	}
	for _, prefix := range []string{"\xe2\x82", "\xf0\x9f", "\xed\x9f", "\xf4\x8f\xbf"} {
		var v wsproto.UTF8Validator
		if !v.Write([]byte(prefix)) || v.Complete() {
			t.Errorf("%q: want an accepted, incomplete prefix", prefix)
		}
	}
}

func FuzzUTF8Validator(f *testing.F) {
	for _, s := range utf8Cases {
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, p []byte, cut uint8) {
		c := int(cut) % (len(p) + 1)
		if got, want := validateSplit(string(p), c), utf8.Valid(p); got != want {
			t.Fatalf("%q cut at %d: valid=%v, utf8.Valid=%v", p, c, got, want)
		}
	})
}

func BenchmarkUTF8Validator(b *testing.B) {
	text := []byte("pushgate fans out ~ κόσμε ~ 𝄞 ~ messages to every subscriber, fast. ")
	for len(text) < 4096 {
		text = append(text, text...)
	}
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		var v wsproto.UTF8Validator
		if !v.Write(text) {
			b.Fatal("invalid")
		}
	}
}
