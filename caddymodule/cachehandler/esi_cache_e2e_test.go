package cachehandler

import (
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// esiPage answers an HTML page that opts into ESI.
func esiPage(body, tags string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("Surrogate-Control", `content="ESI/1.0"`)
		if tags != "" {
			w.Header().Set("Cache-Tag", tags)
		}
		_, _ = w.Write([]byte(body))
	}
}

// fragment answers a fragment whose body a test may change, with a
// Cache-Control and status it may change too.
type fragment struct {
	mu     sync.Mutex
	body   string
	cc     string
	tags   string
	status int
	cookie atomic.Value // last Cookie header seen
	capab  atomic.Value // last Surrogate-Capability seen
}

func (f *fragment) set(body, cc string, status int) {
	f.mu.Lock()
	f.body, f.cc, f.status = body, cc, status
	f.mu.Unlock()
}

func (f *fragment) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.cookie.Store(r.Header.Get("Cookie"))
	f.capab.Store(r.Header.Get("Surrogate-Capability"))
	f.mu.Lock()
	body, cc, tags, status := f.body, f.cc, f.tags, f.status
	f.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if cc != "" {
		w.Header().Set("Cache-Control", cc)
	}
	if tags != "" {
		w.Header().Set("Cache-Tag", tags)
	}
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func newFragment(body, cc, tags string) *fragment {
	return &fragment{body: body, cc: cc, tags: tags}
}

var padding = strings.Repeat("<p>Lorem ipsum dolor sit amet.</p>", 30)

