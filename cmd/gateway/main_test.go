package main

import (
	"bytes"
	"context"
	"flag"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/internal/proctest"
	"github.com/pushgate/pushgate/internal/wstest"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestParseConfig(t *testing.T) {
	c, err := parseConfig([]string{"--ping-interval", "7s"}, env(map[string]string{
		"PUSHGATE_PING_INTERVAL":   "3s",
		"PUSHGATE_ECHO":            "true",
		"PUSHGATE_ALLOWED_ORIGINS": "https://a.example, https://*.b.example",
		"PUSHGATE_ADMIN_ADDR":      "127.0.0.1:9999",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.PingInterval != 7*time.Second {
		t.Errorf("ping interval %v: the flag must win over its twin", c.Server.PingInterval)
	}
	if !c.Server.Echo || c.AdminAddr != "127.0.0.1:9999" {
		t.Errorf("environment twins not applied: echo=%v admin=%q", c.Server.Echo, c.AdminAddr)
	}
	if got := strings.Join(c.Server.AllowedOrigins, "|"); got != "https://a.example|https://*.b.example" {
		t.Errorf("origins %q", got)
	}
	if c.Addr != ":8080" || c.Server.MaxMessageSize != 64<<10 || c.Server.DrainTimeout != 10*time.Second {
		t.Errorf("defaults: addr %q, max message %d, drain %v", c.Addr, c.Server.MaxMessageSize, c.Server.DrainTimeout)
	}

	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--workers", "many"}, nil, "invalid value \"many\" for flag -workers"},
		{nil, map[string]string{"PUSHGATE_WORKERS": "many"}, "PUSHGATE_WORKERS"},
		{[]string{"--log-level", "loud"}, nil, "invalid --log-level"},
		{[]string{"--log-format", "xml"}, nil, "invalid --log-format"},
		{[]string{"extra"}, nil, "unexpected argument"},
		{[]string{"--nope"}, nil, "flag provided but not defined"},
	} {
		if _, err := parseConfig(tc.args, env(tc.env)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: error %v, want %q", tc.args, tc.env, err, tc.want)
		}
	}
}

func TestHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, env(nil), &out, &errOut); code != 0 {
		t.Fatalf("exit %d", code)
	}
	newFlagSet(&config{}).VisitAll(func(f *flag.Flag) {
		if !strings.Contains(out.String(), "--"+f.Name) || !strings.Contains(out.String(), envName(f.Name)) {
			t.Errorf("--help does not list --%s with %s", f.Name, envName(f.Name))
		}
	})
	if !strings.Contains(out.String(), "env PUSHGATE_ADDR, default :8080") {
		t.Errorf("--help does not show defaults:\n%s", out.String())
	}
}

