package wsproto

import (
	"bytes"
	"errors"
	"io"
)

// ErrHeadTooLarge reports a request head that does not fit the buffer it is
// read into.
var ErrHeadTooLarge = errors.New("wsproto: request head too large")

// ReadHead reads from r into buf until buf holds a whole HTTP request head,
// up to and including the empty line that ends it, and returns the number of
// bytes read and the head's length. Bytes after the head (a pipelining
// client) are left in buf[headLen:n]. If buf fills first, it returns
// ErrHeadTooLarge with n == len(buf), so the caller can still look at the
// request line or pass the bytes on.
func ReadHead(r io.Reader, buf []byte) (n, headLen int, err error) {
	for n < len(buf) {
		m, rerr := r.Read(buf[n:])
		from := max(0, n-3)
		n += m
		if end := headEnd(buf[:n], from); end > 0 {
			return n, end, nil
		}
		if rerr != nil {
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			return n, 0, rerr
		}
	}
	return n, 0, ErrHeadTooLarge
}

// headEnd returns the length of the head in b, searching for its end from
// index from, or 0 if b does not hold the end yet. Lines may end in CRLF or,
// leniently, LF.
func headEnd(b []byte, from int) int {
	for i := from; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if i+1 < len(b) && b[i+1] == '\n' {
			return i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
		}
	}
	return 0
}

// RequestTarget returns the method and request target of the request line
// that starts head ("GET /ws?x=1 HTTP/1.1" gives "GET" and "/ws?x=1").
// ok is false unless the line is method SP target SP HTTP/major.minor.
func RequestTarget(head []byte) (method, target []byte, ok bool) {
	line := head
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimSuffix(line, []byte{'\r'})
	method, rest, ok1 := bytes.Cut(line, []byte{' '})
	target, version, ok2 := bytes.Cut(rest, []byte{' '})
	if !ok1 || !ok2 || len(method) == 0 || len(target) == 0 || !validVersion(version) {
		return nil, nil, false
	}
	return method, target, true
}

// validVersion checks "HTTP/" digits "." digits.
func validVersion(v []byte) bool {
	v, ok := bytes.CutPrefix(v, []byte("HTTP/"))
	major, minor, dot := bytes.Cut(v, []byte{'.'})
	return ok && dot && digits(major) && digits(minor)
}

func digits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// SplitTarget splits a request target into its path and raw query.
func SplitTarget(target []byte) (path, query []byte) {
	path, query, _ = bytes.Cut(target, []byte{'?'})
	return path, query
}

// HeaderValue returns the value of the first header field called name
// (ASCII case-insensitive) in a request head, with surrounding white space
// trimmed.
func HeaderValue(head []byte, name string) (value []byte, ok bool) {
	lines := head
	if i := bytes.IndexByte(lines, '\n'); i >= 0 {
		lines = lines[i+1:] // skip the request line
	}
	for len(lines) > 0 {
		var line []byte
		line, lines, _ = bytes.Cut(lines, []byte{'\n'})
		line = bytes.TrimSuffix(line, []byte{'\r'})
		k, v, found := bytes.Cut(line, []byte{':'})
		if found && bytes.EqualFold(k, []byte(name)) {
			return bytes.Trim(v, " \t"), true
		}
	}
	return nil, false
}
