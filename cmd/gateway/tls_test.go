package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/pushgate/pushgate/internal/proctest"
	"github.com/pushgate/pushgate/internal/wstest"
)

// TestTLSAtTheLoadBalancer runs the README's HAProxy and nginx blocks, as
// they stand there with their addresses and file names replaced, in front
// of a real gateway process, with a throwaway self-signed certificate: a
// client upgrades over wss:// through each, subscribes and receives a
// publish, and a browser opening /ws over https:// gets the gateway's page.
func TestTLSAtTheLoadBalancer(t *testing.T) {
	haproxyBin, nginxBin := proctest.Program(t, "haproxy"), proctest.Program(t, "nginx")
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	bundle := filepath.Join(dir, "bundle.pem") // HAProxy's crt: chain, then key
	writeFileAt(t, bundle, readFile(t, certFile)+readFile(t, keyFile))

	gwAddr, gwAdmin := proctest.FreeAddr(t), proctest.FreeAddr(t)
	gw := proctest.Start(t, "", proctest.Gateway(t), "--addr", gwAddr, "--admin-addr", gwAdmin)
	gw.WaitHTTP(t, "http://"+gwAdmin+"/readyz", http.StatusOK)
	_, adminPort, _ := net.SplitHostPort(gwAdmin)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	t.Run("haproxy", func(t *testing.T) {
		lb := proctest.FreeAddr(t)
		cfg := replaceAll(t, readmeBlock(t, "haproxy"),
			"bind :443 ", "bind "+lb+" ",
			"/etc/haproxy/pushgate.pem", bundle,
			"10.0.0.11:8080", gwAddr,
			"10.0.0.12:8080", gwAddr,
			"port 9090", "port "+adminPort)
		file := filepath.Join(t.TempDir(), "haproxy.cfg")
		writeFileAt(t, file, cfg)
		p := proctest.Start(t, "", haproxyBin, "-f", file, "-db")
		checkThroughTLS(t, p, client, lb, gwAdmin)
	})

	t.Run("nginx", func(t *testing.T) {
		lb := proctest.FreeAddr(t)
		prefix := t.TempDir()
		block := replaceAll(t, readmeBlock(t, "nginx"),
			"listen 443 ssl;", "listen "+lb+" ssl;",
			"/etc/nginx/pushgate.crt", certFile,
			"/etc/nginx/pushgate.key", keyFile,
			"10.0.0.11:8080", gwAddr,
			"10.0.0.12:8080", gwAddr)
		// The block is the http context's; the rest is what a test run
		// needs: one process in the foreground, files under prefix.
		cfg := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log stderr notice;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
%[2]s
}
`, prefix, block)
		file := filepath.Join(prefix, "nginx.conf")
		writeFileAt(t, file, cfg)
		p := proctest.Start(t, "", nginxBin, "-p", prefix, "-c", file, "-e", "stderr")
		checkThroughTLS(t, p, client, lb, gwAdmin)
	})
}

// checkThroughTLS waits for the proxy p to serve https on lb, then
// upgrades through it, subscribes, and receives a publish made on the
// gateway's admin listener.
func checkThroughTLS(t *testing.T, p *proctest.Process, client *http.Client, lb, admin string) {
	t.Helper()
	wstest.Until(t, 20*time.Second, func() error {
		select {
		case <-p.Exited:
			t.Fatalf("%s exited: %v\n%s", p.Name, p.Err, p.Logs.String())
		default:
		}
		resp, err := client.Get("https://" + lb + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /healthz through %s: %s", p.Name, resp.Status)
		}
		return nil
	})

	// A browser opening /ws: the gateway's page, through the proxy.
	resp, err := client.Get("https://" + lb + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired || !strings.Contains(string(body), "pushgate WebSocket endpoint") {
		t.Errorf("GET https://%s/ws: %s %q", lb, resp.Status, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, "wss://"+lb+"/ws?channels=news", &websocket.DialOptions{
		HTTPClient: client, Subprotocols: []string{"pushgate.v1"},
	})
	if err != nil {
		t.Fatalf("wss:// through %s: %v", p.Name, err)
	}
	defer conn.CloseNow()
	if resp.Header.Get("Sec-WebSocket-Protocol") != "pushgate.v1" {
		t.Errorf("subprotocol %q", resp.Header.Get("Sec-WebSocket-Protocol"))
	}
	type msg struct {
		Type    string
		Channel string
		Offset  int
		Data    json.RawMessage
	}
	read := func() msg {
		t.Helper()
		_, data, err := conn.Read(ctx)
		if err != nil {
			t.Fatalf("read through %s: %v", p.Name, err)
		}
		var m msg
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("%q: %v", data, err)
		}
		return m
	}
	if m := read(); m.Type != "subscribed" || m.Channel != "news" {
		t.Fatalf("got %+v, want subscribed to news", m)
	}
	body2 := fmt.Sprintf(`{"channel":"news","data":{"via":%q}}`, p.Name)
	pr, err := http.Post("http://"+admin+"/api/publish", "application/json", strings.NewReader(body2))
	if err != nil {
		t.Fatal(err)
	}
	pr.Body.Close()
	if pr.StatusCode != http.StatusOK {
		t.Fatalf("publish: %s", pr.Status)
	}
	if m := read(); m.Type != "message" || string(m.Data) != fmt.Sprintf(`{"via":%q}`, p.Name) {
		t.Fatalf("got %+v, want the publish", m)
	}
	if err := conn.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Errorf("close through %s: %v", p.Name, err)
	}
}

// readmeBlock returns the README's fenced code block in lang; there must
// be exactly one.
func readmeBlock(t *testing.T, lang string) string {
	t.Helper()
	readme := readFile(t, filepath.Join("..", "..", "README.md"))
	blocks := regexp.MustCompile("(?ms)^```"+regexp.QuoteMeta(lang)+"\n(.*?)^```$").FindAllStringSubmatch(readme, -1)
	if len(blocks) != 1 {
		t.Fatalf("README.md has %d %s blocks, want 1", len(blocks), lang)
	}
	return blocks[0][1]
}

// replaceAll replaces each old with its new in s, failing the test if an
// old is not there (the README changed under the test).
func replaceAll(t *testing.T, s string, oldnew ...string) string {
	t.Helper()
	for i := 0; i < len(oldnew); i += 2 {
		if !strings.Contains(s, oldnew[i]) {
			t.Fatalf("the README block no longer holds %q:\n%s", oldnew[i], s)
		}
		s = strings.ReplaceAll(s, oldnew[i], oldnew[i+1])
	}
	return s
}

// selfSigned writes a throwaway certificate for 127.0.0.1 and localhost
// and its key into dir, and returns their files and a pool trusting it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "pushgate test"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFileAt(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFileAt(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// writeFileAt writes content to the path name (writeFile picks a temporary one).
func writeFileAt(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
