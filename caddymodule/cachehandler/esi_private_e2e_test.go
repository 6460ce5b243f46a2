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

// TestESIPrivateNested: a private fragment that opts into ESI has its own
// includes resolved (a cached one, a private one with the visitor's
// cookies), within max_depth counted from the page; one that does not opt
// in is never parsed.
func TestESIPrivateNested(t *testing.T) {
	o := e2e.NewOrigin(t)
	private := func(body string, optIn bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "private, no-store")
			if optIn {
				w.Header().Set("Surrogate-Control", `content="ESI/1.0"`)
			}
			name := "guest"
			if c, err := r.Cookie("name"); err == nil {
				name = c.Value
			}
			_, _ = w.Write([]byte("[" + name + body + "]"))
		}
	}
	o.Handle("/p", esiPage(`<esi:include src="/frag/me"/>|<esi:include src="/frag/raw"/>`, ""))
	o.Handle("/frag/me", private(`:<esi:include src="/frag/shared"/>:<esi:include src="/frag/cart"/>:<esi:include src="/d/1" onerror="continue"/>`, true))
	o.Handle("/frag/cart", private(" cart", false))
	shared := newFragment("shared", "public, max-age=60", "")
	o.Handle("/frag/shared", shared.ServeHTTP)
	o.Handle("/d/1", esiPage(`d1<esi:include src="/d/2" onerror="continue"/>`, ""))
	o.Handle("/d/2", esiPage(`d2`, ""))
	o.Handle("/frag/raw", private(`<esi:include src="/frag/shared"/>`, false))
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "esi {\n max_depth 2\n private_path /frag/me /frag/cart /frag/raw\n }"})

	for _, name := range []string{"ann", "bob", "ann"} {
		r := g.Get("/p", "Cookie", "name="+name)
		want := "[" + name + ":shared:[" + name + " cart]:d1]|[" + name + `<esi:include src="/frag/shared"/>]`
		if r.Status != 200 || r.Body != want {
			t.Fatalf("%s: %d %q, want %q (%s)", name, r.Status, r.Body, want, r.Header.Get("Cache-Status"))
		}
		if cc := r.Header.Get("Cache-Control"); cc != "private, no-store" {
			t.Fatalf("%s: Cache-Control %q", name, cc)
		}
		if r.Header.Get("Surrogate-Control") != "" {
			t.Fatalf("%s: Surrogate-Control reached the client", name)
		}
	}
	if n := o.Count("/d/2"); n != 0 {
		t.Errorf("an include beyond max_depth (inside a private fragment) was fetched %d times", n)
	}
	if n := o.Count("/frag/shared"); n != 1 {
		t.Errorf("the cached fragment inside the private one was fetched %d times, want 1", n)
	}
	if n := o.Count("/frag/cart"); n != 3 {
		t.Errorf("the private fragment inside the private one was fetched %d times, want once per view (3)", n)
	}

	// Past its max-age, the cached fragment (kept decoded for these
	// assemblies, which are never memoized whole) is fetched again.
	e2e.Advance(61 * time.Second)
	shared.set("shared2", "public, max-age=60", 0)
	if r := g.Get("/p", "Cookie", "name=ann"); r.Body != "[ann:shared2:[ann cart]:d1]|[ann"+`<esi:include src="/frag/shared"/>]` {
		t.Fatalf("after the cached fragment expired: %q (%s)", r.Body, r.Header.Get("Cache-Status"))
	}
}

// TestESIMemoSeesFragmentPurges: a page served from its memoized assembly
// shows a fragment's new version after any purge that covers only the
// fragment (URL, prefix, tag), never the memo's old copy.
func TestESIMemoSeesFragmentPurges(t *testing.T) {
	o := e2e.NewOrigin(t)
	nav := newFragment("<nav>v0</nav>", "max-age=600", "nav")
	o.Handle("/frag/nav", nav.ServeHTTP)
	o.Handle("/page", esiPage(`A<esi:include src="/frag/nav"/>B`, "page"))
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "esi"})
	g.Get("/page")
	for i, purge := range []string{
		`{"prefixes":["http://` + e2e.SiteHost + `/frag/"]}`,
		`{"urls":["http://` + e2e.SiteHost + `/frag/nav"]}`,
		`{"tags":["nav"]}`,
	} {
		// Memoized: two hits with nothing fetched.
		for range 2 {
			r := g.Get("/page")
			e2e.WantCacheStatus(t, r, `craftedge; hit, craftedge-esi; hit; key="/frag/nav"`)
		}
		v := "v" + string(rune('1'+i))
		nav.set("<nav>"+v+"</nav>", "max-age=600", 0)
		e2e.Purge(g, purge)
		r := g.Get("/page")
		if want := "A<nav>" + v + "</nav>B"; r.Body != want {
			t.Fatalf("after purge %s: %q, want %q (%s)", purge, r.Body, want, r.Header.Get("Cache-Status"))
		}
		if !strings.HasPrefix(r.Header.Get("Cache-Status"), "craftedge; hit,") {
			t.Errorf("purge %s purged the page: %s", purge, r.Header.Get("Cache-Status"))
		}
	}
}

