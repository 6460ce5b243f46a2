package caddymodule

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Tests written from RFC 9110, RFC 9111 and RFC 9213 (issue 12), each
// citing the section it checks, end to end through Caddy.

// ttl 0 / ttl off: only what the origin marks fresh is served without
// contacting it; a response without freshness is kept (stale) for errors.
func TestTTLZeroCachesOnlyWhatTheOriginMarksFresh(t *testing.T) {
	for _, setting := range []string{"ttl 0", "ttl off"} {
		t.Run(setting, func(t *testing.T) {
			o := newTestOrigin(t)
			o.handle("/plain", pageHandler("plain", "p"))
			o.handle("/fresh", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=60")
				_, _ = w.Write([]byte(htmlPage("fresh")))
			})
			g := startGateway(t, o, gatewayOptions{handlerExtra: setting})
			wantCacheStatus(t, g.get("/plain"), "craftedge; fwd=miss; stored")
			wantCacheStatus(t, g.get("/plain"), "craftedge; fwd=stale; stored")
			if n := o.count("/plain"); n != 2 {
				t.Fatalf("origin saw %d requests for a page without freshness, want 2", n)
			}
			g.get("/fresh")
			advance(30 * time.Second)
			wantCacheStatus(t, g.get("/fresh"), "craftedge; hit")
			// The stored copy still serves when the origin fails (stale 1h).
			o.stop()
			r := g.get("/plain")
			wantStatus(t, r, 200)
			wantCacheStatusPrefix(t, r, "craftedge; fwd=stale; fwd-status=502; detail=stale")
		})
	}
}

// stale 0 / stale off: no stale memory copy on errors; the snapshot (the
// product's last resort) still answers.
func TestStaleZeroServesNoStaleMemoryCopy(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/s", pageHandler("s", "s"))
	g := startGateway(t, o, gatewayOptions{handlerExtra: "stale off"})
	g.get("/s")
	g.flushSnapshots()
	o.stop()
	advance(2 * time.Minute)
	r := g.get("/s")
	wantStatus(t, r, 200)
	wantCacheStatus(t, r, "craftedge; fwd=stale; fwd-status=502; detail=snapshot")
}

// Zero-valued and negative options are either meaningful or a load error
// naming the Caddyfile line.
func TestZeroAndNegativeOptionsAreLoadErrors(t *testing.T) {
	o := newTestOrigin(t)
	for _, tc := range []struct{ extra, want string }{
		{"ttl -1s", "ttl must not be negative"},
		{"stale -5m", "stale must not be negative"},
		{"ttl", "ttl needs a duration or off"},
		{"timeout 0", "timeout must be positive"},
		{"timeout off", "timeout: invalid duration"},
		{"max_entry_size 0", "out of range"},
		{"serve_stale_despite_origin maybe", "serve_stale_despite_origin wants on or off"},
	} {
		cfg := caddyfileFor(o, gatewayOptions{storage: filepath.Join(t.TempDir(), "x.db"), handlerExtra: tc.extra})
		assertLoadError(t, cfg, tc.want)
	}
}

