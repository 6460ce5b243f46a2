package cachehandler

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

func TestMissThenHitWithTagsStripped(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/blog/hello", e2e.PageHandler("hello", "entry:1 section:blog"))
	g := e2e.StartGateway(t, o, e2e.Options{})

	r1 := g.Get("/blog/hello")
	e2e.WantStatus(t, r1, 200)
	e2e.WantCacheStatus(t, r1, "craftedge; fwd=miss; stored")
	if r1.Header.Get("Cache-Tag") != "" {
		t.Fatalf("Cache-Tag leaked to the client: %q", r1.Header.Get("Cache-Tag"))
	}
	r2 := g.Get("/blog/hello")
	e2e.WantCacheStatus(t, r2, "craftedge; hit")
	if r2.Body != r1.Body || !strings.Contains(r2.Body, "hello") {
		t.Fatalf("hit body differs from miss body")
	}
	if r2.Header.Get("Age") == "" || r2.Header.Get("Etag") == "" {
		t.Fatalf("hit lacks Age or ETag: %v", r2.Header)
	}
	if got := o.Count("/blog/hello"); got != 1 {
		t.Fatalf("origin saw %d requests, want 1", got)
	}
	// Tracking parameters and parameter order do not split the cache.
	r3 := g.Get("/blog/hello?utm_source=news&gclid=x")
	e2e.WantCacheStatus(t, r3, "craftedge; hit")
	// HEAD is served from the stored GET.
	r4 := g.Do(http.MethodHead, "/blog/hello", nil, "")
	e2e.WantCacheStatus(t, r4, "craftedge; hit")
	if r4.Body != "" {
		t.Fatalf("HEAD got a body")
	}
	// Age grows with the clock; past ttl the entry is refetched.
	e2e.Advance(30 * time.Second)
	if age := g.Get("/blog/hello").Header.Get("Age"); age != "30" {
		t.Fatalf("Age = %q, want 30", age)
	}
	e2e.Advance(31 * time.Second)
	e2e.WantCacheStatusPrefix(t, g.Get("/blog/hello"), "craftedge; fwd=")
	if got := o.Count("/blog/hello"); got != 2 {
		t.Fatalf("origin saw %d requests after ttl, want 2", got)
	}
}

func TestEncodingsServedFromStoredVariants(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/p", e2e.PageHandler("encodings", "p"))
	g := e2e.StartGateway(t, o, e2e.Options{})
	identity := g.Get("/p").Body

	for _, tc := range []struct{ accept, coding string }{
		{"gzip", "gzip"},
		{"gzip, deflate, br, zstd", "zstd"},
		{"zstd;q=0, gzip", "gzip"},
		{"", ""},
		{"br", ""},
	} {
		r := g.Get("/p", "Accept-Encoding", tc.accept)
		e2e.WantCacheStatus(t, r, "craftedge; hit")
		if got := r.Header.Get("Content-Encoding"); got != tc.coding {
			t.Fatalf("Accept-Encoding %q: Content-Encoding %q, want %q", tc.accept, got, tc.coding)
		}
		if !strings.Contains(r.Header.Get("Vary"), "Accept-Encoding") {
			t.Fatalf("Accept-Encoding %q: Vary %q lacks Accept-Encoding", tc.accept, r.Header.Get("Vary"))
		}
		body := r.Body
		switch tc.coding {
		case "gzip":
			body = e2e.Gunzip(t, body)
		case "zstd":
			body = e2e.Unzstd(t, body)
		}
		if body != identity {
			t.Fatalf("Accept-Encoding %q: decoded body differs", tc.accept)
		}
	}
	// Each variant has its own strong ETag.
	gz := g.Get("/p", "Accept-Encoding", "gzip").Header.Get("Etag")
	id := g.Get("/p").Header.Get("Etag")
	if gz == id || gz == "" {
		t.Fatalf("gzip ETag %q must differ from identity ETag %q", gz, id)
	}
}

