package caddymodule

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMissThenHitWithTagsStripped(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/blog/hello", pageHandler("hello", "entry:1 section:blog"))
	g := startGateway(t, o, gatewayOptions{})

	r1 := g.get("/blog/hello")
	wantStatus(t, r1, 200)
	wantCacheStatus(t, r1, "craftedge; fwd=miss; stored")
	if r1.header.Get("Cache-Tag") != "" {
		t.Fatalf("Cache-Tag leaked to the client: %q", r1.header.Get("Cache-Tag"))
	}
	r2 := g.get("/blog/hello")
	wantCacheStatus(t, r2, "craftedge; hit")
	if r2.body != r1.body || !strings.Contains(r2.body, "hello") {
		t.Fatalf("hit body differs from miss body")
	}
	if r2.header.Get("Age") == "" || r2.header.Get("Etag") == "" {
		t.Fatalf("hit lacks Age or ETag: %v", r2.header)
	}
	if got := o.count("/blog/hello"); got != 1 {
		t.Fatalf("origin saw %d requests, want 1", got)
	}
	// Tracking parameters and parameter order do not split the cache.
	r3 := g.get("/blog/hello?utm_source=news&gclid=x")
	wantCacheStatus(t, r3, "craftedge; hit")
	// HEAD is served from the stored GET.
	r4 := g.do(http.MethodHead, "/blog/hello", nil, "")
	wantCacheStatus(t, r4, "craftedge; hit")
	if r4.body != "" {
		t.Fatalf("HEAD got a body")
	}
	// Age grows with the clock; past ttl the entry is refetched.
	advance(30 * time.Second)
	if age := g.get("/blog/hello").header.Get("Age"); age != "30" {
		t.Fatalf("Age = %q, want 30", age)
	}
	advance(31 * time.Second)
	wantCacheStatusPrefix(t, g.get("/blog/hello"), "craftedge; fwd=")
	if got := o.count("/blog/hello"); got != 2 {
		t.Fatalf("origin saw %d requests after ttl, want 2", got)
	}
}

func TestEncodingsServedFromStoredVariants(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/p", pageHandler("encodings", "p"))
	g := startGateway(t, o, gatewayOptions{})
	identity := g.get("/p").body

	for _, tc := range []struct{ accept, coding string }{
		{"gzip", "gzip"},
		{"gzip, deflate, br, zstd", "zstd"},
		{"zstd;q=0, gzip", "gzip"},
		{"", ""},
		{"br", ""},
	} {
		r := g.get("/p", "Accept-Encoding", tc.accept)
		wantCacheStatus(t, r, "craftedge; hit")
		if got := r.header.Get("Content-Encoding"); got != tc.coding {
			t.Fatalf("Accept-Encoding %q: Content-Encoding %q, want %q", tc.accept, got, tc.coding)
		}
		if !strings.Contains(r.header.Get("Vary"), "Accept-Encoding") {
			t.Fatalf("Accept-Encoding %q: Vary %q lacks Accept-Encoding", tc.accept, r.header.Get("Vary"))
		}
		body := r.body
		switch tc.coding {
		case "gzip":
			body = gunzip(t, body)
		case "zstd":
			body = unzstd(t, body)
		}
		if body != identity {
			t.Fatalf("Accept-Encoding %q: decoded body differs", tc.accept)
		}
	}
	// Each variant has its own strong ETag.
	gz := g.get("/p", "Accept-Encoding", "gzip").header.Get("Etag")
	id := g.get("/p").header.Get("Etag")
	if gz == id || gz == "" {
		t.Fatalf("gzip ETag %q must differ from identity ETag %q", gz, id)
	}
}

