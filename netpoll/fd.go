package netpoll

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrNoDescriptor reports a net.Conn that does not expose a descriptor.
var ErrNoDescriptor = errors.New("netpoll: connection has no file descriptor")

// Detach takes the socket out of conn and returns it as a raw, non-blocking,
// close-on-exec descriptor owned by the caller; conn is closed. What it frees
// is most of a parked connection's cost: the netFD, the runtime's poll
// descriptor and both address objects (about 1 KiB). The socket itself stays
// open and keeps its options (keep-alive, no-delay).
func Detach(conn net.Conn) (int, error) {
	fd, err := Dup(conn)
	if errors.Is(err, ErrNoDescriptor) {
		return -1, err
	}
	// Closing conn takes its descriptor out of the Go runtime's own epoll
	// set before closing it; the duplicate keeps the socket alive.
	conn.Close()
	return fd, err
}

// Dup returns a raw, non-blocking, close-on-exec duplicate of conn's
// socket, owned by the caller; conn stays open and usable. Closing conn
// later, as Detach does, leaves the socket to the duplicate. A caller that
// must not commit to a connection it cannot hold (a WebSocket upgrade)
// takes the duplicate first.
func Dup(conn net.Conn) (int, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return -1, ErrNoDescriptor
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var dupErr error
	err = rc.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	})
	if err == nil {
		err = dupErr
	}
	if err != nil {
		return -1, err
	}
	// O_NONBLOCK lives on the shared open file description, but make sure.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}
