// Package server runs pushgate's listeners and connections.
//
// A listener's accepted connection takes a slot from the admission
// (admit.go) and gets a handshake goroutine that reads the request head,
// within MaxHeaderBytes and two deadlines (the request line's, then the
// whole head's): upgrades to /ws and /echo are answered on the raw
// connection by wsproto, and any other request goes to a net/http server
// with the bytes already read put back, keeping its slot until net/http
// closes it. When the slots run out, or one address holds its share, the
// oldest stalled connection (one the server waits on that sends nothing)
// is shed, so a slowloris cannot keep real clients out. An upgraded
// connection is detached from the net package and parked in the read
// poller as a Conn: its descriptor, its state and nothing else; Serve
// refuses listeners whose connections have no descriptor (crypto/tls).
//
// When the socket is readable, a worker reads what arrived, feeds it to the
// connection's frame reader (which exists only while a frame or message is
// partial), hands messages to the endpoint's Handler, and re-arms the
// poller. Writes never wait: Conn.Send writes at once if the socket takes
// the frame, else queues it and the write poller drains the queue with
// writev when the socket is writable. Conn.Queue and Conn.Flush let a
// delivery loop queue several frames and write them with one writev;
// Conn.Pace queues the frames of a history replay, written as the socket
// drains. The bound (overflow closes with 1013) counts only what the
// socket refused, not the frame being written nor paced frames.
//
// One heartbeat goroutine keeps a coarse clock and sweeps all connections:
// pings for the silent, closes for the unanswering (and for expired
// tokens, unfinished messages and sockets that took nothing), reads
// resumed once a throttled budget refilled, and the end of closing
// handshakes that take too long (see heartbeat.go). Shutdown drains:
// readiness false, listeners closed, 1001 to every connection spread over
// the drain window.
//
// An event stream (GET /events, Server-Sent Events, stream.go) is held
// the same way once its response head is written: the same poller,
// queue, bound and drain, with a comment for a heartbeat and a last
// event instead of a close frame.
//
// Lock order: connTable.mu, then Conn.mu. Only the task holding a Conn's
// read side closes its descriptor (see close.go).
package server
