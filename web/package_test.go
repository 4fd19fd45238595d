package web_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// program finds an external program the test runs. Under CI its absence
// fails the test: `make deps` installs it.
func program(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required (make deps installs it): %v", name, err)
		}
		t.Skipf("%s is not installed (run make deps): %v", name, err)
	}
	return p
}

// run runs a program in dir ("" for this one) and returns its output,
// failing the test if it fails.
func run(t *testing.T, dir, prog string, args ...string) []byte {
	t.Helper()
	out, err := runErr(dir, prog, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(prog), strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(dir, prog string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false", "npm_config_fund=false", "npm_config_audit=false")
	return cmd.CombinedOutput()
}

// packageFiles is what the npm package pushgate-client holds: npm adds
// package.json and README.md to the "files" of package.json by itself.
var packageFiles = []string{"README.md", "package.json", "pushgate.d.ts", "pushgate.js"}

// TestPackage packs static/ as the npm package pushgate-client with npm
// itself, checks what the tarball holds, installs it into a scratch
// node_modules, loads it from Node with require and with import, and
// type-checks pushgate.d.ts, with code that uses it (testdata/types), with
// the TypeScript compiler that testdata/types/package-lock.json pins.
func TestPackage(t *testing.T) {
	node, npm := program(t, "node"), program(t, "npm")
	static, err := filepath.Abs("static")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var packs []struct {
		Name, Version, Filename string
		Files                   []struct{ Path string }
	}
	out := run(t, static, npm, "pack", "--json", "--pack-destination", dir)
	if err := json.Unmarshal(out, &packs); err != nil || len(packs) != 1 {
		t.Fatalf("npm pack --json: %v (%d packages)\n%s", err, len(packs), out)
	}
	p := packs[0]
	if p.Name != "pushgate-client" || p.Version != "0.1.0" {
		t.Errorf("packed %s@%s, want pushgate-client@0.1.0", p.Name, p.Version)
	}
	var listed []string
	for _, f := range p.Files {
		listed = append(listed, f.Path)
	}
	slices.Sort(listed)
	if !slices.Equal(listed, packageFiles) {
		t.Errorf("npm pack lists %q, want %q", listed, packageFiles)
	}
	tarball := filepath.Join(dir, p.Filename)

	// The tarball itself: the files, as they are in static/.
	mod := filepath.Join(dir, "node_modules", "pushgate-client")
	got := untar(t, tarball, mod)
	if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, packageFiles) {
		t.Fatalf("the tarball holds %q, want %q", names, packageFiles)
	}
	for _, name := range []string{"pushgate.js", "pushgate.d.ts"} {
		want, err := os.ReadFile(filepath.Join(static, name))
		if err != nil {
			t.Fatal(err)
		}
		if string(got[name]) != string(want) {
			t.Errorf("the tarball's %s differs from static/%[1]s", name)
		}
	}
	var pkg struct {
		Name, Version, Main, Types, License string
		Files                               []string
		Exports                             map[string]json.RawMessage
	}
	if err := json.Unmarshal(got["package.json"], &pkg); err != nil {
		t.Fatalf("the tarball's package.json: %v", err)
	}
	if pkg.Main != "pushgate.js" || pkg.Types != "pushgate.d.ts" || pkg.License == "" || pkg.Exports["."] == nil {
		t.Errorf("package.json: main %q, types %q, license %q, exports %s", pkg.Main, pkg.Types, pkg.License, pkg.Exports["."])
	}

	// Installed, it loads from Node, without a browser's globals: require
	// gives the class, import gives it by default and by name, and neither
	// leaves a global behind.
	for name, src := range map[string]string{
		"require.cjs": `const assert = require("node:assert/strict");
const Pushgate = require("pushgate-client");
assert.equal(typeof Pushgate, "function");
assert.equal(Pushgate.Pushgate, Pushgate);
assert.equal(Pushgate.default, Pushgate);
assert.equal(globalThis.Pushgate, undefined);
assert.equal(new Pushgate("ws://localhost:1/ws").state, "disconnected");
`,
		"import.mjs": `import assert from "node:assert/strict";
import Pushgate, { Pushgate as Named } from "pushgate-client";
assert.equal(typeof Pushgate, "function");
assert.equal(Named, Pushgate);
assert.equal(globalThis.Pushgate, undefined);
const pg = new Named("ws://localhost:1/ws", { outboxSize: 1 });
assert.equal(pg.publish("news", 1), true);
assert.equal(pg.publish("news", 2), false);
`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) { run(t, dir, node, name) })
	}

	t.Run("types", func(t *testing.T) { typecheck(t, node, npm, tarball) })
}