// TestESIFragmentsCachedAndPurged: fragments are cache entries of their
// own, a hit assembles the page without calling the upstream, a purge of a
// fragment's tag refreshes the page without purging it, every coding the
// client accepts is assembled from stored segments, and a body that did
// not opt in is never parsed.
func TestESIFragmentsCachedAndPurged(t *testing.T) {
	o := e2e.NewOrigin(t)
	nav := newFragment("<nav>NAV1</nav>", "max-age=60", "nav")
	foot := newFragment("<footer>FOOT</footer>", "", "foot")
	o.Handle("/frag/nav", nav.ServeHTTP)
	o.Handle("/frag/foot", foot.ServeHTTP)
	page := "<html><body>A" + padding + `<esi:include src="/frag/nav"/>B<esi:include src="/frag/foot" onerror="continue"/>C</body></html>`
	o.Handle("/page", esiPage(page, "page"))
	plain := `<html><body>raw <esi:include src="/frag/nav"/></body></html>`
	o.Handle("/plain", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(plain))
	})
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "esi"})

	want := func(navText string) string {
		return "<html><body>A" + padding + "<nav>" + navText + "</nav>B<footer>FOOT</footer>C</body></html>"
	}
	r := g.Get("/page", "Cookie", "_ga=1; CRAFT_CSRF_TOKEN=secret")
	e2e.WantStatus(t, r, 200)
	e2e.WantCacheStatus(t, r, `craftedge; fwd=miss; stored, craftedge-esi; fwd=miss; key="/frag/nav", craftedge-esi; fwd=miss; key="/frag/foot"`)
	if r.Body != want("NAV1") {
		t.Fatalf("assembled page:\n%s", r.Body)
	}
	if r.Header.Get("Content-Length") != "" && r.Header.Get("Content-Length") != "0" && len(r.Body) == 0 {
		t.Fatal("empty body with a length")
	}
	if r.Header.Get("Surrogate-Control") != "" || r.Header.Get("Etag") != "" {
		t.Errorf("Surrogate-Control %q or Etag %q reached the client", r.Header.Get("Surrogate-Control"), r.Header.Get("Etag"))
	}
	if c, _ := nav.cookie.Load().(string); c != "" {
		t.Errorf("a shared fragment fetch carried the visitor's cookies: %q", c)
	}
	if c, _ := nav.capab.Load().(string); c != `craftedge="ESI/1.0"` {
		t.Errorf("fragment request Surrogate-Capability = %q", c)
	}

	r = g.Get("/page")
	e2e.WantCacheStatus(t, r, `craftedge; hit, craftedge-esi; hit; key="/frag/nav", craftedge-esi; hit; key="/frag/foot"`)
	if r.Body != want("NAV1") || r.Header.Get("Content-Length") != "" && r.Header.Get("Content-Length") != strconv.Itoa(len(r.Body)) {
		t.Fatalf("hit: length %q body:\n%s", r.Header.Get("Content-Length"), r.Body)
	}
	if n := o.Count("/page") + o.Count("/frag/nav") + o.Count("/frag/foot"); n != 3 {
		t.Fatalf("origin calls after a hit: %d, want 3", n)
	}

	// Encodings from stored segments.
	gz := g.Get("/page", "Accept-Encoding", "gzip")
	if gz.Header.Get("Content-Encoding") != "gzip" || e2e.Gunzip(t, gz.Body) != want("NAV1") {
		t.Fatalf("gzip: %q", gz.Header.Get("Content-Encoding"))
	}
	zs := g.Get("/page", "Accept-Encoding", "zstd")
	if zs.Header.Get("Content-Encoding") != "zstd" || e2e.Unzstd(t, zs.Body) != want("NAV1") {
		t.Fatalf("zstd: %q", zs.Header.Get("Content-Encoding"))
	}
	if !strings.Contains(strings.Join(gz.Header.Values("Vary"), ","), "Accept-Encoding") {
		t.Errorf("Vary = %q", gz.Header.Values("Vary"))
	}

	// HEAD: headers only.
	head := g.Do(http.MethodHead, "/page", nil, "")
	if head.Status != 200 || head.Body != "" || !strings.HasPrefix(head.Header.Get("Cache-Status"), "craftedge; hit") {
		t.Fatalf("HEAD: %d %q %q", head.Status, head.Header.Get("Cache-Status"), head.Body)
	}

	// A purge of the fragment's tag refreshes the page, which stays.
	nav.set("<nav>NAV2</nav>", "max-age=60", 0)
	e2e.Purge(g, `{"tags":["nav"]}`)
	r = g.Get("/page")
	// nav is known public: the page is streamed while it is fetched, so
	// its outcome is in the access log, not in the headers.
	wantPendingOrSettled(t, r, `craftedge; hit, `, `craftedge-esi; key="/frag/nav"; detail=pending`,
		`craftedge-esi; fwd=miss; key="/frag/nav"`, `, craftedge-esi; hit; key="/frag/foot"`)
	if r.Body != want("NAV2") || o.Count("/page") != 1 {
		t.Fatalf("after the fragment purge (page fetched %d times):\n%s", o.Count("/page"), r.Body)
	}
	// The fragment's own freshness: stale after its max-age, refetched.
	e2e.Advance(61 * time.Second)
	nav.set("<nav>NAV3</nav>", "max-age=60", 0)
	r = g.Get("/page")
	if r.Body != want("NAV3") || o.Count("/page") != 1 {
		t.Fatalf("after the fragment expired:\n%s", r.Body)
	}

	// Metrics per page group and outcome (the overflow series exists).
	if v := e2e.Scrape(g, `craftedge_esi_fragments_total{outcome="hit",page="/page",upstream="craft"}`); v < 5 {
		t.Errorf("fragment hits counted: %v", v)
	}
	if v := e2e.Scrape(g, `craftedge_esi_fragments_total{outcome="failed",page="other",upstream="craft"}`); v != 0 {
		t.Errorf("overflow series: %v, want 0", v)
	}

	// An unsafe request to the fragment's URL invalidates it (RFC 9111
	// §4.4): the page, assembled again, shows the new fragment.
	r = g.Get("/page")
	r = g.Get("/page") // from the memoized assembly
	if r.Body != want("NAV3") {
		t.Fatalf("memoized hit:\n%s", r.Body)
	}
	nav.set("<nav>NAV4</nav>", "max-age=60", 0)
	if r := g.Do(http.MethodPost, "/frag/nav", nil, "x"); r.Status != 200 {
		t.Fatalf("POST: %d", r.Status)
	}
	if r = g.Get("/page"); r.Body != want("NAV4") {
		t.Fatalf("after an unsafe request to the fragment:\n%s", r.Body)
	}
	// A memoized page is not used past its fragments' freshness.
	if r = g.Get("/page"); r.Body != want("NAV4") {
		t.Fatalf("memoized again:\n%s", r.Body)
	}
	e2e.Advance(61 * time.Second)
	nav.set("<nav>NAV5</nav>", "max-age=60", 0)
	if r = g.Get("/page"); r.Body != want("NAV5") {
		t.Fatalf("after the fragment expired, the memo was used:\n%s", r.Body)
	}

	// A body that did not opt in is never parsed.
	before := o.Count("/frag/nav")
	for range 2 {
		r = g.Get("/plain")
		if r.Body != plain {
			t.Fatalf("a body without the opt-in was changed:\n%s", r.Body)
		}
	}
	if o.Count("/frag/nav") != before {
		t.Fatal("an include in a body without the opt-in was fetched")
	}
}

