package cachehandler

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// startESIPHP runs the CSRF island origin (testdata/php/esi) behind
// php_fastcgi with ESI on, returning the gateway.
func startESIPHP(t *testing.T, esiBlock string) *e2e.Gateway {
	t.Helper()
	root, err := filepath.Abs("../../testdata/php/esi")
	if err != nil {
		t.Fatal(err)
	}
	php := startPHP(t, root)
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
	root * `+root+`
	craftedge {
		ttl 1m
		esi `+esiBlock+`
	}
	php_fastcgi `+php+`
}
`, storage)
}

var csrfInput = regexp.MustCompile(`name="CRAFT_CSRF_TOKEN" value="([^"]+)"`)

// csrfVisitor is one browser: its cookie and the token of its last page.
type csrfVisitor struct {
	name   string
	cookie string // CRAFT_CSRF_TOKEN value, "" before the first one
	masked string
}

// view loads /contact as v and returns the response, taking the cookie the
// response sets and the masked token in the form.
func (v *csrfVisitor) view(t *testing.T, g *e2e.Gateway) e2e.Response {
	t.Helper()
	var hdr []string
	if v.cookie != "" {
		hdr = []string{"Cookie", "_ga=GA1.2.3; CRAFT_CSRF_TOKEN=" + v.cookie}
	}
	r := g.Get("/contact", hdr...)
	e2e.WantStatus(t, r, http.StatusOK)
	if r.Header.Get("Surrogate-Control") != "" {
		t.Errorf("%s: Surrogate-Control reached the client: %q", v.name, r.Header.Get("Surrogate-Control"))
	}
	if strings.Contains(r.Body, "<esi:") {
		t.Fatalf("%s: ESI markup reached the client:\n%s", v.name, r.Body)
	}
	m := csrfInput.FindAllStringSubmatch(r.Body, -1)
	if len(m) != 1 {
		t.Fatalf("%s: want one CSRF input in the page, got %d:\n%s", v.name, len(m), r.Body)
	}
	v.masked = m[0][1]
	for _, sc := range r.Header.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(sc); err == nil && c.Name == "CRAFT_CSRF_TOKEN" {
			v.cookie = c.Value
		}
	}
	if v.cookie == "" {
		t.Fatalf("%s: no CSRF cookie after viewing the page (Set-Cookie %q)", v.name, r.Header.Values("Set-Cookie"))
	}
	if cc := r.Header.Get("Cache-Control"); cc != "private, no-store" {
		t.Errorf("%s: page with a private fragment went out with Cache-Control %q", v.name, cc)
	}
	return r
}

// unmask is Yii's Security::unmaskToken.
func unmask(t *testing.T, masked string) string {
	t.Helper()
	b, err := base64.URLEncoding.DecodeString(masked)
	if err != nil || len(b)%2 != 0 {
		t.Fatalf("masked token %q: %v", masked, err)
	}
	n := len(b) / 2
	out := make([]byte, n)
	for i := range out {
		out[i] = b[i] ^ b[n+i]
	}
	return string(out)
}

// post submits the form as v with token masked.
func (v *csrfVisitor) post(t *testing.T, g *e2e.Gateway, masked string) e2e.Response {
	t.Helper()
	form := url.Values{"CRAFT_CSRF_TOKEN": {masked}, "message": {"hello"}}
	return g.Do(http.MethodPost, "/contact", map[string]string{
		"Cookie":       "CRAFT_CSRF_TOKEN=" + v.cookie,
		"Content-Type": "application/x-www-form-urlencoded",
	}, form.Encode())
}

