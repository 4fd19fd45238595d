package server

import (
	"testing"
	"unsafe"
)

// A parked connection's memory is what the gateway is about: the Conn
// stays within the 128-byte size class of Go's allocator. A field added
// past it costs 16 bytes on every connection (the next class is 144);
// pack it with the others, or fold a flag into Conn.flags.
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 128 {
		t.Fatalf("Conn is %d bytes, over the 128-byte size class", n)
	}
}
