package procstat_test

import (
	"os"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/procstat"
)

// The test's own RSS grows when it touches 64 MiB: the figure is the
// process's resident memory, in bytes.
func TestRSS(t *testing.T) {
	before, err := procstat.RSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 64<<20)
	for i := range b {
		b[i] = 1
	}
	after, err := procstat.RSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 60<<20 {
		t.Fatalf("RSS %d then %d bytes around touching 64 MiB", before, after)
	}
	_ = b[len(b)-1]
}

// A second of the test's own spinning shows as about a second of CPU.
func TestCPU(t *testing.T) {
	before, err := procstat.CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		x++
	}
	after, err := procstat.CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d := after - before; d < 800*time.Millisecond || d > 3*time.Second {
		t.Fatalf("a second's spin took %v of CPU", d)
	}
	_ = x
}