func TestUpstreamCompressedBodyIsDecodedAndStored(t *testing.T) {
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "", GlobalExtra: ""})
	// reverse_proxy forwards the client's Accept-Encoding; an origin that
	// gzips must still be cached correctly for every client.
	o.Handle("/gz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Etag", `"origin-gz"`)
		_, _ = w.Write([]byte(e2e.GzipString(t, e2e.HTMLPage("precompressed"))))
	})
	r1 := g.Get("/gz", "Accept-Encoding", "gzip")
	e2e.WantCacheStatus(t, r1, "craftedge; fwd=miss; stored")
	if !strings.Contains(e2e.Gunzip(t, r1.Body), "precompressed") {
		t.Fatal("gzip client got a wrong body")
	}
	r2 := g.Get("/gz")
	e2e.WantCacheStatus(t, r2, "craftedge; hit")
	if r2.Header.Get("Content-Encoding") != "" || !strings.Contains(r2.Body, "precompressed") {
		t.Fatalf("identity client got an encoded body")
	}
}

func TestConditionalRequestsGet304(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/c", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		_, _ = w.Write([]byte(e2e.HTMLPage("cond")))
	})
	g := e2e.StartGateway(t, o, e2e.Options{})
	r := g.Get("/c")
	etag := r.Header.Get("Etag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	r304 := g.Get("/c", "If-None-Match", etag)
	e2e.WantStatus(t, r304, http.StatusNotModified)
	e2e.WantCacheStatus(t, r304, "craftedge; hit")
	e2e.WantStatus(t, g.Get("/c", "If-None-Match", `"other"`), 200)
	e2e.WantStatus(t, g.Get("/c", "If-Modified-Since", "Tue, 03 Jan 2006 00:00:00 GMT"), http.StatusNotModified)
	e2e.WantStatus(t, g.Get("/c", "If-Modified-Since", "Sun, 01 Jan 2006 00:00:00 GMT"), 200)
	// The gzip variant's ETag validates too.
	gz := g.Get("/c", "Accept-Encoding", "gzip").Header.Get("Etag")
	e2e.WantStatus(t, g.Get("/c", "Accept-Encoding", "gzip", "If-None-Match", gz), http.StatusNotModified)
	if o.Count("/c") != 1 {
		t.Fatalf("origin saw %d requests, want 1", o.Count("/c"))
	}
}

func TestPurgeByTagURLPrefixAndAll(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/a", e2e.PageHandler("a", "entry:1"))
	o.Handle("/b", e2e.PageHandler("b", "entry:2"))
	o.Handle("/blog/c", e2e.PageHandler("c", "entry:3"))
	// stale_after off: a soft-purged copy never answers before the origin
	// (which one answers first would be timing).
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "stale_after off"})
	for _, p := range []string{"/a", "/b", "/blog/c", "/blog/c?page=2"} {
		g.Get(p)
		e2e.WantCacheStatus(t, g.Get(p), "craftedge; hit")
	}

	r := g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["entry:1"]}`)
	e2e.WantStatus(t, r, 200)
	if strings.TrimSpace(r.Body) != "{\n  \"purged\": 1\n}" {
		t.Fatalf("purge answered %q", r.Body)
	}
	// Soft (the default purge_mode): the copy is kept, stale, and the
	// next request revalidates it.
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; fwd=stale; stored")
	e2e.WantCacheStatus(t, g.Get("/b"), "craftedge; hit")
	// Hard: the copy is gone.
	r = g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["entry:1"],"mode":"hard"}`)
	e2e.WantStatus(t, r, 200)
	if strings.TrimSpace(r.Body) != "{\n  \"purged\": 1\n}" {
		t.Fatalf("hard purge answered %q", r.Body)
	}
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; fwd=miss; stored")

	// A URL without query purges every query variant of the path.
	r = g.Admin(http.MethodPost, "/craftedge/purge", `{"urls":["`+e2e.SiteAddr+`/blog/c"]}`)
	e2e.WantStatus(t, r, 200)
	if !strings.Contains(r.Body, `"purged": 2`) {
		t.Fatalf("url purge answered %q", r.Body)
	}
	g.Get("/blog/c")
	g.Get("/blog/c?page=2")
	// A URL with a query purges only that variant.
	r = g.Admin(http.MethodPost, "/craftedge/purge", `{"urls":["`+e2e.SiteAddr+`/blog/c?page=2"]}`)
	if !strings.Contains(r.Body, `"purged": 1`) {
		t.Fatalf("url+query purge answered %q", r.Body)
	}
	e2e.WantCacheStatus(t, g.Get("/blog/c"), "craftedge; hit")
	g.Get("/blog/c?page=2")

	r = g.Admin(http.MethodPost, "/craftedge/purge", `{"prefixes":["`+e2e.SiteAddr+`/blog/"]}`)
	if !strings.Contains(r.Body, `"purged": 2`) {
		t.Fatalf("prefix purge answered %q", r.Body)
	}
	e2e.WantCacheStatus(t, g.Get("/b"), "craftedge; hit")
	r = g.Admin(http.MethodPost, "/craftedge/purge", `{"all":true}`)
	e2e.WantStatus(t, r, 200)
	e2e.WantCacheStatus(t, g.Get("/b"), "craftedge; fwd=miss; stored")
}