// RFC 9111 §4.4: a non-error response to an unsafe method invalidates the
// target URI (every variant) and same-origin Location / Content-Location.
func TestUnsafeMethodsInvalidate(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/var", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Vary", "X-Lang")
		_, _ = w.Write([]byte("lang=" + r.Header.Get("X-Lang")))
	})
	o.handle("/form", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte(htmlPage("form")))
			return
		}
		w.Header().Set("Location", "/thanks?x=1")
		w.Header().Set("Content-Location", siteAddr+"/result")
		w.WriteHeader(http.StatusSeeOther)
	})
	o.handle("/other", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte(htmlPage("other")))
			return
		}
		// Another origin (127.0.0.1 is not localhost): never invalidated.
		w.Header().Set("Location", strings.Replace(siteAddr, "localhost", "127.0.0.1", 1)+"/kept")
		w.WriteHeader(http.StatusCreated)
	})
	o.handle("/broken", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte(htmlPage("broken")))
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
	})
	g := startGateway(t, o, gatewayOptions{})
	warm := func(path string, hdr ...string) {
		t.Helper()
		g.get(path, hdr...)
		wantCacheStatus(t, g.get(path, hdr...), "craftedge; hit")
	}

	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, "FROBNICATE"} {
		warm("/page?a=1")
		warm("/page?a=2")
		r := g.do(method, "/page?a=1", nil, "x=1")
		wantStatus(t, r, 200)
		wantCacheStatusPrefix(t, r, "craftedge; fwd=bypass")
		wantCacheStatus(t, g.get("/page?a=1"), "craftedge; fwd=miss; stored")
		// Another query is another target URI.
		wantCacheStatus(t, g.get("/page?a=2"), "craftedge; hit")
	}
	// Safe methods invalidate nothing.
	warm("/page?a=1")
	g.do(http.MethodOptions, "/page?a=1", nil, "")
	wantCacheStatus(t, g.get("/page?a=1"), "craftedge; hit")

	// Every Vary variant of the target goes.
	warm("/var", "X-Lang", "de")
	warm("/var", "X-Lang", "en")
	g.do(http.MethodPost, "/var", nil, "")
	wantCacheStatus(t, g.get("/var", "X-Lang", "de"), "craftedge; fwd=miss; stored")
	wantCacheStatus(t, g.get("/var", "X-Lang", "en"), "craftedge; fwd=miss; stored")

	// Same-origin Location and Content-Location go too, and the snapshots
	// of those paths are marked stale (kept, as after a purge).
	warm("/form")
	warm("/thanks?x=1")
	warm("/result")
	g.flushSnapshots()
	wantStatus(t, g.do(http.MethodPost, "/form", nil, "a=b"), http.StatusSeeOther)
	for _, p := range []string{"/form", "/thanks?x=1", "/result"} {
		wantCacheStatus(t, g.get(p), "craftedge; fwd=miss; stored")
	}
	app := currentApp.Load()
	rec, ok, err := app.store.Get("http://" + siteHost + "/result")
	if err != nil || !ok {
		t.Fatalf("snapshot of /result: found %v, err %v (invalidation must not delete it)", ok, err)
	}
	rec.StoredAt = rec.StoredAt.Add(-time.Second) // the copy before the POST
	if !app.store.Stale(rec) {
		t.Fatal("the snapshot of an invalidated URI is not marked stale")
	}

	// Another origin's Location is left alone.
	warm("/kept")
	warm("/other")
	wantStatus(t, g.do(http.MethodPost, "/other", nil, ""), http.StatusCreated)
	wantCacheStatus(t, g.get("/kept"), "craftedge; hit")
	wantCacheStatus(t, g.get("/other"), "craftedge; fwd=miss; stored")

	// An error response invalidates nothing.
	warm("/broken")
	wantStatus(t, g.do(http.MethodPost, "/broken", nil, ""), http.StatusInternalServerError)
	wantCacheStatus(t, g.get("/broken"), "craftedge; hit")
}

// RFC 9111 §3.2 and §4.3.4: a 304 freshens the stored response: its header
// fields replace the stored ones, Cache-Control included, so its new
// freshness applies.
func TestNotModifiedFreshensStoredHeaders(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/f", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Etag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.Header().Set("Cache-Control", "max-age=100")
			w.Header().Set("X-Version", "2")
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("X-Version", "1")
		w.Header().Set("X-Kept", "yes")
		_, _ = w.Write([]byte(htmlPage("freshen")))
	})
	g := startGateway(t, o, gatewayOptions{})
	g.get("/f")
	advance(11 * time.Second)
	r := g.get("/f")
	wantCacheStatus(t, r, statusRevalidated)
	if r.header.Get("X-Version") != "2" || r.header.Get("Cache-Control") != "max-age=100" || r.header.Get("X-Kept") != "yes" {
		t.Fatalf("304 did not freshen the headers: X-Version %q, Cache-Control %q, X-Kept %q",
			r.header.Get("X-Version"), r.header.Get("Cache-Control"), r.header.Get("X-Kept"))
	}
	if !strings.Contains(r.body, "freshen") || r.header.Get("Etag") != `"v1"` {
		t.Fatal("freshened response lost its body or validator")
	}
	// The new max-age (100s) applies, not the stored 10s.
	advance(50 * time.Second)
	r = g.get("/f")
	wantCacheStatus(t, r, "craftedge; hit")
	if r.header.Get("X-Version") != "2" {
		t.Fatalf("hit after freshening has X-Version %q", r.header.Get("X-Version"))
	}
	if n := o.count("/f"); n != 2 {
		t.Fatalf("origin saw %d requests, want 2", n)
	}
}

