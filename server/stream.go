package server

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pushgate/pushgate/netpoll"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/wsproto"
)

// An event stream (GET /events, Server-Sent Events) is parked like a
// WebSocket: once its response head is written, its descriptor goes into
// the same poller and its events through the same outbound queue, bounds
// and slow-consumer rule. What differs:
//
//   - The response has no length: its body is events until the server
//     closes the connection. It starts with a retry field (SSERetry).
//     A client that accepts gzip, with Config.EventsGzip, gets it
//     gzip-encoded (protocol.SSEGzip: events deflated once per
//     publication, the stream's own bytes stored), with no compressor
//     kept per stream.
//   - Nothing is read after the request: bytes that arrive close it
//     (Conn.consume), and the client leaves by closing its side.
//   - There is no close frame: closing writes a last event,
//     {"type":"close","code":…,"reason":…}, then ends the stream, and a
//     browser's EventSource reconnects (to another node, behind a load
//     balancer, when this one drains).
//   - The heartbeat cannot ask for an answer: a stream that was sent
//     nothing for PingInterval gets a comment line (or a ping event, if it
//     asked for app-level pings), and a peer that is gone is found by the
//     kernel, which ends a connection whose bytes stay unacknowledged for
//     PingInterval plus PongTimeout (TCP_USER_TIMEOUT).
//   - Each event that moves the stream's position carries an id, which the
//     handler gives with the event (SendEvent, QueueEvent, PaceEvent); a
//     reconnecting client's Last-Event-ID header reaches the handler's
//     Open as the query's last_event_id.

// The heartbeat's bytes for a stream, by its encoding (SSE, SSEGzip): a
// comment, or the app-level ping as an event.
var (
	streamComment [protocol.NumEncodings][]byte
	streamPing    [protocol.NumEncodings][]byte
)

func init() {
	streamComment[protocol.SSE] = []byte(protocol.SSEComment)
	streamComment[protocol.SSEGzip] = protocol.AppendStoredEvent(nil, []byte(protocol.SSEComment))
	for _, e := range []protocol.Encoding{protocol.SSE, protocol.SSEGzip} {
		streamPing[e] = protocol.Frame(e, append(protocol.Buffer(len(protocol.Ping)), protocol.Ping...))
	}
}

// acceptsGzip reports whether a request's Accept-Encoding takes gzip (a
// q of 0 refuses it).
func acceptsGzip(head []byte) bool {
	v, ok := wsproto.HeaderValue(head, "Accept-Encoding")
	if !ok {
		return false
	}
	for part := range strings.SplitSeq(string(v), ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
			continue
		}
		q, found := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q=")
		return !found || strings.Trim(q, "0.") != ""
	}
	return false
}

// stream answers GET /events, whose head is complete, and parks the
// connection. pc is pinned: not to be shed.
func (s *Server) stream(pc *pendingConn, head, query, pending []byte) {
	refuse := func(he *wsproto.HandshakeError) {
		s.adm.unpin(pc)
		s.refuse(pc, wsproto.WriteRefusal(pc, he))
	}
	method, _, _ := wsproto.RequestTarget(head)
	origin, hasOrigin := wsproto.HeaderValue(head, "Origin")
	switch {
	case string(method) != http.MethodGet:
		refuse(wsproto.ErrMethodNotAllowed)
		return
	case hasOrigin && (!printable(origin) || !s.Origins().Allows(string(origin))):
		refuse(wsproto.ErrForbiddenOrigin)
		return
	}
	// The descriptor is taken first: the authorizer is told the slot.
	fd, err := netpoll.Dup(pc.Conn)
	if err != nil {
		s.log.Error("cannot hold an event stream", "remote", pc.RemoteAddr(), "err", err)
		refuse(cannotHold(err))
		return
	}
	var state any
	if s.cfg.Authorize != nil {
		if state, err = s.cfg.Authorize(head, fd, pc.RemoteAddr()); err != nil {
			unix.Close(fd)
			var he *wsproto.HandshakeError
			if !errors.As(err, &he) {
				he = &wsproto.HandshakeError{Status: http.StatusInternalServerError, Reason: "handshake check failed"}
			}
			refuse(he)
			return
		}
	}
	resp := make([]byte, 0, 256+len(origin))
	resp = append(resp, "HTTP/1.1 200 OK\r\n"...)
	resp = append(resp, protocol.SSEHead...)
	if hasOrigin {
		// A page of another origin (the allow-list said yes) reads the
		// stream, with its cookies when it asked withCredentials.
		resp = append(resp, "Access-Control-Allow-Origin: "...)
		resp = append(resp, origin...)
		resp = append(resp, "\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n"...)
	}
	gz := s.cfg.EventsGzip && acceptsGzip(head)
	if gz {
		resp = append(resp, "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n"...)
	}
	resp = append(resp, "\r\n"...)
	if gz {
		resp = append(resp, protocol.GzipHeader...)
		resp = protocol.AppendStoredEvent(resp, []byte(protocol.SSERetry))
	} else {
		resp = append(resp, protocol.SSERetry...)
	}
	if _, err := pc.Write(resp); err != nil {
		unix.Close(fd)
		s.adm.unpin(pc)
		s.refuse(pc, err)
		return
	}
	pc.Close() // the duplicate keeps the socket open
	// A peer that vanished is found by the kernel: our heartbeat comments
	// stay unacknowledged, and past this the socket fails.
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(s.pingMs+s.pongMs))
	s.hsResults[wsproto.ResultOK].Inc()
	s.open(fd, endpointEvents, wsproto.Handshake{State: state, Compression: gz}, streamQuery(head, query), pending)
}

// printable reports whether b is all visible ASCII: an Origin echoed in a
// response header must not carry a CR or other control bytes.
func printable(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// closeEvent is the last event of a stream (encoded as e) closed for
// reason.
func closeEvent(e protocol.Encoding, code int, text string) []byte {
	return protocol.Frame(e, protocol.AppendClose(protocol.Buffer(48+len(text)), code, text))
}

// streamQuery is the query an event stream's handler sees: the request's,
// with the Last-Event-ID header, when there is one, in front as
// last_event_id (which wins over one in the query: url.Values.Get takes
// the first). A client that cannot set the header (a new EventSource
// cannot) may put last_event_id in the URL.
func streamQuery(head, query []byte) []byte {
	id, ok := wsproto.HeaderValue(head, "Last-Event-ID")
	if !ok {
		return query
	}
	q := "last_event_id=" + url.QueryEscape(string(id))
	if len(query) > 0 {
		q += "&" + string(query)
	}
	return []byte(q)
}
