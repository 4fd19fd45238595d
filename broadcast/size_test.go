package broadcast

import (
	"testing"
	"unsafe"
)

// Every connection is a Member: it stays within the 96-byte size class
// of Go's allocator (the next is 112).
func TestMemberSize(t *testing.T) {
	if n := unsafe.Sizeof(Member{}); n > 96 {
		t.Fatalf("Member is %d bytes, over the 96-byte size class", n)
	}
}
