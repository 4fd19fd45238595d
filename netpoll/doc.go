// Package netpoll is where parked connections wait: an epoll poller over
// raw descriptors (github.com/mailru/easygo) and the bounded worker pool
// that serves them.
//
// A connection is registered once, one-shot: when the kernel reports it
// ready, the callback schedules a Task on the Pool and returns, and the
// task re-arms the descriptor when it is done. An idle connection therefore
// costs a registration in the kernel and nothing in Go: no goroutine, timer
// or buffer. Detach takes a socket out of a net.Conn so that a connection
// keeps one descriptor and none of the net package's per-connection
// objects.
package netpoll
