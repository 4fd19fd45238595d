package procstat_test

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/procstat"
)

// The test's own RSS grows when it touches 64 MiB it has just mapped (not
// Go's heap, which may already be resident from an earlier run of the
// test): the figure is the process's resident memory, in bytes.
func TestRSS(t *testing.T) {
	const size = 64 << 20
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(b)
	before, err := procstat.RSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < size; i += 4096 {
		b[i] = 1
	}
	after, err := procstat.RSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 60<<20 {
		t.Fatalf("RSS %d then %d bytes around touching 64 MiB", before, after)
	}
}

// CPU agrees with the kernel's own account of the process (getrusage):
// spinning until getrusage shows 300ms more shows as 300ms in CPU too, to
// the clock ticks /proc rounds to. Not a timing assertion: on a loaded
// machine the spin takes longer, both figures with it.
func TestCPU(t *testing.T) {
	const spin, tick = 300 * time.Millisecond, 10 * time.Millisecond
	r0 := rusageCPU(t)
	before, err := procstat.CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for rusageCPU(t)-r0 < spin {
		for range 1 << 16 {
			x++
		}
	}
	after, err := procstat.CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	r1 := rusageCPU(t)
	// utime and stime are each rounded down to a tick, at both reads.
	if d := after - before; d < spin-4*tick || d > r1-r0+4*tick {
		t.Fatalf("CPU says %v while getrusage says at least %v and at most %v", d, spin, r1-r0)
	}
	_ = x
}

// rusageCPU is the process's user and system CPU time, from getrusage.
func rusageCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
