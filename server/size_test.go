package server

import (
	"testing"
	"unsafe"
)

// A parked connection's memory is what the gateway is about: the Conn
// stays within the 112-byte size class of Go's allocator (it was 128
// until its flags became bits and a read task's counts moved to the
// pooled readState). A field added past it costs 16 bytes on every
// connection (the next class is 128); pack it with the others, or fold
// a flag into Conn.flags, wbits or rbits.
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 112 {
		t.Fatalf("Conn is %d bytes, over the 112-byte size class", n)
	}
}

// What a write and the heartbeat's sweep read of every connection is in
// its first 64 bytes, so that fan-out and the sweep touch one or two cache
// lines of a Conn rather than all it spans (112-byte objects start on a
// line boundary one time in four).
func TestConnHotFields(t *testing.T) {
	var c Conn
	for name, off := range map[string]uintptr{
		"mu": unsafe.Offsetof(c.mu), "out": unsafe.Offsetof(c.out), "state": unsafe.Offsetof(c.state),
		"flags": unsafe.Offsetof(c.flags), "wroteAt": unsafe.Offsetof(c.wroteAt), "seen": unsafe.Offsetof(c.seen),
		"pingAt": unsafe.Offsetof(c.pingAt), "expires": unsafe.Offsetof(c.expires), "partialAt": unsafe.Offsetof(c.partialAt),
		"wbits": unsafe.Offsetof(c.wbits),
	} {
		if off >= 64 {
			t.Errorf("Conn.%s is at byte %d, past the first 64", name, off)
		}
	}
}