func TestUpstreamCompressedBodyIsDecodedAndStored(t *testing.T) {
	o := newTestOrigin(t)
	g := startGateway(t, o, gatewayOptions{handlerExtra: "", globalExtra: ""})
	// reverse_proxy forwards the client's Accept-Encoding; an origin that
	// gzips must still be cached correctly for every client.
	o.handle("/gz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Etag", `"origin-gz"`)
		_, _ = w.Write([]byte(gzipString(t, htmlPage("precompressed"))))
	})
	r1 := g.get("/gz", "Accept-Encoding", "gzip")
	wantCacheStatus(t, r1, "craftedge; fwd=miss; stored")
	if !strings.Contains(gunzip(t, r1.body), "precompressed") {
		t.Fatal("gzip client got a wrong body")
	}
	r2 := g.get("/gz")
	wantCacheStatus(t, r2, "craftedge; hit")
	if r2.header.Get("Content-Encoding") != "" || !strings.Contains(r2.body, "precompressed") {
		t.Fatalf("identity client got an encoded body")
	}
}

func TestConditionalRequestsGet304(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/c", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		_, _ = w.Write([]byte(htmlPage("cond")))
	})
	g := startGateway(t, o, gatewayOptions{})
	r := g.get("/c")
	etag := r.header.Get("Etag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	r304 := g.get("/c", "If-None-Match", etag)
	wantStatus(t, r304, http.StatusNotModified)
	wantCacheStatus(t, r304, "craftedge; hit")
	wantStatus(t, g.get("/c", "If-None-Match", `"other"`), 200)
	wantStatus(t, g.get("/c", "If-Modified-Since", "Tue, 03 Jan 2006 00:00:00 GMT"), http.StatusNotModified)
	wantStatus(t, g.get("/c", "If-Modified-Since", "Sun, 01 Jan 2006 00:00:00 GMT"), 200)
	// The gzip variant's ETag validates too.
	gz := g.get("/c", "Accept-Encoding", "gzip").header.Get("Etag")
	wantStatus(t, g.get("/c", "Accept-Encoding", "gzip", "If-None-Match", gz), http.StatusNotModified)
	if o.count("/c") != 1 {
		t.Fatalf("origin saw %d requests, want 1", o.count("/c"))
	}
}

func TestPurgeByTagURLPrefixAndAll(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/a", pageHandler("a", "entry:1"))
	o.handle("/b", pageHandler("b", "entry:2"))
	o.handle("/blog/c", pageHandler("c", "entry:3"))
	g := startGateway(t, o, gatewayOptions{})
	for _, p := range []string{"/a", "/b", "/blog/c", "/blog/c?page=2"} {
		g.get(p)
		wantCacheStatus(t, g.get(p), "craftedge; hit")
	}

	r := g.admin(http.MethodPost, "/craftedge/purge", `{"tags":["entry:1"]}`)
	wantStatus(t, r, 200)
	if strings.TrimSpace(r.body) != "{\n  \"purged\": 1\n}" {
		t.Fatalf("purge answered %q", r.body)
	}
	wantCacheStatus(t, g.get("/a"), "craftedge; fwd=miss; stored")
	wantCacheStatus(t, g.get("/b"), "craftedge; hit")

	// A URL without query purges every query variant of the path.
	r = g.admin(http.MethodPost, "/craftedge/purge", `{"urls":["`+siteAddr+`/blog/c"]}`)
	wantStatus(t, r, 200)
	if !strings.Contains(r.body, `"purged": 2`) {
		t.Fatalf("url purge answered %q", r.body)
	}
	g.get("/blog/c")
	g.get("/blog/c?page=2")
	// A URL with a query purges only that variant.
	r = g.admin(http.MethodPost, "/craftedge/purge", `{"urls":["`+siteAddr+`/blog/c?page=2"]}`)
	if !strings.Contains(r.body, `"purged": 1`) {
		t.Fatalf("url+query purge answered %q", r.body)
	}
	wantCacheStatus(t, g.get("/blog/c"), "craftedge; hit")
	g.get("/blog/c?page=2")

	r = g.admin(http.MethodPost, "/craftedge/purge", `{"prefixes":["`+siteAddr+`/blog/"]}`)
	if !strings.Contains(r.body, `"purged": 2`) {
		t.Fatalf("prefix purge answered %q", r.body)
	}
	wantCacheStatus(t, g.get("/b"), "craftedge; hit")
	r = g.admin(http.MethodPost, "/craftedge/purge", `{"all":true}`)
	wantStatus(t, r, 200)
	wantCacheStatus(t, g.get("/b"), "craftedge; fwd=miss; stored")
}