// typecheck installs testdata/types's TypeScript compiler (npm ci, from
// its lockfile) and the packed package into a scratch directory, and
// type-checks testdata/types's code against the package's declarations,
// strictly, declarations included.
func typecheck(t *testing.T, node, npm, tarball string) {
	src, err := filepath.Abs(filepath.Join("testdata", "types"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var files []string
	for _, name := range []string{"package.json", "package-lock.json", "usage.ts", "usage.mts", "global.ts"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(name, ".ts") || strings.HasSuffix(name, ".mts") {
			files = append(files, name)
		}
	}
	if out, err := runErr(dir, npm, "ci", "--ignore-scripts"); err != nil {
		// The compiler comes from the npm registry.
		if os.Getenv("CI") == "true" {
			t.Fatalf("npm ci (the TypeScript compiler): %v\n%s", err, out)
		}
		t.Skipf("npm ci could not install the TypeScript compiler: %v\n%s", err, out)
	}
	untar(t, tarball, filepath.Join(dir, "node_modules", "pushgate-client"))
	config, err := json.Marshal(map[string]any{
		"compilerOptions": map[string]any{
			"strict": true, "noEmit": true, "target": "es2020", "lib": []string{"es2020"}, "types": []string{},
			// node16: package.json's "exports" and "types", CommonJS
			// (usage.ts) and ES modules (usage.mts) as Node resolves
			// them; legacy: global.ts is a page's script, not a module.
			"module": "node16", "moduleResolution": "node16", "moduleDetection": "legacy",
		},
		"files": files,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tsconfig.json"), config, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("tsc %s", run(t, dir, node, filepath.Join("node_modules", "typescript", "bin", "tsc"), "--version"))
	run(t, dir, node, filepath.Join("node_modules", "typescript", "bin", "tsc"), "-p", ".")
}

// untar extracts an npm tarball's package/ into dest and returns its
// files' contents by their path under package/.
func untar(t *testing.T, tarball, dest string) map[string][]byte {
	t.Helper()
	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading %s: %v", tarball, err)
		}
		name, ok := strings.CutPrefix(path.Clean(h.Name), "package/")
		if h.Typeflag != tar.TypeReg || !ok || !filepath.IsLocal(name) {
			t.Fatalf("%s holds %q (type %c): not a file under package/", tarball, h.Name, h.Typeflag)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = b
		to := filepath.Join(dest, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// TestDeclarations checks that pushgate.d.ts names what pushgate.js has:
// every event it emits, every public method of the class and every
// option. (TestPackage type-checks that they are used as declared.)
func TestDeclarations(t *testing.T) {
	js, err := os.ReadFile(filepath.Join("static", "pushgate.js"))
	if err != nil {
		t.Fatal(err)
	}
	dts, err := os.ReadFile(filepath.Join("static", "pushgate.d.ts"))
	if err != nil {
		t.Fatal(err)
	}
	// between returns the text of s from the line holding start to the
	// next line that is end.
	between := func(s, start, end string) string {
		_, after, ok := strings.Cut(s, start)
		if !ok {
			t.Fatalf("no %q", start)
		}
		block, _, ok := strings.Cut(after, "\n"+end+"\n")
		if !ok {
			t.Fatalf("no end %q after %q", end, start)
		}
		return block
	}
	names := func(re, s string) []string {
		var out []string
		for _, m := range regexp.MustCompile(re).FindAllStringSubmatch(s, -1) {
			out = append(out, m[1])
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	class := between(string(js), "  class Pushgate {", "  }")
	defaults := regexp.MustCompile(`this\.opts = Object\.assign\(\{([^}]*)\}`).FindStringSubmatch(class)
	if defaults == nil {
		t.Fatal("pushgate.js: no defaults for the options")
	}
	for _, c := range []struct {
		what    string
		js, dts []string
	}{
		{
			what: "events",
			js:   names(`this\._emit\("(\w+)"`, string(js)),
			dts:  names(`(?m)^    (\w+): `, between(string(dts), "  interface Events {", "  }")),
		},
		{
			what: "methods",
			js:   names(`(?m)^    ([a-z]\w*)\([^)]*\) \{$`, class),
			dts:  names(`(?m)^  ([a-z]\w*)(?:<[^>]*>)?\(`, between(string(dts), "declare class Pushgate {", "}")),
		},
		{
			what: "options",
			// The defaults, and token, the one option without one.
			js:  append(names(`(\w+): `, defaults[1]), "token"),
			dts: names(`(?m)^    (\w+)\?: `, between(string(dts), "  interface Options {", "  }")),
		},
	} {
		slices.Sort(c.js)
		if !slices.Equal(c.js, c.dts) {
			t.Errorf("%s: pushgate.js has %q, pushgate.d.ts declares %q", c.what, c.js, c.dts)
		}
	}
}
