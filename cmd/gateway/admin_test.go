package main

import (
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/proctest"
)

// call sends a request with key as a Bearer token ("" for none) and
// returns the status and body.
func call(t *testing.T, method, url, body, key string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func get(t *testing.T, url, key string) (int, string) {
	t.Helper()
	return call(t, "GET", url, "", key)
}

// The profiler's cmdline is the process's own arguments: what it serves
// without the key must never hold a secret given on the command line,
// whatever the other flags. The real binary runs, so cmdline is its own.
func TestPprofSecrets(t *testing.T) {
	const key = "the-admin-api-key"
	secret := strings.Repeat("jwt-secret-", 3)
	for _, tc := range []struct {
		name  string
		flags []string
		// status of /debug/pprof/cmdline without and with the key
		anon, keyed int
	}{
		{"off by default", []string{"--api-key", key, "--jwt-secret", secret}, http.StatusNotFound, http.StatusNotFound},
		{"on, behind the key", []string{"--pprof", "--api-key=" + key, "--jwt-secret", secret}, http.StatusUnauthorized, http.StatusOK},
		{"on, no key: open, redacted", []string{"--pprof", "-jwt-secret=" + secret}, http.StatusOK, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
			args := append([]string{"--addr", addr, "--admin-addr", admin}, tc.flags...)
			p := proctest.Start(t, "", proctest.Gateway(t), args...)
			p.WaitHTTP(t, "http://"+admin+"/readyz", http.StatusOK)
			base := "http://" + admin + "/debug/pprof/"
			for _, c := range []struct {
				key  string
				want int
			}{{"", tc.anon}, {"wrong", tc.anon}, {key, tc.keyed}} {
				status, body := get(t, base+"cmdline", c.key)
				if status != c.want {
					t.Errorf("cmdline with key %q: %d, want %d", c.key, status, c.want)
				}
				if strings.Contains(body, key) || strings.Contains(body, secret) {
					t.Errorf("cmdline with key %q shows a secret: %q", c.key, body)
				}
				if status == http.StatusOK && !strings.Contains(body, "--addr\x00"+addr) {
					t.Errorf("cmdline with key %q: %q, want the arguments", c.key, body)
				}
			}
			if tc.keyed == http.StatusOK {
				// What the bench's churn scenario and the README's heap
				// profiles use.
				if status, body := get(t, base+"heap?gc=1", key); status != http.StatusOK || body == "" {
					t.Errorf("heap?gc=1: %d, %d bytes", status, len(body))
				}
				if status, _ := get(t, base+"goroutine?debug=1", key); status != http.StatusOK {
					t.Errorf("goroutine profile: %d", status)
				}
			}
			if err := p.Stop(t, syscall.SIGTERM, 10*time.Second); err != nil {
				t.Errorf("exit: %v", err)
			}
			open := strings.Contains(p.Logs.String(), "the profiler is open")
			if want := tc.anon == http.StatusOK; open != want {
				t.Errorf("warned of an open profiler: %v, want %v:\n%s", open, want, p.Logs.String())
			}
		})
	}
}

func TestRedactArgs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"pushgate --api-key k --addr :1", "pushgate --api-key REDACTED --addr :1"},
		{"pushgate -api-key k", "pushgate -api-key REDACTED"},
		{"pushgate --api-key=k=v -jwt-secret=s", "pushgate --api-key=REDACTED -jwt-secret=REDACTED"},
		{"pushgate --echo --jwt-secret s --echo", "pushgate --echo --jwt-secret REDACTED --echo"},
		{"pushgate --webhook-secret s --jwt-public-key k.pem", "pushgate --webhook-secret REDACTED --jwt-public-key REDACTED"},
		{"pushgate --api-key-file /run/k", "pushgate --api-key-file /run/k"},
		{"pushgate --api-key", "pushgate --api-key"},
		{"--api-key x", "--api-key x"}, // argv[0] is the program
	} {
		if got := strings.Join(redactArgs(strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("redactArgs(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
	// Every flag of the gateway whose value is a secret is caught.
	fs := newFlagSet(&config{})
	for _, name := range []string{"api-key", "jwt-secret"} {
		if fs.Lookup(name) == nil || !secretFlag(name) {
			t.Errorf("--%s is not redacted", name)
		}
	}
}
