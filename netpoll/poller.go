package netpoll

import (
	easy "github.com/mailru/easygo/netpoll"
	"golang.org/x/sys/unix"
)

// Interest is what a descriptor is watched for.
type Interest uint32

// Interests. A registration is one-shot: after one event the descriptor is
// disarmed until Rearm, so at most one task per descriptor and interest is
// ever in flight.
const (
	Read  Interest = unix.EPOLLIN | unix.EPOLLRDHUP
	Write Interest = unix.EPOLLOUT
)

// Event is what the kernel reported. It is easygo's type, so a callback is
// registered as it is, without a wrapper closure per connection.
type Event = easy.EpollEvent

// Events; several may be reported at once.
const (
	EventRead   Event = unix.EPOLLIN
	EventWrite  Event = unix.EPOLLOUT
	EventPeerUp Event = unix.EPOLLRDHUP // the peer shut down its side
	EventHup    Event = unix.EPOLLHUP
	EventErr    Event = unix.EPOLLERR
	// EventClosed is reported to every registration when the Poller closes.
	EventClosed Event = 0x20
)

// Poller watches raw descriptors with one epoll instance. It registers the
// descriptor itself (easygo's Epoll), never a dup made through
// net.Conn.File, so a connection costs one descriptor.
//
// Callbacks run on the poller's single wait goroutine: they must only hand
// the event to a Pool and return. Rearm from inside a callback works but is
// not what callbacks are for.
type Poller struct {
	ep *easy.Epoll
}

// PollerConfig configures a Poller. The zero value is usable.
type PollerConfig struct {
	// OnWaitError receives errors of the wait loop, after which it stops
	// (default: ignored; the loop retries on EINTR by itself).
	OnWaitError func(error)
}

// NewPoller starts a Poller and its wait goroutine.
func NewPoller(c PollerConfig) (*Poller, error) {
	onErr := c.OnWaitError
	if onErr == nil {
		onErr = func(error) {}
	}
	ep, err := easy.EpollCreate(&easy.EpollConfig{OnWaitError: onErr})
	if err != nil {
		return nil, err
	}
	return &Poller{ep: ep}, nil
}

// Add starts watching fd, which must be non-blocking, for one event of the
// given interest; cb receives it.
func (p *Poller) Add(fd int, want Interest, cb func(Event)) error {
	return p.ep.Add(fd, easy.EpollEvent(want)|easy.EPOLLONESHOT, cb)
}

// Rearm watches fd for one more event.
func (p *Poller) Rearm(fd int, want Interest) error {
	return p.ep.Mod(fd, easy.EpollEvent(want)|easy.EPOLLONESHOT)
}

// Remove stops watching fd. It must be called before fd is closed: the
// kernel keeps a registration alive while any duplicate of the descriptor
// is open.
func (p *Poller) Remove(fd int) error {
	return p.ep.Del(fd)
}

// Close stops the wait goroutine; every registration's callback then gets
// EventClosed.
func (p *Poller) Close() error {
	return p.ep.Close()
}
