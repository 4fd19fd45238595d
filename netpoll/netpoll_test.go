package netpoll_test

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/pushgate/pushgate/netpoll"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// socketPair returns two connected non-blocking descriptors.
func socketPair(t *testing.T) (int, int) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

func newPoller(t *testing.T) *netpoll.Poller {
	p, err := netpoll.NewPoller(netpoll.PollerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func expectEvent(t *testing.T, events <-chan netpoll.Event, want netpoll.Event) {
	t.Helper()
	select {
	case ev := <-events:
		if ev&want == 0 {
			t.Fatalf("event %v, want %v", ev, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no %v event", want)
	}
}

// TestPollerOneShot checks that a registration reports one event and then
// nothing, however much is readable, until it is re-armed.
func TestPollerOneShot(t *testing.T) {
	p := newPoller(t)
	a, b := socketPair(t)
	events := make(chan netpoll.Event, 16)
	if err := p.Add(a, netpoll.Read, func(ev netpoll.Event) { events <- ev }); err != nil {
		t.Fatal(err)
	}
	unix.Write(b, []byte("x"))
	expectEvent(t, events, netpoll.EventRead)
	unix.Write(b, []byte("y")) // still unread: level-triggered would fire again

	// Use the write side of another registration as a barrier: once its
	// event arrives, the wait loop has passed any event for a.
	c, _ := socketPair(t)
	barrier := make(chan netpoll.Event, 1)
	if err := p.Add(c, netpoll.Write, func(ev netpoll.Event) { barrier <- ev }); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, barrier, netpoll.EventWrite)
	select {
	case ev := <-events:
		t.Fatalf("event %v while disarmed", ev)
	default:
	}
	if err := p.Rearm(a, netpoll.Read); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, events, netpoll.EventRead)

	// Removed, a descriptor reports nothing and cannot be re-armed.
	if err := p.Remove(a); err != nil {
		t.Fatal(err)
	}
	if err := p.Rearm(a, netpoll.Read); err == nil {
		t.Fatal("re-armed a removed descriptor")
	}
}

func TestPollerHangup(t *testing.T) {
	p := newPoller(t)
	a, b := socketPair(t)
	events := make(chan netpoll.Event, 1)
	if err := p.Add(a, netpoll.Read, func(ev netpoll.Event) { events <- ev }); err != nil {
		t.Fatal(err)
	}
	unix.Shutdown(b, unix.SHUT_WR)
	expectEvent(t, events, netpoll.EventPeerUp)
}

func TestPollerClose(t *testing.T) {
	p, err := netpoll.NewPoller(netpoll.PollerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := socketPair(t)
	events := make(chan netpoll.Event, 1)
	if err := p.Add(a, netpoll.Read, func(ev netpoll.Event) { events <- ev }); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, events, netpoll.EventClosed)
}

// openFiles counts this process's descriptors.
func openFiles(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// tcpPair returns both ends of a loopback TCP connection, closed when the
// test ends.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

func TestDetach(t *testing.T) {
	client, conn := tcpPair(t)
	before := openFiles(t)
	fd, err := netpoll.Detach(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if after := openFiles(t); after != before {
		t.Errorf("%d descriptors open after Detach, %d before: want the same", after, before)
	}
	if _, err := conn.Write([]byte("x")); err == nil {
		t.Error("the net.Conn still works after Detach")
	}
	if flags, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); flags&unix.O_NONBLOCK == 0 {
		t.Error("descriptor is blocking")
	}
	if _, err := unix.Write(fd, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := client.Read(buf); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("client read %q, %v", buf[:n], err)
	}
}

// TestDup: the duplicate and the net.Conn share the socket until the
// net.Conn is closed, after which the duplicate alone holds it; a conn
// without a descriptor is refused.
func TestDup(t *testing.T) {
	client, conn := tcpPair(t)
	fd, err := netpoll.Dup(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := conn.Write([]byte("one,")); err != nil {
		t.Fatalf("the net.Conn no longer works after Dup: %v", err)
	}
	conn.Close()
	if _, err := unix.Write(fd, []byte("two")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := ""
	for got != "one,two" {
		n, err := client.Read(buf)
		if err != nil {
			t.Fatalf("client read %q, then %v", got, err)
		}
		got += string(buf[:n])
	}
	if _, err := netpoll.Dup(struct{ net.Conn }{client}); !errors.Is(err, netpoll.ErrNoDescriptor) {
		t.Fatalf("Dup of a conn without a descriptor: %v", err)
	}
}

type taskFunc func()

func (f taskFunc) Run() { f() }

func TestPool(t *testing.T) {
	p := netpoll.NewPool(netpoll.PoolConfig{Workers: 2, Queue: 4})
	var ran atomic.Int64
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		if !p.Schedule(taskFunc(func() { ran.Add(1); wg.Done() })) {
			t.Fatal("Schedule refused a task")
		}
	}
	wg.Wait()
	if ran.Load() != 100 {
		t.Fatalf("%d tasks ran", ran.Load())
	}
	p.Close()
	if p.Schedule(taskFunc(func() { t.Error("a task ran after Close") })) {
		t.Error("Schedule accepted a task after Close")
	}
}

// TestPoolBound checks that the queue is bounded: with every worker busy
// and the queue full, Schedule waits.
func TestPoolBound(t *testing.T) {
	p := netpoll.NewPool(netpoll.PoolConfig{Workers: 1, Queue: 2})
	release := make(chan struct{})
	started := make(chan struct{})
	p.Schedule(taskFunc(func() { close(started); <-release }))
	<-started
	p.Schedule(taskFunc(func() {}))
	p.Schedule(taskFunc(func() {}))
	if p.Busy() != 1 || p.Queued() != 2 {
		t.Fatalf("busy %d queued %d, want 1 and 2", p.Busy(), p.Queued())
	}
	scheduled := make(chan struct{})
	go func() {
		p.Schedule(taskFunc(func() {}))
		close(scheduled)
	}()
	select {
	case <-scheduled:
		t.Fatal("Schedule did not wait for room in a full queue")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-scheduled
	p.Close()
	if p.Queued() != 0 {
		t.Fatalf("%d tasks left after Close", p.Queued())
	}
}

func TestPoolPanic(t *testing.T) {
	panics := make(chan any, 1)
	p := netpoll.NewPool(netpoll.PoolConfig{Workers: 1, OnPanic: func(v any) { panics <- v }})
	defer p.Close()
	p.Schedule(taskFunc(func() { panic("boom") }))
	if v := <-panics; v != "boom" {
		t.Fatalf("panic value %v", v)
	}
	done := make(chan struct{})
	p.Schedule(taskFunc(func() { close(done) }))
	<-done // the worker survived
}
