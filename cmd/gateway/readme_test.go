package main

// Tests of what the repository's README.md tells a new user: its commands
// and its example code are run as they stand there, against the gateway
// binary, and its Settings table is checked against the flags.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/pushgate/pushgate/internal/proctest"
	"github.com/pushgate/pushgate/internal/wstest"
)

// Paths relative to the test's directory, cmd/gateway.
const (
	readmePath   = "../../README.md"
	examplesDir  = "../../web/examples"
	nodeModules  = "../../server/testdata/nodews/node_modules"
	debianPython = "/usr/bin/python3" // the Makefile's PYTHON3
)

func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// readmeSection is the README from the heading "## name" to the next
// heading of that level.
func readmeSection(t *testing.T, name string) string {
	t.Helper()
	_, s, ok := strings.Cut(readme(t), "\n## "+name+"\n")
	if !ok {
		t.Fatalf("README has no section %q", name)
	}
	if i := strings.Index(s, "\n## "); i >= 0 {
		s = s[:i]
	}
	return s
}

var fence = regexp.MustCompile("(?ms)^```([a-z]*)\n(.*?)^```\n")

// codeBlocks returns the fenced blocks of text with the given info string
// ("" for plain ones).
func codeBlocks(text, lang string) []string {
	var out []string
	for _, m := range fence.FindAllStringSubmatch(text, -1) {
		if m[1] == lang {
			out = append(out, m[2])
		}
	}
	return out
}

// shellCommands returns, from the sh blocks of text, each command line
// that starts with prefix and the comment line right after it (the
// answer the README shows), "" if none.
func shellCommands(text, prefix string) [][2]string {
	var out [][2]string
	for _, b := range codeBlocks(text, "sh") {
		lines := strings.Split(b, "\n")
		for i, l := range lines {
			if !strings.HasPrefix(l, prefix) {
				continue
			}
			answer := ""
			if i+1 < len(lines) && strings.HasPrefix(lines[i+1], "# ") {
				answer = strings.TrimPrefix(lines[i+1], "# ")
			}
			out = append(out, [2]string{l, answer})
		}
	}
	return out
}

// runShell runs a README command line with sh, after replacing the
// defaults it names with a test's addresses.
func runShell(t *testing.T, dir, line string, replace ...string) string {
	t.Helper()
	line = strings.NewReplacer(replace...).Replace(line)
	cmd := exec.Command("sh", "-c", line)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
	return string(out)
}

// jsonMatches compares a JSON answer with the README's, where the string
// "…" stands for any value.
func jsonMatches(got, want any) bool {
	if w, ok := want.(string); ok && w == "…" {
		return true
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for k, wv := range w {
			if gv, ok := g[k]; !ok || !jsonMatches(gv, wv) {
				return false
			}
		}
		return true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !jsonMatches(g[i], w[i]) {
				return false
			}
		}
		return true
	}
	return fmt.Sprint(got) == fmt.Sprint(want)
}

func checkAnswer(t *testing.T, line, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("README's answer to %s is not JSON: %s", line, want)
	}
	if err := json.Unmarshal([]byte(got), &g); err != nil || !jsonMatches(g, w) {
		t.Errorf("%s\nanswers %s\nREADME shows %s", line, strings.TrimSpace(got), want)
	}
}

