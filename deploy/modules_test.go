package deploy

// The README's "Modules and dependencies" names the modules the gateway's
// binary is built from, and those the gateway's own tests add. These tests
// keep it true, asking go about the gateway's module alone (GOWORK=off),
// as the image builds it and as a program importing it sees it.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// modPath matches a module path in backquotes: a first element with a dot,
// then a slash.
var modPath = regexp.MustCompile("`([a-z0-9-]+(?:\\.[a-z0-9-]+)+/[^`\\s]+)`")

// modPaths returns the module paths text names, sorted, once each.
func modPaths(text string) []string {
	var paths []string
	for _, m := range modPath.FindAllStringSubmatch(text, -1) {
		paths = append(paths, m[1])
	}
	slices.Sort(paths)
	return slices.Compact(paths)
}

// modReadme returns the README's "Modules and dependencies" section.
func modReadme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(k8sRepoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n### Modules and dependencies\n")
	if !ok {
		t.Fatal("README.md: no section ### Modules and dependencies")
	}
	if i := strings.Index(sec, "\n#"); i >= 0 {
		sec = sec[:i]
	}
	return sec
}

// modGoList runs `go list args...` in the gateway's module alone and
// returns its lines, sorted, once each, blank ones left out.
func modGoList(t *testing.T, args ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), k8sCmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"list"}, args...)...)
	cmd.Dir = k8sRepoRoot
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v", strings.Join(args, " "), err)
	}
	lines := strings.Fields(string(out))
	slices.Sort(lines)
	return slices.Compact(lines)
}

// modCompare fails the test unless the README names exactly want in what.
func modCompare(t *testing.T, what string, named, want []string) {
	t.Helper()
	for _, m := range want {
		if !slices.Contains(named, m) {
			t.Errorf("README.md, Modules and dependencies: %s leaves out %s", what, m)
		}
	}
	for _, m := range named {
		if !slices.Contains(want, m) {
			t.Errorf("README.md, Modules and dependencies: %s names %s, which is not one", what, m)
		}
	}
}

func TestImageModules(t *testing.T) {
	sec := modReadme(t)
	var table strings.Builder
	for line := range strings.Lines(sec) {
		if strings.HasPrefix(line, "|") {
			table.WriteString(line)
		}
	}
	_, tests, ok := strings.Cut(sec, "The gateway's own tests add ")
	if !ok {
		t.Fatal(`README.md, Modules and dependencies: no paragraph "The gateway's own tests add ..."`)
	}
	tests, _, _ = strings.Cut(tests, "\n\n")

	binary := modGoList(t, "-deps", "-f", "{{with .Module}}{{if not .Main}}{{.Path}}{{end}}{{end}}", "./cmd/gateway")
	modCompare(t, "the table of the modules the binary is built from (go list -deps ./cmd/gateway)", modPaths(table.String()), binary)

	// What go.mod requires directly and the binary does not use is there
	// for the gateway's tests.
	var testOnly []string
	for _, m := range modGoList(t, "-m", "-f", "{{if not (or .Main .Indirect)}}{{.Path}}{{end}}", "all") {
		if !slices.Contains(binary, m) {
			testOnly = append(testOnly, m)
		}
	}
	modCompare(t, "the list of the modules the gateway's tests add (go.mod's direct requirements the binary does not use)", modPaths(tests), testOnly)
}