// TestESIMemoAcrossPurges: a purge that leaves a memoized page's fragments
// standing (another tag) keeps its memo (checked against the fragments'
// generations, nothing fetched); a fragment purged and stored again before
// the page's next hit (a direct request for it) is another generation, and
// the page shows it.
func TestESIMemoAcrossPurges(t *testing.T) {
	o := e2e.NewOrigin(t)
	nav := newFragment("<nav>v0</nav>", "max-age=600", "nav")
	o.Handle("/frag/nav", nav.ServeHTTP)
	o.Handle("/page", esiPage(`A<esi:include src="/frag/nav"/>B`, "page"))
	o.Handle("/other", newFragment("other", "max-age=600", "other").ServeHTTP)
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "esi"})
	g.Get("/page")
	g.Get("/other")
	for _, enc := range []string{"", "gzip", "zstd"} {
		r := g.Get("/page", "Accept-Encoding", enc)
		e2e.WantCacheStatus(t, r, `craftedge; hit, craftedge-esi; hit; key="/frag/nav"`)
	}
	fetched := o.Count("/frag/nav")
	e2e.Purge(g, `{"tags":["other"]}`)
	for _, enc := range []string{"", "gzip", "zstd", ""} {
		r := g.Get("/page", "Accept-Encoding", enc)
		e2e.WantCacheStatus(t, r, `craftedge; hit, craftedge-esi; hit; key="/frag/nav"`)
		if body := decoded(t, r); body != "A<nav>v0</nav>B" {
			t.Fatalf("after another tag's purge (%q): %q", enc, body)
		}
	}
	if n := o.Count("/frag/nav"); n != fetched {
		t.Fatalf("another tag's purge fetched the fragment %d times", n-fetched)
	}
	nav.set("<nav>v1</nav>", "max-age=600", 0)
	e2e.Purge(g, `{"tags":["nav"]}`)
	if r := g.Get("/frag/nav"); r.Body != "<nav>v1</nav>" {
		t.Fatalf("fragment after its purge: %q", r.Body)
	}
	for _, enc := range []string{"", "gzip", "zstd"} {
		r := g.Get("/page", "Accept-Encoding", enc)
		if body := decoded(t, r); body != "A<nav>v1</nav>B" {
			t.Fatalf("page after its fragment was stored again (%q): %q (%s)", enc, body, r.Header.Get("Cache-Status"))
		}
		e2e.WantCacheStatus(t, r, `craftedge; hit, craftedge-esi; hit; key="/frag/nav"`)
	}
}

// TestESIMemoEndsWithThePage: a memo is served no longer than the page
// entry it was made from is fresh; the page stored again (its origin
// changed meanwhile, no purge) is assembled anew.
func TestESIMemoEndsWithThePage(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/frag/nav", newFragment("<nav>N</nav>", "max-age=3600", "nav").ServeHTTP)
	var version atomic.Int32
	o.Handle("/page", func(w http.ResponseWriter, r *http.Request) {
		esiPage(fmt.Sprintf(`v%d<esi:include src="/frag/nav"/>`, version.Load()), "page")(w, r)
	})
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "esi"})
	g.Get("/page")
	for range 2 {
		r := g.Get("/page")
		e2e.WantCacheStatus(t, r, `craftedge; hit, craftedge-esi; hit; key="/frag/nav"`)
		if r.Body != "v0<nav>N</nav>" {
			t.Fatalf("memoized: %q", r.Body)
		}
	}
	version.Store(1)
	e2e.Advance(301 * time.Second) // the page's max-age=300 is over, the fragment's is not
	r := g.Get("/page")
	if r.Body != "v1<nav>N</nav>" {
		t.Fatalf("after the page expired: %q (%s)", r.Body, r.Header.Get("Cache-Status"))
	}
	for range 2 {
		if r := g.Get("/page"); r.Body != "v1<nav>N</nav>" {
			t.Fatalf("the page stored again: %q (%s)", r.Body, r.Header.Get("Cache-Status"))
		}
	}
}

