package deploy

// Tests of how the Kubernetes base hands the gateway its secrets (files
// of a mounted Secret, named by the *_FILE settings) and where it binds
// the admin listener.

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/proctest"
)

// k8sSecretSettings are the gateway's secrets the base must set, each as
// the flag whose value is the secret; "<flag>-file" is its file.
var k8sSecretSettings = []string{"api-key", "jwt-secret"}

// k8sSecretFile is where one secret comes from in the pod.
type k8sSecretFile struct {
	env    string // PUSHGATE_API_KEY_FILE
	path   string // in the container
	secret string // the Secret's name
	key    string // the Secret's key
}

// k8sSecretFiles resolves each secret's *_FILE setting to a key of a
// Secret mounted in the container.
func k8sSecretFiles(t *testing.T, m *k8sObjects, flags map[string]imgFlag) []k8sSecretFile {
	t.Helper()
	c := m.container()
	var out []k8sSecretFile
	for _, name := range k8sSecretSettings {
		f, ok := flags[name+"-file"]
		if !ok {
			t.Fatalf("the gateway has no --%s-file (pushgate --help)", name)
		}
		p := m.setting(flags, name+"-file")
		if p == "" {
			t.Errorf("ConfigMap: no %s: without it the gateway runs without --%s", f.env, name)
			continue
		}
		sf := k8sSecretFile{env: f.env, path: p}
		for _, vm := range c.VolumeMounts {
			rel, ok := strings.CutPrefix(p, strings.TrimSuffix(vm.MountPath, "/")+"/")
			if !ok {
				continue
			}
			if !vm.ReadOnly {
				t.Errorf("Deployment: volumeMount %s is not readOnly", vm.Name)
			}
			for _, v := range m.deployment.Spec.Template.Spec.Volumes {
				if v.Name == vm.Name && v.Secret != nil {
					sf.secret, sf.key = v.Secret.SecretName, rel
					for _, it := range v.Secret.Items {
						if it.Path == rel {
							sf.key = it.Key
						}
					}
				}
			}
		}
		if sf.secret == "" {
			t.Errorf("%s=%s: no Secret volume is mounted there", f.env, p)
			continue
		}
		out = append(out, sf)
	}
	return out
}

// k8sReadmeSecretKeys reads, from the README's `kubectl create secret
// generic <name>` command, the keys it gives the Secret.
func k8sReadmeSecretKeys(t *testing.T, name string) []string {
	t.Helper()
	readme, err := os.ReadFile(k8sReadme)
	if err != nil {
		t.Fatal(err)
	}
	_, cmd, ok := strings.Cut(string(readme), "kubectl create secret generic "+name+" ")
	if !ok {
		t.Fatalf("%s does not say how to create the Secret %s", k8sReadme, name)
	}
	// The command runs on while its lines end in a backslash.
	if i := regexp.MustCompile(`[^\\]\n`).FindStringIndex(cmd); i != nil {
		cmd = cmd[:i[0]+1]
	}
	var keys []string
	for _, m := range regexp.MustCompile(`--from-(?:literal|file)=([-._a-zA-Z0-9]+)=`).FindAllStringSubmatch(cmd, -1) {
		keys = append(keys, m[1])
	}
	return keys
}

