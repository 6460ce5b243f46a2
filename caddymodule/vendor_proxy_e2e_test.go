package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/craftedge/craftedge/vendorsim"
)

// liveVendorSite routes /shop-api/* to the shop vendor through the
// craftedge handler (live read-through) and the rest to the read model.
func liveVendorSite(handlerExtra string) string {
	return `handle_path /shop-api/* {
		craftedge {
			vendor shop
			ttl 1m
			stale 1h
			timeout 2s
			` + handlerExtra + `
		}
	}
	handle {
		craftedge_records {
			allow_anonymous_writes
		}
	}`
}

func TestVendorLiveReadThrough(t *testing.T) {
	o := vendorOptions{site: liveVendorSite("")}
	e := startVendorGateway(t, 5, o)
	getRoute := vendorsim.RouteProductGet
	sawGets := func() int { return e.sim.Requests().ByRoute[getRoute].Total }

	// A miss goes to the vendor with the configured token, never the
	// visitor's credentials (the simulator answers 401 to a wrong token).
	r := e.get("/shop-api/products/3", "Authorization", "Bearer visitor-token", "Cookie", "CraftSessionId=abc")
	wantStatus(t, r, 200)
	wantCacheStatusPrefix(t, r, "craftedge; fwd=miss; stored")
	var body map[string]any
	if err := json.Unmarshal([]byte(r.body), &body); err != nil || fmt.Sprint(body["id"]) != "3" {
		t.Fatalf("live read body = %.200q (err %v)", r.body, err)
	}
	if r.header.Get("Cache-Tag") != "" {
		t.Fatalf("tag header leaked to the client: %q", r.header.Get("Cache-Tag"))
	}
	if n := e.sim.Requests().ByRoute[getRoute].ByStatus[200]; n != 1 {
		t.Fatalf("simulator saw %d good GETs, want 1: %+v", n, e.sim.Requests())
	}

	// A hit, for another visitor too: no vendor call.
	wantCacheStatus(t, e.get("/shop-api/products/3"), statusHit)
	if n := sawGets(); n != 1 {
		t.Fatalf("a hit reached the vendor: %d GETs", n)
	}

	// Writes are refused at the edge; unknown ids are relayed.
	r = e.do(http.MethodPost, "/shop-api/products/3", nil, `{"title":"x"}`)
	wantStatus(t, r, http.StatusMethodNotAllowed)
	if r.header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("Allow = %q", r.header.Get("Allow"))
	}
	wantStatus(t, e.get("/shop-api/products/999"), 404)

	// Vendor down: the stale copy is served.
	if err := e.sim.Chaos().Set(vendorsim.ChaosConfig{Outage: vendorsim.OutageClose}); err != nil {
		t.Fatal(err)
	}
	advance(2 * time.Minute)
	r = e.get("/shop-api/products/3")
	wantStatus(t, r, 200)
	wantCacheStatusPrefix(t, r, "craftedge; fwd=stale")

	// Purging the vendor's tag drops its live reads from memory; with the
	// vendor still down the snapshot answers.
	wantStatus(t, e.admin(http.MethodPost, "/craftedge/purge", `{"tags":["vendor:shop"]}`), 200)
	e.flushSnapshots()
	r = e.get("/shop-api/products/3")
	wantStatus(t, r, 200)
	wantCacheStatusPrefix(t, r, "craftedge; fwd=miss; fwd-status=502; detail=snapshot")
}

