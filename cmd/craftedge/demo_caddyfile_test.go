package main

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/craftedge/craftedge/webhook"
)

// cmd/craftedge/demo.Caddyfile is a real Caddyfile: `craftedge adapt`
// works on it as shipped (the defaults are the demo's), and `validate`
// too once the write token is set; it mounts the status page and
// craftedge_purge.
func TestDemoCaddyfileAdaptsAndValidatesAsShipped(t *testing.T) {
	// Unset, not empty: Caddyfile defaults apply to unset variables only.
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "CRAFTEDGE_DEMO_") {
			t.Setenv(k, v) // restored at cleanup
			_ = os.Unsetenv(k)
		}
	}
	path := "demo.Caddyfile"
	code, out := runCraftedge(t, nil, "adapt", "--config", path)
	if code != 0 {
		t.Fatalf("craftedge adapt --config cmd/craftedge/demo.Caddyfile: exit %d\n%s", code, out)
	}
	for _, want := range []string{`"listen":"localhost:2019"`, `"listen":["127.0.0.1:8080"]`, `"dial":"127.0.0.1:8081"`,
		`"base_urls":["http://127.0.0.1:8082"]`, `"handler":"craftedge_status"`, `"handler":"craftedge_purge"`,
		`"handler":"authentication"`, `"storage":"/tmp/craftedge-demo/craftedge.db"`} {
		if !strings.Contains(out, want) {
			t.Errorf("adapted demo Caddyfile lacks %s", want)
		}
	}
	env := []string{"CRAFTEDGE_DEMO_RECORDS_TOKEN=" + demoRecordsToken, "TMPDIR=" + t.TempDir()}
	code, out = runCraftedge(t, env, "validate", "--config", path)
	if code != 0 || !strings.Contains(out, "Valid configuration") {
		t.Fatalf("craftedge validate --config cmd/craftedge/demo.Caddyfile: exit %d\n%s", code, out)
	}
}

// The running demo serves the status page behind its login, and remote
// purges signed with the demo's purge secret.
func TestDemoServesStatusPageAndRemotePurge(t *testing.T) {
	var out strings.Builder
	opts := testDemoOptions(t, "", io.Discard)
	d := startTestDemo(t, opts)
	site := "http://" + opts.Listen
	d.printInstructions(&out)
	for _, want := range []string{site + "/status   (login editor / craftedge-demo)", site + "/.craftedge/purge"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("instructions lack %q:\n%s", want, out.String())
		}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(user, pass string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, site+"/status", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("", ""); code != http.StatusUnauthorized {
		t.Fatalf("status page without login: %d, want 401", code)
	}
	if code, _ := get(demoStatusUser, "wrong"); code != http.StatusUnauthorized {
		t.Fatalf("status page with a wrong password: %d, want 401", code)
	}
	code, body := get(demoStatusUser, demoStatusPassword)
	if code != http.StatusOK || !strings.Contains(body, "craftedge demo status") {
		t.Fatalf("status page with the demo login: %d %.200q", code, body)
	}

	post := func(cfg *webhook.Config, body string) int {
		t.Helper()
		req := webhook.Request{Method: http.MethodPost, URL: site + "/.craftedge/purge", Header: http.Header{}, Body: []byte(body)}
		if cfg != nil {
			if err := cfg.Sign(&req, "msg_demo_1", time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		hr, _ := http.NewRequest(req.Method, req.URL, strings.NewReader(body))
		hr.Header = req.Header
		hr.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(nil, `{"tags":["el:1"]}`); code != http.StatusUnauthorized {
		t.Fatalf("unsigned remote purge: %d, want 401", code)
	}
	cfg := webhook.Config{Scheme: webhook.SchemeStandard, Secrets: []string{demoPurgeSecret}}
	if code := post(&cfg, `{"tags":["el:1"]}`); code != http.StatusOK {
		t.Fatalf("signed remote purge: %d, want 200", code)
	}
}