func TestPurgeRejectsMalformedRequests(t *testing.T) {
	o := newTestOrigin(t)
	g := startGateway(t, o, gatewayOptions{})
	for _, body := range []string{
		``, `{`, `[]`, `{}`, `{"tags":[]}`, `{"tags":"x"}`, `{"tag":["x"]}`,
		`{"urls":["/relative"]}`, `{"urls":["ftp://x/y"]}`, `{"tags":[""]}`, `{"tags":["a"]} {"tags":["b"]}`,
	} {
		r := g.admin(http.MethodPost, "/craftedge/purge", body)
		if r.status != http.StatusBadRequest {
			t.Fatalf("body %q: status %d, want 400 (%s)", body, r.status, r.body)
		}
		if !strings.Contains(r.body, "error") {
			t.Fatalf("body %q: no error message: %s", body, r.body)
		}
	}
	wantStatus(t, g.admin(http.MethodGet, "/craftedge/purge", ""), http.StatusMethodNotAllowed)
	wantStatus(t, g.admin(http.MethodPut, "/craftedge/snapshot-only", `{"upstream":"craft"}`), http.StatusBadRequest)
	wantStatus(t, g.admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":"yes"}`), http.StatusBadRequest)
}

func TestCachePurgeTagFromUpstreamPurgesAndIsHidden(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/entry", pageHandler("entry", "entry:7"))
	o.handle("/admin/entries/7", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Purge-Tag", "entry:7, other")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"saved":true}`))
	})
	g := startGateway(t, o, gatewayOptions{})
	g.get("/entry")
	wantCacheStatus(t, g.get("/entry"), "craftedge; hit")

	save := g.do(http.MethodPost, "/admin/entries/7", nil, "title=x")
	wantStatus(t, save, 200)
	wantCacheStatusPrefix(t, save, "craftedge; fwd=bypass")
	if save.header.Get("Cache-Purge-Tag") != "" {
		t.Fatal("Cache-Purge-Tag reached the client")
	}
	wantCacheStatus(t, g.get("/entry"), "craftedge; fwd=miss; stored")
}

func TestCraftRequestsBypass(t *testing.T) {
	o := newTestOrigin(t)
	g := startGateway(t, o, gatewayOptions{handlerExtra: "bypass_cookie cart_*\nbypass_path /checkout*\nbypass_query nocache\nbypass_header X-No-Cache"})
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
		before := o.total.Load()
		for i := 0; i < 2; i++ {
			r := g.do(tc.method, tc.path, tc.headers, "")
			wantCacheStatus(t, r, "craftedge; fwd=bypass; detail="+tc.detail)
		}
		if got := o.total.Load() - before; got != 2 {
			t.Fatalf("%s: origin saw %d requests, want 2 (bypass is never cached)", tc.name, got)
		}
	}
	// A bypassed request never populates the cache for anonymous visitors.
	wantCacheStatus(t, g.get("/blog/x"), "craftedge; fwd=miss; stored")
}

func TestPrivateResponsesNeverStored(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/cookie", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "CraftSessionId", Value: "secret-" + r.RemoteAddr})
		_, _ = w.Write([]byte("personal page"))
	})
	o.handle("/private", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private, max-age=600")
		_, _ = w.Write([]byte("private"))
	})
	o.handle("/nostore", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("nostore"))
	})
	g := startGateway(t, o, gatewayOptions{})
	for _, p := range []string{"/cookie", "/private", "/nostore"} {
		for i := 0; i < 2; i++ {
			r := g.get(p)
			wantStatus(t, r, 200)
			wantCacheStatusPrefix(t, r, "craftedge; fwd=miss; detail=")
		}
		if o.count(p) != 2 {
			t.Fatalf("%s: origin saw %d requests, want 2", p, o.count(p))
		}
	}
	if g.get("/cookie").header.Get("Set-Cookie") == "" {
		t.Fatal("Set-Cookie must pass through on an uncached response")
	}
}

