package cachehandler

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/circuit"
	"github.com/craftedge/craftedge/httpcache"
	"github.com/craftedge/craftedge/pagecache"
	"github.com/craftedge/craftedge/snapshot"
)

// benchWriter is a minimal, reusable ResponseWriter so the benchmark
// measures the handler, not a recorder.
type benchWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(code int)        { w.status = code }
func (w *benchWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }
func (w *benchWriter) reset() {
	clear(w.h)
	w.status, w.n = 0, 0
}

// newBenchHandler wires a handler to a real memory tier and bbolt store
// without a Caddy context (benchmarks call ServeHTTP directly).
func newBenchHandler(b testing.TB) *Handler {
	b.Helper()
	store, err := snapshot.Open(snapshot.Options{Path: filepath.Join(b.TempDir(), "bench.db")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	mem, err := pagecache.New(pagecache.Options{MaxBytes: 64 << 20, MaxEntryBytes: 4 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = mem.Close() })
	app := caddymodule.NewDetachedApp(store, mem)
	b.Cleanup(func() { _ = app.Cleanup() })
	cfg := circuit.Config{}.WithDefaults()
	breaker, err := app.UpstreamBreaker("craft", cfg, false)
	if err != nil {
		b.Fatal(err)
	}
	h := &Handler{
		Upstream: "craft", ttl: time.Hour, stale: time.Hour, Timeout: 10e9, MaxEntrySize: 4 << 20,
		TagHeaders: httpcache.DefaultTagHeaders, Breaker: cfg,
		app: app, logger: zap.NewNop(), flights: new(singleflight.Group),
		breaker: breaker, metrics: newHandlerMetrics("craft"),
	}
	if err := h.bypass.Compile(); err != nil {
		b.Fatal(err)
	}
	if err := h.keys.Compile(); err != nil {
		b.Fatal(err)
	}
	return h
}

var benchPage = strings.Repeat("<p>Craft renders this page. Lorem ipsum dolor sit amet, consectetur.</p>\n", 140) // ~10 KiB

// benchVaried100k is a 100 KiB page whose text varies like a real page
// (it compresses about 4x).
var benchVaried100k = variedPage(1, 100<<10)

func benchOrigin() caddyhttp.Handler { return benchOriginOf(benchPage) }

func benchOriginOf(page string) caddyhttp.Handler {
	return caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Tag", "entry:1 section:blog")
		_, err := w.Write([]byte(page))
		return err
	})
}

func benchRequest(accept string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://example.com/blog/hello?utm_source=x", nil)
	r.Header.Set("User-Agent", "bench")
	r.Header.Set("Cookie", "_ga=GA1.1.1; CRAFT_CSRF_TOKEN=abc")
	if accept != "" {
		r.Header.Set("Accept-Encoding", accept)
	}
	return r
}

// BenchmarkCacheHit measures the hit path (lookup, decode, header replay,
// stored variant write) for identity, gzip and zstd clients, on a 10 KiB
// page that compresses 50x and, "100k-", a 100 KiB page that compresses
// 4x. A hit reads the stored entry in place (pagecache.Cache.Get), so
// B/op does not grow with the page. Compare with BenchmarkStaticRespond,
// Caddy's static_response handler on the same 10 KiB body, run in the
// same process.
func BenchmarkCacheHit(b *testing.B) {
	for _, tc := range []struct{ name, accept, page string }{
		{"identity", "", benchPage},
		{"gzip", "gzip", benchPage},
		{"browser", "gzip, deflate, br, zstd", benchPage},
		{"100k-identity", "", benchVaried100k},
		{"100k-gzip", "gzip", benchVaried100k},
		{"100k-browser", "gzip, deflate, br, zstd", benchVaried100k},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := newBenchHandler(b)
			next := benchOriginOf(tc.page)
			w := &benchWriter{h: make(http.Header)}
			r := benchRequest(tc.accept)
			if err := h.ServeHTTP(w, r, next); err != nil || w.status != 200 {
				b.Fatalf("warm-up: status %d err %v", w.status, err)
			}
			w.reset()
			if err := h.ServeHTTP(w, r, next); err != nil || w.h.Get("Cache-Status") != statusHit {
				b.Fatalf("not a hit: %q", w.h.Get("Cache-Status"))
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.page)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				w.reset()
				_ = h.ServeHTTP(w, r, next)
			}
		})
	}
}

// BenchmarkStaticRespond is the ceiling: Caddy's own static_response
// handler writing the same body.
func BenchmarkStaticRespond(b *testing.B) {
	sr := caddyhttp.StaticResponse{StatusCode: caddyhttp.WeakString("200"), Body: benchPage,
		Headers: http.Header{"Content-Type": []string{"text/html; charset=utf-8"}}}
	w := &benchWriter{h: make(http.Header)}
	r := benchRequest("")
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPage)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.reset()
		_ = sr.ServeHTTP(w, r, nil)
	}
}

