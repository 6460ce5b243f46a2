package vendors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestGetMapsRecord(t *testing.T) {
	cat := newCatalog(t, 3)
	var infos []RequestInfo
	c, _ := newTestClient(t, testConfig(cat.URL()), func(o *ClientOptions) {
		o.OnRequest = func(i RequestInfo) { infos = append(infos, i) }
	})
	rec, err := c.Get(context.Background(), "products", "2")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Vendor != "commerce" || rec.Resource != "products" || rec.ID != "2" || rec.Version != "1" {
		t.Errorf("ids: %+v", rec)
	}
	if !rec.UpdatedAt.Equal(t0.Add(2*time.Minute)) || !rec.SyncedAt.Equal(t0) {
		t.Errorf("times: updated %v synced %v", rec.UpdatedAt, rec.SyncedAt)
	}
	if rec.Fields["title"] != "Product 2" || rec.Fields["price"] != json.Number("200") || rec.Fields["currency"] != "EUR" {
		t.Errorf("fields: %#v", rec.Fields)
	}
	if strings.Join(rec.Tags, ",") != "shop:product:2,shop:products" {
		t.Errorf("tags: %v", rec.Tags)
	}
	if len(infos) != 1 || infos[0].Outcome != OutcomeOK || infos[0].StatusCode != 200 || !infos[0].Sent ||
		infos[0].Resource != "products" || infos[0].Region == "" {
		t.Errorf("OnRequest: %+v", infos)
	}

	_, err = c.Get(context.Background(), "products", "404")
	var se *StatusError
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &se) || se.Code != 404 || !IsPermanent(err) {
		t.Errorf("missing item: %v", err)
	}
	if _, err := c.Get(context.Background(), "nope", "1"); !errors.Is(err, ErrUnknownResource) {
		t.Errorf("unknown resource: %v", err)
	}
	if _, err := c.Get(context.Background(), "products", ".."); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("dot id: %v", err)
	}
	st := c.Stats()
	if st.Requests[OutcomeOK] != 1 || st.Requests[OutcomeNotFound] != 1 || st.StatusClasses["2xx"] != 1 || st.StatusClasses["4xx"] != 1 {
		t.Errorf("stats: %+v", st)
	}
}

func TestDisabledMakesNoCalls(t *testing.T) {
	cat := newCatalog(t, 1)
	cfg := testConfig(cat.URL())
	cfg.Enabled = false
	c, _ := newTestClient(t, cfg, nil)
	ctx := context.Background()
	if _, err := c.Get(ctx, "products", "1"); !errors.Is(err, ErrDisabled) {
		t.Errorf("Get: %v", err)
	}
	if _, err := c.List(ctx, "products", time.Time{}, 1); !errors.Is(err, ErrDisabled) {
		t.Errorf("List: %v", err)
	}
	if _, err := c.Upsert(ctx, "products", "1", []byte(`{}`), "k"); !errors.Is(err, ErrDisabled) {
		t.Errorf("Upsert: %v", err)
	}
	if _, err := c.Do(ctx, Request{Path: "/products/1"}); !errors.Is(err, ErrDisabled) || !strings.Contains(err.Error(), `: GET /products/1: `) {
		t.Errorf("Do: %v", err)
	}
	if n := cat.requests.Load(); n != 0 {
		t.Errorf("vendor saw %d requests while disabled", n)
	}
	if got := c.Stats().Requests[OutcomeDisabled]; got != 4 {
		t.Errorf("disabled count %d", got)
	}
	c.SetEnabled(true)
	if _, err := c.Get(ctx, "products", "1"); err != nil {
		t.Errorf("after SetEnabled(true): %v", err)
	}
}