func TestPurgeRejectsMalformedRequests(t *testing.T) {
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{})
	for _, body := range []string{
		``, `{`, `[]`, `{}`, `{"tags":[]}`, `{"tags":"x"}`, `{"tag":["x"]}`,
		`{"urls":["/relative"]}`, `{"urls":["ftp://x/y"]}`, `{"tags":[""]}`, `{"tags":["a"]} {"tags":["b"]}`,
		`{"tags":["a"],"mode":"gentle"}`, `{"tags":["a"],"mode":"SOFT"}`, `{"all":true,"mode":"soft"}`, `{"mode":"hard"}`,
		// Longer than a bbolt key: refused whole, never half-applied.
		`{"tags":["` + strings.Repeat("t", 60000) + `"]}`,
		`{"urls":["http://example.com/` + strings.Repeat("u", 40000) + `"]}`,
	} {
		r := g.Admin(http.MethodPost, "/craftedge/purge", body)
		if r.Status != http.StatusBadRequest {
			t.Fatalf("body %.80q: status %d, want 400 (%.200s)", body, r.Status, r.Body)
		}
		if !strings.Contains(r.Body, "error") {
			t.Fatalf("body %q: no error message: %s", body, r.Body)
		}
	}
	e2e.WantStatus(t, g.Admin(http.MethodGet, "/craftedge/purge", ""), http.StatusMethodNotAllowed)
	e2e.WantStatus(t, g.Admin(http.MethodPut, "/craftedge/snapshot-only", `{"upstream":"craft"}`), http.StatusBadRequest)
	e2e.WantStatus(t, g.Admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":"yes"}`), http.StatusBadRequest)
}

func TestCachePurgeTagFromUpstreamPurgesAndIsHidden(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/entry", e2e.PageHandler("entry", "entry:7"))
	o.Handle("/admin/entries/7", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Purge-Tag", "entry:7, other")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"saved":true}`))
	})
	// stale_after off: the soft-purged copy never answers before the
	// origin (which one answers first would be timing).
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "stale_after off"})
	g.Get("/entry")
	e2e.WantCacheStatus(t, g.Get("/entry"), "craftedge; hit")

	save := g.Do(http.MethodPost, "/admin/entries/7", nil, "title=x")
	e2e.WantStatus(t, save, 200)
	e2e.WantCacheStatusPrefix(t, save, "craftedge; fwd=bypass")
	if save.Header.Get("Cache-Purge-Tag") != "" {
		t.Fatal("Cache-Purge-Tag reached the client")
	}
	// Purged softly (purge_mode's default): revalidated, not a miss.
	e2e.WantCacheStatus(t, g.Get("/entry"), "craftedge; fwd=stale; stored")
}

