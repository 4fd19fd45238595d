package broadcast

import (
	"runtime"
	"testing"
	"unsafe"

	"github.com/pushgate/pushgate/protocol"
)

// Every connection is a Member: it stays within the 64-byte size class
// of Go's allocator (the next is 80), one cache line, which its first
// subscription shares.
func TestMemberSize(t *testing.T) {
	if n := unsafe.Sizeof(Member{}); n > 64 {
		t.Fatalf("Member is %d bytes, over the 64-byte size class", n)
	}
}

// nop is a Subscriber that holds nothing: what the hub holds for it is
// all the heap a member takes.
type nop struct{}

func (nop) Send([]byte) error           { return nil }
func (nop) Encoding() protocol.Encoding { return protocol.WebSocket }

// An idle connection subscribed to one channel costs the hub its Member
// and its entry in the channel's list on its shard, and nothing else: no
// map entry, no second allocation (bench idle's figure counts every byte
// of it). It was 133 bytes: a 96-byte Member, an 8-byte slice of its
// channels and an entry in its shard's set (a map) of the channel's
// members; it is 74.
func TestMemberMemory(t *testing.T) {
	// Other tests' garbage, freed between the two readings, can make
	// the difference too small (a Member alone is 64 bytes): such a
	// reading is taken again, and never passes.
	least := float64(unsafe.Sizeof(Member{}))
	per := -1.0
	for attempt := 0; per < least && attempt < 5; attempt++ {
		per = memberMemory(t)
	}
	t.Logf("a member subscribed to one channel holds %.1f bytes of heap", per)
	if per < least || per > 80 {
		t.Fatalf("a member subscribed to one channel holds %.1f bytes of heap, want at most 80 (64 for the Member, its list entry)", per)
	}
}

// memberMemory is the heap 20,000 members subscribed to one channel hold,
// per member.
func memberMemory(t *testing.T) float64 {
	h := New(Config{HistorySize: -1})
	defer h.Close()
	const n = 20_000
	subs := make([]nop, n) // zero-size: no heap
	members := make([]*Member, 0, n)
	h.flush()
	var before, after runtime.MemStats
	// Twice: what other tests left in sync.Pools (wsproto's deflaters,
	// about a megabyte each) moves to the victim cache at the first
	// collection and is freed only at the second.
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range subs {
		m := h.Join(subs[i])
		if err := h.Subscribe(m, "news", nil); err != nil {
			t.Fatal(err)
		}
		members = append(members, m)
		if i%256 == 255 {
			h.flush() // connections arrive over time: the shards' queues stay short
		}
	}
	h.flush()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(members)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
}