// TestESIFragmentFailures: a fragment whose origin errors gets its alt,
// then its stale copy; a required include that cannot be had fails the
// page (502), one with onerror="continue" is left out.
func TestESIFragmentFailures(t *testing.T) {
	o := e2e.NewOrigin(t)
	x := newFragment("<i>X1</i>", "max-age=60", "x")
	alt := newFragment("<i>ALT</i>", "no-store", "")
	z := newFragment("", "", "")
	z.set("boom", "", 500)
	o.Handle("/frag/x", x.ServeHTTP)
	o.Handle("/frag/alt", alt.ServeHTTP)
	o.Handle("/frag/z", z.ServeHTTP)
	o.Handle("/p", esiPage(`[<esi:include src="/frag/x" alt="/frag/alt"/>]`, ""))
	o.Handle("/required", esiPage(`[<esi:include src="/frag/z"/>]`, ""))
	o.Handle("/optional", esiPage(`[<esi:include src="/frag/z" onerror="continue"/>]`, ""))
	logPath := filepath.Join(t.TempDir(), "access.log")
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "esi", SiteExtra: "log {\n output file " + logPath + "\n format json\n }"})

	if r := g.Get("/p"); r.Body != "[<i>X1</i>]" {
		t.Fatalf("first: %q", r.Body)
	}
	// x fails once stale: alt is served (alt is no-store, so it is
	// fetched per request with the visitor's cookies and never stored:
	// answered private).
	e2e.Advance(61 * time.Second)
	x.set("down", "", 500)
	alt.set("<i>ALT</i>", "", 0)
	r := g.Get("/p")
	if r.Body != "[<i>ALT</i>]" {
		t.Fatalf("x down: %q (%s)", r.Body, r.Header.Get("Cache-Status"))
	}
	wantPendingOrSettled(t, r, `craftedge; hit, `, `craftedge-esi; key="/frag/x"; detail=pending`,
		`craftedge-esi; fwd=miss; key="/frag/x"; detail=alt-`, ``)
	wantESILog(t, logPath, "/frag/x; alt=miss")
	// alt down too: the stale copy of x.
	alt.set("down", "", 503)
	r = g.Get("/p")
	if r.Body != "[<i>X1</i>]" {
		t.Fatalf("x and alt down: %q (%s)", r.Body, r.Header.Get("Cache-Status"))
	}
	wantESILog(t, logPath, "/frag/x; stale")

	r = g.Get("/required")
	e2e.WantStatus(t, r, http.StatusBadGateway)
	e2e.WantCacheStatusPrefix(t, r, "craftedge; fwd=miss; stored; detail=esi-failed")
	if r := g.Get("/optional"); r.Status != 200 || r.Body != "[]" {
		t.Fatalf("optional include failing: %d %q", r.Status, r.Body)
	}
}

