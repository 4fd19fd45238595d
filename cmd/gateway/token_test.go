package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgate/pushgate/internal/proctest"
	"github.com/pushgate/pushgate/internal/wstest"
)

// mintedClaims are the claims of a token, read without verifying it.
type mintedClaims struct {
	Sub      string   `json:"sub"`
	Channels []string `json:"channels"`
	Publish  []string `json:"publish"`
	Exp      int64    `json:"exp"`
	Iat      int64    `json:"iat"`
}

func claimsOf(t *testing.T, token string) mintedClaims {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q: not a JWS compact serialization", token)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c mintedClaims
	if err == nil {
		err = json.Unmarshal(payload, &c)
	}
	if err != nil {
		t.Fatalf("token %q: %v", token, err)
	}
	return c
}

// mint runs the built binary's token command, as a user would, and
// returns the token it prints.
func mint(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(proctest.Gateway(t), append([]string{"token"}, args...)...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pushgate token %v: %v\n%s", args, err, stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != 1 || stderr.Len() > 0 {
		t.Fatalf("pushgate token %v printed %q and %q, want one line, the token", args, out, stderr.String())
	}
	return lines[0]
}

// A token the command mints with the gateway's key (here from the same
// file, through the same environment twin) lets a client do what its
// claims say on a running gateway, and nothing more; its exp is iat plus
// --ttl.
func TestTokenAcceptedByGateway(t *testing.T) {
	secretFile := writeFile(t, "jwt-secret", strings.Repeat("z", 40)+"\n")
	env := []string{"PUSHGATE_JWT_SECRET_FILE=" + secretFile}
	before := time.Now().Unix()
	listen := mint(t, env, "--user", "alice", "--channels", "chat:*", "--ttl", "1h")
	talk := mint(t, env, "--user", "bob", "--channels", "chat:*", "--publish", "chat:*", "--ttl", "90s")
	after := time.Now().Unix()

	c := claimsOf(t, listen)
	if c.Sub != "alice" || !slices.Equal(c.Channels, []string{"chat:*"}) || c.Publish != nil {
		t.Errorf("claims %+v, want sub alice, channels [chat:*], no publish", c)
	}
	if c.Iat < before || c.Iat > after || c.Exp-c.Iat != 3600 {
		t.Errorf("iat %d, exp %d: want iat in [%d, %d] and exp = iat + 3600 (--ttl 1h)", c.Iat, c.Exp, before, after)
	}
	if c := claimsOf(t, talk); c.Exp-c.Iat != 90 || !slices.Equal(c.Publish, []string{"chat:*"}) {
		t.Errorf("claims %+v, want exp = iat + 90 and publish [chat:*]", c)
	}

	g := runGateway(t, proctest.FreeAddr(t), proctest.FreeAddr(t), "--jwt-secret-file", secretFile)
	a, _ := wstest.Dial(t, g.addr, "/ws?token="+listen, "Sec-WebSocket-Protocol: pushgate.v1")
	if m := a.ExpectMsg("subscribed", ""); m.Channel != "#alice" {
		t.Errorf("first subscription %s, want #alice", m.Raw)
	}
	a.Send(`{"op":"subscribe","channel":"chat:lobby"}`)
	a.ExpectMsg("subscribed", "")
	for _, op := range []string{
		`{"op":"subscribe","channel":"news"}`,                 // not in channels
		`{"op":"subscribe","channel":"chatroom"}`,             // chat:* is not chat*
		`{"op":"subscribe","channel":"#bob"}`,                 // another user's
		`{"op":"publish","channel":"chat:lobby","data":"hi"}`, // no publish claim
	} {
		a.Send(op)
		a.ExpectMsg("error", "forbidden")
	}
	b, _ := wstest.Dial(t, g.addr, "/ws?channels=chat:lobby&token="+talk, "Sec-WebSocket-Protocol: pushgate.v1")
	b.ExpectMsg("subscribed", "") // #bob
	b.ExpectMsg("subscribed", "") // chat:lobby
	b.Send(`{"op":"publish","channel":"chat:lobby","data":"from bob"}`)
	for _, c := range []*wstest.Client{a, b} {
		if m := c.ExpectMsg("message", ""); m.Channel != "chat:lobby" || string(m.Data) != `"from bob"` {
			t.Errorf("got %s", m.Raw)
		}
	}
}

