package cachehandler

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// duringFetch runs, from inside the origin's handler, the actions queued
// for the next call of a page: they land while the gateway's fetch of it is
// in flight (after it read the purge epoch, before it stores the answer),
// with no sleep. Their statuses are checked on the test's goroutine.
type duringFetch struct {
	next     atomic.Pointer[func() []int]
	statuses chan []int
}

func newDuringFetch() *duringFetch { return &duringFetch{statuses: make(chan []int, 8)} }

// page is s.page("") running the queued actions first.
func (d *duringFetch) page(s *slowOrigin) http.HandlerFunc {
	page := s.page("")
	return func(w http.ResponseWriter, r *http.Request) {
		if f := d.next.Swap(nil); f != nil {
			d.statuses <- (*f)()
		}
		page(w, r)
	}
}

// fetchWith gets path while actions run during its fetch and checks that
// the fetch stored the origin's answer and that every action succeeded.
func (d *duringFetch) fetchWith(t *testing.T, g *e2e.Gateway, path string, actions func() []int) e2e.Response {
	t.Helper()
	d.next.Store(&actions)
	r := g.Get(path)
	select {
	case st := <-d.statuses:
		for i, code := range st {
			if code/100 != 2 && code/100 != 3 {
				t.Fatalf("action %d during the fetch of %s: status %d", i, path, code)
			}
		}
	default:
		t.Fatalf("the origin was not called for %s: nothing ran during a fetch (%q)", path, r.Header.Get("Cache-Status"))
	}
	return r
}

// A purge that cannot select a page does not spoil its store: the page
// fetched while other pages were purged (an RFC 9111 invalidation after a
// visitor's POST, soft and hard purges of other tags, URLs, hosts and
// prefixes) is stored fresh and the next request is a hit. Before, any
// purge anywhere made every fetch in flight be stored stale, so a visitor
// POSTing a form in a loop sent every page refetched meanwhile back to
// Craft on its next request.
func TestPurgeOfOtherPagesDuringFetchKeepsItFresh(t *testing.T) {
	o := e2e.NewOrigin(t)
	s := newSlowOrigin(t)
	d := newDuringFetch()
	o.Handle("/a", d.page(s))
	o.Handle("/contact", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.Header().Set("Location", "/contact?sent=1")
			w.WriteHeader(http.StatusSeeOther)
			return
		}
		_, _ = w.Write([]byte(e2e.HTMLPage("contact")))
	})
	g := e2e.StartGateway(t, o, e2e.Options{})

	r := d.fetchWith(t, g, "/a", func() []int {
		return []int{
			g.Do(http.MethodPost, "/contact", nil, "message=hi").Status,
			g.Do(http.MethodPost, "/contact?x=1", nil, "message=hi").Status,
			g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["b","a-but-not-a"]}`).Status,
			g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["c"],"mode":"hard"}`).Status,
			g.Admin(http.MethodPost, "/craftedge/purge", `{"urls":["`+e2e.SiteAddr+`/b","`+e2e.SiteAddr+`/a?page=2"]}`).Status,
			g.Admin(http.MethodPost, "/craftedge/purge", `{"prefixes":["`+e2e.SiteAddr+`/a/"],"mode":"hard"}`).Status,
			g.Admin(http.MethodPost, "/craftedge/purge", `{"hosts":["other.example"],"mode":"hard"}`).Status,
		}
	})
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; stored")
	r = g.Get("/a")
	e2e.WantCacheStatus(t, r, statusHit)
	if r.Body != "/a v0" {
		t.Fatalf("body %q", r.Body)
	}
	if n := o.Count("/a"); n != 1 {
		t.Fatalf("origin saw %d requests for /a, want 1", n)
	}
}

// A purge that selects the page while it is fetched still leaves it
// stale, whichever way it selects it (its tag, its URL, its exact query,
// its host, a prefix of it, all): the next request asks the origin again.
// Soft purges leave the copy (stale); hard ones leave none (see
// TestHardPurgeDuringFetchLeavesNoStaleCopy).
func TestPurgeOfThePageDuringFetchLeavesItStale(t *testing.T) {
	o := e2e.NewOrigin(t)
	s := newSlowOrigin(t)
	d := newDuringFetch()
	o.Handle("/a", d.page(s))
	g := e2e.StartGateway(t, o, e2e.Options{})
	purges := map[string]string{
		"tag":         `{"tags":["a"]}`,
		"url":         `{"urls":["` + e2e.SiteAddr + `/a"]}`,
		"exact query": `{"urls":["` + e2e.SiteAddr + `/a?q=1"]}`,
		"host":        `{"hosts":["` + e2e.SiteHost + `"]}`,
		"prefix":      `{"prefixes":["` + e2e.SiteAddr + `/"]}`,
		"hard tag":    `{"tags":["a"],"mode":"hard"}`,
		"all":         `{"all":true}`,
	}
	for name, body := range purges {
		path := "/a?q=1"
		e2e.Purge(g, `{"tags":["a"],"mode":"hard"}`) // the next request fetches
		d.fetchWith(t, g, path, func() []int {
			return []int{g.Admin(http.MethodPost, "/craftedge/purge", body).Status}
		})
		before := o.Count("/a")
		r := g.Get(path)
		if r.Header.Get("Cache-Status") == statusHit {
			t.Fatalf("%s purge during the fetch: the next request was a hit (%q)", name, r.Body)
		}
		if o.Count("/a") != before+1 {
			t.Fatalf("%s purge during the fetch: the next request did not ask the origin", name)
		}
		e2e.WantCacheStatus(t, g.Get(path), statusHit) // stored fresh by that request
	}
}

