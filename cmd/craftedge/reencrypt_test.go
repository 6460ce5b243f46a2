package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/craftedge/craftedge/vendorsim"
)

// runCommand runs the real command in a subprocess and returns its exit
// code and output.
func runCommand(t *testing.T, caddyfile string, args ...string) (int, string) {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], append(args, "--config", cfgPath, "--adapter", "caddyfile")...)
	cmd.Env = append(os.Environ(), "CRAFTEDGE_TEST_MAIN=1", "SHOP_TOKEN="+vendorsim.DefaultCommerceToken,
		"XDG_DATA_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	run := &backfillRun{cmd: cmd, out: out}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	return run.wait(t), out.String()
}

func TestReencryptCommandRotatesAndCompacts(t *testing.T) {
	_, _, simURL := startGatedSim(t, 25, 0)
	storage := filepath.Join(t.TempDir(), "craftedge.db")
	for i, env := range []string{"CRAFTEDGE_KEY_1", "CRAFTEDGE_KEY_2", "CRAFTEDGE_KEY_3"} {
		t.Setenv(env, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{byte(i + 1)}, 32)))
	}
	withKeys := func(keys string) string {
		cf := backfillCaddyfile(freeAddr(t), storage, simURL, freeAddr(t))
		cf = strings.Replace(cf, "\t\tvendor shop {", keys+"\t\tvendor shop {", 1)
		return strings.Replace(cf, "\t\t\t\ttags shop:product:{id}", "\t\t\t\ttags shop:product:{id}\n\t\t\t\tsensitive title", 1)
	}
	has := func(s string) bool {
		raw, err := os.ReadFile(storage)
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Contains(raw, []byte(s))
	}

	// A local backfill seals the titles with k1.
	k1 := withKeys("\t\tencryption_key k1 {env.CRAFTEDGE_KEY_1}\n")
	if code, out := runCommand(t, k1, "backfill", "shop", "product"); code != 0 {
		t.Fatalf("backfill exit %d:\n%s", code, out)
	}
	if !has("enc:v1:k1:") {
		t.Fatal("no k1 ciphertext after the backfill")
	}

	// k2 current: the command seals everything with it and compacts.
	k12 := withKeys("\t\tencryption_key k1 {env.CRAFTEDGE_KEY_1}\n\t\tencryption_key k2 {env.CRAFTEDGE_KEY_2} current\n")
	code, out := runCommand(t, k12, "reencrypt")
	if code != 0 || !strings.Contains(out, `current key "k2": 25 records scanned, 25 sealed again, 0 unreadable`) || !strings.Contains(out, "file compacted") {
		t.Fatalf("reencrypt exit %d:\n%s", code, out)
	}
	if has("enc:v1:k1:") || !has("enc:v1:k2:") {
		t.Fatal("k1 ciphertext left, or no k2 ciphertext, after reencrypt")
	}

	// Without the key of the stored values: it fails, names the key, and
	// leaves the values alone.
	code, out = runCommand(t, withKeys("\t\tencryption_key k3 {env.CRAFTEDGE_KEY_3}\n"), "reencrypt")
	if code == 0 || !strings.Contains(out, `key "k2"`) || !strings.Contains(out, "25 unreadable") || !strings.Contains(out, "not compacted") {
		t.Fatalf("reencrypt without the key: exit %d:\n%s", code, out)
	}
	if !has("enc:v1:k2:") {
		t.Fatal("the k2 values are gone")
	}
}
