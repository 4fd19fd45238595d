package wsproto_test

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/wsproto"
)

// FuzzReader feeds arbitrary bytes whole and cut in two: the Reader must
// not panic and must decide the same either way.
func FuzzReader(f *testing.F) {
	for _, tc := range readerCases {
		if len(tc.in) < 1024 {
			f.Add(tc.in, uint16(len(tc.in)/2), tc.opts.Compression)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte, cut uint16, compression bool) {
		o := wsproto.Options{MaxMessageSize: 4096, Compression: compression}
		want, wantCode := feed(t, in, o)
		c := int(cut) % (len(in) + 1)
		got, code := feed(t, in, o, c)
		if code != wantCode || strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("cut at %d: got %v close %d, whole: %v close %d", c, got, code, want, wantCode)
		}
	})
}

// FuzzUpgrade runs arbitrary request heads through ReadHead and the
// Upgrader: whatever it decides must be a well-formed HTTP response with
// the status it reports, and 101 only for a handshake that has what RFC
// 6455 requires.
func FuzzUpgrade(f *testing.F) {
	f.Add([]byte(wstest.UpgradeRequest("/ws")))
	f.Add([]byte(wstest.UpgradeRequest("/ws", "Sec-WebSocket-Protocol: chat, pushgate.v1", "Origin: https://app.example.com")))
	f.Add([]byte(wstest.UpgradeRequest("/ws", "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")))
	f.Add([]byte(wstest.UpgradeRequest("/ws", "Sec-WebSocket-Version: 8")))
	f.Add([]byte(wstest.UpgradeRequest("/ws", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAA")))
	f.Add([]byte("GET /ws HTTP/1.0\r\n\r\n"))
	f.Add([]byte("GET /ws HTTP/1.1\nHost: x\nUpgrade: websocket\n\n"))
	origins, _ := wsproto.NewOriginPolicy([]string{"https://app.example.com", "https://*.example.org"})
	u := &wsproto.Upgrader{Protocol: "pushgate.v1", Origins: origins, Compression: true}
	f.Fuzz(func(t *testing.T, in []byte) {
		buf := make([]byte, 4096)
		n, headLen, err := wsproto.ReadHead(bytes.NewReader(in), buf)
		if err != nil {
			return
		}
		if headLen > n || !bytes.Equal(buf[:n], in[:n]) {
			t.Fatalf("ReadHead: head %d of %d bytes, buffer differs from input", headLen, n)
		}
		var out bytes.Buffer
		hs, err := u.Upgrade(&out, buf[:headLen])
		resp, rerr := http.ReadResponse(bufio.NewReader(&out), nil)
		if rerr != nil {
			t.Fatalf("response %q does not parse: %v", out.Bytes(), rerr)
		}
		var he *wsproto.HandshakeError
		switch {
		case errors.As(err, &he):
			if resp.StatusCode != he.Status {
				t.Fatalf("status %d, error says %d", resp.StatusCode, he.Status)
			}
		case err != nil:
			t.Fatalf("unexpected error %v", err)
		default:
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("accepted with status %d", resp.StatusCode)
			}
			if hs.Protocol != "" && hs.Protocol != "pushgate.v1" {
				t.Fatalf("selected protocol %q", hs.Protocol)
			}
			key, _ := wsproto.HeaderValue(buf[:headLen], "Sec-WebSocket-Key")
			if len(key) != 24 {
				t.Fatalf("accepted key %q", key)
			}
		}
	})
}