func TestFreshnessFromOriginHeaders(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/smax", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=5, s-maxage=120")
		_, _ = w.Write([]byte(htmlPage("smax")))
	})
	o.handle("/nocache", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Etag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = w.Write([]byte(htmlPage("nocache")))
	})
	g := startGateway(t, o, gatewayOptions{})
	g.get("/smax")
	advance(60 * time.Second) // past max-age, within s-maxage
	wantCacheStatus(t, g.get("/smax"), "craftedge; hit")
	advance(61 * time.Second)
	wantCacheStatusPrefix(t, g.get("/smax"), "craftedge; fwd=")

	// no-cache: stored, but revalidated with the origin's validator on
	// every use; a 304 from the origin refreshes the copy.
	wantCacheStatus(t, g.get("/nocache"), "craftedge; fwd=miss; stored")
	r := g.get("/nocache")
	wantCacheStatus(t, r, "craftedge; fwd=stale; fwd-status=304; stored")
	if !strings.Contains(r.body, "nocache") {
		t.Fatal("revalidated response lost its body")
	}
	if o.count("/nocache") != 2 {
		t.Fatalf("origin saw %d requests, want 2", o.count("/nocache"))
	}
}

func TestVaryKeepsVariantsApart(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/v", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Vary", "X-Lang")
		_, _ = w.Write([]byte("lang=" + r.Header.Get("X-Lang")))
	})
	g := startGateway(t, o, gatewayOptions{})
	if b := g.get("/v", "X-Lang", "de").body; b != "lang=de" {
		t.Fatalf("got %q", b)
	}
	if b := g.get("/v", "X-Lang", "fr").body; b != "lang=fr" {
		t.Fatalf("got %q", b)
	}
	r := g.get("/v", "X-Lang", "de")
	wantCacheStatus(t, r, "craftedge; hit")
	if r.body != "lang=de" {
		t.Fatalf("variant mixed up: %q", r.body)
	}
	// 3: the first call sends no X-Lang (nothing unkeyed reaches the
	// origin) and is stored as the variant for its absence; the marker
	// then lets "de" through for the German visitor, and "fr" after it.
	if o.count("/v") != 3 {
		t.Fatalf("origin saw %d, want 3", o.count("/v"))
	}
	if b := g.get("/v").body; b != "lang=" {
		t.Fatalf("visitor without X-Lang got %q", b)
	}
}

func TestConcurrentMissesMakeOneUpstreamCall(t *testing.T) {
	o := newTestOrigin(t)
	release := make(chan struct{})
	o.handle("/slow", func(w http.ResponseWriter, r *http.Request) {
		<-release
		pageHandler("coalesced", "x")(w, r)
	})
	g := startGateway(t, o, gatewayOptions{})
	const n = 8
	var wg sync.WaitGroup
	results := make([]response, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i] = g.get("/slow")
		}(i)
	}
	waitFor(t, "all requests to join one upstream call", func() bool {
		return inFlight.Load() == n && o.count("/slow") == 1
	})
	close(release)
	wg.Wait()
	collapsed := 0
	for _, r := range results {
		wantStatus(t, r, 200)
		if !strings.Contains(r.body, "coalesced") {
			t.Fatal("a waiter got a wrong body")
		}
		if strings.HasSuffix(r.header.Get("Cache-Status"), "; collapsed") {
			collapsed++
		}
	}
	if collapsed != n-1 {
		t.Fatalf("%d responses say collapsed, want %d", collapsed, n-1)
	}
	if got := o.count("/slow"); got != 1 {
		t.Fatalf("origin saw %d requests, want 1", got)
	}
}