func TestVendorLiveKillSwitchAndWarmRestart(t *testing.T) {
	o := vendorOptions{site: liveVendorSite("")}
	e := startVendorGateway(t, 5, o)
	wantStatus(t, e.get("/shop-api/products/2"), 200)
	e.flushSnapshots()
	e.sim.Reset()

	// The kill switch for this vendor: no live call, the copy is served,
	// an uncached URL gets the no-copy answer.
	wantStatus(t, e.admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":true,"upstream":"shop"}`), 200)
	advance(2 * time.Minute)
	r := e.get("/shop-api/products/2")
	wantStatus(t, r, 200)
	wantCacheStatus(t, r, "craftedge; hit; detail=stale")
	r = e.get("/shop-api/products/4")
	if r.status < 500 {
		t.Fatalf("an uncached URL under the kill switch: status %d, want 5xx", r.status)
	}
	if st := e.sim.Requests(); st.Total != 0 {
		t.Fatalf("the kill switch let %d requests reach the vendor: %+v", st.Total, st)
	}
	wantStatus(t, e.admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":false,"upstream":"shop"}`), 200)

	// Restart (memory tier gone) with the vendor down: the snapshot
	// answers from the bbolt file.
	if err := e.sim.Chaos().Set(vendorsim.ChaosConfig{Outage: vendorsim.OutageClose}); err != nil {
		t.Fatal(err)
	}
	stopGateway(t)
	o.storage, o.baseURL = e.storage, e.simURL
	caddytest.NewTester(t).InitServer(vendorCaddyfile(o), "caddyfile")
	r = e.get("/shop-api/products/2")
	wantStatus(t, r, 200)
	wantCacheStatusPrefix(t, r, "craftedge; fwd=miss; fwd-status=502; detail=snapshot")
	if !strings.Contains(r.body, `"id"`) {
		t.Fatalf("snapshot body = %.200q", r.body)
	}

	// `enabled off` by reload: records only, live reads fall back.
	e.sim.Chaos().Clear()
	e.sim.Reset()
	o.vendor = "enabled off"
	caddytest.NewTester(t).InitServer(vendorCaddyfile(o), "caddyfile")
	r = e.get("/shop-api/products/2")
	wantStatus(t, r, 200)
	wantCacheStatusPrefix(t, r, "craftedge; fwd=miss; fwd-status=503; detail=snapshot")
	if st := e.sim.Requests(); st.Total != 0 {
		t.Fatalf("a disabled vendor was called: %+v", st)
	}
}

func TestVendorLiveHedgingPicksTheFastRegion(t *testing.T) {
	t.Setenv("SHOP_TOKEN", vendorsim.DefaultCommerceToken)
	sim := vendorsim.New(vendorsim.Options{Products: 5, Seed: 1})
	t.Cleanup(func() { _ = sim.Close() })
	slow, fast := sim.NewEndpoint(), sim.NewEndpoint()
	slowSrv, err := slow.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fastSrv, err := fast.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The first region never answers (it hangs until the request is
	// cancelled); the hedge goes to the second after 20ms.
	if err := slow.Chaos().Set(vendorsim.ChaosConfig{Outage: vendorsim.OutageHang}); err != nil {
		t.Fatal(err)
	}
	o := vendorOptions{baseURL: slowSrv.URL(), vendor: "base_url " + fastSrv.URL() + "\n\t\t\thedge 20ms",
		site: liveVendorSite("")}
	e := startVendorGatewayWith(t, sim, o)
	r := e.get("/shop-api/products/1")
	wantStatus(t, r, 200)
	if n := fast.Requests().ByRoute[vendorsim.RouteProductGet].ByStatus[200]; n != 1 {
		t.Fatalf("fast region answered %d GETs, want 1", n)
	}
	waitFor(t, "the slow region to see the first request", func() bool { return slow.Requests().Total == 1 })
}

func TestVendorLiveRateLimitHonouredUnderBurst(t *testing.T) {
	const rate, burst, requests = 5, 5, 30
	o := vendorOptions{vendor: fmt.Sprintf("rate %d/s burst %d\n\t\t\ttimeout 1s", rate, burst),
		site: liveVendorSite("")}
	e := startVendorGateway(t, requests, o)
	start := time.Now()
	var wg sync.WaitGroup
	statuses := make([]int, requests)
	for i := range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = e.get(fmt.Sprintf("/shop-api/products/%d", i+1)).status
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sent := e.sim.Requests().Total
	// The token bucket is the bound: burst now plus rate per second since.
	limit := burst + int(rate*elapsed.Seconds()) + 1
	if sent > limit {
		t.Fatalf("%d requests reached the vendor in %v; the bucket allows at most %d", sent, elapsed, limit)
	}
	ok := 0
	for _, s := range statuses {
		if s == 200 {
			ok++
		}
	}
	if ok < burst || ok != sent {
		t.Fatalf("%d answered 200, %d reached the vendor; want ≥ %d, and every sent request answered", ok, sent, burst)
	}
	if sent == requests {
		t.Fatalf("all %d requests reached the vendor: the rate limit did not hold", requests)
	}
}

func TestVendorLiveUnknownVendorFailsLoad(t *testing.T) {
	cfg := vendorCaddyfile(vendorOptions{storage: t.TempDir() + "/x.db", baseURL: "http://127.0.0.1:1",
		site: "craftedge {\n\t\tvendor nosuch\n\t}"})
	caddytest.AssertLoadError(t, cfg, "caddyfile", `craftedge: vendor \"nosuch\" is not configured in the global craftedge block`)
}

func TestVendorLiveCanarySwitchedByReload(t *testing.T) {
	t.Setenv("SHOP_TOKEN", vendorsim.DefaultCommerceToken)
	sim := vendorsim.New(vendorsim.Options{Products: 5, Seed: 1})
	t.Cleanup(func() { _ = sim.Close() })
	stable, canary := sim.NewEndpoint(), sim.NewEndpoint()
	stableSrv, err := stable.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	canarySrv, err := canary.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := vendorOptions{baseURL: stableSrv.URL(), vendor: "canary 100 " + canarySrv.URL(), site: liveVendorSite("")}
	e := startVendorGatewayWith(t, sim, o)
	const canarySeries = `craftedge_vendor_canary_requests_total{vendor="shop"}`
	canaryCount := func() float64 { return max(e.scrape(canarySeries), 0) }
	before := canaryCount()
	if h := e.health(); len(h.Vendors) != 1 || h.Vendors[0].CanaryPercent != 100 {
		t.Fatalf("health vendors = %+v, want canary_percent 100", h.Vendors)
	}
	for i := 1; i <= 3; i++ {
		wantStatus(t, e.get(fmt.Sprintf("/shop-api/products/%d", i)), 200)
	}
	if s, c := stable.Requests().Total, canary.Requests().Total; s != 0 || c != 3 {
		t.Fatalf("canary 100: stable saw %d, canary %d; want 0 and 3", s, c)
	}
	if got := canaryCount() - before; got != 3 {
		t.Fatalf("%s moved by %v, want 3", canarySeries, got)
	}

	// Reload without the canary: live reads go back to the stable URL.
	o.vendor, o.storage = "", e.storage
	caddytest.NewTester(t).InitServer(vendorCaddyfile(o), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	if h := e.health(); h.Vendors[0].CanaryPercent != 0 {
		t.Fatalf("canary_percent after reload = %d, want 0", h.Vendors[0].CanaryPercent)
	}
	wantStatus(t, e.get("/shop-api/products/4"), 200)
	if s, c := stable.Requests().Total, canary.Requests().Total; s != 1 || c != 3 {
		t.Fatalf("after reload: stable saw %d, canary %d; want 1 and 3", s, c)
	}
	if got := canaryCount() - before; got != 3 {
		t.Fatalf("%s moved by %v after the canary was removed, want still 3", canarySeries, got)
	}
}

// The live route forwards none of the visitor's headers but Accept (the
// key holds none of them), takes no tag or purge instruction from the
// vendor, and reads only the vendor paths it is scoped to.
func TestVendorLiveForwardsOnlySafeHeadersAndPaths(t *testing.T) {
	t.Setenv("SHOP_TOKEN", vendorsim.DefaultCommerceToken)
	vendor := newTestOrigin(t)
	var mu sync.Mutex
	var seen http.Header
	vendor.handle("/v2/products/1", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Clone()
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Purge-Tag", "page")
		w.Header().Set("Cache-Tag", "page")
		_, _ = w.Write([]byte(`{"id":"1","title":{"en":"One"}}`))
	})
	sim := vendorsim.New(vendorsim.Options{Products: 1, Seed: 1})
	t.Cleanup(func() { _ = sim.Close() })
	o := vendorOptions{baseURL: "http://" + vendor.addr(), site: liveVendorSite("")}
	e := startVendorGatewayWith(t, sim, o)
	const purgesSeries = `craftedge_cache_purges_total{source="upstream_header"}`
	purgesBefore := max(e.scrape(purgesSeries), 0)

	r := e.get("/shop-api/products/1", "Accept", "application/json", "X-Customer-Token", "c-42",
		"X-Forwarded-For", "203.0.113.9", "Accept-Language", "de", "Authorization", "Bearer visitor")
	wantStatus(t, r, 200)
	mu.Lock()
	got := seen
	mu.Unlock()
	// Accept is not keyed, so it is not sent (a visitor's Accept must not
	// pick the representation stored for everyone).
	if got.Get("Authorization") != "Bearer "+vendorsim.DefaultCommerceToken || got.Get("Accept") == "application/json" {
		t.Fatalf("vendor saw Authorization %q, Accept %q", got.Get("Authorization"), got.Get("Accept"))
	}
	for _, name := range []string{"X-Customer-Token", "Accept-Language", "Cookie"} {
		if v := got.Get(name); v != "" {
			t.Errorf("visitor header %s reached the vendor: %q", name, v)
		}
	}
	if strings.Contains(got.Get("X-Forwarded-For"), "203.0.113.9") {
		t.Errorf("the visitor's X-Forwarded-For reached the vendor: %q", got.Get("X-Forwarded-For"))
	}
	if n := max(e.scrape(purgesSeries), 0) - purgesBefore; n != 0 {
		t.Fatalf("a vendor's Cache-Purge-Tag purged %v times", n)
	}
	if r.header.Get("Cache-Tag") != "" || r.header.Get("Cache-Purge-Tag") != "" {
		t.Fatalf("tag headers reached the client: %v", r.header)
	}
	// The entry is tagged vendor:shop only: purging the vendor's "page"
	// tag leaves it, purging vendor:shop drops it.
	wantStatus(t, e.admin(http.MethodPost, "/craftedge/purge", `{"tags":["page"]}`), 200)
	wantCacheStatus(t, e.get("/shop-api/products/1"), statusHit)
	wantStatus(t, e.admin(http.MethodPost, "/craftedge/purge", `{"tags":["vendor:shop"]}`), 200)
	wantCacheStatusPrefix(t, e.get("/shop-api/products/1"), "craftedge; fwd=")

	// Paths outside the vendor's resources are not read.
	before := vendor.total.Load()
	r = e.get("/shop-api/customers/7")
	wantStatus(t, r, 404)
	if vendor.total.Load() != before {
		t.Fatal("an unscoped path reached the vendor")
	}
}

func TestVendorLiveRouteConfigErrors(t *testing.T) {
	base := vendorOptions{storage: t.TempDir() + "/x.db", baseURL: "http://127.0.0.1:1"}
	for _, tc := range []struct{ site, want string }{
		{"craftedge {\n\t\tvendor shop\n\t\tbypass_cookie cart\n\t}", "do not apply to a live vendor route"},
		{"craftedge {\n\t\tvendor shop products\n\t}", `path \"products\" must start with /`},
		{"craftedge {\n\t\tvendor\n\t}", "wrong argument count"},
	} {
		o := base
		o.site = tc.site
		caddytest.AssertLoadError(t, vendorCaddyfile(o), "caddyfile", tc.want)
	}
}
