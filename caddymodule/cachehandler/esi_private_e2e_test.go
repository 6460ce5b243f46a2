package cachehandler

import (
	"net/http"
	"testing"

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
	o.Handle("/frag/shared", newFragment("shared", "public, max-age=60", "").ServeHTTP)
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
}
