package caddymodule

import (
	"net/http"
	"testing"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// scrape is e2e.Scrape: the value of one series of the admin /metrics,
// or -1 if absent.
func scrape(g *e2e.Gateway, series string) float64 {
	g.T.Helper()
	return e2e.Scrape(g, series)
}

func TestMetricsMoveAndSurviveReload(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/m", e2e.PageHandler("metrics", "entry:5"))
	o.Handle("/fail", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	g := e2e.StartGateway(t, o, e2e.Options{})

	hits := `craftedge_cache_requests_total{outcome="hit",upstream="craft"}`
	misses := `craftedge_cache_requests_total{outcome="miss",upstream="craft"}`
	bypass := `craftedge_cache_requests_total{outcome="bypass",upstream="craft"}`
	failures := `craftedge_upstream_requests_total{code_class="5xx",outcome="failure",upstream="craft"}`
	purges := `craftedge_cache_purges_total{source="admin"}`
	h0, m0, b0, f0, p0 := scrape(g, hits), scrape(g, misses), scrape(g, bypass), scrape(g, failures), scrape(g, purges)

	g.Get("/m")
	g.Get("/m")
	g.Get("/m")
	g.Get("/admin")
	g.Get("/fail")
	g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["entry:5"]}`)

	if d := scrape(g, hits) - max(h0, 0); d != 2 {
		t.Fatalf("hits moved by %v, want 2", d)
	}
	if d := scrape(g, misses) - max(m0, 0); d != 1 {
		t.Fatalf("misses moved by %v, want 1", d)
	}
	if d := scrape(g, bypass) - max(b0, 0); d != 1 {
		t.Fatalf("bypasses moved by %v, want 1", d)
	}
	if d := scrape(g, failures) - max(f0, 0); d != 1 {
		t.Fatalf("upstream failures moved by %v, want 1", d)
	}
	if d := scrape(g, purges) - max(p0, 0); d != 1 {
		t.Fatalf("admin purges moved by %v, want 1", d)
	}
	if scrape(g, `craftedge_breaker_state{upstream="craft"}`) != 0 {
		t.Fatal("breaker state gauge missing or not closed")
	}
	if scrape(g, "craftedge_memory_max_bytes") != 16<<20 {
		t.Fatal("memory bound gauge missing")
	}
	if scrape(g, `craftedge_upstream_request_duration_seconds_count{upstream="craft"}`) < 2 {
		t.Fatal("latency histogram not observed")
	}
	w0 := max(scrape(g, "craftedge_snapshot_write_duration_seconds_count"), 0)
	g.Get("/m2") // a miss: its snapshot is written behind
	g.FlushSnapshots()
	if scrape(g, "craftedge_snapshot_write_duration_seconds_count") < w0+1 {
		t.Fatal("snapshot write latency histogram not observed")
	}

	before := scrape(g, hits)
	g.Reload(e2e.Options{HandlerExtra: "ttl 2m"})
	if after := scrape(g, hits); after != before {
		t.Fatalf("hits counter changed across reload: %v -> %v", before, after)
	}
	g.Get("/m")
	g.Get("/m")
	if scrape(g, hits) != before+1 {
		t.Fatalf("hits did not keep counting after reload")
	}
}
