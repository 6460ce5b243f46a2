package cachehandler

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// wantWaiting checks that the request on ch has not been answered: it
// waits for the origin, which holds its answer.
func wantWaiting(t *testing.T, what string, ch chan e2e.Response) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s answered before the origin did: %q %q", what, r.Header.Get("Cache-Status"), r.Body)
	default:
	}
}

// A soft purge (the default purge_mode) keeps the copy, never fresh again:
// with the origin answering, the next request gets its new answer; with
// the origin holding back, a request waits stale_after and gets the
// pre-purge copy, labelled, while the call goes on and refreshes it.
// Purges from the admin API and from Craft's Cache-Purge-Tag both do.
func TestSoftPurgeServesCopyAfterStaleAfterThenRefreshes(t *testing.T) {
	o := e2e.NewOrigin(t)
	s := newSlowOrigin(t)
	o.Handle("/a", s.page(""))
	o.Handle("/admin/save", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Purge-Tag", "a")
		_, _ = w.Write([]byte("saved"))
	})
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "stale_after 20ms"})
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; fwd=miss; stored")
	e2e.WantCacheStatus(t, g.Get("/a"), statusHit)

	// Within its freshness, purged: never a hit again. The origin answers
	// (within stale_after, unless the machine is very slow: then the copy
	// answers, labelled) and its answer is stored.
	e2e.Purge(g, `{"tags":["a"]}`)
	s.version.Store(1)
	switch r := g.Get("/a"); {
	case r.Body == "/a v1" && r.Header.Get("Cache-Status") == "craftedge; fwd=stale; stored":
	case r.Body == "/a v0" && r.Header.Get("Cache-Status") == statusStaleAfterPurged:
	default:
		t.Fatalf("after a soft purge, origin answering: %q %q", r.Header.Get("Cache-Status"), r.Body)
	}
	e2e.WaitFor(t, "the origin's answer to be stored", func() bool {
		r := g.Get("/a")
		return r.Header.Get("Cache-Status") == statusHit && r.Body == "/a v1"
	})

	// Purged by Craft's save, origin holding back: the copy (v1) answers
	// after stale_after, labelled, for every request until the call ends.
	e2e.WantStatus(t, g.Do(http.MethodPost, "/admin/save", nil, "x=1"), 200)
	s.version.Store(2)
	s.held.Store(true)
	for range 3 {
		r := g.Get("/a")
		e2e.WantCacheStatus(t, r, statusStaleAfterPurged)
		if r.Body != "/a v1" {
			t.Fatalf("soft-purged copy served: body %q, want /a v1", r.Body)
		}
	}
	s.waitArrived(t, "/a")
	if got := o.Count("/a"); got != 3 {
		t.Fatalf("origin saw %d requests for /a, want 3 (one background call for three requests)", got)
	}
	s.held.Store(false)
	s.releaseAll()
	e2e.WaitFor(t, "the background call to refresh the soft-purged copy", func() bool {
		r := g.Get("/a")
		return r.Header.Get("Cache-Status") == statusHit && r.Body == "/a v2"
	})
}

// A hard purge leaves no copy to answer a slow origin; a soft-purged copy
// past its stale window (counted from when it was stored: a purge never
// lengthens it) does not answer either. Both wait for the origin.
func TestSoftPurgeNeverServesWhatItMustNot(t *testing.T) {
	o := e2e.NewOrigin(t)
	s := newSlowOrigin(t)
	for _, p := range []string{"/hard", "/old", "/soft"} {
		o.Handle(p, s.page(""))
	}
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "stale_after 20ms"})
	e2e.WantCacheStatus(t, g.Get("/old"), "craftedge; fwd=miss; stored")
	e2e.Advance(59 * time.Minute) // /old: stale by 58m of its 1h
	for _, p := range []string{"/hard", "/soft"} {
		e2e.WantCacheStatus(t, g.Get(p), "craftedge; fwd=miss; stored")
	}
	e2e.Purge(g, `{"tags":["hard"],"mode":"hard"}`)
	e2e.Purge(g, `{"tags":["old","soft"]}`)
	e2e.Advance(3 * time.Minute) // /old: stale by 61m, past stale 1h; /soft: stored 3m ago
	s.version.Store(1)
	s.held.Store(true)

	hard := goGet(g, "/hard")
	s.waitArrived(t, "/hard")
	old := goGet(g, "/old")
	s.waitArrived(t, "/old")
	r := g.Get("/soft") // its call began after theirs, with the same stale_after
	e2e.WantCacheStatus(t, r, statusStaleAfterPurged)
	if r.Body != "/soft v0" {
		t.Fatalf("soft-purged copy: body %q", r.Body)
	}
	wantWaiting(t, "/hard (hard-purged)", hard)
	wantWaiting(t, "/old (past its stale window)", old)
	s.releaseAll()
	for p, ch := range map[string]chan e2e.Response{"/hard": hard, "/old": old} {
		r := <-ch
		if r.Body != p+" v1" {
			t.Fatalf("%s: body %q, want the origin's new answer", p, r.Body)
		}
	}
}