// The gateway refuses a minted token once --ttl has passed, not before:
// with no leeway, the first refusal comes at exp or later.
func TestTokenExpires(t *testing.T) {
	secret := strings.Repeat("e", 32)
	token := mint(t, []string{"PUSHGATE_JWT_SECRET=" + secret}, "--user", "alice", "--ttl", "2s")
	exp := claimsOf(t, token).Exp
	g := runGateway(t, proctest.FreeAddr(t), proctest.FreeAddr(t), "--jwt-secret", secret, "--jwt-leeway", "0s")
	var asked time.Time // when the last upgrade was sent: the gateway judged it later
	upgrade := func() (int, string) {
		asked = time.Now()
		c := wstest.Connect(t, g.addr)
		defer c.Conn.Close()
		c.Write([]byte(wstest.UpgradeRequest("/ws?token=" + token)))
		resp := c.Response()
		if resp.StatusCode != http.StatusUnauthorized {
			return resp.StatusCode, ""
		}
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	refused := int64(0)
	wstest.Until(t, 10*time.Second, func() error {
		status, reason := upgrade()
		switch status {
		case http.StatusSwitchingProtocols:
			if asked.Unix() >= exp {
				t.Fatalf("accepted although asked at %.3f, after exp %d", float64(asked.UnixMilli())/1000, exp)
			}
			return fmt.Errorf("accepted (exp %d)", exp)
		case http.StatusUnauthorized:
			refused = time.Now().Unix()
			if strings.TrimSpace(reason) != "token expired" {
				t.Errorf("refused with %q, want token expired", reason)
			}
			return nil
		}
		t.Fatalf("upgrade: %d", status)
		return nil
	})
	if refused < exp {
		t.Errorf("refused at %d, before exp %d", refused, exp)
	}
}

// RS256 and ES256: the command signs with the private key, the gateway
// verifies with the public key.
func TestTokenPrivateKeys(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	ecDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, alg string
		private   []byte
		public    any
	}{
		{"RSA PKCS #1", "RS256", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), &rsaKey.PublicKey},
		{"RSA PKCS #8", "RS256", pkcs8(rsaKey), &rsaKey.PublicKey},
		{"EC SEC 1", "ES256", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}), &ecKey.PublicKey},
		{"EC PKCS #8", "ES256", pkcs8(ecKey), &ecKey.PublicKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der, err := x509.MarshalPKIXPublicKey(tc.public)
			if err != nil {
				t.Fatal(err)
			}
			pub := writeFile(t, "public.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
			var out, errOut bytes.Buffer
			code := run(context.Background(), []string{"token", "--user", "alice", "--channels", "news", "--jwt-private-key", writeFile(t, "private.pem", string(tc.private))},
				env(nil), &out, &errOut)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			token := strings.TrimSpace(out.String())
			if tok, _, _ := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{}); tok.Method.Alg() != tc.alg {
				t.Errorf("alg %s, want %s", tok.Method.Alg(), tc.alg)
			}
			g := runGateway(t, proctest.FreeAddr(t), proctest.FreeAddr(t), "--jwt-public-key", pub)
			c, _ := wstest.Dial(t, g.addr, "/ws?channels=news&token="+token, "Sec-WebSocket-Protocol: pushgate.v1")
			c.ExpectMsg("subscribed", "")
			c.ExpectMsg("subscribed", "")
		})
	}
}

func TestTokenErrors(t *testing.T) {
	secret := strings.Repeat("k", 32)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384DER, _ := x509.MarshalECPrivateKey(p384)
	pubDER, _ := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	key := func(typ string, der []byte) string {
		return writeFile(t, "key.pem", string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})))
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--user", "alice"}, nil, "no key"},
		{[]string{"--user", "alice", "--jwt-secret", "short"}, nil, "at least 32"},
		{[]string{"--user", "alice", "--jwt-secret", secret, "--jwt-private-key", "k.pem"}, nil, "exclusive"},
		{[]string{"--user", "alice", "--jwt-secret-file", "/nonexistent"}, nil, "--jwt-secret-file: cannot read the secret"},
		{[]string{"--user", "alice", "--jwt-secret-file", "/nonexistent"}, map[string]string{"PUSHGATE_JWT_SECRET": secret}, "exclusive"},
		{[]string{"--user", "alice", "--jwt-private-key", "/nonexistent"}, nil, "--jwt-private-key: open /nonexistent"},
		{[]string{"--user", "alice", "--jwt-private-key", key("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small))}, nil, "1024 bits, want at least 2048"},
		{[]string{"--user", "alice", "--jwt-private-key", key("EC PRIVATE KEY", p384DER)}, nil, "want P-256"},
		{[]string{"--user", "alice", "--jwt-private-key", key("PUBLIC KEY", pubDER)}, nil, "is not a private key"},
		{[]string{"--jwt-secret", secret}, nil, "give --user, --channels or both"},
		{[]string{"--user", "al ice", "--jwt-secret", secret}, nil, "invalid --user"},
		{[]string{"--channels", "chat rooms", "--jwt-secret", secret}, nil, "invalid --channels"},
		{[]string{"--user", "alice", "--publish", "a,b c", "--jwt-secret", secret}, nil, "invalid --publish"},
		{[]string{"--user", "alice", "--ttl", "0s", "--jwt-secret", secret}, nil, "invalid --ttl"},
		{[]string{"--user", "alice", "--ttl", "1500ms", "--jwt-secret", secret}, nil, "invalid --ttl"},
		{[]string{"--user", "alice", "--jwt-secret", secret, "extra"}, nil, "unexpected argument"},
		{[]string{"--addr", ":1"}, nil, "flag provided but not defined: -addr"},
		{[]string{"--user", "alice"}, map[string]string{"PUSHGATE_JWT_PRIVATE_KEY": "/nonexistent"}, "--jwt-private-key: open /nonexistent"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append([]string{"token"}, tc.args...), env(tc.env), &out, &errOut)
		if code != 2 || out.Len() > 0 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("token %v %v: exit %d, out %q, err %q; want 2, nothing out, %q", tc.args, tc.env, code, out.String(), errOut.String(), tc.want)
		}
	}
	// Only the key flags have environment twins: PUSHGATE_USER is no
	// setting of the token command (nor of the gateway).
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"token", "--jwt-secret", secret}, env(map[string]string{"PUSHGATE_USER": "alice"}), &out, &errOut); code != 2 {
		t.Errorf("PUSHGATE_USER was read: exit %d, %s", code, out.String())
	}
}

func TestTokenHelp(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"token", "--help"}, env(nil), &out, &out); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	for _, want := range []string{"--user", "--channels", "--publish", "--ttl duration", "default 1h0m0s",
		"--jwt-secret string", "env PUSHGATE_JWT_SECRET\n", "env PUSHGATE_JWT_SECRET_FILE\n", "--jwt-private-key", "env PUSHGATE_JWT_PRIVATE_KEY\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("token --help lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	run(context.Background(), []string{"--help"}, env(nil), &out, &out)
	if !strings.Contains(out.String(), "pushgate token [flags]") {
		t.Errorf("--help does not mention the token command:\n%s", out.String())
	}
}
