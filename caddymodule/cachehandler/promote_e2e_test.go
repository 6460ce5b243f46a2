package cachehandler

import (
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// A snapshot served once is promoted into the memory tier: the next
// fallback serves it from memory, still labelled a snapshot, and it is
// never fresh: once the origin answers again, the page is fetched.
func TestSnapshotServedOnceIsPromotedNeverFresh(t *testing.T) {
	var down atomic.Bool
	o := e2e.NewOrigin(t)
	page := e2e.PageHandler("promoted", "entry:1")
	o.Handle("/p", func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		page(w, r)
	})
	cold := e2e.Options{GlobalExtra: "warm_start off"}
	g := e2e.StartGateway(t, o, cold)
	good := g.Get("/p")
	e2e.WantCacheStatus(t, good, "craftedge; fwd=miss; stored")
	g.FlushSnapshots()
	g.Restart(cold)
	down.Store(true)

	r := g.Get("/p")
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=500; detail=snapshot")
	if r.Body != good.Body {
		t.Fatal("snapshot differs from the last good page")
	}
	if n := health(g).Memory.(map[string]any)["entries"]; n != float64(1) {
		t.Fatalf("memory entries after a snapshot serve: %v, want 1 (promoted)", n)
	}
	// From memory now (the request found a copy), still a snapshot, not
	// a fresh hit: the origin is asked first.
	r = g.Get("/p")
	e2e.WantCacheStatus(t, r, "craftedge; fwd=stale; fwd-status=500; detail=snapshot")
	if r.Body != good.Body || o.Count("/p") != 3 {
		t.Fatalf("promoted copy: body equal %v, origin called %d times (want 3)", r.Body == good.Body, o.Count("/p"))
	}
	z := g.Get("/p", "Accept-Encoding", "zstd")
	if z.Header.Get("Content-Encoding") != "zstd" || e2e.Unzstd(t, z.Body) != good.Body {
		t.Fatalf("promoted copy not served zstd to a zstd client: %q", z.Header.Get("Content-Encoding"))
	}

	down.Store(false)
	e2e.WantCacheStatusPrefix(t, g.Get("/p"), "craftedge; fwd=stale")
	e2e.WantCacheStatus(t, g.Get("/p"), "craftedge; hit")
}