// RFC 9110 §6.6.1 with RFC 9111 §5.1: a stored response is served with the
// Date it was received with; Age says how long it has been stored.
func TestStoredResponseKeepsItsDate(t *testing.T) {
	o := newTestOrigin(t)
	const originDate = "Tue, 01 Dec 2026 10:00:00 GMT"
	o.handle("/dated", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", originDate)
		_, _ = w.Write([]byte(htmlPage("dated")))
	})
	o.handle("/undated", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Date"] = nil // the origin sends no Date
		_, _ = w.Write([]byte(htmlPage("undated")))
	})
	g := startGateway(t, o, gatewayOptions{})
	if d := g.get("/dated").header.Get("Date"); d != originDate {
		t.Fatalf("miss Date = %q, want the origin's %q", d, originDate)
	}
	received := g.get("/undated").header.Get("Date")
	if _, err := http.ParseTime(received); err != nil {
		t.Fatalf("no valid Date on a response whose origin sent none: %q", received)
	}
	advance(40 * time.Second)
	r := g.get("/dated")
	wantCacheStatus(t, r, "craftedge; hit")
	if r.header.Get("Date") != originDate || r.header.Get("Age") != "40" {
		t.Fatalf("hit: Date %q Age %q, want %q and 40", r.header.Get("Date"), r.header.Get("Age"), originDate)
	}
	r = g.get("/undated")
	if r.header.Get("Date") != received {
		t.Fatalf("hit Date %q, want the time it was received %q", r.header.Get("Date"), received)
	}
}

// RFC 9110 §5.6.7 and RFC 9111 §5.3: an Expires that is not a valid
// HTTP-date means already expired; the three valid forms are honoured.
// RFC 9111 §5.1: an Age that is not delta-seconds is ignored.
func TestStrictExpiresAndAgeParsing(t *testing.T) {
	o := newTestOrigin(t)
	future := time.Now().Add(24 * time.Hour).UTC()
	expires := map[string][]string{
		"imf":       {future.Format(http.TimeFormat)},
		"rfc850":    {future.Format("Monday, 02-Jan-06 15:04:05 GMT")},
		"asctime":   {future.Format(time.ANSIC)},
		"spaces":    {strings.Replace(future.Format(http.TimeFormat), " ", "  ", 1)},
		"shorthour": {future.Format("Mon, 02 Jan 2006 3:04:05 GMT")},
		"twolines":  {future.Format(http.TimeFormat), future.Format(http.TimeFormat)},
		"zero":      {"0"},
	}
	for name, lines := range expires {
		o.handle("/expires/"+name, func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Expires"] = lines
			_, _ = w.Write([]byte(htmlPage(name)))
		})
	}
	for name, age := range map[string]string{"suffix": "10s", "valid": "10", "negative": "-10", "float": "10.0"} {
		o.handle("/age/"+name, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Age", age)
			_, _ = w.Write([]byte(htmlPage(name)))
		})
	}
	g := startGateway(t, o, gatewayOptions{})
	for name := range expires {
		g.get("/expires/" + name)
		r := g.get("/expires/" + name)
		valid := name == "imf" || name == "rfc850" || name == "asctime"
		if got := r.header.Get("Cache-Status") == "craftedge; hit"; got != valid {
			t.Errorf("Expires %q: Cache-Status %q; want a hit only for a valid HTTP-date", expires[name], r.header.Get("Cache-Status"))
		}
	}
	for _, name := range []string{"suffix", "valid", "negative", "float"} {
		if a := g.get("/age/" + name).header.Get("Age"); name == "valid" && a != "10" || name != "valid" && a != "0" {
			t.Errorf("Age %s: served Age %q", name, a)
		}
	}
	advance(55 * time.Second)
	for _, name := range []string{"suffix", "negative", "float"} {
		wantCacheStatus(t, g.get("/age/"+name), "craftedge; hit")
	}
	// A valid Age of 10 makes max-age=60 expire 10 s earlier.
	wantCacheStatusPrefix(t, g.get("/age/valid"), "craftedge; fwd=stale")
}

