// Package craft holds the Craft CMS plugin (PHP, see README.md). Its Go
// test runs the plugin's phpunit suite, end-to-end tests against a real
// craftedge binary included, so `go test ./...` covers the PHP side too.
package craft

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// install says how to get what the PHP tests need.
const install = "apt-get install -y php-cli php-curl phpunit"

// TestPHPUnit runs phpunit on the plugin. Without php, its curl extension
// or phpunit it skips, saying how to install them, except in CI
// (CRAFTEDGE_CI set), where a skip would hide the PHP tests: there it fails.
func TestPHPUnit(t *testing.T) {
	missing := func(what string) {
		t.Helper()
		if os.Getenv("CRAFTEDGE_CI") != "" {
			t.Fatalf("%s; CI must run the plugin's PHP tests: %s", what, install)
		}
		t.Skipf("%s, so the Craft plugin's PHP tests do not run; install them with: %s", what, install)
	}
	php, err := exec.LookPath("php")
	if err != nil {
		missing("php is not installed")
	}
	phpunit, err := exec.LookPath("phpunit")
	if err != nil {
		missing("phpunit is not installed")
	}
	if err := exec.Command(php, "-r", `exit(extension_loaded("curl") ? 0 : 1);`).Run(); err != nil {
		missing("php's curl extension (php-curl) is not installed")
	}

	statInputs(t)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "craftedge")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	build := exec.CommandContext(ctx, gobin, "build", "-o", bin, "./cmd/craftedge")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building craftedge for the PHP end-to-end tests: %v\n%s", err, out)
	}

	cmd := exec.CommandContext(ctx, phpunit, "--configuration", "phpunit.xml.dist")
	cmd.Env = append(os.Environ(), "CRAFTEDGE_BIN="+bin)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("phpunit failed: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// statInputs stats what phpunit and the craftedge binary are made of (the
// plugin's files, the repository's Go files), so that go test's cache,
// which only sees files this process touches, reruns the test when one of
// them changes.
func statInputs(t *testing.T) {
	t.Helper()
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); p != ".." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(p) {
		case ".go", ".mod", ".sum", ".php", ".dist", ".json":
			_, err = os.Stat(p)
		}
		return err
	})
	if err != nil {
		t.Fatalf("listing the test's inputs: %v", err)
	}
}