// wantESILog waits for an access log line whose esi field holds want.
func wantESILog(t *testing.T, path, want string) {
	t.Helper()
	e2e.WaitFor(t, "access log esi "+want, func() bool {
		for _, l := range e2e.LogLines(t, path) {
			if fs, ok := l["esi"].([]any); ok {
				for _, f := range fs {
					if f == want {
						return true
					}
				}
			}
		}
		return false
	})
}

// TestESISnapshots: after a restart (memory empty) with the origin down,
// the page and its fragments come from their snapshots.
func TestESISnapshots(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/s", esiPage(`S[<esi:include src="/frag/s"/>]`, ""))
	o.Handle("/frag/s", newFragment("<b>FRAG</b>", "max-age=60", "").ServeHTTP)
	// warm_start off: the page and its fragment come from the snapshot
	// store, not from a memory tier refilled at start.
	opts := e2e.Options{HandlerExtra: "esi", GlobalExtra: "warm_start off"}
	g := e2e.StartGateway(t, o, opts)
	if r := g.Get("/s"); r.Body != "S[<b>FRAG</b>]" {
		t.Fatalf("live: %q", r.Body)
	}
	g.FlushSnapshots()
	g.Restart(opts)
	o.Stop()
	r := g.Get("/s")
	if r.Status != 200 || r.Body != "S[<b>FRAG</b>]" {
		t.Fatalf("from snapshots: %d %q (%s)", r.Status, r.Body, r.Header.Get("Cache-Status"))
	}
	e2e.WantCacheStatusPrefix(t, r, "craftedge; fwd=miss; fwd-status=502; detail=snapshot, craftedge-esi; hit; key=\"/frag/s\"; detail=stale")

	// A template stored under an earlier configuration is checked
	// against today's: an include now bypassed is refused.
	g.Restart(e2e.Options{HandlerExtra: "esi\nbypass_path /frag/*", GlobalExtra: "warm_start off"})
	r = g.Get("/s")
	e2e.WantStatus(t, r, http.StatusBadGateway)
	e2e.WantCacheStatusPrefix(t, r, "craftedge; fwd=miss; fwd-status=502; detail=esi-refused")
}

