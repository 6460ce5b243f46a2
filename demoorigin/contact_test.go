package demoorigin

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

var tokenInput = regexp.MustCompile(`name="CRAFT_CSRF_TOKEN" value="([^"]+)"`)

func postForm(t *testing.T, u, cookie string, form url.Values) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if cookie != "" {
		req.Header.Set("Cookie", CSRFParam+"="+cookie)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: string(b)}
}

// TestContactWithoutESI: straight from the origin (no ESI-capable edge),
// the page carries the visitor's token inline and is private; Yii's check
// accepts the visitor's own token only.
func TestContactWithoutESI(t *testing.T) {
	_, srv := newServer(t)
	r := get(t, srv.URL+ContactPath)
	if r.status != 200 || r.header.Get("Cache-Control") != "private, no-store" || r.header.Get("Surrogate-Control") != "" {
		t.Fatalf("inline contact page: %d %v", r.status, r.header)
	}
	if strings.Contains(r.body, "<esi:") {
		t.Fatal("ESI markup without an ESI-capable edge")
	}
	var cookie string
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == CSRFParam {
			cookie = c.Value
		}
	}
	m := tokenInput.FindStringSubmatch(r.body)
	if cookie == "" || m == nil || unmaskToken(m[1]) != cookie {
		t.Fatalf("cookie %q, token %v", cookie, m)
	}
	if !strings.Contains(r.body, "Hello, new visitor!") || !strings.Contains(r.body, "Latest entries") {
		t.Error("inline page lacks the hello line or the latest entries")
	}

	ok := postForm(t, srv.URL+ContactPath, cookie, url.Values{CSRFParam: {m[1]}, "message": {"hi"}})
	if ok.status != 200 || !strings.Contains(ok.body, "Thanks") || ok.header.Get("Cache-Control") != "no-store" {
		t.Errorf("own token: %d %q", ok.status, ok.body)
	}
	other := strings.Repeat("x", 40)
	for name, c := range map[string]struct {
		cookie string
		form   url.Values
	}{
		"no cookie":      {"", url.Values{CSRFParam: {m[1]}}},
		"another cookie": {other, url.Values{CSRFParam: {m[1]}}},
		"no token":       {cookie, url.Values{"message": {"hi"}}},
		"unmasked token": {cookie, url.Values{CSRFParam: {cookie}}},
		"garbage":        {cookie, url.Values{CSRFParam: {"%%%"}}},
		"odd length":     {cookie, url.Values{CSRFParam: {"YWJj"}}},
	} {
		r := postForm(t, srv.URL+ContactPath, c.cookie, c.form)
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, csrfRefused) {
			t.Errorf("%s: %d %q, want 400", name, r.status, r.body)
		}
	}
}

// TestContactWithESI: behind an ESI-capable edge, the page is public, the
// same for everyone, and names its islands; the private fragments say so.
func TestContactWithESI(t *testing.T) {
	_, srv := newServer(t)
	capable := map[string]string{"Surrogate-Capability": `craftedge="ESI/1.0"`}
	r := do(t, http.MethodGet, srv.URL+ContactPath, capable)
	if r.status != 200 || r.header.Get("Surrogate-Control") != `content="ESI/1.0"` ||
		r.header.Get("Cache-Control") != "" || len(r.header.Values("Set-Cookie")) != 0 {
		t.Fatalf("ESI contact page: %d %v", r.status, r.header)
	}
	for _, inc := range []string{HelloPath, CSRFFragment, LatestPath} {
		if !strings.Contains(r.body, `<esi:include src="`+inc+`"`) {
			t.Errorf("page does not include %s:\n%s", inc, r.body)
		}
	}
	if tokenInput.MatchString(r.body) {
		t.Error("the shared page carries a token")
	}

	csrf := get(t, srv.URL+CSRFFragment)
	if csrf.header.Get("Cache-Control") != "private, no-store" || !tokenInput.MatchString(csrf.body) ||
		!strings.HasPrefix(csrf.header.Get("Set-Cookie"), CSRFParam+"=") {
		t.Errorf("csrf fragment: %v %q", csrf.header, csrf.body)
	}
	tok := strings.Repeat("a", 40)
	hello := do(t, http.MethodGet, srv.URL+HelloPath, map[string]string{"Cookie": CSRFParam + "=" + tok})
	if hello.header.Get("Cache-Control") != "private, no-store" || !regexp.MustCompile(`Hello, visitor [0-9a-f]{6}!`).MatchString(hello.body) ||
		strings.Contains(hello.body, tok) {
		t.Errorf("hello fragment: %v %q", hello.header, hello.body)
	}
	latest := get(t, srv.URL+LatestPath)
	if latest.header.Get("Cache-Control") != "" || !strings.Contains(latest.header.Get("Cache-Tag"), tagBlogSection) {
		t.Errorf("latest fragment: %v", latest.header)
	}
	if nf := get(t, srv.URL+"/_fragments/nope"); nf.status != 404 {
		t.Errorf("unknown fragment: %d", nf.status)
	}
}
