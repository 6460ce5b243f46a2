package cachehandler

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// These tests attack the cache the way web cache poisoning research does
// (unkeyed headers, fat GETs, parameter cloaking, PHP name normalisation):
// the origin renders whatever it receives, as Craft could, and a later
// visitor must never get what an attacker's request made it render.

// echoOrigin renders, into a cacheable page, everything the request it
// received carries: method, URI, every header and the body.
type echoOrigin struct {
	mu   sync.Mutex
	last []string // dump of the last request
}

func (e *echoOrigin) handler(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	dump := []string{"method=" + r.Method, "uri=" + r.RequestURI, "host=" + r.Host, "body=" + string(body)}
	for name, values := range r.Header {
		dump = append(dump, "h:"+name+"="+strings.Join(values, ","))
	}
	slices.Sort(dump)
	e.mu.Lock()
	e.last = dump
	e.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if r.Header.Get("Accept-Language") != "" {
		w.Header().Set("Vary", "Accept-Language")
	}
	_, _ = io.WriteString(w, e2e.HTMLPage(strings.Join(dump, "\n")))
}

func (e *echoOrigin) lastRequest() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.last, "\n")
}

// TestPoisonUnkeyedHeadersNeverReachOrigin: headers Yii/Craft honour
// (X-Rewrite-Url, X-HTTP-Method-Override, Forwarded, X-Original-Host,
// Front-End-Https, X-Forwarded-*), cookies and content negotiation headers
// sent by an attacker never reach the origin on a cacheable request, so
// the page stored for the URL is the one every visitor would get.
func TestPoisonUnkeyedHeadersNeverReachOrigin(t *testing.T) {
	o := e2e.NewOrigin(t)
	var echo echoOrigin
	o.Handle("/page", echo.handler)
	g := e2e.StartGateway(t, o, e2e.Options{})

	attack := map[string]string{
		"X-Rewrite-Url":          "/evil-rewrite",
		"X-Original-Url":         "/evil-original",
		"X-Http-Method-Override": "DELETE",
		"Forwarded":              "host=evil.example;proto=https",
		"X-Original-Host":        "evil.example",
		"Front-End-Https":        "on",
		"X-Forwarded-Host":       "evil.example",
		"X-Forwarded-Proto":      "https",
		"X-Forwarded-Port":       "4443",
		"X-Forwarded-Prefix":     "/evil-prefix",
		"Cookie":                 "consent=evil-consent; cart=evil-cart",
		"Accept":                 "application/evil+json",
		"User-Agent":             "evil-agent",
		"X-Craft-Site":           "evil-site",
		"Content-Type":           "application/x-www-form-urlencoded",
	}
	r := g.Do(http.MethodGet, "/page", attack, "action=users/logout&evil-body=1")
	e2e.WantStatus(t, r, 200)
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; stored")
	seen := echo.lastRequest()
	for _, bad := range []string{"evil", "Cookie", "X-Http-Method-Override", "h:Forwarded=", "Content-Type", "action=", "Front-End-Https", "h:Accept=", "h:User-Agent=", "X-Forwarded-Proto=https"} {
		if strings.Contains(seen, bad) {
			t.Errorf("origin received %q from the attacker's cacheable request:\n%s", bad, seen)
		}
	}
	if !strings.Contains(seen, "method=GET") || !strings.Contains(seen, "body=\n") && !strings.HasSuffix(seen, "body=") {
		t.Errorf("origin should get a bodiless GET:\n%s", seen)
	}
	victim := g.Get("/page")
	e2e.WantCacheStatus(t, victim, "craftedge; hit")
	if strings.Contains(victim.Body, "evil") {
		t.Fatalf("victim got the attacker's page:\n%.400s", victim.Body)
	}
}

// TestPoisonHeadRequestWithBody: a HEAD (fetched upstream as GET) with a
// body sends no body either.
func TestPoisonHeadRequestWithBody(t *testing.T) {
	o := e2e.NewOrigin(t)
	var echo echoOrigin
	o.Handle("/page", echo.handler)
	g := e2e.StartGateway(t, o, e2e.Options{})
	g.Do(http.MethodHead, "/page", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "action=users/logout")
	if seen := echo.lastRequest(); strings.Contains(seen, "logout") || !strings.Contains(seen, "method=GET") {
		t.Fatalf("origin received:\n%s", seen)
	}
	if v := g.Get("/page"); strings.Contains(v.Body, "logout") {
		t.Fatalf("victim got the attacker's page")
	}
}

