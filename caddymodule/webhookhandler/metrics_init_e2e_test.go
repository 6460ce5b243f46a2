package webhookhandler

import (
	"bufio"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// Labelled series exist (at 0) from the load, before their first event,
// so increase() alerts see the first burst: webhook rejections per source
// and reason, breaker transitions of upstreams and vendors, dead letters
// per job kind, vendor rate-limit hits, CDN requests and purge sources.
// craftedge_build_info names the version and the Go version.
func TestLabelledSeriesExistFromLoad(t *testing.T) {
	e := startWebhookGateway(t, webhookOptions{global: "cdn {\n\t\t\tgeneric http://127.0.0.1:9/purge-hook\n\t\t}"})
	for _, series := range []string{
		`craftedge_webhooks_rejected_total{reason="bad_signature",vendor="shop"}`,
		`craftedge_webhooks_rejected_total{reason="stale",vendor="craftedge_purge"}`,
		`craftedge_webhooks_rejected_total{reason="unknown_vendor",vendor="unknown"}`,
		`craftedge_webhooks_received_total{vendor="shop"}`,
		`craftedge_webhooks_received_total{vendor="craftedge_purge"}`,
		`craftedge_breaker_transitions_total{state="open",upstream="records"}`,
		`craftedge_vendor_breaker_transitions_total{state="open",vendor="shop"}`,
		`craftedge_vendor_rate_limit_hits_total{vendor="shop"}`,
		`craftedge_jobs_dead_letters_total{kind="vendor.refetch"}`,
		`craftedge_jobs_dead_letters_total{kind="cdn.purge"}`,
		`craftedge_jobs_attempts_total{kind="outbox",outcome="dead"}`,
		`craftedge_cdn_purge_requests_total{outcome="failed",provider="generic"}`,
		`craftedge_cdn_purge_enqueue_failures_total{source="webhook"}`,
		`craftedge_cache_purges_total{source="remote"}`,
	} {
		if v := e2e.Scrape(e.Gateway, series); v < 0 {
			t.Errorf("%s absent after the load; want it at 0 until its first event", series)
		}
	}

	r := e.Admin(http.MethodGet, "/metrics", "")
	e2e.WantStatus(t, r, http.StatusOK)
	re := regexp.MustCompile(`^craftedge_build_info\{go_version="([^"]+)",version="([^"]+)"\} 1$`)
	sc := bufio.NewScanner(strings.NewReader(r.Body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	found := false
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			found = true
			if m[1] != runtime.Version() || m[2] == "" {
				t.Errorf("build info %q: want go_version %s and a version", sc.Text(), runtime.Version())
			}
		}
	}
	if !found {
		t.Fatal("craftedge_build_info{go_version,version} 1 not in /metrics")
	}
}
