package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/pushgate/pushgate/server"
)

// interopSizes are the message sizes around each frame-length encoding
// boundary, and the default message limit.
var interopSizes = []int{0, 125, 126, 65535, 65536, 1 << 20}

// TestInteropCoder exchanges text and binary messages of every size with
// github.com/coder/websocket, with and without permessage-deflate.
func TestInteropCoder(t *testing.T) {
	// 1 MiB messages: over the default client message size.
	g := start(t, server.Config{Echo: true, Compression: true, MaxMessageSize: 1 << 20})
	for _, mode := range []websocket.CompressionMode{websocket.CompressionDisabled, websocket.CompressionNoContextTakeover, websocket.CompressionContextTakeover} {
		t.Run(fmt.Sprintf("compression %d", mode), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, resp, err := websocket.Dial(ctx, "ws://"+g.addr+"/echo", &websocket.DialOptions{CompressionMode: mode})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			c.SetReadLimit(2 << 20)
			if ext := resp.Header.Get("Sec-WebSocket-Extensions"); (ext != "") != (mode != websocket.CompressionDisabled) {
				t.Fatalf("Sec-WebSocket-Extensions %q with mode %d", ext, mode)
			}
			for _, size := range interopSizes {
				for _, typ := range []websocket.MessageType{websocket.MessageText, websocket.MessageBinary} {
					msg := payload(typ, size)
					if err := c.Write(ctx, typ, msg); err != nil {
						t.Fatalf("write %d bytes: %v", size, err)
					}
					gotType, got, err := c.Read(ctx)
					if err != nil {
						t.Fatalf("read %d bytes: %v", size, err)
					}
					if gotType != typ || !bytes.Equal(got, msg) {
						t.Fatalf("%v of %d bytes came back as %v of %d bytes", typ, size, gotType, len(got))
					}
				}
			}
			if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
				t.Fatalf("close: %v", err)
			}
		})
	}
}

// payload is size bytes of text (ASCII with some multi-byte runes) or
// random binary.
func payload(typ websocket.MessageType, size int) []byte {
	if typ == websocket.MessageBinary {
		b := make([]byte, size)
		rand.Read(b)
		return b
	}
	b := []byte(strings.Repeat("push ✓ gate ", size/14+1))[:size]
	for i := len(b) - 1; i >= 0 && !utf8.Valid(b); i-- {
		b[i] = '.' // cut back to whole runes
	}
	return b
}

// TestInteropNodeWS runs Node's ws client (from npm) against /echo.
func TestInteropNodeWS(t *testing.T) {
	dir := filepath.Join("testdata", "nodews")
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "node_modules", "ws"))
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node and the ws package are required (make test installs them): %v", err)
		}
		t.Skipf("node with the ws package not installed (run make test): %v", err)
	}
	// Messages up to 1 MiB, the largest the client sends: incompressible
	// ones of exactly that size, compressed with zlib's smallest blocks,
	// take 4% more on the wire and must still pass (the limit is on the
	// inflated message).
	g := start(t, server.Config{Echo: true, Compression: true, MaxMessageSize: 1 << 20})
	for _, deflate := range []string{"plain", "deflate", "deflate-memlevel1"} {
		t.Run(deflate, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, "client.mjs", "ws://"+g.addr+"/echo", deflate)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("node client: %v\n%s", err, out)
			}
			t.Logf("%s", bytes.TrimSpace(out))
		})
	}
}