func TestCraftRequestsBypass(t *testing.T) {
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "bypass_cookie cart_*\nbypass_path /checkout*\nbypass_query nocache\nbypass_header X-No-Cache"})
	cases := []struct {
		name, method, path string
		headers            map[string]string
		detail             string
	}{
		{"cp", "GET", "/admin/entries", nil, "cp"},
		{"cp index.php", "GET", "/index.php?p=admin/settings", nil, "cp"},
		{"action path", "GET", "/actions/users/session-info", nil, "action"},
		{"action param", "GET", "/?action=users/login", nil, "action"},
		{"preview token", "GET", "/blog/x?token=abc", nil, "token"},
		{"site token", "GET", "/blog/x?siteToken=abc", nil, "token"},
		{"preview header", "GET", "/blog/x", map[string]string{"X-Craft-Preview-Token": "t"}, "token"},
		{"session cookie", "GET", "/blog/x", map[string]string{"Cookie": "CraftSessionId=abc"}, "session"},
		{"namespaced session", "GET", "/blog/x", map[string]string{"Cookie": "a=b; SiteCraftSessionId=abc"}, "session"},
		{"identity cookie", "GET", "/blog/x", map[string]string{"Cookie": "0123456789abcdef0123456789abcdef_identity=x"}, "identity"},
		{"authorization", "GET", "/blog/x", map[string]string{"Authorization": "Bearer x"}, "authorization"},
		{"post", "POST", "/contact", nil, "method"},
		{"extra cookie", "GET", "/blog/x", map[string]string{"Cookie": "cart_id=1"}, "cookie"},
		{"extra path", "GET", "/checkout/pay", nil, "path"},
		{"extra query", "GET", "/blog/x?nocache=1", nil, "query"},
		{"extra header", "GET", "/blog/x", map[string]string{"X-No-Cache": "1"}, "header"},
		{"websocket", "GET", "/ws", map[string]string{"Upgrade": "websocket", "Connection": "Upgrade"}, "upgrade"},
	}
	for _, tc := range cases {
		before := o.Total.Load()
		for i := 0; i < 2; i++ {
			r := g.Do(tc.method, tc.path, tc.headers, "")
			e2e.WantCacheStatus(t, r, "craftedge; fwd=bypass; detail="+tc.detail)
		}
		if got := o.Total.Load() - before; got != 2 {
			t.Fatalf("%s: origin saw %d requests, want 2 (bypass is never cached)", tc.name, got)
		}
	}
	// A bypassed request never populates the cache for anonymous visitors.
	e2e.WantCacheStatus(t, g.Get("/blog/x"), "craftedge; fwd=miss; stored")
}

func TestPrivateResponsesNeverStored(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/cookie", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "CraftSessionId", Value: "secret-" + r.RemoteAddr})
		_, _ = w.Write([]byte("personal page"))
	})
	o.Handle("/private", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private, max-age=600")
		_, _ = w.Write([]byte("private"))
	})
	o.Handle("/nostore", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("nostore"))
	})
	g := e2e.StartGateway(t, o, e2e.Options{})
	for _, p := range []string{"/cookie", "/private", "/nostore"} {
		for i := 0; i < 2; i++ {
			r := g.Get(p)
			e2e.WantStatus(t, r, 200)
			e2e.WantCacheStatusPrefix(t, r, "craftedge; fwd=miss; detail=")
		}
		if o.Count(p) != 2 {
			t.Fatalf("%s: origin saw %d requests, want 2", p, o.Count(p))
		}
	}
	if g.Get("/cookie").Header.Get("Set-Cookie") == "" {
		t.Fatal("Set-Cookie must pass through on an uncached response")
	}
}

