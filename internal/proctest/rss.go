package proctest

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"testing"
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

// ReadRSS returns the process's resident set size in bytes (VmRSS in
// /proc/<pid>/status).
func (p *Process) ReadRSS() (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p.Name, err)
	}
	for line := range bytes.Lines(status) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: VmRSS %q: %w", p.Name, v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("%s: no VmRSS in /proc/%d/status", p.Name, p.Cmd.Process.Pid)
}