// TestPoisonTrackingParamsNotSentUpstream: parameters dropped from the key
// are not sent upstream either, so a page rendered with ?utm_source=<x> is
// never what visitors without it get; the query Craft sees is the key's.
func TestPoisonTrackingParamsNotSentUpstream(t *testing.T) {
	o := e2e.NewOrigin(t)
	var echo echoOrigin
	o.Handle("/page", echo.handler)
	g := e2e.StartGateway(t, o, e2e.Options{})
	r := g.Get("/page?utm_source=%3Cscript%3Eevil&b=2&a=1&gclid=evil")
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; stored")
	seen := echo.lastRequest()
	if strings.Contains(seen, "evil") || !strings.Contains(seen, "uri=/page?a=1&b=2") {
		t.Fatalf("origin received:\n%s", seen)
	}
	v := g.Get("/page?b=2&a=1")
	e2e.WantCacheStatus(t, v, "craftedge; hit")
	if strings.Contains(v.Body, "evil") {
		t.Fatal("victim got the attacker's tracking parameter rendered")
	}
}

// TestPoisonPHPNormalisedNamesBypass: parameter and cookie names PHP
// normalises (leading spaces dropped, "+" and spaces and dots to "_",
// array suffixes) are read as PHP reads them: tokens, previews, actions,
// the CP route and identity cookies bypass and are never stored.
func TestPoisonPHPNormalisedNamesBypass(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Fallback = e2e.PageHandler("page", "page")
	g := e2e.StartGateway(t, o, e2e.Options{})
	cases := []struct {
		name, path, cookie, reason string
	}{
		{"space-token", "/a?%20token=secret", "", "token"},
		{"plus-token", "/b?+token=secret", "", "token"},
		{"array-token", "/c?token[]=secret", "", "token"},
		{"space-action", "/d?%20action=users/logout", "", "action"},
		{"space-p", "/e?%20p=admin/entries", "", "cp"},
		{"space-preview", "/f?%20x-craft-preview=1", "", "token"},
		{"nul-token", "/g?token%00junk=1", "", "token"},
		{"dot-identity", "/h", "h.identity=1", "identity"},
		{"space-identity", "/i", "h identity=1", "identity"},
		{"space-session", "/j", " CraftSessionId=1", "session"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := []string{}
			if c.cookie != "" {
				hdr = []string{"Cookie", c.cookie}
			}
			for range 2 {
				r := g.Get(c.path, hdr...)
				e2e.WantCacheStatus(t, r, "craftedge; fwd=bypass; detail="+c.reason)
			}
			path, _, _ := strings.Cut(c.path, "?")
			if n := o.Count(path); n != 2 {
				t.Fatalf("origin saw %d requests for %s, want 2 (never stored)", n, path)
			}
		})
	}
}

// TestPoisonGraphQL: a body whose "QUERY" key hides a mutation from Go's
// case-insensitive JSON decoder (PHP reads "query" exactly), a mutation in
// the GET "query" parameter (which Craft lets supersede the body), and a
// form-encoded body are never cached.
func TestPoisonGraphQL(t *testing.T) {
	o := e2e.NewOrigin(t)
	var echo echoOrigin
	o.Handle("/api", echo.handler)
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "graphql /api"})
	json := map[string]string{"Content-Type": "application/json"}
	cases := []struct {
		name, method, path, body string
		hdr                      map[string]string
	}{
		{"case-cloaked", http.MethodPost, "/api", `{"query":"mutation { deleteEntry(id: 1) }","QUERY":"{ entries { title } }"}`, json},
		{"get-mutation", http.MethodGet, "/api?query=mutation%7BdeleteEntry(id:1)%7D", "", nil},
		{"space-query-mutation", http.MethodGet, "/api?%20query=mutation%7BdeleteEntry(id:1)%7D", "", nil},
		{"post-query-param", http.MethodPost, "/api?query=mutation%7Bx%7D", `{"query":"{ entries { title } }"}`, json},
		{"form-body", http.MethodPost, "/api", `query=mutation+%7Bx%7D`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := g.Do(c.method, c.path, c.hdr, c.body)
			e2e.WantCacheStatus(t, r, "craftedge; fwd=bypass; detail=graphql-mutation")
		})
	}
	// A cacheable query reaches Craft with its keyed body and the
	// canonical content type only.
	hdr := map[string]string{"Content-Type": "application/json; charset=UTF-8", "X-Evil": "1", "Cookie": "a=b"}
	r := g.Do(http.MethodPost, "/api", hdr, `{"query":"{ entries { title } }"}`)
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; stored")
	seen := echo.lastRequest()
	if !strings.Contains(seen, "h:Content-Type=application/json\n") || strings.Contains(seen, "X-Evil") || strings.Contains(seen, "Cookie") ||
		!strings.Contains(seen, `body={"query":"{ entries { title } }"}`) {
		t.Fatalf("origin received:\n%s", seen)
	}
}

