package session

import (
	"testing"
	"unsafe"
)

// Every connection has a Session: it stays within the 32-byte size class
// of Go's allocator (the next is 48), which bench idle's figure counts.
func TestSessionSize(t *testing.T) {
	if n := unsafe.Sizeof(Session{}); n > 32 {
		t.Fatalf("Session is %d bytes, over the 32-byte size class", n)
	}
}
