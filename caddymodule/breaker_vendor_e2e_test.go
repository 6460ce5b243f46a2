package caddymodule

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/vendorsim"
)

// The breakers of Craft upstreams are tested with the cache handler
// (caddymodule/cachehandler, breaker_e2e_test.go); the vendors' here.

// serverError is a page whose template fails.
func serverError(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write([]byte("template error"))
}

// The vendor block's breaker uses the handler's parser: zero is an error
// naming the line.
func TestVendorBreakerCaddyfileError(t *testing.T) {
	cfg := vendorCaddyfile(vendorOptions{storage: filepath.Join(t.TempDir(), "v.db"), baseURL: "http://127.0.0.1:1",
		vendor: "breaker {\n\t\t\t\tfailures 0\n\t\t\t}"})
	e2e.AssertLoadError(t, cfg, "breaker failures must be a positive integer")
}

// Vendor breakers follow the same rules, through a live vendor route: one
// item failing (with any query string) opens neither the vendor client's
// breaker nor the route's; failures over three items open the vendor's.
func TestVendorBreakerFollowsTheSameRules(t *testing.T) {
	vendor := e2e.NewOrigin(t)
	product := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		id := strings.TrimPrefix(r.URL.Path, "/v2/products/")
		_, _ = fmt.Fprintf(w, `{"id":%q,"title":{"en":"Product %s"},"price":{"amount":100}}`, id, id)
	}
	vendor.Fallback = product
	vendor.Handle("/v2/products/1", serverError)
	sim := vendorsim.New(vendorsim.Options{Products: 1, Seed: 1})
	t.Cleanup(func() { _ = sim.Close() })
	o := vendorOptions{baseURL: "http://" + vendor.Addr(), site: liveVendorSite(""),
		vendor: "breaker {\n\t\t\t\tfailures 3\n\t\t\t\tcooldown 1h\n\t\t\t}"}
	e := startVendorGatewayWith(t, sim, o)
	states := func() string {
		h := e.health()
		route := "absent"
		for _, u := range h.Upstreams {
			if u.Name == "shop" {
				route = u.Breaker
			}
		}
		return "vendor " + h.Vendors[0].Breaker + ", route " + route
	}

	for i := range 20 {
		r := e.Get(fmt.Sprintf("/shop-api/products/1?variant=%d", i))
		if r.Status < 500 {
			t.Fatalf("a failing item answered %d", r.Status)
		}
	}
	if n := vendor.Count("/v2/products/1"); n < 20 {
		t.Fatalf("the vendor saw %d requests for the failing item, want ≥ 20", n)
	}
	if st := states(); st != "vendor closed, route closed" {
		t.Fatalf("after one item failed 20 times: %s", st)
	}
	for _, id := range []string{"2", "3", "4"} {
		r := e.Get("/shop-api/products/" + id)
		e2e.WantStatus(t, r, http.StatusOK)
		e2e.WantCacheStatusPrefix(t, r, "craftedge; fwd=miss; stored")
	}

	// Every item fails: an outage, the vendor's breaker opens.
	vendor.Fallback = serverError
	for _, id := range []string{"5", "6", "7"} {
		if r := e.Get("/shop-api/products/" + id); r.Status < 500 {
			t.Fatalf("product %s answered %d during the outage", id, r.Status)
		}
	}
	if st := states(); !strings.HasPrefix(st, "vendor open") {
		t.Fatalf("after failures over three items: %s", st)
	}
}