// TestPoisonTrustedProxyForwardedHeadersAreKeyed: behind a trusted proxy
// (trusted_proxies), X-Forwarded-Host and -Proto are meaningful, so they
// are keyed: a request with a forged X-Forwarded-Host gets its own entry,
// never the one visitors of the real host get; a malformed one bypasses.
func TestPoisonTrustedProxyForwardedHeadersAreKeyed(t *testing.T) {
	o := e2e.NewOrigin(t)
	var echo echoOrigin
	o.Handle("/page", echo.handler)
	g := e2e.StartGateway(t, o, e2e.Options{ServerExtra: "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}"})
	r := g.Get("/page", "X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "https")
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; stored")
	if seen := echo.lastRequest(); !strings.Contains(seen, "h:X-Forwarded-Host=evil.example") || !strings.Contains(seen, "h:X-Forwarded-Proto=https") {
		t.Fatalf("origin should get the trusted proxy's keyed values:\n%s", seen)
	}
	v := g.Get("/page")
	e2e.WantCacheStatus(t, v, "craftedge; fwd=miss; stored")
	if strings.Contains(v.Body, "evil") {
		t.Fatal("a visitor without X-Forwarded-Host got the forged host's page")
	}
	bad := g.Get("/page", "X-Forwarded-Host", "evil.example/<script>")
	e2e.WantCacheStatus(t, bad, "craftedge; fwd=bypass; detail=forwarded-host")
	bad = g.Get("/page", "X-Forwarded-Proto", "javascript")
	e2e.WantCacheStatus(t, bad, "craftedge; fwd=bypass; detail=forwarded-proto")
}

// TestVaryOnlyKeyedValuesReachOrigin: a response that varies on
// Accept-Language is stored per normalised language, each variant fetched
// with that language only; equivalent spellings share a variant.
func TestVaryOnlyKeyedValuesReachOrigin(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/page", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Vary", "Accept-Language")
		_, _ = io.WriteString(w, e2e.HTMLPage("lang=["+r.Header.Get("Accept-Language")+"]"))
	})
	g := e2e.StartGateway(t, o, e2e.Options{})
	none := g.Get("/page")
	if !strings.Contains(none.Body, "lang=[]") {
		t.Fatalf("no-language visitor got %.100q", none.Body)
	}
	de := g.Get("/page", "Accept-Language", "de-DE, de;q=0.9")
	if !strings.Contains(de.Body, "lang=[de-de,de;q=0.9]") {
		t.Fatalf("German visitor got %.100q (Cache-Status %q)", de.Body, de.Header.Get("Cache-Status"))
	}
	same := g.Get("/page", "Accept-Language", "DE-de ,de ; q=0.9")
	e2e.WantCacheStatus(t, same, "craftedge; hit")
	if !strings.Contains(same.Body, "lang=[de-de,de;q=0.9]") {
		t.Fatalf("equivalent Accept-Language got %.100q", same.Body)
	}
	again := g.Get("/page")
	e2e.WantCacheStatus(t, again, "craftedge; hit")
	if !strings.Contains(again.Body, "lang=[]") {
		t.Fatalf("no-language visitor got %.100q", again.Body)
	}
}

// TestKeyCookieKeysAndForwardsOnlyThatCookie: key_cookie makes a cookie
// part of the key and the only cookie sent upstream.
func TestKeyCookieKeysAndForwardsOnlyThatCookie(t *testing.T) {
	o := e2e.NewOrigin(t)
	var echo echoOrigin
	o.Handle("/page", echo.handler)
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "key_cookie currency\n\t\tkey_header X-Region"})
	eur := g.Get("/page", "Cookie", "tracking=evil; currency=EUR", "X-Region", "eu")
	e2e.WantCacheStatus(t, eur, "craftedge; fwd=miss; stored")
	if seen := echo.lastRequest(); !strings.Contains(seen, "h:Cookie=currency=EUR\n") || strings.Contains(seen, "evil") || !strings.Contains(seen, "h:X-Region=eu") {
		t.Fatalf("origin received:\n%s", seen)
	}
	usd := g.Get("/page", "Cookie", "currency=USD", "X-Region", "eu")
	e2e.WantCacheStatus(t, usd, "craftedge; fwd=miss; stored")
	again := g.Get("/page", "Cookie", "other=1; currency=EUR", "X-Region", "eu")
	e2e.WantCacheStatus(t, again, "craftedge; hit")
	if !strings.Contains(again.Body, "currency=EUR") {
		t.Fatal("EUR visitor did not get the EUR page")
	}
}

