// Package proctest runs the real programs end-to-end tests need (the
// gateway binary, nats-server, HAProxy, Prometheus) as child processes on
// loopback, and cleans up after them.
package proctest

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/wstest"
)

// Program finds an external program a test needs, on PATH or in Debian's
// sbin. Missing, it fails the test under CI=true (`make deps` installs it)
// and skips it otherwise.
func Program(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (make deps installs it)", name)
	}
	t.Skipf("%s is not installed; run make deps (with CI=true this test fails)", name)
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// FreeAddr returns a loopback address whose port was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// builds holds, by package path, the programs built for this test
// binary's run.
var builds sync.Map // string -> *build

type build struct {
	once sync.Once
	bin  string
	err  error
}

// buildMain builds the main package pkg as name, once per test binary's
// run, without the race detector whatever the test binary was built
// with, and returns its path.
func buildMain(t testing.TB, pkg, name string) string {
	t.Helper()
	v, _ := builds.LoadOrStore(pkg, &build{})
	b := v.(*build)
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "pushgate-test-")
		if err != nil {
			b.err = err
			return
		}
		b.bin = filepath.Join(dir, name)
		out, err := exec.Command("go", "build", "-o", b.bin, pkg).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.bin
}

// Gateway builds the gateway binary and returns its path.
func Gateway(t testing.TB) string {
	t.Helper()
	return buildMain(t, "github.com/pushgate/pushgate/cmd/gateway", "pushgate")
}

// Attacker builds the program that plays an attack of package attack in
// a child process (attack.Spawn), and returns its path.
func Attacker(t testing.TB) string {
	t.Helper()
	return buildMain(t, "github.com/pushgate/pushgate/internal/attack/attacker", "attacker")
}

// Process is a program started by a test. When the test ends it is
// killed, by its pid, if it has not exited, and its output is logged if
// the test failed.
type Process struct {
	Name   string
	Cmd    *exec.Cmd
	Logs   *wstest.SyncBuffer // stdout and stderr
	Exited chan struct{}      // closed once it has exited
	Err    error              // from Wait, once Exited is closed
}

// Start starts name with args in dir ("" for the test's own).
func Start(t testing.TB, dir, name string, args ...string) *Process {
	t.Helper()
	return start(t, dir, nil, name, args...)
}

// StartEnv starts name with args and only the environment env
// ("KEY=value" items), in the test's directory.
func StartEnv(t testing.TB, env []string, name string, args ...string) *Process {
	t.Helper()
	return start(t, "", slices.Clip(env), name, args...)
}

func start(t testing.TB, dir string, env []string, name string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: filepath.Base(name), Cmd: exec.Command(name, args...), Logs: &wstest.SyncBuffer{}, Exited: make(chan struct{})}
	p.Cmd.Dir = dir
	if env != nil {
		p.Cmd.Env = env
	}
	p.Cmd.Stdout = p.Logs
	stderr, err := p.Cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			_, _ = p.Logs.Write(append(sc.Bytes(), '\n'))
		}
		p.Err = p.Cmd.Wait() // after the pipe is drained, as os/exec requires
		close(p.Exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.Exited:
		default:
			_ = p.Cmd.Process.Kill()
			select {
			case <-p.Exited:
			case <-time.After(10 * time.Second):
				t.Errorf("%s (pid %d) still running 10s after SIGKILL", p.Name, p.Cmd.Process.Pid)
			}
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", p.Name, tail(p.Logs.String(), 4000))
		}
	})
	return p
}

// Stop sends sig and waits, bounded, for the process to exit; it returns
// the exit error.
func (p *Process) Stop(t testing.TB, sig syscall.Signal, within time.Duration) error {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Exited:
		return p.Err
	case <-time.After(within):
		t.Fatalf("%s did not exit within %v of %v", p.Name, within, sig)
		return nil
	}
}

// WaitHTTP waits until url answers status, failing if p exits first or
// after 20 seconds.
func (p *Process) WaitHTTP(t testing.TB, url string, status int) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-p.Exited:
			t.Fatalf("%s exited: %v\n%s", p.Name, p.Err, tail(p.Logs.String(), 4000))
		default:
		}
		resp, err := client.Get(url)
		got := 0
		if err == nil {
			resp.Body.Close()
			if got = resp.StatusCode; got == status {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s did not answer %d within 20s (last: %d %v)", p.Name, url, status, got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// NATS starts Debian's nats-server with JetStream on loopback, its store in
// a temporary directory, and waits until it is healthy. It returns the
// process and the client URL (nats://host:port).
func NATS(t testing.TB) (*Process, string) {
	t.Helper()
	bin := Program(t, "nats-server")
	addr, mon := FreeAddr(t), FreeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	_, monPort, _ := net.SplitHostPort(mon)
	p := Start(t, "", bin, "-a", host, "-p", port, "-m", monPort, "-js", "-sd", t.TempDir())
	p.WaitHTTP(t, "http://"+mon+"/healthz", http.StatusOK)
	return p, "nats://" + addr
}
