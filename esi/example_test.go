package esi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/craftedge/craftedge/esi"
)

// Example shows the glue a cache handler needs: compile an opted-in page
// at store time, assemble it per hit with a private fragment resolved
// before the headers.
func Example() {
	// Store time: the upstream opted in.
	page := []byte(`<form><esi:include src="/_fragments/csrf"/></form><esi:include src="http://127.0.0.1:2019/config/"/>`)
	upstreamHeader := http.Header{"Surrogate-Control": {`content="ESI/1.0"`}}
	if !esi.OptedIn(upstreamHeader.Values("Surrogate-Control")) {
		return
	}
	pol := &esi.Policy{Scheme: "https", Host: "example.com", Reserved: []string{"/craftedge/", "/vendors/"}}
	stored, tmpl, err := esi.Compile(page, pol, esi.DefaultLimits())
	if err != nil {
		fmt.Println("not stored:", err)
		return
	}
	for _, r := range tmpl.Refused {
		fmt.Println(r) // log it
	}

	// Hit time.
	t, err := esi.UnmarshalTemplate(stored)
	if err != nil {
		fmt.Println("damaged:", err)
		return
	}
	src := esi.Sources{
		Fetch: func(ctx context.Context, path string, depth int) (esi.Fragment, error) {
			// The handler fetches through the page's upstream; this one is
			// private and issues a cookie.
			h := http.Header{"Set-Cookie": {"CRAFT_CSRF_TOKEN=t; Path=/; HttpOnly"}}
			return esi.Fragment{Body: []byte(`<input name="CRAFT_CSRF_TOKEN" value="m">`), Private: true, Header: h}, nil
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second) // the page's budget
	defer cancel()
	a, err := esi.NewAssembly(ctx, t, page, src, esi.DefaultLimits())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()
	head, err := a.Prepare(esi.WaitPrivate)
	if err != nil {
		fmt.Println("page error:", err) // answer the page's error
		return
	}
	w := httptest.NewRecorder()
	for _, c := range head.SetCookie {
		w.Header().Add("Set-Cookie", c)
	}
	if head.Private {
		w.Header().Set("Cache-Control", "private, no-store")
	}
	if _, err := a.Write(w, esi.CodingIdentity); err != nil {
		panic(http.ErrAbortHandler) // a failure after the headers: abort
	}
	fmt.Println(w.Header().Get("Set-Cookie"))
	fmt.Println(w.Header().Get("Cache-Control"))
	fmt.Println(w.Body.String())
	fmt.Println(esi.CacheStatus("craftedge-esi", a.Reports()))
	// Output:
	// include at byte 50, src="http://127.0.0.1:2019/config/": esi: include refused: scheme "http" is not the page's "https"
	// CRAFT_CSRF_TOKEN=t; Path=/; HttpOnly
	// private, no-store
	// <form><input name="CRAFT_CSRF_TOKEN" value="m"></form>
	// [craftedge-esi; fwd=miss; key="/_fragments/csrf"; detail=private]
}