// decoded is r's body in identity, whatever its Content-Encoding.
func decoded(t *testing.T, r e2e.Response) string {
	t.Helper()
	switch r.Header.Get("Content-Encoding") {
	case "gzip":
		return e2e.Gunzip(t, r.Body)
	case "zstd":
		return e2e.Unzstd(t, r.Body)
	}
	return r.Body
}

// TestESIForwardedHostNotAnIncludeHost: behind a trusted proxy, an
// absolute include naming the X-Forwarded-Host host (which a visitor may
// choose where the proxy passes it on) is refused like any other host, and
// never fetched; path-absolute includes still work, keyed with the page's
// forwarded host.
func TestESIForwardedHostNotAnIncludeHost(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/p", esiPage(`A<esi:include src="http://www.example.org/frag/x"/>B<esi:include src="https://www.example.org/frag/x"/>C<esi:include src="/frag/y"/>D`, ""))
	o.Handle("/frag/x", newFragment("LEAK", "", "").ServeHTTP)
	o.Handle("/frag/y", newFragment("y", "", "").ServeHTTP)
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "esi", ServerExtra: "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}"})
	for _, proto := range []string{"http", "https"} {
		for range 2 {
			r := g.Get("/p", "X-Forwarded-Host", "www.example.org", "X-Forwarded-Proto", proto)
			if r.Status != 200 || r.Body != "ABCyD" {
				t.Fatalf("X-Forwarded-Proto %s: %d %q (%s)", proto, r.Status, r.Body, r.Header.Get("Cache-Status"))
			}
		}
	}
	if n := o.Count("/frag/x"); n != 0 {
		t.Fatalf("an include naming the forwarded host was fetched %d times", n)
	}
}

// TestESIUnderHandlePath: a page served through handle_path has its
// includes fetched through the same upstream with the paths as written,
// and cached under the URL visitors reach them at (the prefix kept), so
// they are shared with direct requests for that URL, purged by it, and
// never mixed up with the site root's own path of the same name.
func TestESIUnderHandlePath(t *testing.T) {
	shop := e2e.NewOrigin(t)
	shop.Handle("/p", esiPage(`A<esi:include src="/frag/x?b=2&a=1"/>B`, ""))
	x := newFragment("shop-x", "max-age=600", "")
	shop.Handle("/frag/x", x.ServeHTTP)
	root := e2e.NewOrigin(t)
	root.Handle("/frag/x", newFragment("root-x", "max-age=600", "").ServeHTTP)
	storage := filepath.Join(t.TempDir(), "craftedge.db")
	g := e2e.StartConfig(t, nil, `{
`+e2e.GlobalPorts()+`	grace_period 1ns
	skip_install_trust
	craftedge {
		storage `+storage+`
		memory 16MiB
	}
}
`+e2e.SiteAddr+` {
	handle_path /shop/* {
		craftedge {
			ttl 1m
			esi
		}
		reverse_proxy `+shop.Addr()+`
	}
	handle {
		craftedge {
			ttl 1m
		}
		reverse_proxy `+root.Addr()+`
	}
}
`, storage)
	for range 2 {
		if r := g.Get("/shop/p"); r.Status != 200 || r.Body != "Ashop-xB" {
			t.Fatalf("/shop/p: %d %q (%s)", r.Status, r.Body, r.Header.Get("Cache-Status"))
		}
	}
	if n := shop.Count("/frag/x"); n != 1 {
		t.Fatalf("the shop's fragment was fetched %d times, want 1", n)
	}
	// The site root's /frag/x is its own.
	if r := g.Get("/frag/x"); r.Body != "root-x" {
		t.Fatalf("/frag/x at the root: %q (%s)", r.Body, r.Header.Get("Cache-Status"))
	}
	// The fragment is the entry of its public URL: a hit for a visitor.
	r := g.Get("/shop/frag/x?a=1&b=2")
	if r.Body != "shop-x" || r.Header.Get("Cache-Status") != "craftedge; hit" {
		t.Fatalf("/shop/frag/x: %q (%s)", r.Body, r.Header.Get("Cache-Status"))
	}
	// A purge of that URL refreshes the page's fragment.
	x.set("shop-x2", "max-age=600", 0)
	e2e.Purge(g, `{"urls":["http://`+e2e.SiteHost+`/shop/frag/x?a=1&b=2"]}`)
	if r := g.Get("/shop/p"); r.Body != "Ashop-x2B" {
		t.Fatalf("after purging /shop/frag/x: %q (%s)", r.Body, r.Header.Get("Cache-Status"))
	}
}

