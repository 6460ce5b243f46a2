package demoorigin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

func newServer(t *testing.T) (*Origin, *httptest.Server) {
	t.Helper()
	o := New()
	srv := httptest.NewServer(o)
	t.Cleanup(srv.Close)
	return o, srv
}

type response struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, method, url string, hdr map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: string(b)}
}

func get(t *testing.T, url string) response { return do(t, http.MethodGet, url, nil) }

var renderRE = regexp.MustCompile(`rendered at ([^,]+), revision (\d+) \(render #(\d+)\)`)

func TestPagesTagsAndSize(t *testing.T) {
	_, srv := newServer(t)
	cases := []struct {
		path         string
		tags         []string
		cacheControl string
		contains     string
	}{
		// The craftedge plugin's shapes (craft/README.md): the site tag,
		// element types, the blog section (id 1), element ids.
		{"/", []string{"craft", "el", "el:entry", "el:entry:section:1", "el:commerce.product:productType:1"}, "", "Latest entries"},
		{"/blog", []string{"craft", "el", "el:entry", "el:entry:section:1"}, "", "Continue reading"},
		{"/blog/hello-world", []string{"craft", "el:entry", "el:1", "el:entry:section:1"}, "", "Hello, world"},
		{"/blog/caching", []string{"craft", "el:entry", "el:2", "el:entry:section:1"}, "", "Caching pages by tag"},
		{"/blog/snapshots", []string{"craft", "el:entry", "el:3", "el:entry:section:1"}, "", "the last good copy"},
		{"/products/3", []string{"craft", "el:commerce.product", "el:103", "el:commerce.product:productType:1"}, "public, s-maxage=60, stale-if-error=86400", "Edge Cache Hoodie"},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			r := get(t, srv.URL+c.path)
			if r.status != http.StatusOK {
				t.Fatalf("status %d", r.status)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
				t.Errorf("Content-Type %q", ct)
			}
			// Split as craftedge does: on commas and whitespace.
			got := strings.FieldsFunc(r.header.Get("Cache-Tag"), func(c rune) bool { return c == ',' || c == ' ' })
			for _, want := range c.tags {
				if !contains(got, want) {
					t.Errorf("Cache-Tag %q lacks %q", got, want)
				}
			}
			if cc := r.header.Get("Cache-Control"); cc != c.cacheControl {
				t.Errorf("Cache-Control %q, want %q", cc, c.cacheControl)
			}
			if n := len(r.body); n < 5<<10 || n > 15<<10 {
				t.Errorf("body is %d bytes, want 5-15 KiB", n)
			}
			if !strings.Contains(r.body, c.contains) {
				t.Errorf("body lacks %q", c.contains)
			}
			if !renderRE.MatchString(r.body) {
				t.Errorf("body lacks the rendered-at line")
			}
			if r.header.Get("Set-Cookie") != "" {
				t.Errorf("page sets a cookie: %q", r.header.Get("Set-Cookie"))
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestEveryRenderIsVisible(t *testing.T) {
	_, srv := newServer(t)
	a := renderRE.FindStringSubmatch(get(t, srv.URL+"/blog/hello-world").body)
	b := renderRE.FindStringSubmatch(get(t, srv.URL+"/blog/hello-world").body)
	if a == nil || b == nil {
		t.Fatal("no rendered-at line")
	}
	if a[3] == b[3] {
		t.Errorf("two renders show the same render number %s", a[3])
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	_, srv := newServer(t)
	for _, path := range []string{"/nope", "/blog/nope", "/products/0", "/products/x", "/products/10"} {
		r := get(t, srv.URL+path)
		if r.status != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, r.status)
		}
		if r.header.Get("Cache-Tag") != "" {
			t.Errorf("%s: 404 carries Cache-Tag %q", path, r.header.Get("Cache-Tag"))
		}
		if !strings.Contains(r.body, "Page not found") {
			t.Errorf("%s: not the 404 page", path)
		}
	}
	if r := do(t, http.MethodPost, srv.URL+"/blog/hello-world", nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST page: status %d, want 405", r.status)
	}
	if r := do(t, http.MethodHead, srv.URL+"/blog/hello-world", nil); r.status != http.StatusOK || r.body != "" {
		t.Errorf("HEAD page: status %d, body %d bytes", r.status, len(r.body))
	}
}

func TestLoginSetsSessionCookie(t *testing.T) {
	_, srv := newServer(t)
	r := get(t, srv.URL+"/login")
	if r.status != http.StatusOK || !strings.Contains(r.body, "logged in") {
		t.Fatalf("status %d, body lacks 'logged in'", r.status)
	}
	res := &http.Response{Header: r.header}
	var session *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == SessionCookie {
			session = c
		}
	}
	if session == nil || len(session.Value) < 16 || session.Path != "/" || !session.HttpOnly {
		t.Fatalf("session cookie = %+v", session)
	}
	again := get(t, srv.URL+"/login")
	if strings.Contains(again.header.Get("Set-Cookie"), session.Value) {
		t.Error("two logins got the same session id")
	}
	if r.header.Get("Cache-Tag") != "" {
		t.Errorf("login page carries Cache-Tag %q", r.header.Get("Cache-Tag"))
	}
}

func TestAdminAndSave(t *testing.T) {
	o, srv := newServer(t)
	for _, path := range []string{"/admin", "/admin/", "/admin/entries", "/admin/settings", "/admin/entries/1"} {
		r := get(t, srv.URL+path)
		if r.status != http.StatusOK || !strings.Contains(r.body, "Control Panel") {
			t.Errorf("%s: status %d, not the CP", path, r.status)
		}
		if r.header.Get("Cache-Tag") != "" {
			t.Errorf("%s: CP page carries Cache-Tag", path)
		}
	}

	before := get(t, srv.URL+"/blog/hello-world")
	if m := renderRE.FindStringSubmatch(before.body); m == nil || m[2] != "1" {
		t.Fatalf("hello-world revision = %v, want 1", m)
	}

	r := do(t, http.MethodPost, srv.URL+"/admin/entries/1", nil)
	if r.status != http.StatusOK {
		t.Fatalf("save: status %d", r.status)
	}
	// What the plugin purges for a saved entry (craft/README.md).
	if got, want := r.header.Get("Cache-Purge-Tag"), "el:entry:*,el:1,el:entry:section:1,el:entry:entryType:1,craft:overflow"; got != want {
		t.Errorf("Cache-Purge-Tag %q, want %q", got, want)
	}
	if !strings.Contains(r.body, "Entry saved") {
		t.Errorf("save body lacks 'Entry saved': %s", r.body)
	}
	if o.Revision(1) != 2 {
		t.Errorf("Revision(1) = %d, want 2", o.Revision(1))
	}

	r = do(t, http.MethodPost, srv.URL+"/admin/entries/1", map[string]string{"Accept": "application/json"})
	var saved struct {
		Success  bool     `json:"success"`
		Revision int      `json:"revision"`
		Purged   []string `json:"purged"`
	}
	if err := json.Unmarshal([]byte(r.body), &saved); err != nil {
		t.Fatalf("JSON save: %v: %s", err, r.body)
	}
	if !saved.Success || saved.Revision != 3 || len(saved.Purged) != 5 || saved.Purged[1] != "el:1" {
		t.Errorf("JSON save = %+v", saved)
	}

	after := get(t, srv.URL+"/blog/hello-world")
	if m := renderRE.FindStringSubmatch(after.body); m == nil || m[2] != "3" {
		t.Errorf("hello-world revision after two saves = %v, want 3", m)
	}
	if o.Revision(2) != 1 {
		t.Errorf("saving entry 1 changed entry 2")
	}

	if r := do(t, http.MethodPost, srv.URL+"/admin/entries/99", nil); r.status != http.StatusNotFound {
		t.Errorf("save unknown entry: status %d, want 404", r.status)
	}
	if r := do(t, http.MethodDelete, srv.URL+"/admin/entries/1", nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("DELETE entry: status %d, want 405", r.status)
	}
}

func TestActions(t *testing.T) {
	_, srv := newServer(t)
	r := do(t, http.MethodPost, srv.URL+"/actions/users/session-info", nil)
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d, Content-Type %q", r.status, r.header.Get("Content-Type"))
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatal(err)
	}
	if body["action"] != "users/session-info" || body["success"] != true {
		t.Errorf("body = %v", body)
	}
	if r.header.Get("Cache-Tag") != "" {
		t.Error("action carries Cache-Tag")
	}
}