// TestESICSRFIsland is issue 19's promise with Yii's CSRF scheme in real
// PHP: every visitor gets the same cached page, each with their own valid
// token (and a new visitor their cookie), every form post is accepted, and
// nobody's token appears in another's page.
func TestESICSRFIsland(t *testing.T) {
	g := startESIPHP(t, "")
	a := &csrfVisitor{name: "A"}
	b := &csrfVisitor{name: "B"}
	c := &csrfVisitor{name: "C"}

	// A, new: the page is fetched and stored; the fragment answers
	// private, so it is fetched for A and A gets the cookie.
	r := a.view(t, g)
	e2e.WantCacheStatusPrefix(t, r, "craftedge; fwd=miss; stored, craftedge-esi; fwd=miss; key=\"/_fragments/csrf\"; detail=private")
	if unmask(t, a.masked) != a.cookie {
		t.Fatalf("A's token does not unmask to A's cookie")
	}

	// HEAD, new visitor: the headers a GET would have, the cookie too.
	head := g.Do(http.MethodHead, "/contact", nil, "")
	if head.Status != 200 || head.Body != "" || head.Header.Get("Cache-Control") != "private, no-store" ||
		!strings.HasPrefix(head.Header.Get("Set-Cookie"), "CRAFT_CSRF_TOKEN=") {
		t.Fatalf("HEAD: %d %v %q", head.Status, head.Header, head.Body)
	}

	// B, new: the stored page, B's own token and cookie.
	r = b.view(t, g)
	e2e.WantCacheStatus(t, r, "craftedge; hit, craftedge-esi; fwd=miss; key=\"/_fragments/csrf\"; detail=private")
	if b.cookie == a.cookie {
		t.Fatal("B was given A's CSRF cookie")
	}

	// Both again with their cookies: the same cached page, each one's
	// token, no new cookie.
	for _, v := range []*csrfVisitor{a, b} {
		before := v.cookie
		r := v.view(t, g)
		e2e.WantCacheStatusPrefix(t, r, "craftedge; hit, ")
		if len(r.Header.Values("Set-Cookie")) != 0 || v.cookie != before {
			t.Errorf("%s with a cookie was sent Set-Cookie %q", v.name, r.Header.Values("Set-Cookie"))
		}
		if unmask(t, v.masked) != v.cookie {
			t.Errorf("%s's page carries a token that is not %s's", v.name, v.name)
		}
	}
	aPage := a.view(t, g).Body
	bPage := b.view(t, g).Body
	if strings.Contains(aPage, b.masked) || strings.Contains(bPage, a.masked) ||
		strings.Contains(aPage, b.cookie) || strings.Contains(bPage, a.cookie) {
		t.Fatal("one visitor's token appears in another's page")
	}
	// The pages differ only in the token.
	if csrfInput.ReplaceAllString(aPage, "") != csrfInput.ReplaceAllString(bPage, "") {
		t.Fatalf("A and B got different pages:\n%s\n---\n%s", aPage, bPage)
	}

	// Each one's form post is accepted; a token posted with another's
	// cookie is refused (Yii's check is real).
	for _, v := range []*csrfVisitor{a, b} {
		if r := v.post(t, g, v.masked); r.Status != http.StatusOK || !strings.Contains(r.Body, "Thanks") {
			t.Errorf("%s's post: %d %q", v.name, r.Status, r.Body)
		}
	}
	if r := a.post(t, g, b.masked); r.Status != http.StatusBadRequest {
		t.Errorf("A posting B's token: %d %q, want 400", r.Status, r.Body)
	}

	// C, new, once the fragment is known private (the posts invalidated
	// the stored page, RFC 9111 §4.4): a token and a cookie of C's own.
	r = c.view(t, g)
	e2e.WantCacheStatus(t, r, "craftedge; fwd=miss; stored, craftedge-esi; fwd=miss; key=\"/_fragments/csrf\"; detail=private")
	r = c.view(t, g)
	e2e.WantCacheStatus(t, r, "craftedge; hit, craftedge-esi; fwd=miss; key=\"/_fragments/csrf\"; detail=private")
	if c.cookie == a.cookie || c.cookie == b.cookie || unmask(t, c.masked) != c.cookie {
		t.Fatal("C did not get a token and cookie of its own")
	}
	if r := c.post(t, g, c.masked); r.Status != http.StatusOK {
		t.Errorf("C's post: %d %q", r.Status, r.Body)
	}

}
