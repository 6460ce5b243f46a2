package cachehandler

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// fuzzHandler is a handler with every keyed feature on (key_header,
// key_cookie, graphql), compiled as Provision compiles it.
func fuzzHandler(t testing.TB) *Handler {
	h := &Handler{KeyHeaders: []string{"X-Region"}, KeyCookies: []string{"currency"}, GraphQL: "/api"}
	h.bypass.GraphQLPath = h.GraphQL
	if err := h.bypass.Compile(); err != nil {
		t.Fatal(err)
	}
	if err := h.compileKeyedFields(); err != nil {
		t.Fatal(err)
	}
	if err := h.keys.Compile(); err != nil {
		t.Fatal(err)
	}
	return h
}

// upstreamView computes what ServeHTTP would key a request by and what it
// would send upstream (as text: method, URL, host, headers, body, and the
// original request php_fastcgi reads). ok is false for a bypass.
func upstreamView(t testing.TB, h *Handler, r *http.Request, vary []string) (key, sent string, ok bool) {
	if r.Header.Get("Upgrade") != "" || h.bypass.Check(r) != "" {
		return "", "", false
	}
	key, spec, reason := h.requestKey(r, r)
	if reason != "" {
		return "", "", false
	}
	if r.URL.Path == h.GraphQL {
		extra, reason := h.graphQLKey(r, r, &spec)
		if reason != "" {
			return "", "", false
		}
		key += extra
	}
	key = h.varyKey(key, vary, r)
	up := h.upstreamRequest(context.Background(), r, &spec, vary)
	var b strings.Builder
	dump := func(req *http.Request) {
		b.WriteString(req.Method + " " + req.URL.RequestURI() + " host=" + req.Host + " proto=" + req.Proto + "\n")
		names := make([]string, 0, len(req.Header))
		for name := range req.Header {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			b.WriteString(name + ": " + strings.Join(req.Header[name], "\x00") + "\n")
		}
		if req.Body != nil {
			body, _ := io.ReadAll(req.Body)
			b.Write(body)
		}
		b.WriteString("\n--\n")
	}
	dump(up)
	orig, _ := up.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request)
	if orig.URL == nil {
		t.Fatal("upstream request carries no original request for php_fastcgi")
	}
	dump(&orig)
	return key, b.String(), true
}

// seenKeys maps every key the fuzzer produced to what it sent upstream, so
// any two inputs of the whole run with one key are compared.
var seenKeys sync.Map

// FuzzUpstreamRequestIsFunctionOfKey checks the first safety rule: two
// cacheable requests with the same cache key send the same upstream
// request. Each input is a request and a variant of it with noise (an
// extra header, a body, tracking parameters, cookies, another spelling of
// the host) added; and every key is compared across the whole run.
func FuzzUpstreamRequestIsFunctionOfKey(f *testing.F) {
	f.Add("GET", "example.com", "/page", "a=1&b=2", "Accept-Language", "de", "consent=1", "", "X-Rewrite-Url", "/evil", "utm_source=x", "")
	f.Add("HEAD", "Example.com:80", "/page", "b=2&a=1", "X-Region", "eu", "currency=EUR; x=1", "action=logout", "Forwarded", "host=evil", "gclid=1", "application/x-www-form-urlencoded")
	f.Add("POST", "example.com", "/api", "", "Authorization", "Bearer t", "", `{"query":"{ entries { title } }"}`, "X-Craft-Gql-Schema", "s", "", "application/json")
	f.Add("POST", "example.com", "/api", "query=%7Ba%7D", "", "", "", `{"query":"mutation{x}","QUERY":"{a}"}`, "X-Evil", "1", "", "application/json")
	f.Add("GET", "example.com", "/p", "%20token=1", "X-Requested-With", "XMLHttpRequest", "h.identity=1", "", "X-Forwarded-Host", "evil", "_ga=1", "")
	h := fuzzHandler(f)
	vary := []string{"Accept-Language", "Cookie"}
	f.Fuzz(func(t *testing.T, method, host, path, query, hName, hValue, cookie, body, noiseName, noiseValue, noiseQuery, contentType string) {
		build := func(noise bool) *http.Request {
			if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, "?# ") || strings.ContainsAny(query, "# ") || host == "" || strings.ContainsAny(host, "/?#@ \x00") {
				return nil
			}
			u, err := url.Parse("http://placeholder" + path + "?" + query)
			if err != nil {
				return nil
			}
			r := &http.Request{Method: method, URL: u, Host: host, Header: http.Header{}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
			r = r.WithContext(context.Background())
			if hName != "" && validToken(hName) {
				r.Header.Set(hName, hValue)
			}
			if cookie != "" {
				r.Header.Set("Cookie", cookie)
			}
			if contentType != "" {
				r.Header.Set("Content-Type", contentType)
			}
			r.Body = io.NopCloser(strings.NewReader(body))
			if noise {
				if method != http.MethodPost {
					// A GET/HEAD body is not keyed: noise may change it.
					r.Body = io.NopCloser(strings.NewReader(body + noiseValue))
				}
				if noiseName != "" && validToken(noiseName) && r.Header.Get(noiseName) == "" && !isKeyedField(h, noiseName) {
					r.Header.Set(noiseName, noiseValue)
				}
				r.Header.Add("Cookie", "noise=1")
				r.Header.Set("User-Agent", "noise/"+noiseValue)
				if noiseQuery != "" {
					r.URL.RawQuery += "&utm_source=" + url.QueryEscape(noiseQuery)
				}
				r.Host = strings.ToUpper(host)
			}
			return r
		}
		a, b := build(false), build(true)
		if a == nil {
			return
		}
		keyA, sentA, okA := upstreamView(t, h, a, vary)
		keyB, sentB, okB := upstreamView(t, h, b, vary)
		if okA && okB && keyA == keyB && sentA != sentB {
			t.Fatalf("same key %q, different upstream requests:\n%s\nvs\n%s", keyA, sentA, sentB)
		}
		for _, kv := range [][3]any{{keyA, sentA, okA}, {keyB, sentB, okB}} {
			if !kv[2].(bool) {
				continue
			}
			if prev, loaded := seenKeys.LoadOrStore(kv[0], kv[1]); loaded && prev.(string) != kv[1].(string) {
				t.Fatalf("same key %q, different upstream requests across inputs:\n%s\nvs\n%s", kv[0], prev, kv[1])
			}
		}
		if okA && bytes.Contains([]byte(sentA), []byte("noise")) {
			t.Fatalf("noise reached upstream:\n%s", sentA)
		}
	})
}

// isKeyedField reports whether a request field is part of the key in
// fuzzHandler (noise must not set it).
func isKeyedField(h *Handler, name string) bool {
	switch http.CanonicalHeaderKey(name) {
	case "X-Region", "Cookie", "Accept-Language", "X-Requested-With", "Authorization", "X-Craft-Gql-Schema", "Content-Type",
		"Upgrade", "X-Craft-Token", "X-Craft-Site-Token", "X-Craft-Preview-Token", "X-Craft-Preview", "X-Craft-Live-Preview":
		return true
	}
	return false
}