func TestCoalescedPrivateResponseIsNotShared(t *testing.T) {
	o := newTestOrigin(t)
	release := make(chan struct{})
	var mu sync.Mutex
	n := 0
	o.handle("/me", func(w http.ResponseWriter, r *http.Request) {
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
	g := startGateway(t, o, gatewayOptions{})
	var wg sync.WaitGroup
	results := make([]response, 3)
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i] = g.get("/me")
		}(i)
	}
	waitFor(t, "requests to join", func() bool { return inFlight.Load() == 3 })
	close(release)
	wg.Wait()
	seen := map[string]bool{}
	for _, r := range results {
		if seen[r.body] {
			t.Fatalf("two visitors got the same private response %q", r.body)
		}
		seen[r.body] = true
	}
}

func TestOversizedResponseStreamsUncached(t *testing.T) {
	o := newTestOrigin(t)
	big := strings.Repeat("x", 200<<10)
	o.handle("/big", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(big))
	})
	g := startGateway(t, o, gatewayOptions{handlerExtra: "max_entry_size 64KiB"})
	for i := 0; i < 2; i++ {
		r := g.get("/big")
		wantStatus(t, r, 200)
		if r.body != big {
			t.Fatalf("body truncated: %d bytes", len(r.body))
		}
	}
	if o.count("/big") != 2 {
		t.Fatalf("origin saw %d, want 2", o.count("/big"))
	}
}

func TestGraphQLPostCachedByBodyAndToken(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/api", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		body, _ := io.ReadAll(r.Body)
		_, _ = w.Write([]byte(`{"data":{"echo":` + jsonQuote(string(body)+"|"+r.Header.Get("Authorization")) + `}}`))
	})
	g := startGateway(t, o, gatewayOptions{handlerExtra: "graphql /api"})
	q1 := `{"query":"{ entries { title } }"}`
	q2 := `{"query":"{ entries { id } }"}`
	post := func(body, token string) response {
		h := map[string]string{"Content-Type": "application/json"}
		if token != "" {
			h["Authorization"] = "Bearer " + token
		}
		return g.do(http.MethodPost, "/api", h, body)
	}
	wantCacheStatus(t, post(q1, "a"), "craftedge; fwd=miss; stored")
	r := post(q1, "a")
	wantCacheStatus(t, r, "craftedge; hit")
	if !strings.Contains(r.body, "Bearer a") {
		t.Fatalf("wrong body %q", r.body)
	}
	wantCacheStatus(t, post(q1, "b"), "craftedge; fwd=miss; stored")
	wantCacheStatus(t, post(q2, "a"), "craftedge; fwd=miss; stored")
	m := post(`{"query":"mutation { save(title: \"x\") { id } }"}`, "a")
	wantCacheStatus(t, m, "craftedge; fwd=bypass; detail=graphql-mutation")
	if o.count("/api") != 4 {
		t.Fatalf("origin saw %d, want 4", o.count("/api"))
	}
}

func TestTagHeaderIgnoreQueryAndExposeTags(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/t", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Tags", "custom:1,custom:2")
		_, _ = w.Write([]byte(htmlPage("tags")))
	})
	g := startGateway(t, o, gatewayOptions{handlerExtra: "tag_header X-Tags\nexpose_tags\nignore_query sessionref v*"})
	r := g.get("/t?sessionref=abc&view=1")
	wantCacheStatus(t, r, "craftedge; fwd=miss; stored")
	if r.header.Get("X-Tags") != "custom:1,custom:2" {
		t.Fatalf("expose_tags: X-Tags = %q", r.header.Get("X-Tags"))
	}
	wantCacheStatus(t, g.get("/t"), "craftedge; hit")
	r = g.admin(http.MethodPost, "/craftedge/purge", `{"tags":["custom:2"]}`)
	if !strings.Contains(r.body, `"purged": 1`) {
		t.Fatalf("purge by custom tag header answered %s", r.body)
	}
	r = g.admin(http.MethodPost, "/craftedge/purge", `{"hosts":["`+siteHost+`"]}`)
	wantStatus(t, r, 200)
}
