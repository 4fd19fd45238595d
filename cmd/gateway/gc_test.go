package main

import (
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/proctest"
)

// The gateway collects garbage at GOGC=20 unless the environment says
// otherwise: the default 100 doubled an idle connection's RSS.
func TestDefaultGOGC(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if p, ok := gcPercent(env(nil)); !ok || p != 20 {
		t.Fatalf("without GOGC: %d, %v; want 20, set", p, ok)
	}
	for _, v := range []string{"100", "off", "50"} {
		if _, ok := gcPercent(env(map[string]string{"GOGC": v})); ok {
			t.Fatalf("GOGC=%s in the environment was overridden", v)
		}
	}
}

// The real binary: its start log shows the GOGC in effect, 20 by default
// and the environment's when set.
func TestGOGCInEffect(t *testing.T) {
	for _, c := range []struct{ env, want string }{{"", "gogc=20"}, {"GOGC=100", "gogc=100"}} {
		env := []string{"PATH=" + os.Getenv("PATH")}
		if c.env != "" {
			env = append(env, c.env)
		}
		admin := proctest.FreeAddr(t)
		p := proctest.StartEnv(t, env, proctest.Gateway(t), "--addr", proctest.FreeAddr(t), "--admin-addr", admin)
		p.WaitHTTP(t, "http://"+admin+"/readyz", http.StatusOK)
		if err := p.Stop(t, syscall.SIGTERM, 10*time.Second); err != nil {
			t.Errorf("exit: %v", err)
		}
		if logs := p.Logs.String(); !strings.Contains(logs, c.want) {
			t.Errorf("with %q in the environment the start log does not say %s:\n%s", c.env, c.want, logs)
		}
	}
}