func TestFreshnessFromOriginHeaders(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/smax", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=5, s-maxage=120")
		_, _ = w.Write([]byte(e2e.HTMLPage("smax")))
	})
	o.Handle("/nocache", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Etag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = w.Write([]byte(e2e.HTMLPage("nocache")))
	})
	g := e2e.StartGateway(t, o, e2e.Options{})
	g.Get("/smax")
	e2e.Advance(60 * time.Second) // past max-age, within s-maxage
	e2e.WantCacheStatus(t, g.Get("/smax"), "craftedge; hit")
	e2e.Advance(61 * time.Second)
	e2e.WantCacheStatusPrefix(t, g.Get("/smax"), "craftedge; fwd=")

	// no-cache: stored, but revalidated with the origin's validator on
	// every use; a 304 from the origin refreshes the copy.
	e2e.WantCacheStatus(t, g.Get("/nocache"), "craftedge; fwd=miss; stored")
	r := g.Get("/nocache")
	e2e.WantCacheStatus(t, r, "craftedge; fwd=stale; fwd-status=304; stored")
	if !strings.Contains(r.Body, "nocache") {
		t.Fatal("revalidated response lost its body")
	}
	if o.Count("/nocache") != 2 {
		t.Fatalf("origin saw %d requests, want 2", o.Count("/nocache"))
	}
}

func TestVaryKeepsVariantsApart(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/v", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Vary", "X-Lang")
		_, _ = w.Write([]byte("lang=" + r.Header.Get("X-Lang")))
	})
	g := e2e.StartGateway(t, o, e2e.Options{})
	if b := g.Get("/v", "X-Lang", "de").Body; b != "lang=de" {
		t.Fatalf("got %q", b)
	}
	if b := g.Get("/v", "X-Lang", "fr").Body; b != "lang=fr" {
		t.Fatalf("got %q", b)
	}
	r := g.Get("/v", "X-Lang", "de")
	e2e.WantCacheStatus(t, r, "craftedge; hit")
	if r.Body != "lang=de" {
		t.Fatalf("variant mixed up: %q", r.Body)
	}
	// 3: the first call sends no X-Lang (nothing unkeyed reaches the
	// origin) and is stored as the variant for its absence; the marker
	// then lets "de" through for the German visitor, and "fr" after it.
	if o.Count("/v") != 3 {
		t.Fatalf("origin saw %d, want 3", o.Count("/v"))
	}
	if b := g.Get("/v").Body; b != "lang=" {
		t.Fatalf("visitor without X-Lang got %q", b)
	}
}

func TestConcurrentMissesMakeOneUpstreamCall(t *testing.T) {
	o := e2e.NewOrigin(t)
	release := make(chan struct{})
	o.Handle("/slow", func(w http.ResponseWriter, r *http.Request) {
		<-release
		e2e.PageHandler("coalesced", "x")(w, r)
	})
	g := e2e.StartGateway(t, o, e2e.Options{})
	const n = 8
	var wg sync.WaitGroup
	results := make([]e2e.Response, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i] = g.Get("/slow")
		}(i)
	}
	e2e.WaitFor(t, "all requests to join one upstream call", func() bool {
		return inFlight.Load() == n && o.Count("/slow") == 1
	})
	close(release)
	wg.Wait()
	collapsed := 0
	for _, r := range results {
		e2e.WantStatus(t, r, 200)
		if !strings.Contains(r.Body, "coalesced") {
			t.Fatal("a waiter got a wrong body")
		}
		if strings.HasSuffix(r.Header.Get("Cache-Status"), "; collapsed") {
			collapsed++
		}
	}
	if collapsed != n-1 {
		t.Fatalf("%d responses say collapsed, want %d", collapsed, n-1)
	}
	if got := o.Count("/slow"); got != 1 {
		t.Fatalf("origin saw %d requests, want 1", got)
	}
}

