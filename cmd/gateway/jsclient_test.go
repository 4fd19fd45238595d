package main

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/proctest"
)

// TestJSClientEndToEnd runs web/testdata/e2e.test.mjs with Node's test
// runner, once on WebSocket and once on the fallback (an event stream and
// POSTed ops, PG_TRANSPORT=sse): pushgate.js itself, against two gateway processes in cluster
// mode on Debian's nats-server, and two single ones. It sees a channel
// restart in a new epoch under a live subscription, and refreshes its
// token on the open connection (and reconnects after 4001 when a refresh
// is refused). On gateway C (tokens, --presence 'room:*') it lists
// presence, sees joins and leaves, and follows the admin API's subscribe,
// unsubscribe and disconnect (4002, 4003); on gateway D (open mode,
// --ping-interval 200ms, --presence-event-rate 3) it sends its own info,
// answers app-level pings, replaces a dead link and re-asks presence
// after a presence_lagging notice.
func TestJSClientEndToEnd(t *testing.T) {
	node := proctest.Program(t, "node")
	modules, err := filepath.Abs("../../server/testdata/nodews/node_modules")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(modules, "ws")); err != nil {
		t.Fatalf("the ws package is not installed (make deps installs it): %v", err)
	}
	bin := proctest.Gateway(t)
	// Every test twice, each time on gateways of its own: on WebSocket,
	// then on the fallback, an event stream and POSTed ops.
	for _, transport := range []string{"websocket", "sse"} {
		t.Run(transport, func(t *testing.T) {
			env := jsGateways(t, bin, modules)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, "--experimental-eventsource", "--test", "--test-timeout", "60000", filepath.Join("..", "..", "web", "testdata", "e2e.test.mjs"))
			cmd.Env = append(env, "PG_TRANSPORT="+transport)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("node --test: %v\n%s", err, out)
			}
			t.Logf("%s", out)
		})
	}
}

// jsGateways starts the gateways e2e.test.mjs runs against (two in
// cluster mode on a nats-server, two single ones) and returns the
// environment that names them.
func jsGateways(t *testing.T, bin, modules string) []string {
	t.Helper()
	_, natsURL := proctest.NATS(t)

	secret := strings.Repeat("e2e-secret-", 4)
	env := append(os.Environ(), "PG_SECRET="+secret, "PG_NODE_MODULES="+modules)
	for _, name := range []string{"A", "B"} {
		addr, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
		g := proctest.Start(t, "", bin, "--addr", addr, "--admin-addr", admin, "--broker", natsURL,
			"--history-ttl", "1s", "--jwt-secret", secret, "--jwt-leeway", "0s")
		g.WaitHTTP(t, "http://"+admin+"/readyz", http.StatusOK)
		env = append(env, "PG_WS_"+name+"=ws://"+addr, "PG_ADMIN_"+name+"=http://"+admin)
	}
	for name, args := range map[string][]string{
		"C": {"--jwt-secret", secret, "--presence", "room:*"},
		"D": {"--presence", "room:*", "--presence-event-rate", "3", "--ping-interval", "200ms"},
	} {
		addr, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
		g := proctest.Start(t, "", bin, append([]string{"--addr", addr, "--admin-addr", admin}, args...)...)
		g.WaitHTTP(t, "http://"+admin+"/readyz", http.StatusOK)
		env = append(env, "PG_WS_"+name+"=ws://"+addr, "PG_ADMIN_"+name+"=http://"+admin)
	}

	return env
}