// purge_mode hard makes the purges that do not name a mode hard (Craft's
// Cache-Purge-Tag among them); a request naming soft is still soft.
func TestPurgeModeHard(t *testing.T) {
	o := e2e.NewOrigin(t)
	s := newSlowOrigin(t)
	for _, p := range []string{"/a", "/b"} {
		o.Handle(p, s.page(""))
	}
	o.Handle("/admin/save", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Purge-Tag", "a")
		_, _ = w.Write([]byte("saved"))
	})
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: "purge_mode hard", HandlerExtra: "stale_after 20ms"})
	for _, p := range []string{"/a", "/b"} {
		e2e.WantCacheStatus(t, g.Get(p), "craftedge; fwd=miss; stored")
	}
	e2e.WantStatus(t, g.Do(http.MethodPost, "/admin/save", nil, "x=1"), 200)
	e2e.Purge(g, `{"tags":["b"],"mode":"soft"}`)
	wantHardAndSoftPurged(t, g, s, "/a", "/b")
}

// wantHardAndSoftPurged holds the origin's answers and checks that a
// request for hard (hard-purged) waits for the origin while one for soft
// (soft-purged, its call begun after hard's) gets its copy after
// stale_after; then hard gets the origin's new answer, stored.
func wantHardAndSoftPurged(t *testing.T, g *e2e.Gateway, s *slowOrigin, hard, soft string) {
	t.Helper()
	s.version.Store(1)
	s.held.Store(true)
	ch := goGet(g, hard)
	s.waitArrived(t, hard)
	e2e.WantCacheStatus(t, g.Get(soft), statusStaleAfterPurged)
	wantWaiting(t, hard+" (hard-purged)", ch)
	s.releaseAll()
	if r := <-ch; r.Body != hard+" v1" || r.Header.Get("Cache-Status") != "craftedge; fwd=miss; stored" {
		t.Fatalf("%s after the origin answered: %q %q", hard, r.Header.Get("Cache-Status"), r.Body)
	}
}