func TestExitCodes(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--bogus"}, 2, "flag provided but not defined"},
		{[]string{"--max-header-bytes", "10"}, 2, "MaxHeaderBytes"},
		{[]string{"--max-handshakes-per-source", "-1"}, 2, "MaxHandshakesPerSource"},
		{[]string{"--request-line-timeout", "-1s"}, 2, "RequestLineTimeout"},
		{[]string{"--allowed-origins", "example.com"}, 2, "bad origin"},
		{[]string{"--client-publish", "chat rooms"}, 2, "invalid --client-publish"},
		{[]string{"--jwt-secret", "short"}, 2, "at least 32"},
		{[]string{"--jwt-public-key", "/nonexistent.pem"}, 2, "--jwt-public-key"},
		{[]string{"--jwt-secret", strings.Repeat("k", 32), "--jwt-public-key", "k.pem"}, 2, "exclusive"},
		{[]string{"--max-publish-bytes", "0"}, 2, "--max-publish-bytes"},
		{[]string{"--broker", "http://nats:4222"}, 2, "invalid --broker"},
		{[]string{"--max-channels", "65536"}, 2, "--max-channels must be 1 to 65535"},
		{[]string{"--broker", "nats://nats:4222", "--broker-replicas", "0"}, 2, "--broker-replicas"},
		{[]string{"--broker", "nats://nats:4222", "--broker-publish-timeout", "0s"}, 2, "--broker-publish-timeout"},
		{[]string{"--proxy-connect", "ftp://backend/connect"}, 2, "invalid --proxy-connect"},
		{[]string{"--proxy-connect", "http://backend/connect", "--proxy-timeout", "5s"}, 2, "shorter than --handshake-timeout"},
		{[]string{"--proxy-max-inflight", "0"}, 2, "--proxy-max-inflight"},
		{[]string{"--webhook", "http://backend/hook"}, 2, "--webhook needs --webhook-secret"},
		{[]string{"--webhook", "backend/hook", "--webhook-secret", "s"}, 2, "invalid --webhook"},
		{[]string{"--webhook-channels", "bad room"}, 2, "invalid --webhook-channels"},
		{[]string{"--webhook-secret", "s", "--webhook-secret-file", "f"}, 2, "exclusive"},
		{[]string{"--addr", busy.Addr().String()}, 1, "address already in use"},
		{[]string{"--addr", "127.0.0.1:0", "--admin-addr", busy.Addr().String()}, 1, "admin listener"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.args, env(nil), &out, &errOut)
		if code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d %q, want %d with %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}

// TestSIGTERM runs the built binary, holds a connection, sends SIGTERM and
// checks the drain: the client gets 1001 and the process exits 0.
func TestSIGTERM(t *testing.T) {
	addr, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
	p := proctest.Start(t, "", proctest.Gateway(t), "--addr", addr, "--admin-addr", admin,
		"--drain-timeout", "2s", "--close-timeout", "1s", "--log-format", "json")
	p.WaitHTTP(t, "http://"+admin+"/readyz", http.StatusOK)
	c, _ := wstest.Dial(t, addr, "/ws")
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if reason := c.ExpectClose(1001); reason != "server shutting down" {
		t.Errorf("reason %q", reason)
	}
	c.Write(wstest.Frame(true, 0, ws.OpClose, wstest.ClosePayload(1001, "")))
	c.ExpectEOF()
	select {
	case <-p.Exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway did not exit within 10s of SIGTERM")
	}
	if p.Err != nil {
		t.Fatalf("exit: %v\n%s", p.Err, p.Logs.String())
	}
	for _, want := range []string{`"msg":"pushgate listening"`, `"msg":"draining"`, `"msg":"stopped"`} {
		if !strings.Contains(p.Logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, p.Logs.String())
		}
	}
}

// Sizes in bytes take a plain integer or a unit, decimal or binary.
func TestByteSizeFlags(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want int64
	}{
		{"1048576", 1 << 20}, {"256MiB", 256 << 20}, {"1GB", 1e9}, {"64k", 64000}, {"1.5GiB", 3 << 29},
	} {
		c, err := parseConfig([]string{"--history-max-bytes", tc.arg}, env(nil))
		if err != nil || c.Hub.HistoryMaxBytes != tc.want {
			t.Errorf("--history-max-bytes %s: %d, %v; want %d", tc.arg, c.Hub.HistoryMaxBytes, err, tc.want)
		}
	}
	for _, bad := range []string{"lots", "-1", "0", "1.5x"} {
		if _, err := parseConfig([]string{"--history-max-bytes", bad}, env(nil)); err == nil {
			t.Errorf("--history-max-bytes %s: accepted", bad)
		}
	}
	if c, err := parseConfig(nil, env(map[string]string{"PUSHGATE_HISTORY_MAX_CHANNEL_BYTES": "8MiB"})); err != nil || c.Hub.HistoryChannelMaxBytes != 8<<20 {
		t.Errorf("the environment twin: %d, %v", c.Hub.HistoryChannelMaxBytes, err)
	}
}