func TestControlEndpoint(t *testing.T) {
	o, srv := newServer(t)
	mode := func(r response) string {
		t.Helper()
		var m struct{ Mode string }
		if err := json.Unmarshal([]byte(r.body), &m); err != nil {
			t.Fatalf("%v: %s", err, r.body)
		}
		return m.Mode
	}
	if got := mode(get(t, srv.URL+ControlPath)); got != "ok" {
		t.Errorf("initial mode %q", got)
	}
	for _, m := range []string{"down", "error", "slow", "ok"} {
		r := do(t, http.MethodPost, srv.URL+ControlPath+"?set="+m, nil)
		if r.status != http.StatusOK || mode(r) != m || o.Mode().String() != m {
			t.Errorf("set=%s: status %d, body %s, Mode() %v", m, r.status, r.body, o.Mode())
		}
		if r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("control response is cacheable")
		}
	}
	if r := get(t, srv.URL+ControlPath+"?set=broken"); r.status != http.StatusBadRequest {
		t.Errorf("bad mode: status %d", r.status)
	}
	if r := do(t, http.MethodPut, srv.URL+ControlPath, nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("PUT: status %d", r.status)
	}
	if o.Requests() != 0 {
		t.Errorf("control requests counted: Requests() = %d", o.Requests())
	}
}