// RFC 9111 §4.2.4: no-cache, must-revalidate, proxy-revalidate and
// s-maxage forbid serving a stale copy, also when the origin closes the
// connection; serve_stale_despite_origin makes it the operator's choice,
// labelled in Cache-Status.
func TestStaleServingProhibitions(t *testing.T) {
	cases := []struct{ name, cc string }{
		{"no-cache", "max-age=10, no-cache"},
		{"must-revalidate", "max-age=10, must-revalidate"},
		{"proxy-revalidate", "max-age=10, proxy-revalidate"},
		{"s-maxage", "s-maxage=10"},
	}
	o := newTestOrigin(t)
	closing := false
	for _, tc := range append(cases, struct{ name, cc string }{"allowed", "max-age=10"},
		struct{ name, cc string }{"s-maxage-sie", "s-maxage=10, stale-if-error=60"}) {
		o.handle("/"+tc.name, func(w http.ResponseWriter, r *http.Request) {
			o.mu.Lock()
			c := closing
			o.mu.Unlock()
			if c {
				panic(http.ErrAbortHandler) // the origin closes the connection
			}
			w.Header().Set("Cache-Control", tc.cc)
			_, _ = w.Write([]byte(htmlPage(tc.name)))
		})
	}
	g := startGateway(t, o, gatewayOptions{handlerExtra: "breaker {\n failures 1000\n}"})
	for _, p := range []string{"no-cache", "must-revalidate", "proxy-revalidate", "s-maxage", "allowed", "s-maxage-sie"} {
		wantStatus(t, g.get("/"+p), 200)
	}
	g.flushSnapshots()
	o.mu.Lock()
	closing = true
	o.mu.Unlock()
	advance(20 * time.Second)
	for _, tc := range cases {
		r := g.get("/" + tc.name)
		if r.status != http.StatusBadGateway || !strings.HasSuffix(r.header.Get("Cache-Status"), "detail=no-copy") {
			t.Errorf("%s: status %d, Cache-Status %q; want 502 and no copy", tc.cc, r.status, r.header.Get("Cache-Status"))
		}
	}
	wantCacheStatus(t, g.get("/allowed"), "craftedge; fwd=stale; fwd-status=502; detail=stale")
	// The origin's own stale-if-error is its explicit permission.
	wantCacheStatus(t, g.get("/s-maxage-sie"), "craftedge; fwd=stale; fwd-status=502; detail=stale")

	// The operator's override: memory copies, then snapshots after a restart.
	override := gatewayOptions{handlerExtra: "breaker {\n failures 1000\n}\nserve_stale_despite_origin on"}
	g.reload(override)
	for _, tc := range cases {
		r := g.get("/" + tc.name)
		wantStatus(t, r, 200)
		wantCacheStatus(t, r, "craftedge; fwd=stale; fwd-status=502; detail=stale-prohibited-override")
	}
	g.restart(override)
	for _, tc := range cases {
		r := g.get("/" + tc.name)
		wantStatus(t, r, 200)
		wantCacheStatus(t, r, "craftedge; fwd=miss; fwd-status=502; detail=snapshot-prohibited-override")
	}
}

