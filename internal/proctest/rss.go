package proctest

import (
	"fmt"
	"testing"

	"github.com/pushgate/pushgate/internal/procstat"
)

// RSS returns the process's resident set size in bytes, failing the test
// if it cannot be read.
func (p *Process) RSS(t testing.TB) int64 {
	t.Helper()
	v, err := p.ReadRSS()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// ReadRSS returns the process's resident set size in bytes.
func (p *Process) ReadRSS() (int64, error) {
	v, err := procstat.RSS(p.Cmd.Process.Pid)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p.Name, err)
	}
	return v, nil
}