func TestModeDown(t *testing.T) {
	o, srv := newServer(t)
	o.SetMode(ModeDown)
	// A proxy sees a transport error: no response at all.
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/blog/hello-world", nil)
	res, err := tr.RoundTrip(req)
	if err == nil {
		res.Body.Close()
		t.Fatalf("down mode answered %d, want a transport error", res.StatusCode)
	}
	// The control endpoint still answers, and heals the origin.
	if r := do(t, http.MethodPost, srv.URL+ControlPath+"?set=ok", nil); r.status != http.StatusOK {
		t.Fatalf("control in down mode: status %d", r.status)
	}
	if r := get(t, srv.URL+"/blog/hello-world"); r.status != http.StatusOK {
		t.Errorf("after set=ok: status %d", r.status)
	}
	if o.Requests() != 2 {
		t.Errorf("Requests() = %d, want 2", o.Requests())
	}
}

func TestModeError(t *testing.T) {
	o, srv := newServer(t)
	o.SetMode(ModeError)
	for _, path := range []string{"/", "/blog/hello-world", "/admin"} {
		r := get(t, srv.URL+path)
		if r.status != http.StatusInternalServerError || !strings.Contains(r.body, "Internal Server Error") {
			t.Errorf("%s: status %d", path, r.status)
		}
		if r.header.Get("Cache-Tag") != "" {
			t.Errorf("%s: error page carries Cache-Tag", path)
		}
	}
}

func TestModeSlow(t *testing.T) {
	o, srv := newServer(t)
	if o.SlowDelay != DefaultSlowDelay {
		t.Errorf("default SlowDelay %v", o.SlowDelay)
	}
	o.SlowDelay = 200 * time.Millisecond
	o.SetMode(ModeSlow)

	start := time.Now()
	r := get(t, srv.URL+"/blog/caching")
	if d := time.Since(start); d < o.SlowDelay {
		t.Errorf("slow answer took %v, want >= %v", d, o.SlowDelay)
	}
	if r.status != http.StatusOK || r.header.Get("Cache-Tag") == "" {
		t.Errorf("slow answer: status %d, Cache-Tag %q", r.status, r.header.Get("Cache-Tag"))
	}

	// A client that gives up does not keep the handler sleeping.
	o.SlowDelay = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/", nil)
	_, err := http.DefaultClient.Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	done := make(chan struct{})
	go func() { srv.Close(); close(done) }() // waits for handlers to return
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("slow handler ignored the request's cancellation")
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range []Mode{ModeOK, ModeDown, ModeError, ModeSlow} {
		got, err := ParseMode(strings.ToUpper(m.String()))
		if err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseMode("sideways"); err == nil {
		t.Error("ParseMode accepted an unknown mode")
	}
}

func TestCatalog(t *testing.T) {
	o := NewCatalog(3000)
	srv := httptest.NewServer(o)
	t.Cleanup(srv.Close)
	sample := do(t, http.MethodGet, srv.URL+"/products/3", nil)
	if sample.status != 200 || !strings.Contains(sample.body, "Edge Cache Hoodie") {
		t.Fatalf("sample product: %d", sample.status)
	}
	r := do(t, http.MethodGet, srv.URL+"/products/2999", nil)
	if r.status != 200 || !strings.Contains(r.body, "Catalogue item 2999") ||
		r.header.Get("Cache-Tag") != "craft,el,el:commerce.product,el:3099,el:commerce.product:productType:1" {
		t.Fatalf("generated product: %d, Cache-Tag %q", r.status, r.header.Get("Cache-Tag"))
	}
	if r := do(t, http.MethodGet, srv.URL+"/products/3001", nil); r.status != 404 {
		t.Fatalf("past the catalogue: %d, want 404", r.status)
	}
	if n := len(NewCatalog(2).products); n != 9 {
		t.Fatalf("NewCatalog(2) has %d products, want the 9 samples", n)
	}
}