func k8sCheckSecrets(t *testing.T, m *k8sObjects, flags map[string]imgFlag) {
	c := m.container()
	spec := m.deployment.Spec.Template.Spec
	// No secret value on the command line or in the environment.
	for _, name := range k8sSecretSettings {
		env := flags[name].env
		if _, ok := m.configMap.Data[env]; ok {
			t.Errorf("ConfigMap: %s holds a secret in plain sight; use %s_FILE", env, env)
		}
		for _, e := range c.Env {
			if e.Name == env {
				t.Errorf("Deployment: env %s: the secret is in the environment; use %s_FILE", env, env)
			}
		}
		for _, a := range slices.Concat(c.Command, c.Args) {
			if a == "--"+name || strings.HasPrefix(a, "--"+name+"=") || a == "-"+name || strings.HasPrefix(a, "-"+name+"=") {
				t.Errorf("Deployment: argument %s: ps and /proc show it; use --%s-file", a, name)
			}
		}
	}
	files := k8sSecretFiles(t, m, flags)
	for _, sf := range files {
		if keys := k8sReadmeSecretKeys(t, sf.secret); !slices.Contains(keys, sf.key) {
			t.Errorf("%s=%s is key %q of Secret %s, which %s's kubectl create secret does not make (it makes %v)",
				sf.env, sf.path, sf.key, sf.secret, k8sReadme, keys)
		}
	}
	for _, v := range spec.Volumes {
		if v.Secret == nil {
			continue
		}
		if o := v.Secret.Optional; o != nil && *o {
			t.Errorf("volume %s: Secret %s is optional: without it the gateway cannot read its secret files", v.Name, v.Secret.SecretName)
		}
		mode := v.Secret.DefaultMode
		if mode == nil {
			t.Errorf("volume %s: no defaultMode: Kubernetes' 0644 lets anyone on the node read it", v.Name)
			continue
		}
		if *mode&0o007 != 0 {
			t.Errorf("volume %s: defaultMode %#o: readable by others", v.Name, *mode)
		}
		// The files belong to root and, with fsGroup, to that group: the
		// non-root gateway reads them through the group.
		if spec.SecurityContext == nil || spec.SecurityContext.FSGroup == nil || *mode&0o040 == 0 {
			t.Errorf("volume %s: defaultMode %#o without fsGroup and group read: the non-root gateway cannot read its secrets", v.Name, *mode)
		}
	}
}

// k8sStartWithSecrets runs the gateway with the base's settings and its
// Secret made as the README says, the mount replaced by a directory here:
// the API must want the key, and /ws a token. The broker setting is left
// out (there is no NATS here), and the listeners move to free loopback
// ports.
func k8sStartWithSecrets(t *testing.T, m *k8sObjects, flags map[string]imgFlag, bin string) {
	dir := t.TempDir()
	values := map[string]string{}
	env := []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range m.configMap.Data {
		switch k {
		case flags["broker"].env, flags["addr"].env, flags["admin-addr"].env:
			continue
		}
		env = append(env, k+"="+v)
	}
	for _, sf := range k8sSecretFiles(t, m, flags) {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		values[sf.env] = hex.EncodeToString(b) // as openssl rand -hex 32
		p := filepath.Join(dir, sf.secret, filepath.FromSlash(path.Clean(sf.key)))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(values[sf.env]), 0o400); err != nil {
			t.Fatal(err)
		}
		env = append(env, sf.env+"="+p)
	}
	if t.Failed() {
		t.FailNow()
	}
	addr, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
	p := proctest.StartEnv(t, env, bin, "--addr", addr, "--admin-addr", admin)
	p.WaitHTTP(t, "http://"+admin+"/readyz", http.StatusOK)

	client := &http.Client{Timeout: 5 * time.Second}
	for _, key := range []string{"", values[flags["api-key-file"].env]} {
		req, _ := http.NewRequest("POST", "http://"+admin+"/api/publish", strings.NewReader(`{"channel":"news","data":1}`))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		want := http.StatusOK
		if key == "" {
			want = http.StatusUnauthorized
		}
		if resp.StatusCode != want {
			t.Errorf("publish with key %q: %s, want %d", key, resp.Status, want)
		}
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = conn.Write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, _ := io.ReadAtLeast(conn, buf, len("HTTP/1.1 401"))
	if got := string(buf[:n]); !strings.HasPrefix(got, "HTTP/1.1 401") {
		t.Errorf("upgrade without a token: %q, want 401 (the JWT secret from its file)", got)
	}
}

// k8sCheckAdminAddr: the admin listener defaults to loopback, which the
// kubelet's probes and Prometheus cannot reach; the base must say where it
// listens.
func k8sCheckAdminAddr(t *testing.T, m *k8sObjects, flags map[string]imgFlag) {
	f := flags["admin-addr"]
	v, ok := m.configMap.Data[f.env]
	if !ok {
		t.Fatalf("ConfigMap: no %s: the default (%s) is not reachable from outside the pod", f.env, f.def)
	}
	host, _, err := net.SplitHostPort(v)
	if err != nil {
		t.Fatalf("%s=%s: %v", f.env, v, err)
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		t.Errorf("%s=%s: want every interface (:port); the pod's address is not known in advance", f.env, v)
	}
	if host, _, _ := net.SplitHostPort(f.def); !net.ParseIP(host).IsLoopback() {
		t.Errorf("the gateway's default --admin-addr %s is not loopback", f.def)
	}
}
