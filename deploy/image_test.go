package deploy

// Tests of the Dockerfile and .dockerignore: the Dockerfile's own build
// line is run here, in a copy of the build context, and must give a static
// binary; the image's user, ports and entry point must match the gateway.
// No Docker engine is needed.

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// imgBuildGateway builds ./cmd/gateway with the Dockerfile's own build
// command, in a copy of the Docker build context (the repository less what
// .dockerignore excludes), and returns the binary's path.
func imgBuildGateway(t *testing.T) string {
	t.Helper()
	df, err := imgReadDockerfile()
	if err != nil {
		t.Fatal(err)
	}
	bc, err := df.buildCommand()
	if err != nil {
		t.Fatal(err)
	}
	ignore, err := os.ReadFile(filepath.Join(k8sRepoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	ctxDir := t.TempDir()
	rules, err := imgParseIgnore(string(ignore))
	if err != nil {
		t.Fatal(err)
	}
	if err := imgCopyContext(k8sRepoRoot, ctxDir, rules); err != nil {
		t.Fatalf("copying the build context: %v", err)
	}
	imgCheckContext(t, ctxDir)
	bin := filepath.Join(t.TempDir(), "pushgate")
	args := slices.Clone(bc.args)
	args[bc.outIndex] = bin
	ctx, cancel := context.WithTimeout(t.Context(), k8sCmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = ctxDir
	cmd.Env = append(os.Environ(), bc.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build (%s) in its build context: %v\n%s", bc.line, err, out)
	}
	return bin
}

// imgCheckContext fails the test if the build context lacks a source or
// embedded file of a package the gateway is built from: an over-eager
// .dockerignore can leave out embedded files without failing the build. It
// must also leave out go.work, so that the image builds the gateway's
// module with the versions its own go.mod selects, not the workspace's.
func imgCheckContext(t *testing.T, ctxDir string) {
	t.Helper()
	for _, f := range []string{"go.work", "go.work.sum"} {
		if _, err := os.Stat(filepath.Join(ctxDir, f)); err == nil {
			t.Errorf(".dockerignore leaves %s in the build context: the image would build the workspace, not the gateway's module", f)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), k8sCmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "list", "-deps", "-json=Dir,GoFiles,EmbedFiles,Module", "./cmd/gateway")
	cmd.Dir = k8sRepoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./cmd/gateway: %v", err)
	}
	root, err := filepath.Abs(k8sRepoRoot)
	if err != nil {
		t.Fatal(err)
	}
	need := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			Dir                 string
			GoFiles, EmbedFiles []string
			Module              *struct{ Main bool }
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list: %v", err)
		}
		if p.Module == nil || !p.Module.Main {
			continue
		}
		rel, err := filepath.Rel(root, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range slices.Concat(p.GoFiles, p.EmbedFiles) {
			need = append(need, filepath.Join(rel, f))
		}
	}
	if len(need) < 3 {
		t.Fatal("go list found no source file of ./cmd/gateway")
	}
	for _, f := range need {
		if _, err := os.Stat(filepath.Join(ctxDir, f)); err != nil {
			t.Errorf(".dockerignore leaves %s, which the gateway is built from, out of the build context", filepath.ToSlash(f))
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// imgFlag is one flag as `pushgate --help` describes it.
type imgFlag struct {
	env, def string
}

var imgHelpFlag = regexp.MustCompile(`^  --([a-z0-9-]+)`)
var imgHelpEnv = regexp.MustCompile(`^\s+env (PUSHGATE_[A-Z0-9_]+)(?:, default (.*))?$`)

// imgParseHelp reads the flags, their environment twins and their defaults
// from `pushgate --help`.
func imgParseHelp(out string) (map[string]imgFlag, error) {
	flags := map[string]imgFlag{}
	name := ""
	for line := range strings.Lines(out) {
		line = strings.TrimRight(line, "\r\n")
		if m := imgHelpFlag.FindStringSubmatch(line); m != nil {
			name = m[1]
			flags[name] = imgFlag{}
			continue
		}
		if m := imgHelpEnv.FindStringSubmatch(line); m != nil && name != "" {
			flags[name] = imgFlag{env: m[1], def: m[2]}
		}
	}
	for name, f := range flags {
		if f.env == "" {
			return nil, fmt.Errorf("--help names no environment twin for --%s", name)
		}
	}
	for _, need := range []string{"addr", "admin-addr", "drain-timeout"} {
		if flags[need].def == "" {
			return nil, fmt.Errorf("--help gives no default for --%s:\n%s", need, out)
		}
	}
	return flags, nil
}

// imgGatewayFlags runs `bin --help` and parses it.
func imgGatewayFlags(t *testing.T, bin string) map[string]imgFlag {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--help")
	// Defaults as shipped: no PUSHGATE_* from the test's environment.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PUSHGATE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 2) {
		t.Fatalf("pushgate --help: %v\n%s", err, out)
	}
	flags, err := imgParseHelp(string(out))
	if err != nil {
		t.Fatal(err)
	}
	return flags
}

func TestImageParseHelp(t *testing.T) {
	help := "Flags:\n" +
		"  --addr string\n        public listener\n        env PUSHGATE_ADDR, default :8080\n" +
		"  --admin-addr string\n        admin\n        env PUSHGATE_ADMIN_ADDR, default :9090\n" +
		"  --drain-timeout duration\n        drain\n        env PUSHGATE_DRAIN_TIMEOUT, default 10s\n" +
		"  --echo\n        echo\n        env PUSHGATE_ECHO\n"
	flags, err := imgParseHelp(help)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]imgFlag{
		"addr":          {"PUSHGATE_ADDR", ":8080"},
		"admin-addr":    {"PUSHGATE_ADMIN_ADDR", ":9090"},
		"drain-timeout": {"PUSHGATE_DRAIN_TIMEOUT", "10s"},
		"echo":          {"PUSHGATE_ECHO", ""},
	}
	if fmt.Sprint(flags) != fmt.Sprint(want) {
		t.Errorf("parseHelp = %v, want %v", flags, want)
	}
	if _, err := imgParseHelp(strings.Replace(help, "        env PUSHGATE_ECHO\n", "", 1)); err == nil {
		t.Error("a flag without an environment twin was accepted")
	}
}

// imgInstruction is one Dockerfile instruction, continuation lines joined.
type imgInstruction struct {
	cmd, args string // "RUN", "go mod download"
	stage     int    // index of its FROM
}

type imgDockerfile struct {
	text  string
	insts []imgInstruction
}

func imgReadDockerfile() (*imgDockerfile, error) {
	b, err := os.ReadFile(filepath.Join(k8sRepoRoot, "Dockerfile"))
	if err != nil {
		return nil, err
	}
	df := &imgDockerfile{text: string(b)}
	stage, cur := -1, ""
	for line := range strings.Lines(df.text) {
		line = strings.TrimSpace(line)
		if cur == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if rest, ok := strings.CutSuffix(line, `\`); ok {
			cur += rest + " "
			continue
		}
		cur += line
		cmd, args, _ := strings.Cut(cur, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		df.insts = append(df.insts, imgInstruction{cmd: cmd, args: strings.TrimSpace(args), stage: stage})
		cur = ""
	}
	return df, nil
}

// stage returns the instructions of stage i; -1 is the last.
func (df *imgDockerfile) stage(i int) []imgInstruction {
	if i < 0 {
		i = df.insts[len(df.insts)-1].stage
	}
	var out []imgInstruction
	for _, in := range df.insts {
		if in.stage == i {
			out = append(out, in)
		}
	}
	return out
}

// imgBuildCmd is the Dockerfile's `go build` RUN line, split into words.
type imgBuildCmd struct {
	line     string
	env      []string // CGO_ENABLED=0
	args     []string // go build ... -o /out/pushgate ./cmd/gateway
	outIndex int      // of the -o argument in args
}

func (df *imgDockerfile) buildCommand() (*imgBuildCmd, error) {
	var found []*imgBuildCmd
	for _, in := range df.insts {
		if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
			continue
		}
		words, err := imgShellWords(in.args)
		if err != nil {
			return nil, err
		}
		bc := &imgBuildCmd{line: in.args, outIndex: -1}
		for len(words) > 0 && regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`).MatchString(words[0]) {
			bc.env = append(bc.env, words[0])
			words = words[1:]
		}
		if len(words) < 2 || words[0] != "go" || words[1] != "build" {
			return nil, fmt.Errorf("Dockerfile: RUN %s: want [VAR=value ...] go build ...; shell operators are not supported here", in.args)
		}
		bc.args = words
		if i := slices.Index(words, "-o"); i >= 0 && i+1 < len(words) {
			bc.outIndex = i + 1
		} else {
			return nil, fmt.Errorf("Dockerfile: RUN %s: no -o <binary>", in.args)
		}
		found = append(found, bc)
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("Dockerfile: %d RUN lines with go build, want 1", len(found))
	}
	return found[0], nil
}

// imgShellWords splits a command line as sh would, for the quoting a
// Dockerfile RUN line uses: '...', "..." and backslash escapes.
func imgShellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 {
				return nil, fmt.Errorf("unterminated \" in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case strings.IndexByte("|&;<>()$`", c) >= 0:
			return nil, fmt.Errorf("shell operator %q in %q", c, s)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

func TestImageShellWords(t *testing.T) {
	got, err := imgShellWords(`CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "/out/push gate" ./cmd/gateway`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"CGO_ENABLED=0", "go", "build", "-trimpath", "-ldflags=-s -w", "-o", "/out/push gate", "./cmd/gateway"}
	if !slices.Equal(got, want) {
		t.Errorf("shellWords = %q, want %q", got, want)
	}
	if _, err := imgShellWords(`go build ./x && rm -rf /`); err == nil {
		t.Error("a shell operator was accepted")
	}
}

// imageUID is the user the final stage runs as.
func (df *imgDockerfile) imageUID() (int64, error) {
	final := df.stage(-1)
	uid := int64(0)
	if strings.HasSuffix(final[0].args, ":nonroot") || strings.Contains(final[0].args, ":nonroot ") {
		uid = 65532 // distroless's nonroot
	}
	for _, in := range final {
		if in.cmd != "USER" {
			continue
		}
		user, _, _ := strings.Cut(in.args, ":")
		n, err := strconv.ParseInt(user, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("Dockerfile: USER %s: want a numeric uid (runAsNonRoot cannot check a name)", in.args)
		}
		uid = n
	}
	return uid, nil
}

func TestImageDockerfile(t *testing.T) {
	df, err := imgReadDockerfile()
	if err != nil {
		t.Fatal(err)
	}
	if len(df.insts) == 0 || df.insts[0].cmd != "FROM" {
		t.Fatal("Dockerfile: does not start with FROM")
	}
	bc, err := df.buildCommand()
	if err != nil {
		t.Fatal(err)
	}
	bin := imgBuildGateway(t)
	for _, want := range []string{"CGO_ENABLED=0"} {
		if !slices.Contains(bc.env, want) {
			t.Errorf("Dockerfile: build runs without %s: %s", want, bc.line)
		}
	}
	for _, want := range []string{"-trimpath", "-ldflags=-s -w", "./cmd/gateway"} {
		if !slices.Contains(bc.args, want) {
			t.Errorf("Dockerfile: build runs without %s: %s", want, bc.line)
		}
	}

	t.Run("builder", func(t *testing.T) {
		goVersion := imgGoVersion(t)
		from := strings.Fields(df.stage(0)[0].args)[0]
		tag, ok := strings.CutPrefix(from, "golang:")
		if !ok || !(tag == goVersion || strings.HasPrefix(tag, goVersion+"-") || strings.HasPrefix(tag, goVersion+".")) {
			t.Errorf("Dockerfile: builder %s, want golang:%s (go.mod's go directive)", from, goVersion)
		}
		// Modules in a layer of their own, before the sources.
		var order []string
		for _, in := range df.stage(0) {
			switch {
			case in.cmd == "COPY" && in.args == ". .":
				order = append(order, "sources")
			case in.cmd == "COPY" && strings.Contains(in.args, "go.mod") && strings.Contains(in.args, "go.sum"):
				order = append(order, "go.mod")
			case in.cmd == "RUN" && strings.Contains(in.args, "go mod download"):
				order = append(order, "download")
			case in.cmd == "RUN" && in.args == bc.line:
				order = append(order, "build")
			}
		}
		if want := []string{"go.mod", "download", "sources", "build"}; !slices.Equal(order, want) {
			t.Errorf("Dockerfile: builder stage does %v, want %v", order, want)
		}
	})

	t.Run("final", func(t *testing.T) {
		final := df.stage(-1)
		uid, err := df.imageUID()
		if err != nil {
			t.Fatal(err)
		}
		if uid == 0 {
			t.Errorf("Dockerfile: the image runs as root: want a :nonroot base or a numeric non-root USER")
		}
		out := bc.args[bc.outIndex]
		var copied, entry string
		for _, in := range final {
			switch in.cmd {
			case "COPY":
				if f := strings.Fields(in.args); len(f) == 3 && strings.HasPrefix(f[0], "--from=") && f[1] == out {
					copied = f[2]
				}
			case "ENTRYPOINT":
				entry = in.args
			}
		}
		if copied == "" {
			t.Fatalf("Dockerfile: the final stage does not COPY --from the builder's %s", out)
		}
		if want := fmt.Sprintf("[%q]", copied); entry != want {
			t.Errorf("Dockerfile: ENTRYPOINT %s, want %s", entry, want)
		}
		flags := imgGatewayFlags(t, bin)
		var want []string
		for _, f := range []string{"addr", "admin-addr"} {
			want = append(want, strconv.Itoa(k8sAddrPort(t, flags[f].def)))
		}
		var exposed []string
		for _, in := range final {
			if in.cmd == "EXPOSE" {
				exposed = append(exposed, strings.Fields(in.args)...)
			}
		}
		if !slices.Equal(exposed, want) {
			t.Errorf("Dockerfile: EXPOSE %v, want the --addr and --admin-addr default ports %v", exposed, want)
		}
	})

	t.Run("static", func(t *testing.T) {
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("the binary has a PT_INTERP program header: dynamically linked; distroless/static has no libc")
			}
		}
		if f.Section(".symtab") != nil {
			t.Error("the binary has a symbol table: the build's -ldflags='-s -w' did not apply")
		}
	})
}

func imgGoVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(k8sRepoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod: no go directive")
	}
	return string(m[1])
}

type imgIgnoreRule struct {
	re *regexp.Regexp
}

// imgParseIgnore turns .dockerignore lines into matchers: * and ? stop
// at a slash, ** crosses them, a leading / is the context root. Exceptions
// (!pattern) are not supported: the copy of the context skips excluded
// directories whole.
func imgParseIgnore(text string) ([]imgIgnoreRule, error) {
	var rules []imgIgnoreRule
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			return nil, fmt.Errorf(".dockerignore: %s: exceptions are not supported by this test", line)
		}
		line = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(line)), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(line); i++ {
			switch {
			case strings.HasPrefix(line[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(line[i:], "**"):
				re.WriteString(".*")
				i++
			case line[i] == '*':
				re.WriteString("[^/]*")
			case line[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(line[i : i+1]))
			}
		}
		re.WriteString("$")
		rules = append(rules, imgIgnoreRule{regexp.MustCompile(re.String())})
	}
	return rules, nil
}

// imgIgnored says whether rel (slash-separated) or one of its parent
// directories is excluded.
func imgIgnored(rules []imgIgnoreRule, rel string) bool {
	for _, r := range rules {
		for p := rel; p != "."; p = filepath.ToSlash(filepath.Dir(p)) {
			if r.re.MatchString(p) {
				return true
			}
		}
	}
	return false
}

func TestImageDockerignore(t *testing.T) {
	rules, err := imgParseIgnore("# c\n.git\n**/node_modules\n**/*.test\n/*.json\nbench/*.html\n")
	if err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]bool{
		".git/config":                                     true,
		"server/testdata/nodews/node_modules":             true,
		"server/testdata/nodews/node_modules/ws/index.js": true,
		"server.test":                                     true,
		"a/b/c.test":                                      true,
		"results.json":                                    true,
		"bench/out.html":                                  true,
		"bench/x/out.html":                                false,
		"git/config":                                      false,
		"server/testdata/nodews/package.json":             false,
		"web/static/index.html":                           false,
		"go.mod":                                          false,
	} {
		if got := imgIgnored(rules, rel); got != want {
			t.Errorf("ignored(%q) = %v, want %v", rel, got, want)
		}
	}
	if _, err := imgParseIgnore("*\n!go.mod\n"); err == nil {
		t.Error("an exception was accepted")
	}
}

// imgCopyContext copies the files of src that .dockerignore keeps to dst.
func imgCopyContext(src, dst string, rules []imgIgnoreRule) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel != "." && imgIgnored(rules, rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, filepath.FromSlash(rel))
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, info.Mode().Perm())
		}
		return nil // symlinks and the like: not part of a Go build
	})
}