// A takedown (a hard purge: Cache-Purge-Tag-Hard, mode hard) that lands
// while the page is fetched leaves no copy of the pre-purge render to
// answer a slow Craft (stale_after) or a failing one from memory: the
// answer goes to the visitor who asked and is not kept in memory. A soft
// purge landing the same way leaves its stale copy, served after
// stale_after as before.
func TestHardPurgeDuringFetchLeavesNoStaleCopy(t *testing.T) {
	o := e2e.NewOrigin(t)
	s := newSlowOrigin(t)
	d := newDuringFetch()
	for _, p := range []string{"/down", "/soft", "/marker"} {
		o.Handle(p, d.page(s))
	}
	o.Handle("/admin/disable", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Purge-Tag-Hard", "down")
		_, _ = w.Write([]byte("disabled"))
	})
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "stale_after 20ms"})
	e2e.WantCacheStatus(t, g.Get("/marker"), "craftedge; fwd=miss; stored")
	e2e.Advance(2 * time.Minute) // /marker: stale by 1m, within stale 1h

	r := d.fetchWith(t, g, "/down", func() []int {
		return []int{g.Do(http.MethodPost, "/admin/disable", nil, "id=1").Status}
	})
	if r.Body != "/down v0" {
		t.Fatalf("the visitor whose fetch crossed the takedown got %q %q, want the origin's answer", r.Header.Get("Cache-Status"), r.Body)
	}
	d.fetchWith(t, g, "/soft", func() []int {
		return []int{g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["soft"]}`).Status}
	})
	for series, want := range map[string]float64{
		"craftedge_memory_not_stored_after_hard_purge_total": 1, "craftedge_memory_stored_stale_after_purge_total": 1,
	} {
		if v := e2e.Scrape(g, series); v != want {
			t.Errorf("%s = %v, want %v (/down not stored, /soft stored stale)", series, v, want)
		}
	}

	// Craft slow: /down waits for it; /soft (its call begun after) gets
	// its stale copy after stale_after, and so does /marker.
	wantWaitsForSlowCraft(t, g, s, "/down", 1, func() {
		if r := g.Get("/soft"); r.Body != "/soft v0" || r.Header.Get("Cache-Status") != statusStaleAfter {
			t.Fatalf("/soft (soft-purged during its fetch), Craft slow: %q %q", r.Header.Get("Cache-Status"), r.Body)
		}
	})
}

// wantWaitsForSlowCraft holds the origin's answers (version v) and checks
// that a request for path is not answered before the origin is, while
// meanwhile runs and /marker (a stale copy, its call begun after path's)
// is answered after stale_after; then path gets the origin's answer.
func wantWaitsForSlowCraft(t *testing.T, g *e2e.Gateway, s *slowOrigin, path string, v int64, meanwhile func()) {
	t.Helper()
	s.version.Store(v)
	s.held.Store(true)
	ch := goGet(g, path)
	s.waitArrived(t, path)
	meanwhile()
	e2e.WantCacheStatus(t, g.Get("/marker"), statusStaleAfter)
	wantWaiting(t, path, ch)
	s.releaseAll()
	if r := <-ch; r.Body != fmt.Sprintf("%s v%d", path, v) {
		t.Fatalf("%s after Craft answered: %q %q", path, r.Header.Get("Cache-Status"), r.Body)
	}
}

// A takedown landing during the fetch leaves no copy of the render
// fetched across it to answer a failing Craft, in memory or as a snapshot:
// with no copy from before the takedown the visitor gets Craft's error;
// with one, that snapshot answers (purges only mark snapshots stale), and
// as a purged snapshot it never answers a slow Craft afterwards.
func TestHardPurgeDuringFetchLeavesNoCopyForFailures(t *testing.T) {
	o := e2e.NewOrigin(t)
	var failing atomic.Bool
	d := newDuringFetch()
	s := newSlowOrigin(t)
	page := d.page(s)
	for _, p := range []string{"/new", "/old", "/marker"} {
		o.Handle(p, func(w http.ResponseWriter, r *http.Request) {
			if failing.Load() {
				http.Error(w, "down", http.StatusInternalServerError)
				return
			}
			page(w, r)
		})
	}
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "stale_after 20ms"})
	for _, p := range []string{"/old", "/marker"} {
		e2e.WantCacheStatus(t, g.Get(p), "craftedge; fwd=miss; stored")
	}
	e2e.Advance(2 * time.Minute) // /old, /marker: stale by 1m, within stale 1h
	g.FlushSnapshots()
	// /old's memory copy gone, so its next request is a plain miss (with
	// a stale copy it would be fetched in the background, and a request
	// that did not make the call gets its own after a takedown).
	e2e.Purge(g, `{"tags":["old"],"mode":"hard"}`)
	s.version.Store(1)
	for _, p := range []string{"/new", "/old"} {
		tag := p[1:]
		r := d.fetchWith(t, g, p, func() []int {
			return []int{g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["`+tag+`"],"mode":"hard"}`).Status}
		})
		if r.Body != p+" v1" {
			t.Fatalf("%s: the visitor got %q %q, want the origin's answer", p, r.Header.Get("Cache-Status"), r.Body)
		}
	}
	g.FlushSnapshots()

	failing.Store(true)
	if r := g.Get("/new"); r.Body == "/new v1" {
		t.Fatalf("Craft failing after a takedown during the fetch: the render fetched across it answered: %q", r.Header.Get("Cache-Status"))
	}
	r := g.Get("/old")
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=500; detail=snapshot")
	if r.Body != "/old v0" {
		t.Fatalf("/old, Craft failing: the snapshot served is %q, want the one from before the takedown", r.Body)
	}
	failing.Store(false)

	// Craft slow: the promoted snapshot of /old is a purged one, it waits.
	wantWaitsForSlowCraft(t, g, s, "/old", 2, func() {})
}