func TestCoalescedPrivateResponseIsNotShared(t *testing.T) {
	o := e2e.NewOrigin(t)
	release := make(chan struct{})
	var mu sync.Mutex
	n := 0
	o.Handle("/me", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		id := n
		mu.Unlock()
		if id == 1 {
			<-release
		}
		http.SetCookie(w, &http.Cookie{Name: "visitor", Value: string(rune('0' + id))})
		_, _ = w.Write([]byte("visitor " + string(rune('0'+id))))
	})
	g := e2e.StartGateway(t, o, e2e.Options{})
	var wg sync.WaitGroup
	results := make([]e2e.Response, 3)
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i] = g.Get("/me")
		}(i)
	}
	e2e.WaitFor(t, "requests to join", func() bool { return inFlight.Load() == 3 })
	close(release)
	wg.Wait()
	seen := map[string]bool{}
	for _, r := range results {
		if seen[r.Body] {
			t.Fatalf("two visitors got the same private response %q", r.Body)
		}
		seen[r.Body] = true
	}
}

func TestOversizedResponseStreamsUncached(t *testing.T) {
	o := e2e.NewOrigin(t)
	big := strings.Repeat("x", 200<<10)
	o.Handle("/big", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(big))
	})
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "max_entry_size 64KiB"})
	for i := 0; i < 2; i++ {
		r := g.Get("/big")
		e2e.WantStatus(t, r, 200)
		if r.Body != big {
			t.Fatalf("body truncated: %d bytes", len(r.Body))
		}
	}
	if o.Count("/big") != 2 {
		t.Fatalf("origin saw %d, want 2", o.Count("/big"))
	}
}

func TestGraphQLPostCachedByBodyAndToken(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/api", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		body, _ := io.ReadAll(r.Body)
		_, _ = w.Write([]byte(`{"data":{"echo":` + e2e.JSONQuote(string(body)+"|"+r.Header.Get("Authorization")) + `}}`))
	})
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "graphql /api"})
	q1 := `{"query":"{ entries { title } }"}`
	q2 := `{"query":"{ entries { id } }"}`
	post := func(body, token string) e2e.Response {
		h := map[string]string{"Content-Type": "application/json"}
		if token != "" {
			h["Authorization"] = "Bearer " + token
		}
		return g.Do(http.MethodPost, "/api", h, body)
	}
	e2e.WantCacheStatus(t, post(q1, "a"), "craftedge; fwd=miss; stored")
	r := post(q1, "a")
	e2e.WantCacheStatus(t, r, "craftedge; hit")
	if !strings.Contains(r.Body, "Bearer a") {
		t.Fatalf("wrong body %q", r.Body)
	}
	e2e.WantCacheStatus(t, post(q1, "b"), "craftedge; fwd=miss; stored")
	e2e.WantCacheStatus(t, post(q2, "a"), "craftedge; fwd=miss; stored")
	m := post(`{"query":"mutation { save(title: \"x\") { id } }"}`, "a")
	e2e.WantCacheStatus(t, m, "craftedge; fwd=bypass; detail=graphql-mutation")
	if o.Count("/api") != 4 {
		t.Fatalf("origin saw %d, want 4", o.Count("/api"))
	}
}

func TestTagHeaderIgnoreQueryAndExposeTags(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/t", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Tags", "custom:1,custom:2")
		_, _ = w.Write([]byte(e2e.HTMLPage("tags")))
	})
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "tag_header X-Tags\nexpose_tags\nignore_query sessionref v*"})
	r := g.Get("/t?sessionref=abc&view=1")
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; stored")
	if r.Header.Get("X-Tags") != "custom:1,custom:2" {
		t.Fatalf("expose_tags: X-Tags = %q", r.Header.Get("X-Tags"))
	}
	e2e.WantCacheStatus(t, g.Get("/t"), "craftedge; hit")
	r = g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["custom:2"]}`)
	if !strings.Contains(r.Body, `"purged": 1`) {
		t.Fatalf("purge by custom tag header answered %s", r.Body)
	}
	r = g.Admin(http.MethodPost, "/craftedge/purge", `{"hosts":["`+e2e.SiteHost+`"]}`)
	e2e.WantStatus(t, r, 200)
}
