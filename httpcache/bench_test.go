package httpcache

import (
	"testing"
	"time"
)

func BenchmarkCheck(b *testing.B) {
	rules := mustCompileBypass(b, BypassRules{
		Paths:   []string{"/shop/cart*", "/account"},
		Cookies: []string{"cart_*"},
		Query:   []string{"nocache"},
		Headers: []string{"X-No-Cache"},
	})
	cases := []struct {
		name string
		args []string
	}{
		{"anonymous", []string{"/blog/some-post?page=2&sort=title&utm_source=news", "Cookie", "_ga=GA1.2.3; CRAFT_CSRF_TOKEN=abc; theme=dark"}},
		{"session", []string{"/blog/some-post", "Cookie", "_ga=GA1.2.3; CraftSessionId=abc"}},
		{"cp", []string{"/admin/entries/blog"}},
	}
	for _, c := range cases {
		r := newReq("GET", c.args[0], c.args[1:]...)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rules.Check(r)
			}
		})
	}
}

func BenchmarkKey(b *testing.B) {
	var k KeyRules
	if err := k.Compile(); err != nil {
		b.Fatal(err)
	}
	cases := []struct{ name, query string }{
		{"no-query", ""},
		{"plain-query", "page=2&sort=title&utm_source=news&gclid=x"},
		{"escaped-query", "q=caf%C3%A9+au+lait&tags[]=a&tags[]=b&z=%2F"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				k.Key("https", "Example.com", "/blog/some-post", c.query)
			}
		})
	}
}

func BenchmarkPreferredEncoding(b *testing.B) {
	cases := []struct{ name, ae string }{
		{"chrome", "gzip, deflate, br, zstd"},
		{"qvalues", "gzip;q=0.8, zstd;q=0.9, *;q=0.1, identity;q=0.5"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				PreferredEncoding(c.ae, true, true)
			}
		})
	}
}

func BenchmarkParseCacheControl(b *testing.B) {
	v := []string{"public, max-age=60, s-maxage=300, stale-while-revalidate=30, stale-if-error=86400"}
	b.ReportAllocs()
	for b.Loop() {
		ParseCacheControl(v)
	}
}

func BenchmarkNotModified(b *testing.B) {
	r := newReq("GET", "/", "If-None-Match", `W/"x", "abc-gzip"`)
	etags := []string{`"abc"`, `"abc-gzip"`}
	b.ReportAllocs()
	for b.Loop() {
		NotModified(r, etags, time.Time{})
	}
}
