package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/proctest"
	"github.com/pushgate/pushgate/internal/wstest"
)

// The README's minimal backends, in Go and in Node, are the files in
// web/examples, shown whole; each admits a cookie-only client through the
// connect proxy, refuses one without the cookie with its message, and
// prints the signed webhooks of the user coming and going.
func TestReadmeBackendExamples(t *testing.T) {
	hooks := readmeSection(t, "Backend hooks")
	gateway := proctest.Gateway(t)
	for _, ex := range []struct{ file, lang string }{{"backend.go", "go"}, {"backend.js", "js"}} {
		t.Run(ex.file, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join(examplesDir, ex.file))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(codeBlocks(hooks, ex.lang), string(src)) {
				t.Fatalf("README Backend hooks does not show web/examples/%s as it is", ex.file)
			}
			_, port, _ := net.SplitHostPort(proctest.FreeAddr(t))
			cmd := []string{proctest.Program(t, "node"), filepath.Join(examplesDir, ex.file)}
			if ex.lang == "go" {
				bin := filepath.Join(t.TempDir(), "backend")
				if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(examplesDir, ex.file)).CombinedOutput(); err != nil {
					t.Fatalf("go build %s: %v\n%s", ex.file, err, out)
				}
				cmd = []string{bin}
			}
			// Without a secret it refuses to start: anyone could sign.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			bare := exec.CommandContext(ctx, cmd[0], cmd[1:]...)
			bare.Env = append(os.Environ(), "PORT="+port, "WEBHOOK_SECRET=")
			bare.WaitDelay = time.Second
			if out, err := bare.CombinedOutput(); err == nil || !strings.Contains(string(out), "set WEBHOOK_SECRET") {
				t.Fatalf("without WEBHOOK_SECRET: %v\n%s", err, out)
			}
			backend := proctest.StartEnv(t, append(os.Environ(), "PORT="+port, "WEBHOOK_SECRET=change-me"), cmd[0], cmd[1:]...)
			wstest.Eventually(t, "the backend to listen", func() bool {
				c, err := net.Dial("tcp", "127.0.0.1:"+port)
				if err == nil {
					c.Close()
				}
				return err == nil
			})
			addr, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
			g := proctest.Start(t, "", gateway, "--addr", addr, "--admin-addr", admin,
				"--proxy-connect", "http://127.0.0.1:"+port+"/connect",
				"--webhook", "http://127.0.0.1:"+port+"/webhook", "--webhook-secret", "change-me", "--webhook-offline-delay", "300ms")
			g.WaitHTTP(t, "http://"+admin+"/readyz", http.StatusOK)

			c := wstest.Connect(t, addr)
			c.Write([]byte(wstest.UpgradeRequest("/ws")))
			resp := c.Response()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusUnauthorized || strings.TrimSpace(string(body)) != "log in first" {
				t.Fatalf("without the cookie: %s %q, want 401 log in first", resp.Status, body)
			}
			alice, _ := wstest.Dial(t, addr, "/ws", "Cookie: theme=dark; session=s3cr3t-alice")
			if m := alice.ExpectMsg("subscribed", ""); m.Channel != "#alice" {
				t.Fatalf("got %s, want #alice subscribed", m.Raw)
			}
			waitOutput(t, backend, "user_online alice\n")
			alice.Send(`{"op":"subscribe","channel":"chat:lobby"}`)
			if m := alice.ExpectMsg("subscribed", ""); m.Channel != "chat:lobby" {
				t.Fatalf("got %s, want chat:lobby subscribed", m.Raw)
			}
			waitOutput(t, backend, "user_online alice\nchannel_occupied chat:lobby\n")
			quit(alice)
			// Both after the delay, in either order.
			wstest.Until(t, 10*time.Second, func() error {
				out := backend.Logs.String()
				if !strings.Contains(out, "user_offline alice\n") || !strings.Contains(out, "channel_vacated chat:lobby\n") {
					return fmt.Errorf("backend printed %q", out)
				}
				return nil
			})
		})
	}
}