// RFC 9213: CDN-Cache-Control (and craftedge's own targeted field,
// Craftedge-Cache-Control) take precedence over Cache-Control for
// craftedge's freshness and storability; an invalid one is ignored;
// CDN-Cache-Control is passed on unchanged, Craftedge-Cache-Control never.
func TestTargetedCacheControl(t *testing.T) {
	o := newTestOrigin(t)
	set := func(path string, fields map[string]string) {
		o.handle(path, func(w http.ResponseWriter, r *http.Request) {
			for k, v := range fields {
				w.Header().Set(k, v)
			}
			_, _ = w.Write([]byte(htmlPage(path)))
		})
	}
	set("/cdn-stores", map[string]string{"Cache-Control": "no-store", "CDN-Cache-Control": "max-age=600"})
	set("/cdn-no-store", map[string]string{"Cache-Control": "max-age=600", "CDN-Cache-Control": "no-store"})
	set("/cdn-private", map[string]string{"Cache-Control": "public, max-age=600", "CDN-Cache-Control": "private"})
	set("/cdn-invalid", map[string]string{"Cache-Control": "no-store", "CDN-Cache-Control": "max-age=600, ]]"})
	set("/cdn-wrong-type", map[string]string{"Cache-Control": "max-age=600", "CDN-Cache-Control": `max-age="5"`})
	set("/cdn-short", map[string]string{"Cache-Control": "max-age=600", "CDN-Cache-Control": "max-age=5"})
	set("/cdn-no-cache", map[string]string{"Cache-Control": "max-age=600", "CDN-Cache-Control": "no-cache", "Etag": `"n1"`})
	set("/own", map[string]string{"Cache-Control": "no-store", "CDN-Cache-Control": "max-age=5", "Craftedge-Cache-Control": "max-age=120"})
	set("/cdn-swr", map[string]string{"Cache-Control": "max-age=600", "CDN-Cache-Control": "max-age=10, stale-if-error=300, must-revalidate=?0"})
	g := startGateway(t, o, gatewayOptions{})

	r := g.get("/cdn-stores")
	wantCacheStatus(t, r, "craftedge; fwd=miss; stored")
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("CDN-Cache-Control") != "max-age=600" {
		t.Fatalf("fields not passed on unchanged: Cache-Control %q, CDN-Cache-Control %q",
			r.header.Get("Cache-Control"), r.header.Get("CDN-Cache-Control"))
	}
	r = g.get("/cdn-stores")
	wantCacheStatus(t, r, "craftedge; hit")
	if r.header.Get("CDN-Cache-Control") != "max-age=600" {
		t.Fatalf("hit lost CDN-Cache-Control: %q", r.header.Get("CDN-Cache-Control"))
	}
	wantCacheStatus(t, g.get("/cdn-no-store"), "craftedge; fwd=miss; detail=no-store")
	wantCacheStatus(t, g.get("/cdn-private"), "craftedge; fwd=miss; detail=private")
	// Invalid (not a Structured Fields Dictionary): Cache-Control rules.
	wantCacheStatus(t, g.get("/cdn-invalid"), "craftedge; fwd=miss; detail=no-store")
	g.get("/cdn-wrong-type")
	g.get("/cdn-short")
	g.get("/cdn-no-cache")
	wantCacheStatus(t, g.get("/cdn-no-cache"), statusRevalidated[:len("craftedge; fwd=stale")]+"; stored")
	r = g.get("/own")
	if r.header.Get("Craftedge-Cache-Control") != "" || r.header.Get("CDN-Cache-Control") != "max-age=5" {
		t.Fatalf("Craftedge-Cache-Control must not be passed on, CDN-Cache-Control must: %v", r.header)
	}
	g.get("/cdn-swr")

	advance(60 * time.Second)
	// A max-age of the wrong type is ignored, not coerced: no freshness
	// from the targeted field, and Cache-Control is not consulted (ttl 1m).
	wantCacheStatusPrefix(t, g.get("/cdn-wrong-type"), "craftedge; fwd=stale")
	wantCacheStatusPrefix(t, g.get("/cdn-short"), "craftedge; fwd=stale")
	r = g.get("/own")
	wantCacheStatus(t, r, "craftedge; hit")
	if r.header.Get("Craftedge-Cache-Control") != "" {
		t.Fatal("Craftedge-Cache-Control replayed on a hit")
	}
	o.stop()
	wantCacheStatus(t, g.get("/cdn-swr"), "craftedge; fwd=stale; fwd-status=502; detail=stale")
}