// Every flag has a row in the Settings table, every row is a flag, and
// the default it gives is the flag's.
func TestReadmeSettings(t *testing.T) {
	rows := map[string]string{}
	row := regexp.MustCompile("(?m)^\\| `--([a-z0-9-]+)` \\| ([^|]*) \\|")
	for _, m := range row.FindAllStringSubmatch(readmeSection(t, "Settings"), -1) {
		rows[m[1]] = strings.Trim(strings.TrimSpace(m[2]), "`")
	}
	fs := newFlagSet(&config{})
	fs.VisitAll(func(f *flag.Flag) {
		def, ok := rows[f.Name]
		if !ok {
			t.Errorf("README Settings: no row for --%s", f.Name)
			return
		}
		if f.DefValue == "" || f.DefValue == "0" || f.DefValue == "false" {
			return // "none", "off", "8 × GOMAXPROCS": said in words
		}
		if def == f.DefValue {
			return
		}
		if dw, err := time.ParseDuration(def); err == nil && dw.String() == f.DefValue {
			return
		}
		t.Errorf("README Settings: --%s defaults to %q, the flag to %q", f.Name, def, f.DefValue)
	})
	for name := range rows {
		if fs.Lookup(name) == nil {
			t.Errorf("README Settings: --%s is no flag", name)
		}
	}
	// The quick start names the listeners' defaults.
	start := codeBlocks(readmeSection(t, "Quick start"), "sh")[0]
	for _, name := range []string{"addr", "admin-addr"} {
		if def := fs.Lookup(name).DefValue; !strings.Contains(start, " "+def) {
			t.Errorf("README quick start does not give the --%s default %s:\n%s", name, def, start)
		}
	}
}

// The quick start's subscribers, in Python and in Node, are the files in
// web/examples, shown whole; each runs against a gateway, the README's
// curl publishes, and the subscriber prints what the README says.
func TestReadmeExamples(t *testing.T) {
	quick := readmeSection(t, "Quick start")
	publish := shellCommands(quick, "curl ")
	if len(publish) != 1 || publish[0][1] == "" {
		t.Fatalf("README quick start: want one curl with its answer, have %q", publish)
	}
	printed := codeBlocks(quick, "")
	if len(printed) != 1 {
		t.Fatalf("README quick start: want one block of what the subscriber prints, have %d", len(printed))
	}
	const closed = "closed 1001 server shutting down\n"
	if !strings.Contains(quick, "`"+strings.TrimSpace(closed)+"`") {
		t.Errorf("README quick start does not say the subscriber prints %q when the gateway stops", closed)
	}
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for _, ex := range []struct {
		file, lang string
		cmd        func(t *testing.T) (string, []string)
	}{
		{"subscribe.py", "python", func(t *testing.T) (string, []string) {
			if err := exec.Command(debianPython, "-c", "import websockets").Run(); err != nil {
				skipOrFail(t, debianPython+" cannot import websockets (make deps installs python3-websockets): %v", err)
			}
			return debianPython, nil
		}},
		{"subscribe.js", "js", func(t *testing.T) (string, []string) {
			node := proctest.Program(t, "node")
			if _, err := os.Stat(filepath.Join(nodeModules, "ws")); err != nil {
				skipOrFail(t, "Node's ws package is not installed (make deps): %v", err)
			}
			return node, []string{"NODE_PATH=" + abs(nodeModules)}
		}},
	} {
		t.Run(ex.file, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join(examplesDir, ex.file))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(codeBlocks(quick, ex.lang), string(src)) {
				t.Fatalf("README quick start does not show web/examples/%s as it is", ex.file)
			}
			prog, env := ex.cmd(t)
			addr, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
			g := proctest.Start(t, "", proctest.Gateway(t), "--addr", addr, "--admin-addr", admin, "--drain-timeout", "2s", "--close-timeout", "1s")
			g.WaitHTTP(t, "http://"+admin+"/readyz", http.StatusOK)
			sub := proctest.StartEnv(t, append(os.Environ(), env...), prog, abs(filepath.Join(examplesDir, ex.file)),
				"ws://"+addr+"/ws?channels=chat:lobby")
			waitOutput(t, sub, "subscribed chat:lobby\n")
			got := runShell(t, "", publish[0][0], "localhost:9090", admin)
			checkAnswer(t, publish[0][0], got, publish[0][1])
			waitOutput(t, sub, printed[0])
			if err := g.Stop(t, syscall.SIGTERM, 10*time.Second); err != nil {
				t.Errorf("gateway exit: %v", err)
			}
			select {
			case <-sub.Exited:
			case <-time.After(10 * time.Second):
				t.Fatalf("the subscriber did not exit after the gateway stopped:\n%s", sub.Logs.String())
			}
			if out := sub.Logs.String(); out != printed[0]+closed || sub.Err != nil {
				t.Errorf("the subscriber printed %q and exited with %v, want %q", out, sub.Err, printed[0]+closed)
			}
		})
	}
}