// A soft-purged copy still serves when the origin fails (its stale
// window), and under the kill switch, as any stale copy does.
func TestSoftPurgedCopyOnFailureAndKillSwitch(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/p", e2e.PageHandler("last good", "entry:9"))
	// stale_after off: the failure, not a timer, decides (it is fast, but
	// which comes first would be timing).
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "stale_after off"})
	e2e.WantCacheStatus(t, g.Get("/p"), "craftedge; fwd=miss; stored")
	e2e.Purge(g, `{"tags":["entry:9"]}`)
	e2e.WantStatus(t, g.Admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":true}`), 200)
	e2e.WantCacheStatus(t, g.Get("/p"), "craftedge; hit; detail=stale")
	e2e.WantStatus(t, g.Admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":false}`), 200)
	o.Stop()
	r := g.Get("/p")
	e2e.WantCacheStatus(t, r, "craftedge; fwd=stale; fwd-status=502; detail=stale")
	if !strings.Contains(r.Body, "last good") {
		t.Fatalf("body %q", r.Body)
	}
}

// purge_mode in the Caddyfile: soft or hard, nothing else.
func TestPurgeModeOption(t *testing.T) {
	o := e2e.NewOrigin(t)
	for _, tc := range []struct{ extra, want string }{
		{"purge_mode soft", `"purge_mode":"soft"`},
		{"purge_mode hard", `"purge_mode":"hard"`},
	} {
		cfg := e2e.CaddyfileFor(o, e2e.Options{Storage: filepath.Join(t.TempDir(), "x.db"), GlobalExtra: tc.extra})
		if js := string(e2e.Adapt(t, cfg)); !strings.Contains(js, tc.want) {
			t.Fatalf("%s: JSON lacks %s: %s", tc.extra, tc.want, js)
		}
	}
	storage := filepath.Join(t.TempDir(), "x.db")
	e2e.WantGlobalError(t, o, storage, "purge_mode", "purge_mode needs soft or hard", 0)
	e2e.WantGlobalError(t, o, storage, "purge_mode gentle", `purge_mode must be soft or hard, got "gentle"`, 0)
	e2e.WantGlobalError(t, o, storage, "purge_mode soft hard", "wrong argument count", 0)
}

// setHook sets p to f for the rest of the test.
func setHook[F any](t *testing.T, p interface{ Store(*F) }, f F) {
	t.Helper()
	p.Store(&f)
	t.Cleanup(func() { p.Store(nil) })
}

// A soft purge landing while a request waits out stale_after is in the
// label of the copy it gets: the copy's state when it is served, not when
// the request found it.
func TestSoftPurgeDuringStaleAfterWaitIsLabelled(t *testing.T) {
	g, _, _ := startWithStaleCopy(t)
	purged := false
	setHook(t, &staleAfterServeHook, func(key string) {
		if !purged {
			purged = true
			e2e.Purge(g, `{"tags":["a"]}`) // soft: the default purge_mode
		}
	})
	r := g.Get("/a")
	if !purged {
		t.Fatal("the request was not answered after waiting out stale_after")
	}
	e2e.WantCacheStatus(t, r, statusStaleAfterPurged)
	if r.Body != "/a v0" {
		t.Fatalf("body %q, want the pre-purge copy", r.Body)
	}
}

// Craft takes content down (an entry disabled, deleted, expired) with
// Cache-Purge-Tag-Hard: a hard purge whatever purge_mode says, so no copy
// answers a slow Craft afterwards, while Cache-Purge-Tag in the same
// response stays soft. Neither header reaches the client.
func TestCachePurgeTagHardTakesDown(t *testing.T) {
	o := e2e.NewOrigin(t)
	s := newSlowOrigin(t)
	for _, p := range []string{"/down", "/edited"} {
		o.Handle(p, s.page(""))
	}
	o.Handle("/admin/disable", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Purge-Tag", "edited")
		w.Header().Set("Cache-Purge-Tag-Hard", "down")
		_, _ = w.Write([]byte("disabled"))
	})
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "stale_after 20ms"})
	for _, p := range []string{"/down", "/edited"} {
		e2e.WantCacheStatus(t, g.Get(p), "craftedge; fwd=miss; stored")
	}
	r := g.Do(http.MethodPost, "/admin/disable", nil, "x=1")
	e2e.WantStatus(t, r, 200)
	for _, h := range []string{"Cache-Purge-Tag", "Cache-Purge-Tag-Hard"} {
		if v := r.Header.Get(h); v != "" {
			t.Fatalf("%s reached the client: %q", h, v)
		}
	}
	wantHardAndSoftPurged(t, g, s, "/down", "/edited")
}

// Vary variants carry their page's tags: a soft purge of the tag makes
// every variant stale (none a hit again, each revalidated: the origin's
// new answer), the Vary marker still leads to them, and each variant
// stored anew is a hit again, the others untouched by it.
func TestSoftPurgeOfAVariantsTag(t *testing.T) {
	o := e2e.NewOrigin(t)
	var version atomic.Int64
	o.Handle("/v", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Tag", "v")
		w.Header().Set("Vary", "X-Lang")
		_, _ = fmt.Fprintf(w, "lang=%s v%d", r.Header.Get("X-Lang"), version.Load())
	})
	g := e2e.StartGateway(t, o, e2e.Options{})
	langs := []string{"de", "fr"}
	for _, l := range langs {
		g.Get("/v", "X-Lang", l)
		if r := g.Get("/v", "X-Lang", l); r.Header.Get("Cache-Status") != statusHit || r.Body != "lang="+l+" v0" {
			t.Fatalf("%s before the purge: %q %q", l, r.Header.Get("Cache-Status"), r.Body)
		}
	}
	e2e.Purge(g, `{"tags":["v"]}`)
	version.Store(1)
	r := g.Get("/v", "X-Lang", "de")
	if r.Header.Get("Cache-Status") == statusHit || r.Body != "lang=de v1" {
		t.Fatalf("de after a soft purge: %q %q, want the origin's new answer", r.Header.Get("Cache-Status"), r.Body)
	}
	if r := g.Get("/v", "X-Lang", "de"); r.Header.Get("Cache-Status") != statusHit || r.Body != "lang=de v1" {
		t.Fatalf("de stored anew: %q %q, want a hit", r.Header.Get("Cache-Status"), r.Body)
	}
	r = g.Get("/v", "X-Lang", "fr") // not stored anew by de's revalidation
	if r.Header.Get("Cache-Status") == statusHit || r.Body != "lang=fr v1" {
		t.Fatalf("fr after a soft purge: %q %q, want the origin's new answer", r.Header.Get("Cache-Status"), r.Body)
	}
}