// benchESIFragment is a cached fragment of BenchmarkESIHit (~1 KiB).
var benchESIFragment = strings.Repeat("<li>A fragment Craft renders once for everybody.</li>\n", 20)

// benchESIPage opts into ESI and includes two fragments; benchAssembled is
// the page as assembled, served by the plain hit it is compared with.
var (
	benchESIHalf   = benchPage[:len(benchPage)/2]
	benchESIPage   = benchESIHalf + `<esi:include src="/_fragments/a"/>` + benchPage[len(benchPage)/2:] + `<esi:include src="/_fragments/b"/>`
	benchAssembled = benchESIHalf + benchESIFragment + benchPage[len(benchPage)/2:] + benchESIFragment
)

func benchESIOrigin() caddyhttp.Handler {
	return caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Tag", "entry:1 section:blog")
		body := benchAssembled
		if r.URL.Path == "/blog/esi" {
			w.Header().Set("Surrogate-Control", `content="ESI/1.0"`)
			body = benchESIPage
		}
		_, err := w.Write([]byte(body))
		return err
	})
}

// newESIBenchHandler is newBenchHandler with ESI on, its origin
// (benchESIOrigin) and the two fragments /_fragments/a and /_fragments/b
// (tag nav) stored.
func newESIBenchHandler(tb testing.TB) (*Handler, caddyhttp.Handler) {
	tb.Helper()
	h := newBenchHandler(tb)
	h.ESI = new(ESIConfig)
	if err := h.provisionESI(); err != nil {
		tb.Fatal(err)
	}
	for _, p := range []string{"/_fragments/a", "/_fragments/b"} {
		fr, _ := http.NewRequest(http.MethodGet, "http://example.com"+p, nil)
		key, _, _ := h.requestKey(fr, fr)
		hdr := http.Header{"Content-Type": {"text/html; charset=utf-8"}, "Cache-Tag": {"nav"}}
		res := &fetchResult{fragment: true}
		h.storeResponse(fr, key, 200, hdr, []byte(benchESIFragment), "", h.app.MemoryTier().Epoch(), res)
		if !res.stored {
			tb.Fatalf("fragment %s not stored: %s", p, res.notStoredReason)
		}
	}
	return h, benchESIOrigin()
}

// BenchmarkESIHit compares a hit on a page with two cached fragments with
// a plain hit on a page of the same assembled size, for identity, gzip
// and zstd clients: "esi" is served from the memoized assembly (every hit
// but the first after a change), "assembled" assembles from the stored
// segments every time (memos off: the first hit after a change, or a page
// with a fragment that is not a fresh memory copy), "purged" is a memoized
// hit after a purge of another tag before every hit (the memo is checked
// against its fragments' generations, then used; the purge's own cost is
// in the figure). Issue 19's target: the ESI hit at least 0.8x the plain
// hit's rate.
func BenchmarkESIHit(b *testing.B) {
	for _, tc := range []struct{ name, accept string }{
		{"identity", ""},
		{"gzip", "gzip"},
		{"browser", "gzip, deflate, br, zstd"},
	} {
		for _, kind := range []string{"plain", "esi", "assembled", "purged"} {
			b.Run(tc.name+"/"+kind, func(b *testing.B) {
				h, next := newESIBenchHandler(b)
				w := &benchWriter{h: make(http.Header)}
				r := benchRequest(tc.accept)
				r.URL.Path = "/blog/" + kind
				switch kind {
				case "assembled":
					r.URL.Path = "/blog/esi"
					h.esi.memoOff = true
				case "purged":
					r.URL.Path = "/blog/esi"
				}
				if err := h.ServeHTTP(w, r, next); err != nil || w.status != 200 {
					b.Fatalf("warm-up: status %d err %v", w.status, err)
				}
				w.reset()
				if err := h.ServeHTTP(w, r, next); err != nil || !strings.HasPrefix(w.h.Get("Cache-Status"), statusHit) ||
					strings.Contains(w.h.Get("Cache-Status"), "miss") {
					b.Fatalf("not a hit: %q", w.h.Get("Cache-Status"))
				}
				b.ReportAllocs()
				b.SetBytes(int64(len(benchAssembled)))
				b.ResetTimer()
				mem := h.app.MemoryTier()
				other := []string{"another-tag"}
				for i := 0; i < b.N; i++ {
					w.reset()
					if kind == "purged" {
						mem.PurgeTags(other)
					}
					_ = h.ServeHTTP(w, r, next)
				}
			})
		}
	}
}