// handlePathGateway serves shop under handle_path <matcher> (esi on) and
// root elsewhere.
func handlePathGateway(t *testing.T, matcher string, shop, root *e2e.Origin) *e2e.Gateway {
	storage := filepath.Join(t.TempDir(), "craftedge.db")
	return e2e.StartConfig(t, nil, `{
`+e2e.GlobalPorts()+`	grace_period 1ns
	skip_install_trust
	craftedge {
		storage `+storage+`
		memory 16MiB
	}
}
`+e2e.SiteAddr+` {
	handle_path `+matcher+` {
		craftedge {
			ttl 1m
			esi
		}
		reverse_proxy `+shop.Addr()+`
	}
	handle {
		craftedge {
			ttl 1m
		}
		reverse_proxy `+root.Addr()+`
	}
}
`, storage)
}

// TestESIUnderHandlePathEncodedSlash: a visitor requesting a page under
// handle_path with the prefix's slash encoded ("/shop%2Fp": handle_path
// matches the decoded path and strips "/shop") must not make the shop's
// fragment the site root's entry of the same path. The prefix was looked
// for in the escaped paths only, so none was found and the includes were
// keyed at the root, as a direct request for /frag/x is: one request
// poisoned /frag/x for every visitor of the root.
func TestESIUnderHandlePathEncodedSlash(t *testing.T) {
	shop := e2e.NewOrigin(t)
	shop.Handle("/p", esiPage(`A<esi:include src="/frag/x"/>B`, ""))
	shop.Handle("/frag/x", newFragment("shop-x", "max-age=600", "").ServeHTTP)
	root := e2e.NewOrigin(t)
	root.Handle("/frag/x", newFragment("root-x", "max-age=600", "").ServeHTTP)
	g := handlePathGateway(t, "/shop/*", shop, root)
	if r := g.Get("/shop%2Fp"); r.Status != 200 || r.Body != "Ashop-xB" {
		t.Fatalf("/shop%%2Fp: %d %q (%s)", r.Status, r.Body, r.Header.Get("Cache-Status"))
	}
	if r := g.Get("/frag/x"); r.Body != "root-x" {
		t.Fatalf("/frag/x at the root after a visitor asked for /shop%%2Fp: %q (%s)", r.Body, r.Header.Get("Cache-Status"))
	}
	// The include is the shop's public /shop/frag/x, as for /shop/p.
	if r := g.Get("/shop/p"); r.Body != "Ashop-xB" {
		t.Fatalf("/shop/p: %q (%s)", r.Body, r.Header.Get("Cache-Status"))
	}
	if n := shop.Count("/frag/x"); n != 1 {
		t.Errorf("the shop's fragment was fetched %d times, want 1 (one entry, /shop/frag/x)", n)
	}
}

// TestESIUnderRewriteNotShared: under a rewrite that is not a strip
// craftedge can find (handle_path /shop* turns /shopx/p into /x/p), the
// includes, fetched through that route, are cached apart from the site
// root's paths of the same name: a visitor choosing such a URL cannot
// decide what the root's /frag/x shows.
func TestESIUnderRewriteNotShared(t *testing.T) {
	shop := e2e.NewOrigin(t)
	shop.Handle("/x/p", esiPage(`A<esi:include src="/frag/x"/>B`, ""))
	shop.Handle("/frag/x", newFragment("shop-x", "max-age=600", "").ServeHTTP)
	root := e2e.NewOrigin(t)
	root.Handle("/frag/x", newFragment("root-x", "max-age=600", "").ServeHTTP)
	g := handlePathGateway(t, "/shop*", shop, root)
	for range 2 {
		if r := g.Get("/shopx/p"); r.Status != 200 || r.Body != "Ashop-xB" {
			t.Fatalf("/shopx/p: %d %q (%s)", r.Status, r.Body, r.Header.Get("Cache-Status"))
		}
	}
	if n := shop.Count("/frag/x"); n != 1 {
		t.Errorf("the shop's fragment was fetched %d times, want 1 (cached)", n)
	}
	if r := g.Get("/frag/x"); r.Body != "root-x" {
		t.Fatalf("/frag/x at the root after a visitor asked for /shopx/p: %q (%s)", r.Body, r.Header.Get("Cache-Status"))
	}
}