// waitOutput waits until p's output is want.
func waitOutput(t *testing.T, p *proctest.Process, want string) {
	t.Helper()
	wstest.Until(t, 10*time.Second, func() error {
		select {
		case <-p.Exited:
			t.Fatalf("%s exited (%v) printing %q", p.Name, p.Err, p.Logs.String())
		default:
		}
		if got := p.Logs.String(); got != want {
			return fmt.Errorf("%s printed %q, want %q", p.Name, got, want)
		}
		return nil
	})
}

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// The publish API section's curl commands, %23 for # included, answer
// what the README shows.
func TestReadmeCurl(t *testing.T) {
	proctest.Program(t, "curl")
	cmds := shellCommands(readmeSection(t, "The publish API"), "curl ")
	var history bool
	for _, c := range cmds {
		history = history || strings.Contains(c[0], "channel=%23alice")
	}
	if !history {
		t.Errorf("README: no history of #alice with %%23 among %q", cmds)
	}
	addr, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
	g := proctest.Start(t, "", proctest.Gateway(t), "--addr", addr, "--admin-addr", admin)
	g.WaitHTTP(t, "http://"+admin+"/readyz", http.StatusOK)
	for _, c := range cmds {
		got := runShell(t, "", c[0], "localhost:9090", admin)
		if c[1] == "" {
			t.Errorf("README shows no answer to %s", c[0])
			continue
		}
		checkAnswer(t, c[0], got, c[1])
	}
	// What a bare # does: curl sends no channel at all.
	if got := runShell(t, "", "curl -s 'localhost:9090/api/history?channel=#alice'", "localhost:9090", admin); strings.Contains(got, `"#alice"`) {
		t.Errorf("a bare # reached the gateway: %s", got)
	}
}