// RFC 9110 §14 and RFC 9111 §3.3: a Range request for a stored complete
// 200 is answered from the cache, for every stored encoding.
func TestRangeRequestsFromTheCache(t *testing.T) {
	o := newTestOrigin(t)
	const lastModified = "Mon, 02 Jan 2006 15:04:05 GMT"
	o.handle("/r", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Etag", `"r1"`)
		w.Header().Set("Last-Modified", lastModified)
		_, _ = w.Write([]byte(htmlPage("ranges")))
	})
	g := startGateway(t, o, gatewayOptions{})
	// Even the first request (a miss) is answered from the stored copy.
	r := g.get("/r", "Range", "bytes=0-9")
	wantStatus(t, r, http.StatusPartialContent)
	wantCacheStatus(t, r, "craftedge; fwd=miss; stored")
	full := htmlPage("ranges")
	size := strconv.Itoa(len(full))
	if r.body != full[:10] || r.header.Get("Content-Range") != "bytes 0-9/"+size {
		t.Fatalf("206: body %q Content-Range %q", r.body, r.header.Get("Content-Range"))
	}
	r = g.get("/r", "Range", "bytes=-5")
	wantStatus(t, r, http.StatusPartialContent)
	wantCacheStatus(t, r, "craftedge; hit")
	if r.body != full[len(full)-5:] || r.header.Get("Content-Length") != "5" {
		t.Fatalf("suffix range: %q, Content-Length %q", r.body, r.header.Get("Content-Length"))
	}
	r = g.get("/r", "Range", "bytes=100-")
	if r.status != http.StatusPartialContent || r.body != full[100:] {
		t.Fatalf("open range: status %d", r.status)
	}
	// The range applies to the encoded representation that is sent.
	for _, coding := range []string{"gzip", "zstd"} {
		whole := g.get("/r", "Accept-Encoding", coding)
		if whole.header.Get("Accept-Ranges") != "bytes" {
			t.Fatalf("%s: Accept-Ranges %q", coding, whole.header.Get("Accept-Ranges"))
		}
		part := g.get("/r", "Accept-Encoding", coding, "Range", "bytes=0-19")
		wantStatus(t, part, http.StatusPartialContent)
		want := fmt.Sprintf("bytes 0-19/%d", len(whole.body))
		if part.body != whole.body[:20] || part.header.Get("Content-Range") != want || part.header.Get("Content-Encoding") != coding {
			t.Fatalf("%s range: Content-Range %q want %q, Content-Encoding %q", coding,
				part.header.Get("Content-Range"), want, part.header.Get("Content-Encoding"))
		}
	}
	// Unsatisfiable: 416 with the current length.
	r = g.get("/r", "Range", "bytes=999999-")
	wantStatus(t, r, http.StatusRequestedRangeNotSatisfiable)
	if r.header.Get("Content-Range") != "bytes */"+size {
		t.Fatalf("416 Content-Range %q", r.header.Get("Content-Range"))
	}
	// Several ranges: the whole representation.
	r = g.get("/r", "Range", "bytes=0-1,5-6")
	if r.status != 200 || r.body != full {
		t.Fatalf("multiple ranges: status %d", r.status)
	}
	// An invalid Range is ignored.
	wantStatus(t, g.get("/r", "Range", "bytes=9-1"), 200)
	// If-Range: a strong entity tag or the exact (strong) Last-Modified.
	wantStatus(t, g.get("/r", "Range", "bytes=0-9", "If-Range", `"r1"`), http.StatusPartialContent)
	wantStatus(t, g.get("/r", "Range", "bytes=0-9", "If-Range", `"old"`), 200)
	wantStatus(t, g.get("/r", "Range", "bytes=0-9", "If-Range", `W/"r1"`), 200)
	wantStatus(t, g.get("/r", "Range", "bytes=0-9", "If-Range", lastModified), http.StatusPartialContent)
	wantStatus(t, g.get("/r", "Range", "bytes=0-9", "If-Range", "Tue, 03 Jan 2006 15:04:05 GMT"), 200)
	if n := o.count("/r"); n != 1 {
		t.Fatalf("origin saw %d requests, want 1", n)
	}
}