func TestCanarySplit(t *testing.T) {
	stable := newCatalog(t, 100)
	var canaryHits, canaryHeader atomic.Int64
	canary := newCatalog(t, 100)
	canary.hook = func(w http.ResponseWriter, r *http.Request) bool {
		canaryHits.Add(1)
		if r.Header.Get("X-Canary") == "1" {
			canaryHeader.Add(1)
		}
		return false
	}
	cfg := testConfig(stable.URL())
	cfg.Canary = Canary{Percent: 30, BaseURLs: []string{canary.URL()}, Headers: Headers{"X-Canary": "1"}}
	var n atomic.Int64
	c, _ := newTestClient(t, cfg, func(o *ClientOptions) {
		// Deterministic: 0.00, 0.01, …, 0.99, so exactly 30 of 100 draws are < 0.30.
		o.Rand = func() float64 { return float64((n.Add(1)-1)%100) / 100 }
	})
	for i := 1; i <= 100; i++ {
		if _, err := c.Get(context.Background(), "products", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if canaryHits.Load() != 30 || canaryHeader.Load() != 30 || stable.requests.Load() != 70 {
		t.Errorf("canary %d (header %d), stable %d; want 30/30/70", canaryHits.Load(), canaryHeader.Load(), stable.requests.Load())
	}
	if got := c.Stats().Canary; got != 30 {
		t.Errorf("Stats.Canary %d", got)
	}
	// Sync's List never uses the canary.
	for i := 0; i < 10; i++ {
		if _, err := c.List(context.Background(), "products", time.Time{}, 1); err != nil {
			t.Fatal(err)
		}
	}
	if canaryHits.Load() != 30 {
		t.Errorf("List went to the canary")
	}
	if err := c.SetCanaryPercent(0); err != nil {
		t.Fatal(err)
	}
	c.Get(context.Background(), "products", "1")
	if canaryHits.Load() != 30 {
		t.Errorf("percent 0 still used the canary")
	}
}

func TestDoReadThrough(t *testing.T) {
	var gotAuth, gotCookie, gotLang, gotQuery string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotCookie, gotLang, gotQuery = r.Header.Get("Authorization"), r.Header.Get("Cookie"), r.Header.Get("Accept-Language"), r.URL.RawQuery
		w.Header().Set("Set-Cookie", "vendor=1")
		w.Header().Set("Cache-Control", "max-age=60")
		switch r.URL.Path {
		case "/v2/search":
			fmt.Fprint(w, `{"hits":[]}`)
		case "/v2/big":
			w.Write(make([]byte, 2048))
		default:
			w.WriteHeader(404)
		}
	}))
	t.Cleanup(srv.Close)
	cfg := testConfig(srv.URL)
	cfg.MaxBodyBytes = 1024
	c, _ := newTestClient(t, cfg, nil)
	ctx := context.Background()

	resp, err := c.Do(ctx, Request{Path: "/search", RawQuery: "q=shoe",
		Header: http.Header{"Authorization": {"Bearer visitor"}, "Cookie": {"CraftSessionId=x"}, "Accept-Language": {"de"}}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || string(resp.Body) != `{"hits":[]}` || resp.Header.Get("Set-Cookie") != "" || resp.Header.Get("Cache-Control") != "max-age=60" {
		t.Errorf("response: %d %q %v", resp.StatusCode, resp.Body, resp.Header)
	}
	if gotAuth != "Bearer "+testToken || gotCookie != "" || gotLang != "de" || gotQuery != "q=shoe" {
		t.Errorf("forwarded: auth %q cookie %q lang %q query %q", gotAuth, gotCookie, gotLang, gotQuery)
	}
	if resp, err := c.Do(ctx, Request{Path: "/missing"}); err != nil || resp.StatusCode != 404 {
		t.Errorf("404 should be relayed: %v %v", resp, err)
	}
	if _, err := c.Do(ctx, Request{Path: "/big"}); !errors.Is(err, ErrBodyTooLarge) {
		t.Errorf("big body: %v", err)
	}
	for _, p := range []string{"products", "/../admin", "/a/%2e%2e/b", "//evil.example/x", "/a?b"} {
		if _, err := c.Do(ctx, Request{Path: p}); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("path %q: %v", p, err)
		}
	}
	if _, err := c.Do(ctx, Request{Method: "POST", Path: "/search"}); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("POST: %v", err)
	}
}

func TestSecretsNeverInErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, "token %s is not allowed", r.Header.Get("Authorization")) // a vendor echoing the credential
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, testConfig(srv.URL), nil)
	_, err := c.Get(context.Background(), "products", "1")
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 403 || !se.Permanent() {
		t.Fatalf("want a permanent 403, got %v", err)
	}
	if strings.Contains(err.Error(), testToken) || !strings.Contains(err.Error(), "REDACTED") {
		t.Errorf("credential not redacted: %v", err)
	}
	cfg := testConfig(srv.URL)
	for _, s := range []string{cfg.Headers.String(), fmt.Sprintf("%v %#v %+v", cfg.Headers, cfg.Headers, cfg.Redacted())} {
		if strings.Contains(s, testToken) {
			t.Errorf("credential printed: %s", s)
		}
	}
	if strings.Contains(fmt.Sprint(c.Config()), testToken) {
		t.Errorf("Client.Config leaks the credential")
	}
}

func TestUpsertSendsOnceWithIdempotencyKey(t *testing.T) {
	cat := newCatalog(t, 1)
	var keys []string
	cat.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut {
			keys = append(keys, r.Header.Get("Idempotency-Key"))
		}
		return false
	}
	c, _ := newTestClient(t, testConfig(cat.URL()), nil)
	rec, err := c.Upsert(context.Background(), "products", "9", []byte(`{"title":"New","price":5}`), "commerce:9:1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.ID != "9" || rec.Fields["title"] != "New" || rec.Version != "1" {
		t.Errorf("record %+v", rec)
	}
	if len(keys) != 1 || keys[0] != "commerce:9:1" {
		t.Errorf("idempotency keys %q", keys)
	}
}
