package caddymodule

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// scrape reads Caddy's admin /metrics and returns the value of one series
// (exact name with labels as Prometheus prints them), or -1 if absent.
func (g *gateway) scrape(series string) float64 {
	g.t.Helper()
	r := g.admin(http.MethodGet, "/metrics", "")
	wantStatus(g.t, r, 200)
	sc := bufio.NewScanner(strings.NewReader(r.body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, series+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, series)), 64)
			if err != nil {
				g.t.Fatalf("bad metric line %q", line)
			}
			return v
		}
	}
	return -1
}

func TestMetricsMoveAndSurviveReload(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/m", pageHandler("metrics", "entry:5"))
	o.handle("/fail", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	g := startGateway(t, o, gatewayOptions{})

	hits := `craftedge_cache_requests_total{outcome="hit",upstream="craft"}`
	misses := `craftedge_cache_requests_total{outcome="miss",upstream="craft"}`
	bypass := `craftedge_cache_requests_total{outcome="bypass",upstream="craft"}`
	failures := `craftedge_upstream_requests_total{code_class="5xx",outcome="failure",upstream="craft"}`
	purges := `craftedge_cache_purges_total{source="admin"}`
	h0, m0, b0, f0, p0 := g.scrape(hits), g.scrape(misses), g.scrape(bypass), g.scrape(failures), g.scrape(purges)

	g.get("/m")
	g.get("/m")
	g.get("/m")
	g.get("/admin")
	g.get("/fail")
	g.admin(http.MethodPost, "/craftedge/purge", `{"tags":["entry:5"]}`)

	if d := g.scrape(hits) - max(h0, 0); d != 2 {
		t.Fatalf("hits moved by %v, want 2", d)
	}
	if d := g.scrape(misses) - max(m0, 0); d != 1 {
		t.Fatalf("misses moved by %v, want 1", d)
	}
	if d := g.scrape(bypass) - max(b0, 0); d != 1 {
		t.Fatalf("bypasses moved by %v, want 1", d)
	}
	if d := g.scrape(failures) - max(f0, 0); d != 1 {
		t.Fatalf("upstream failures moved by %v, want 1", d)
	}
	if d := g.scrape(purges) - max(p0, 0); d != 1 {
		t.Fatalf("admin purges moved by %v, want 1", d)
	}
	if g.scrape(`craftedge_breaker_state{upstream="craft"}`) != 0 {
		t.Fatal("breaker state gauge missing or not closed")
	}
	if g.scrape("craftedge_memory_max_bytes") != 16<<20 {
		t.Fatal("memory bound gauge missing")
	}
	if g.scrape(`craftedge_upstream_request_duration_seconds_count{upstream="craft"}`) < 2 {
		t.Fatal("latency histogram not observed")
	}
	w0 := max(g.scrape("craftedge_snapshot_write_duration_seconds_count"), 0)
	g.get("/m2") // a miss: its snapshot is written behind
	g.flushSnapshots()
	if g.scrape("craftedge_snapshot_write_duration_seconds_count") < w0+1 {
		t.Fatal("snapshot write latency histogram not observed")
	}

	before := g.scrape(hits)
	g.reload(gatewayOptions{handlerExtra: "ttl 2m"})
	if after := g.scrape(hits); after != before {
		t.Fatalf("hits counter changed across reload: %v -> %v", before, after)
	}
	g.get("/m")
	g.get("/m")
	if g.scrape(hits) != before+1 {
		t.Fatalf("hits did not keep counting after reload")
	}
}