// TestESIKillSwitch: under the kill switch fragments come from memory or
// snapshots only, and a private fragment gets the placeholder, never the
// upstream.
func TestESIKillSwitch(t *testing.T) {
	o := e2e.NewOrigin(t)
	pub := newFragment("<b>PUB</b>", "max-age=60", "")
	priv := newFragment("<b>HELLO VISITOR</b>", "private, no-store", "")
	o.Handle("/frag/pub", pub.ServeHTTP)
	o.Handle("/frag/priv", priv.ServeHTTP)
	o.Handle("/frag/new", newFragment("<b>NEW</b>", "", "").ServeHTTP)
	o.Handle("/ks", esiPage(`<esi:include src="/frag/pub"/>|<esi:include src="/frag/priv"/>|<esi:include src="/frag/new" onerror="continue"/>`, ""))
	o.Handle("/ks2", esiPage(`<esi:include src="/frag/new" onerror="continue"/>`, ""))
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "esi {\n private_placeholder \"<b>signed out</b>\"\n }"})

	r := g.Get("/ks", "Cookie", "v=1")
	if r.Body != "<b>PUB</b>|<b>HELLO VISITOR</b>|<b>NEW</b>" {
		t.Fatalf("live: %q", r.Body)
	}
	if c, _ := priv.cookie.Load().(string); c != "v=1" {
		t.Fatalf("the private fragment's fetch carried Cookie %q, want the visitor's", c)
	}
	e2e.WantStatus(t, g.Admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":true}`), 200)
	calls := o.Total.Load()
	e2e.Advance(2 * time.Minute) // pub stale; the page still fresh
	r = g.Get("/ks", "Cookie", "v=2")
	if r.Body != "<b>PUB</b>|<b>signed out</b>|<b>NEW</b>" {
		t.Fatalf("kill switch: %q (%s)", r.Body, r.Header.Get("Cache-Status"))
	}
	e2e.WantCacheStatus(t, r, `craftedge; hit, craftedge-esi; hit; key="/frag/pub"; detail=stale, craftedge-esi; key="/frag/priv"; detail=placeholder, craftedge-esi; hit; key="/frag/new"; detail=stale`)
	if r.Header.Get("Cache-Control") == "private, no-store" {
		t.Error("the placeholder made the page private")
	}
	if o.Total.Load() != calls {
		t.Fatalf("the upstream was called under the kill switch (%d calls)", o.Total.Load()-calls)
	}
	e2e.WantStatus(t, g.Admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":false}`), 200)
}

// TestESINestedDepth: includes nest up to max_depth; deeper ones are
// never fetched.
func TestESINestedDepth(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/n", esiPage(`0<esi:include src="/d/1" onerror="continue"/>`, ""))
	for i := 1; i <= 4; i++ {
		next := ""
		if i < 4 {
			next = `<esi:include src="/d/` + strconv.Itoa(i+1) + `" onerror="continue"/>`
		}
		o.Handle("/d/"+strconv.Itoa(i), esiPage(strconv.Itoa(i)+next, ""))
	}
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "esi {\n max_depth 3\n }"})
	for range 2 {
		if r := g.Get("/n"); r.Body != "0123" {
			t.Fatalf("nested: %q (%s)", r.Body, r.Header.Get("Cache-Status"))
		}
	}
	if o.Count("/d/4") != 0 {
		t.Fatal("an include beyond max_depth was fetched")
	}
}

// TestESIInjection: includes a page reflects (or forges) never leave the
// site, nor reach craftedge's or the vendors' routes, the control panel or
// another host.
func TestESIInjection(t *testing.T) {
	evil := e2e.NewOrigin(t)
	o := e2e.NewOrigin(t)
	o.Handle("/search", func(w http.ResponseWriter, r *http.Request) {
		// Reflects its query unescaped: the origin's bug.
		esiPage("<p>results for "+r.URL.Query().Get("q")+"</p>", "")(w, r)
	})
	for _, p := range []string{"/craftedge/purge", "/vendors/shop/orders", "/admin/settings", "/index.php"} {
		o.Handle(p, newFragment("<b>LEAK</b>", "", "").ServeHTTP)
	}
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "esi"})
	for _, src := range []string{
		"http://" + e2e.AdminAddr + "/config/",
		"http://" + evil.Addr() + "/x",
		"//" + evil.Addr() + "/x",
		"https://" + e2e.SiteHost + "/index.php", // scheme change
		"/craftedge/purge",
		"/VENDORS/shop/orders",
		"/vendors%2fshop/orders",
		"/admin/settings",
		"/index.php?p=admin/settings",
		"/index.php?action=users/logout",
		"/x/../craftedge/purge",
	} {
		q := `<esi:include src="` + src + `"/>`
		r := g.Get("/search?q=" + url.QueryEscape(q))
		if r.Status != 200 || strings.Contains(r.Body, "LEAK") || strings.Contains(r.Body, "apps") || strings.Contains(r.Body, "<esi:") {
			t.Errorf("src %q: %d %q (%s)", src, r.Status, r.Body, r.Header.Get("Cache-Status"))
		}
	}
	if n := evil.Total.Load(); n != 0 {
		t.Errorf("another host was fetched %d times", n)
	}
	for _, p := range []string{"/craftedge/purge", "/vendors/shop/orders", "/admin/settings", "/index.php"} {
		if n := o.Count(p); n != 0 {
			t.Errorf("%s was fetched %d times", p, n)
		}
	}
}