// RFC 9110 §13.1.2 and §8.8.3.2: If-None-Match uses weak comparison, and
// the origin's weak ETag is kept as sent (and used to revalidate).
func TestWeakETagsKeptAndComparedWeakly(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/weak", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Etag", `W/"w1"`)
		w.Header().Set("Cache-Control", "max-age=10")
		if r.Header.Get("If-None-Match") == `W/"w1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = w.Write([]byte(htmlPage("weak")))
	})
	o.handle("/strong", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Etag", `"s1"`)
		_, _ = w.Write([]byte(htmlPage("strong")))
	})
	g := startGateway(t, o, gatewayOptions{})
	if e := g.get("/weak").header.Get("Etag"); e != `W/"w1"` {
		t.Fatalf("weak ETag served as %q, want it as the origin sent it", e)
	}
	for _, inm := range []string{`"w1"`, `W/"w1"`, `"x", W/"w1"`} {
		r := g.get("/weak", "If-None-Match", inm)
		wantStatus(t, r, http.StatusNotModified)
		if r.header.Get("Etag") != `W/"w1"` {
			t.Fatalf("304 ETag %q", r.header.Get("Etag"))
		}
	}
	g.get("/strong")
	wantStatus(t, g.get("/strong", "If-None-Match", `W/"s1"`), http.StatusNotModified)
	wantStatus(t, g.get("/strong", "If-None-Match", `W/"s2"`), 200)
	// Revalidation sends the weak ETag upstream; the 304 refreshes the copy.
	advance(11 * time.Second)
	r := g.get("/weak")
	wantCacheStatus(t, r, statusRevalidated)
	if r.header.Get("Etag") != `W/"w1"` || !strings.Contains(r.body, "weak") {
		t.Fatalf("revalidated weak copy: ETag %q", r.header.Get("Etag"))
	}
}

// RFC 9111 §4.2.4 under the kill switch: Craft is not called, so a copy
// the origin forbade serving stale is not served either, unless the
// operator chose serve_stale_despite_origin.
func TestKillSwitchHonoursStaleProhibitions(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/strict", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=10, must-revalidate")
		_, _ = w.Write([]byte(htmlPage("strict")))
	})
	o.handle("/lax", pageHandler("lax", "lax"))
	g := startGateway(t, o, gatewayOptions{})
	g.get("/strict")
	g.get("/lax")
	g.flushSnapshots()
	advance(2 * time.Minute)
	g.reload(gatewayOptions{handlerExtra: "snapshot_only on"})
	r := g.get("/strict")
	wantStatus(t, r, http.StatusServiceUnavailable)
	wantCacheStatus(t, r, "craftedge; detail=no-copy")
	wantCacheStatus(t, g.get("/lax"), "craftedge; hit; detail=stale")
	g.reload(gatewayOptions{handlerExtra: "snapshot_only on\nserve_stale_despite_origin on"})
	r = g.get("/strict")
	wantStatus(t, r, 200)
	wantCacheStatus(t, r, "craftedge; hit; detail=stale-prohibited-override")
	if n := o.count("/strict"); n != 1 {
		t.Fatalf("origin saw %d requests under the kill switch", n)
	}
}
