package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// A "purged" log line lists at most logSample tags and counts them all in
// tags_total (a sync page purges one tag per record).
func TestPurgedLogLineIsBounded(t *testing.T) {
	o := e2e.NewOrigin(t)
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	storage := filepath.Join(t.TempDir(), "craftedge.db")
	g := e2e.StartConfig(t, o, withLogFile(e2e.CaddyfileFor(o, e2e.Options{Storage: storage}), logPath), storage)

	tags := make([]string, 51)
	for i := range tags {
		tags[i] = fmt.Sprintf(`"shop:product:%d"`, i)
	}
	r := g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":[`+strings.Join(tags, ",")+`],"urls":["`+e2e.SiteAddr+`/a"]}`)
	e2e.WantStatus(t, r, http.StatusOK)

	var line map[string]any
	e2e.WaitFor(t, "the purged log line", func() bool {
		for _, l := range e2e.LogLines(t, logPath) {
			if l["msg"] == "purged" && l["source"] == "admin" {
				line = l
				return true
			}
		}
		return false
	})
	got := toStrings(line["tags"])
	if len(got) != logSample || got[0] != "shop:product:0" || got[logSample-1] != fmt.Sprintf("shop:product:%d", logSample-1) {
		t.Fatalf("tags sample %v, want the first %d", got, logSample)
	}
	if line["tags_total"] != float64(51) || line["urls_total"] != float64(1) || len(toStrings(line["urls"])) != 1 ||
		line["hosts_total"] != float64(0) || line["logger"] != "craftedge" {
		t.Fatalf("purged line %v: want tags_total 51, urls_total 1, hosts_total 0, logger craftedge", line)
	}
}

// A vendor's config error names the vendor once (the vendors package's
// errors already do; the app adds only its own prefix).
func TestVendorConfigErrorNamesVendorOnce(t *testing.T) {
	o := vendorOptions{storage: filepath.Join(t.TempDir(), "x.db"), baseURL: "http://127.0.0.1:1"}
	cf := strings.Replace(vendorCaddyfile(o), "version path v2", "version path v2\n\t\t\theader \"Bad Header\" x", 1)
	// The Caddyfile adapter validates the block (naming its line).
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), nil)
	if err == nil {
		t.Fatal("an invalid header name was accepted")
	}
	if !strings.Contains(err.Error(), `invalid header name "Bad Header"`) || !strings.Contains(err.Error(), "Caddyfile:") {
		t.Fatalf("error %v: want the Caddyfile line and the problem", err)
	}
	if n := strings.Count(err.Error(), `vendor "shop"`); n != 1 {
		t.Fatalf("error names the vendor %d times, want once: %v", n, err)
	}

	// Provisioning (a JSON config) validates again.
	raw := []byte(`{"apps":{"craftedge":{"storage":` + e2e.JSONQuote(o.storage) + `,"vendors":{"shop":{"base_urls":["http://127.0.0.1:1"],"rate":10,"headers":{"Bad Header":"x"}}}}}}`)
	var cfg caddy.Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	err = caddy.Validate(&cfg)
	if err == nil {
		t.Fatal("an invalid header name was provisioned")
	}
	if n := strings.Count(err.Error(), `vendor "shop"`); n != 1 {
		t.Fatalf("provision error names the vendor %d times, want once: %v", n, err)
	}
}