// TestESICaddyfileErrors: a bad esi block is an error naming its line.
func TestESICaddyfileErrors(t *testing.T) {
	o := e2e.NewOrigin(t)
	for _, tc := range []struct{ extra, want string }{
		{"esi maybe", "esi takes on, off or a block"},
		{"esi on off", "too many arguments to esi"},
		{"esi off {\n max_depth 2\n }", "esi off takes no block"},
		{"esi {\n max_depth -1\n }", "esi max_depth must be a whole number from 0 to 1000"},
		{"esi {\n max_includes lots\n }", "esi max_includes must be a whole number"},
		{"esi {\n time_budget 0\n }", "esi time_budget must be positive"},
		{"esi {\n time_budget soon\n }", "invalid duration"},
		{"esi {\n private_path\n }", "esi private_path needs at least one path"},
		{"esi {\n private_path fragments/csrf\n }", "must start with /"},
		{"esi {\n private_path /a*b\n }", "may only end in *"},
		{"esi {\n frobnicate\n }", "unrecognized esi subdirective"},
	} {
		cfg := e2e.CaddyfileFor(o, e2e.Options{Storage: filepath.Join(t.TempDir(), "x.db"), HandlerExtra: tc.extra})
		e2e.AssertLoadError(t, cfg, tc.want)
	}
}

// TestESIPrivatePaths: a configured private include is fetched with the
// visitor's cookies from the first request on (no cookie-less fetch to
// learn it), a learnt one after one discarded cookie-less fetch; neither
// is stored, and each visitor gets their own.
func TestESIPrivatePaths(t *testing.T) {
	o := e2e.NewOrigin(t)
	hello := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private, no-store")
		c, _ := r.Cookie("name")
		name := "guest"
		if c != nil {
			name = c.Value
		}
		_, _ = w.Write([]byte("hello " + name))
	}
	o.Handle("/frag/me", hello)
	o.Handle("/frag/learnt", hello)
	o.Handle("/p", esiPage(`<esi:include src="/frag/me?x=1"/>|<esi:include src="/frag/learnt"/>`, ""))
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "esi {\n private_path /frag/me?*\n }"})
	for i, name := range []string{"ann", "bob", "ann"} {
		r := g.Get("/p", "Cookie", "name="+name)
		if r.Body != "hello "+name+"|hello "+name {
			t.Fatalf("%s: %q", name, r.Body)
		}
		if r.Header.Get("Cache-Control") != "private, no-store" {
			t.Fatalf("%s: Cache-Control %q", name, r.Header.Get("Cache-Control"))
		}
		if want := i + 1; o.Count("/frag/me") != want {
			t.Fatalf("configured private fragment fetched %d times after %d views, want %d", o.Count("/frag/me"), i+1, want)
		}
		if want := i + 2; o.Count("/frag/learnt") != want {
			t.Fatalf("learnt private fragment fetched %d times after %d views, want %d", o.Count("/frag/learnt"), i+1, want)
		}
	}
	if r := g.Get("/p"); r.Body != "hello guest|hello guest" {
		t.Fatalf("a visitor without cookies got %q", r.Body)
	}
}

