package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgate/pushgate/internal/proctest"
	"github.com/pushgate/pushgate/internal/wstest"
)

// writeFile writes content to a new file in a temporary directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func hs256(t *testing.T, secret string, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Secrets read from files are the secrets, without the line break that
// ends the file.
func TestSecretFiles(t *testing.T) {
	const key = "file-api-key"
	secret := strings.Repeat("s", 40)
	g := runGateway(t, proctest.FreeAddr(t), proctest.FreeAddr(t),
		"--api-key-file", writeFile(t, "api-key", key+"\n"),
		"--jwt-secret-file", writeFile(t, "jwt-secret", secret+"\r\n"))
	for _, tc := range []struct {
		key  string
		want int
	}{{"", http.StatusUnauthorized}, {"file-api-ke", http.StatusUnauthorized}, {key, http.StatusOK}} {
		if status, body := g.post(t, "/api/publish", `{"channel":"news","data":1}`, tc.key); status != tc.want {
			t.Errorf("publish with key %q: %d %s, want %d", tc.key, status, body, tc.want)
		}
	}
	for _, tc := range []struct {
		secret string
		want   int
	}{{secret, http.StatusSwitchingProtocols}, {secret + "\r\n", http.StatusUnauthorized}} {
		c := wstest.Connect(t, g.addr)
		c.Write([]byte(wstest.UpgradeRequest("/ws?token=" + hs256(t, tc.secret, jwt.MapClaims{"sub": "alice"}))))
		if resp := c.Response(); resp.StatusCode != tc.want {
			t.Errorf("token signed with %q: %s, want %d", tc.secret, resp.Status, tc.want)
		}
		c.Conn.Close()
	}
	if strings.Contains(g.logs.String(), "admin API is open") || strings.Contains(g.logs.String(), "authentication is off") {
		t.Errorf("secrets from files not taken as set:\n%s", g.logs.String())
	}
}

func TestSecretFileTwins(t *testing.T) {
	c, err := parseConfig(nil, env(map[string]string{
		"PUSHGATE_API_KEY_FILE":    writeFile(t, "k", "twin-key\n"),
		"PUSHGATE_JWT_SECRET_FILE": writeFile(t, "s", strings.Repeat("t", 32)),
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.APIKey != "twin-key" || c.JWTSecret != strings.Repeat("t", 32) {
		t.Errorf("from the twins: key %q, secret %q", c.APIKey, c.JWTSecret)
	}
	// Inline and file are exclusive whichever way each is given.
	_, err = parseConfig([]string{"--api-key-file", writeFile(t, "k", "a")}, env(map[string]string{"PUSHGATE_API_KEY": "b"}))
	if err == nil || !strings.Contains(err.Error(), "exclusive") {
		t.Errorf("PUSHGATE_API_KEY with --api-key-file: %v, want exclusive", err)
	}
}

// A secret file that cannot be used stops the gateway with status 2 and
// says which flag and why.
func TestSecretFileErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	long := strings.Repeat("k", 32)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--api-key-file", missing}, "--api-key-file: cannot read the secret: open " + missing + ": no such file or directory"},
		{[]string{"--jwt-secret-file", dir}, "--jwt-secret-file: cannot read the secret: read " + dir + ": is a directory"},
		{[]string{"--api-key-file", writeFile(t, "empty", "\n")}, "the file is empty"},
		{[]string{"--api-key", "k", "--api-key-file", writeFile(t, "k", "k")}, "--api-key and --api-key-file are exclusive"},
		{[]string{"--jwt-secret", long, "--jwt-secret-file", writeFile(t, "s", long)}, "--jwt-secret and --jwt-secret-file are exclusive"},
		{[]string{"--jwt-secret-file", writeFile(t, "s", long), "--jwt-public-key", "k.pem"}, "--jwt-secret-file and --jwt-public-key are exclusive"},
		{[]string{"--jwt-secret-file", writeFile(t, "short", "short\n")}, "at least 32"},
	} {
		var out, errOut bytes.Buffer
		args := append([]string{"--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, tc.args...)
		if code := run(context.Background(), args, env(nil), &out, &errOut); code != 2 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d %q, want 2 with %q", tc.args, code, errOut.String(), tc.want)
		}
	}
}