// A request that did not make the call itself (a stale copy's request,
// fetched in the background for stale_after) is not given a response a
// takedown kept out of the memory tier: it may have come after the
// takedown, so it makes its own call, and that post-takedown answer is
// stored as any other.
func TestHardPurgeDuringBackgroundFetchRefetches(t *testing.T) {
	o := e2e.NewOrigin(t)
	s := newSlowOrigin(t)
	d := newDuringFetch()
	o.Handle("/x", d.page(s))
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "stale_after 1s"})
	e2e.WantCacheStatus(t, g.Get("/x"), "craftedge; fwd=miss; stored")
	e2e.Advance(2 * time.Minute) // stale by 1m, within stale 1h
	s.version.Store(1)
	r := d.fetchWith(t, g, "/x", func() []int {
		return []int{g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["x"],"mode":"hard"}`).Status}
	})
	if r.Body != "/x v1" {
		t.Fatalf("after a takedown during the background call: %q %q", r.Header.Get("Cache-Status"), r.Body)
	}
	if n := o.Count("/x"); n != 3 {
		t.Fatalf("origin saw %d requests for /x, want 3 (the first store, the call the takedown crossed, the request's own)", n)
	}
	e2e.WantCacheStatus(t, g.Get("/x"), statusHit)
}

// A takedown landing during the fetch still keeps the render fetched
// across it out of the memory tier when visitors then overflow the purge
// log (each unsafe request Craft answers invalidates its URL: some 150
// POSTs with long queries fill its bytes) before the answer is stored: the
// log forgot the hard purge, but it cannot tell that the purges it forgot
// do not select the page, and one of them was hard. Before, the render
// was stored stale (as for a soft purge) and answered a slow Craft after
// stale_after: a visitor could turn any takedown into a soft purge.
func TestHardPurgeDuringFetchSurvivesPurgeLogOverflow(t *testing.T) {
	o := e2e.NewOrigin(t)
	s := newSlowOrigin(t)
	d := newDuringFetch()
	for _, p := range []string{"/down", "/marker"} {
		o.Handle(p, d.page(s))
	}
	o.Handle("/admin/disable", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Purge-Tag-Hard", "down")
		_, _ = w.Write([]byte("disabled"))
	})
	o.Handle("/form", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("thanks"))
	})
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "stale_after 20ms"})
	e2e.WantCacheStatus(t, g.Get("/marker"), "craftedge; fwd=miss; stored")
	e2e.Advance(2 * time.Minute) // /marker: stale by 1m, within stale 1h

	long := strings.Repeat("x", 16<<10)
	r := d.fetchWith(t, g, "/down", func() []int {
		st := []int{g.Do(http.MethodPost, "/admin/disable", nil, "id=1").Status}
		for i := range 160 { // 160 × 16 KiB: more than the log's 2 MiB
			st = append(st, g.Do(http.MethodPost, fmt.Sprintf("/form?n=%d&q=%s", i, long), nil, "m=1").Status)
		}
		return st
	})
	if r.Body != "/down v0" {
		t.Fatalf("the visitor whose fetch crossed the takedown got %q %q, want the origin's answer", r.Header.Get("Cache-Status"), r.Body)
	}
	if v := e2e.Scrape(g, "craftedge_memory_stored_stale_after_purge_total"); v != 0 {
		t.Errorf("craftedge_memory_stored_stale_after_purge_total = %v, want 0: the render fetched across a takedown was stored", v)
	}
	wantWaitsForSlowCraft(t, g, s, "/down", 1, func() {})
}