// TestESIPluginIncludeURL: the Craft plugin's signed include URLs (craft/
// README.md) pass the include policy and the bypass rules, and each query
// is a fragment of its own.
func TestESIPluginIncludeURL(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/_craftedge/include", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		_, _ = w.Write([]byte("<i>" + r.URL.Query().Get("template") + "</i>"))
	})
	src := func(tmpl string) string {
		return "/_craftedge/include?kind=c&amp;site=default&amp;template=" + tmpl + "&amp;vars=eyJzZWN0aW9uIjoiYmxvZyJ9&amp;exp=1767225600&amp;sig=3q2-abc_"
	}
	o.Handle("/blog", esiPage(`<esi:include src="`+src("_fragments%2Flatest")+`" onerror="continue"/>|<esi:include src="`+src("_fragments%2Fnav")+`" onerror="continue"/>`, ""))
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "esi"})
	for range 2 {
		if r := g.Get("/blog"); r.Body != "<i>_fragments/latest</i>|<i>_fragments/nav</i>" {
			t.Fatalf("plugin includes: %q (%s)", r.Body, r.Header.Get("Cache-Status"))
		}
	}
	if n := o.Count("/_craftedge/include"); n != 2 {
		t.Fatalf("include URL fetched %d times, want 2 (one per fragment, then cached)", n)
	}
}

// TestESIUncacheablePage: an opted-in page that may not be stored
// (private, with a Set-Cookie) is assembled for the client that asked,
// with its cookie, and never stored or relayed with ESI markup.
func TestESIUncacheablePage(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/frag/nav", newFragment("<nav>NAV</nav>", "max-age=60", "").ServeHTTP)
	o.Handle("/account", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "private")
		w.Header().Set("Surrogate-Control", `content="ESI/1.0"`)
		w.Header().Set("Set-Cookie", "flash=1; Path=/")
		_, _ = w.Write([]byte(`<p>account</p><esi:include src="/frag/nav"/>`))
	})
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "esi"})
	for i := range 2 {
		r := g.Get("/account")
		if r.Status != 200 || r.Body != "<p>account</p><nav>NAV</nav>" {
			t.Fatalf("view %d: %d %q", i, r.Status, r.Body)
		}
		if r.Header.Get("Set-Cookie") != "flash=1; Path=/" || r.Header.Get("Cache-Control") != "private" ||
			r.Header.Get("Surrogate-Control") != "" {
			t.Fatalf("view %d headers: %v", i, r.Header)
		}
		e2e.WantCacheStatusPrefix(t, r, "craftedge; fwd=miss; detail=set-cookie, craftedge-esi; ")
	}
	if o.Count("/account") != 2 || o.Count("/frag/nav") != 1 {
		t.Fatalf("origin: page %d times (want 2), fragment %d (want 1)", o.Count("/account"), o.Count("/frag/nav"))
	}
}

// TestESITimeBudget: a fragment whose upstream hangs does not hold the
// page past time_budget: an include with onerror="continue" is left out,
// and the hung call is released when the test ends.
func TestESITimeBudget(t *testing.T) {
	o := e2e.NewOrigin(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	o.Handle("/frag/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	o.Handle("/b", esiPage(`[<esi:include src="/frag/slow" onerror="continue"/>]`, ""))
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "esi {\n time_budget 50ms\n }"})
	r := g.Get("/b")
	if r.Status != 200 || r.Body != "[]" {
		t.Fatalf("hung fragment: %d %q", r.Status, r.Body)
	}
	e2e.WantCacheStatusPrefix(t, r, `craftedge; fwd=miss; stored, craftedge-esi; key="/frag/slow"; detail=failed`)
}

// wantPendingOrSettled checks a page's Cache-Status whose fragment member
// depends on a race the test does not control: the page is streamed while
// the fragment is fetched, so the member says "pending" when the headers
// went out first, or the fragment's outcome (starting with settled) when
// its fetch finished before them. before and after are the other members.
func wantPendingOrSettled(t *testing.T, r e2e.Response, before, pending, settled, after string) {
	t.Helper()
	got := r.Header.Get("Cache-Status")
	if got == before+pending+after {
		return
	}
	mid, ok := strings.CutPrefix(got, before)
	if ok {
		mid, ok = strings.CutSuffix(mid, after)
	}
	if !ok || !strings.HasPrefix(mid, settled) || strings.Contains(mid, ", ") {
		t.Fatalf("Cache-Status = %q, want %q or the member %q… settled in its place", got, before+pending+after, settled)
	}
}