// TestNoHandlerAfterCraftedgeIs502: a route where nothing follows craftedge
// answers cacheable requests 502 (and logs why) instead of empty 200s.
func TestNoHandlerAfterCraftedgeIs502(t *testing.T) {
	tester := caddytest.NewTester(t)
	tester.InitServer(`{
`+e2e.GlobalPorts()+`	grace_period 1ns
	skip_install_trust
	craftedge {
		storage `+t.TempDir()+`/craftedge.db
		memory 16MiB
	}
}
`+e2e.SiteAddr+` {
	craftedge
}
`, "caddyfile")
	t.Cleanup(func() { e2e.StopGateway(t) })
	resp, err := http.Get(e2e.SiteAddr + "/page")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status = %d, want 502", resp.StatusCode)
	}
}

// TestPoisonGraphQLMutationViaAlternatePaths: Craft reaches its GraphQL
// API by many spellings of the route (trailing or doubled slashes, ?p=,
// index.php/) and runs a "query" parameter whatever the method: a mutation
// in one is never stored, on any path, configured graphql path or not.
func TestPoisonGraphQLMutationViaAlternatePaths(t *testing.T) {
	o := e2e.NewOrigin(t)
	var echo echoOrigin
	o.Fallback = echo.handler
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "graphql /api"})
	mutation := "query=mutation%7BsaveNewsletter(email:%22a@b.c%22)%7Bid%7D%7D"
	for _, u := range []string{"/api?" + mutation, "/api/?" + mutation, "//api?" + mutation, "/?p=api&" + mutation, "/index.php?p=api&" + mutation, "/index.php/api?" + mutation, "/graphql?" + mutation} {
		e2e.WantCacheStatus(t, g.Get(u), "craftedge; fwd=bypass; detail=graphql-mutation")
	}
	e2e.WantCacheStatus(t, g.Get("/search?query=shoes"), "craftedge; fwd=miss; stored")
}

// TestPoisonCraftRoutesUnderSiteBasePathBypass: on multi-site installs
// (example.com/de/) Craft strips the site's base path before looking for
// its action and CP triggers, and routes its special paths (logout,
// verifyemail, setpassword, login) to users/* actions: none is stored.
func TestPoisonCraftRoutesUnderSiteBasePathBypass(t *testing.T) {
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{})
	for u, reason := range map[string]string{
		"/de/actions/users/session-info":    "action",
		"/?p=de/actions/users/session-info": "action",
		"/de/admin/entries":                 "cp",
		"/?p=de/admin/entries":              "cp",
		"/logout":                           "action",
		"/verifyemail?id=1&code=abc":        "action",
		"/setpassword?id=1&code=abc":        "action",
		"/?p=logout":                        "action",
		"/de/login":                         "action",
	} {
		e2e.WantCacheStatus(t, g.Get(u), "craftedge; fwd=bypass; detail="+reason)
	}
}

// TestPoisonRewriteBeforeCraftedge: a rewrite before the handler decides
// what Craft is sent, so its result is checked by the bypass rules and,
// when it may depend on more than the URL (a header matcher), keyed.
func TestPoisonRewriteBeforeCraftedge(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/page", e2e.PageHandler("normal page", ""))
	o.Handle("/mobile/page", e2e.PageHandler("ATTACKER-CHOSEN mobile page", ""))
	g := e2e.StartGateway(t, o, e2e.Options{SiteExtra: "@m header X-Mobile 1\n\trewrite @m /mobile{path}\n\turi strip_prefix /shop"})
	r := g.Get("/page", "X-Mobile", "1")
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; stored")
	victim := g.Get("/page")
	if strings.Contains(victim.Body, "ATTACKER-CHOSEN") {
		t.Fatalf("the victim of /page got the page a header-matched rewrite chose (Cache-Status %q)", victim.Header.Get("Cache-Status"))
	}
	for u, reason := range map[string]string{
		"/shop/admin/entries":              "cp",
		"/shop/actions/users/session-info": "action",
		"/shop/index.php/actions/x/y":      "action",
	} {
		e2e.WantCacheStatus(t, g.Get(u), "craftedge; fwd=bypass; detail="+reason)
	}
}

// TestKeyedFieldsConfigErrors: a key_header or key_cookie that cannot be
// keyed safely (a whole Cookie header, credentials, a name PHP would read
// differently) is a load error naming the Caddyfile line.
func TestKeyedFieldsConfigErrors(t *testing.T) {
	o := e2e.NewOrigin(t)
	for extra, want := range map[string]string{
		"key_header Cookie":        "key on named cookies with key_cookie",
		"key_header Authorization": "key_header Authorization cannot be keyed",
		"key_header X(bad)":        "not a valid header name",
		"key_cookie a.b":           "not a cookie name PHP reads as such",
		"key_cookie":               "key_cookie needs at least one value",
	} {
		e2e.AssertLoadError(t, e2e.CaddyfileFor(o, e2e.Options{Storage: t.TempDir() + "/c.db", HandlerExtra: extra}), want)
	}
}
