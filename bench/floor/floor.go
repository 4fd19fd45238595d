package floor

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/pushgate/pushgate/bench/refserver"
	"golang.org/x/sys/unix"
)

// writeTimeout bounds one blocking write (SO_SNDTIMEO), so a client that
// stops reading holds a publish for at most this long and is then dropped.
// It matches the hub's writeWait.
const writeTimeout = 10 * time.Second

// Floor holds the descriptors of all connected sockets.
//
// Lock order: publishMu before mu.
type Floor struct {
	// publishMu makes publishes and Close take turns: two rounds
	// writing the same socket at once would interleave their frames, and
	// Close must not close a descriptor a round is writing.
	publishMu sync.Mutex

	mu     sync.Mutex
	fds    []int
	closed bool
}

// New returns a Floor with no sockets.
func New() *Floor { return &Floor{} }

// Handler serves /ws, /publish, /metrics, /healthz and /debug/pprof/.
// refserver_clients counts the sockets a publish writes to.
func (f *Floor) Handler() http.Handler {
	return refserver.Routes(f.serveWS, f.servePublish, f.Clients)
}

// Clients reports how many sockets are held.
func (f *Floor) Clients() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.fds)
}

// Close closes every socket, after any publish in progress. It is safe to
// call more than once.
func (f *Floor) Close() {
	f.publishMu.Lock()
	defer f.publishMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for _, fd := range f.fds {
		unix.Close(fd)
	}
	f.fds = nil
}

// serveWS upgrades the request and keeps only a blocking duplicate of the
// socket's descriptor, leaving the Go runtime's poller out of the write path.
func (f *Floor) serveWS(w http.ResponseWriter, r *http.Request) {
	conn, _, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		if conn != nil {
			conn.Close() // UpgradeHTTP has written the rejection
		}
		return
	}
	fd, err := rawDescriptor(conn)
	conn.Close()
	if err != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		unix.Close(fd)
		return
	}
	f.fds = append(f.fds, fd)
}

// rawDescriptor duplicates conn's descriptor and makes the duplicate
// blocking. O_NONBLOCK lives on the open file, shared by both descriptors, so
// it can only be cleared once the duplicate exists; conn must be closed after.
func rawDescriptor(conn net.Conn) (int, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return -1, errors.New("floor: connection has no descriptor")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var dupErr error
	if err := raw.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if dupErr != nil {
		return -1, dupErr
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return -1, err
	}
	tv := unix.NsecToTimeval(writeTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// servePublish answers 204 once the frame has been handed to the kernel for
// every socket.
func (f *Floor) servePublish(w http.ResponseWriter, r *http.Request) {
	body, ok := refserver.ReadPublish(w, r)
	if !ok {
		return
	}
	frame, err := ws.CompileFrame(ws.NewTextFrame(body))
	if err != nil {
		http.Error(w, "encoding frame: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if !f.publish(frame) {
		http.Error(w, "floor closed", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
