package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// runCraftedge runs the real command (this test binary as craftedge, see
// TestMain) with args and the extra environment, and returns its exit code
// and output.
func runCraftedge(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "CRAFTEDGE_TEST_MAIN=1",
		"XDG_DATA_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir()), env...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	run := &backfillRun{cmd: cmd, out: out}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	return run.wait(t), out.String()
}

// `craftedge validate` (and `adapt --validate`) checks a config whose
// storage file a running instance holds locked: it never opens the live
// file (which would wait for the lock and fail with "file is locked"),
// leaves nothing behind, and still refuses a bad setting.
func TestValidateDoesNotNeedLiveStorage(t *testing.T) {
	storage := filepath.Join(t.TempDir(), "craftedge.db")
	// Hold the file as a running instance does (bbolt's exclusive lock).
	db, err := bolt.Open(storage, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	held, err := os.ReadFile(storage)
	if err != nil {
		t.Fatal(err)
	}

	cf := backfillCaddyfile(freeAddr(t), storage, "http://127.0.0.1:9", freeAddr(t))
	dir := t.TempDir()
	good := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(good, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	env := []string{"TMPDIR=" + tmp, "SHOP_TOKEN=t"}

	code, out := runCraftedge(t, env, "validate", "--config", good, "--adapter", "caddyfile")
	if code != 0 || !strings.Contains(out, "Valid configuration") {
		t.Fatalf("validate against a locked storage file: exit %d:\n%s", code, out)
	}
	if strings.Contains(out, "locked") || strings.Contains(out, "timeout") {
		t.Fatalf("validate waited for the storage lock:\n%s", out)
	}
	code, out = runCraftedge(t, env, "adapt", "--config", good, "--adapter", "caddyfile", "--validate")
	if code != 0 {
		t.Fatalf("adapt --validate against a locked storage file: exit %d:\n%s", code, out)
	}
	if after, err := os.ReadFile(storage); err != nil || string(after) != string(held) {
		t.Fatalf("validation touched the live storage file (err %v)", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("validation left %d files in TMPDIR: %v", len(left), left[0].Name())
	}

	// A bad setting is still found.
	bad := filepath.Join(dir, "Caddyfile.bad")
	if err := os.WriteFile(bad, []byte(strings.Replace(cf, "\t\tstorage ", "\t\tmemory 1PiB\n\t\tstorage ", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out = runCraftedge(t, env, "validate", "--config", bad, "--adapter", "caddyfile")
	if code == 0 || !strings.Contains(out, "memory") {
		t.Fatalf("validate of memory 1PiB: exit %d, want a failure naming memory:\n%s", code, out)
	}
}