// The Authentication section's token command prints a token of the claims
// it says, signed with the secret in the file it names.
func TestReadmeToken(t *testing.T) {
	cmds := shellCommands(readmeSection(t, "Authentication"), "go run ./cmd/gateway token ")
	if len(cmds) != 1 {
		t.Fatalf("README Authentication: want one token command, have %q", cmds)
	}
	line, shown := cmds[0][0], cmds[0][1]
	file := regexp.MustCompile(`--jwt-secret-file (\S+)`).FindStringSubmatch(line)
	if file == nil {
		t.Fatalf("README token command names no --jwt-secret-file: %s", line)
	}
	dir := t.TempDir()
	secret := strings.Repeat("r", 32)
	if err := os.WriteFile(filepath.Join(dir, file[1]), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(runShell(t, dir, line, "go run ./cmd/gateway", proctest.Gateway(t)))
	if prefix, ok := strings.CutSuffix(shown, "…"); !ok || !strings.HasPrefix(token, prefix) {
		t.Errorf("README shows the token as %s, the command printed %s", shown, token)
	}
	c := claimsOf(t, token)
	if c.Sub != "alice" || !slices.Equal(c.Channels, []string{"chat:*"}) || c.Exp-c.Iat != 3600 {
		t.Errorf("claims %+v, want sub alice, channels [chat:*], exp = iat + 1h", c)
	}
	g := runGateway(t, proctest.FreeAddr(t), proctest.FreeAddr(t), "--jwt-secret", secret)
	ws, _ := wstest.Dial(t, g.addr, "/ws?channels=chat:lobby&token="+token, "Sec-WebSocket-Protocol: pushgate.v1")
	ws.ExpectMsg("subscribed", "")
	ws.ExpectMsg("subscribed", "")
}

// The Autobahn suite's largest messages (16 MiB, cases 9.1.6 and 9.2.6)
// come back through /echo with the flags the README gives, and are
// refused without its --max-message-bytes.
func TestReadmeAutobahn(t *testing.T) {
	section := readmeSection(t, "The echo endpoint")
	cmds := shellCommands(section, "go run ./cmd/gateway ")
	if len(cmds) != 1 || !strings.Contains(cmds[0][0], "--max-message-bytes 16777216") {
		t.Fatalf("README echo section: want one gateway command with --max-message-bytes 16777216, have %q", cmds)
	}
	for _, claim := range []string{"Python 2", "Docker"} {
		if !strings.Contains(section, claim) {
			t.Errorf("README echo section does not say the fuzzingclient needs %s", claim)
		}
	}
	readmeFlags := strings.Fields(strings.TrimPrefix(cmds[0][0], "go run ./cmd/gateway "))
	const size = 16 << 20
	msg := strings.Repeat("a", size)
	for _, tc := range []struct {
		name  string
		flags []string
		ok    bool
	}{
		{"as the README says", readmeFlags, true},
		{"default --max-message-bytes", slices.DeleteFunc(slices.Clone(readmeFlags), func(s string) bool {
			return s == "--max-message-bytes" || s == "16777216"
		}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
			g := proctest.Start(t, "", proctest.Gateway(t), append(slices.Clone(tc.flags), "--addr", addr, "--admin-addr", admin)...)
			g.WaitHTTP(t, "http://"+admin+"/readyz", http.StatusOK)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, "ws://"+addr+"/echo", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			c.SetReadLimit(2 * size)
			if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil && tc.ok {
				t.Fatal(err)
			}
			typ, got, err := c.Read(ctx)
			if !tc.ok {
				if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
					t.Fatalf("a 16 MiB message without the flag: %v, want close 1009", err)
				}
				return
			}
			if err != nil || typ != websocket.MessageText || string(got) != msg {
				t.Fatalf("echo of 16 MiB: %v, %v, %d bytes", err, typ, len(got))
			}
		})
	}
}

// make deps installs, through apt-get (and sudo when not root), every
// Debian package the README names, python3-websockets for Debian's own
// Python among them: here with none of them found (an empty PATH but for
// id, and a Python that is not there).
func TestMakeDeps(t *testing.T) {
	mk := proctest.Program(t, "make")
	bin := t.TempDir()
	id, err := exec.LookPath("id")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(id, filepath.Join(bin, "id")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mk, "-n", "-C", "../..", "deps", "PYTHON3=/nonexistent/python3")
	cmd.Env = []string{"PATH=" + bin}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make -n deps: %v\n%s", err, out)
	}
	sudo := ""
	if os.Getuid() != 0 {
		sudo = "sudo "
	}
	flat := strings.Join(strings.Fields(string(out)), " ")
	install := regexp.MustCompile(`\( ?` + sudo + `apt-get update && ` + sudo +
		`env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ([^)]*)\)`).FindStringSubmatch(flat)
	if install == nil {
		t.Fatalf("make -n deps (uid %d) does not run %sapt-get update and install:\n%s", os.Getuid(), sudo, out)
	}
	pkgs := strings.Fields(install[1])
	quick := readmeSection(t, "Quick start")
	for _, p := range []string{"nodejs", "npm", "chromium", "prometheus", "nats-server", "haproxy", "python3-websockets"} {
		if !slices.Contains(pkgs, p) {
			t.Errorf("make deps does not install %s: %v", p, pkgs)
		}
	}
	for _, claim := range []string{"python3-websockets", "needs root on Debian and Ubuntu", "`sudo`"} {
		if !strings.Contains(strings.Join(strings.Fields(quick), " "), claim) {
			t.Errorf("README quick start does not say %q", claim)
		}
	}
}
