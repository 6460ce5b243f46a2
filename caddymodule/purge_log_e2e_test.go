package caddymodule

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// A "purged" log line lists at most logSample tags and counts them all in
// tags_total (a sync page purges one tag per record).
func TestPurgedLogLineIsBounded(t *testing.T) {
	o := newTestOrigin(t)
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	opts := gatewayOptions{storage: filepath.Join(t.TempDir(), "craftedge.db")}
	caddytest.NewTester(t).InitServer(withLogFile(caddyfileFor(o, opts), logPath), "caddyfile")
	t.Cleanup(func() { stopGateway(t) })
	g := &gateway{t: t, origin: o, storage: opts.storage}

	tags := make([]string, 51)
	for i := range tags {
		tags[i] = fmt.Sprintf(`"shop:product:%d"`, i)
	}
	r := g.admin(http.MethodPost, "/craftedge/purge", `{"tags":[`+strings.Join(tags, ",")+`],"urls":["`+siteAddr+`/a"]}`)
	wantStatus(t, r, http.StatusOK)

	var line map[string]any
	waitFor(t, "the purged log line", func() bool {
		for _, l := range logLines(t, logPath) {
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
