package httpcache

import (
	"testing"
	"time"
)

func TestParseCacheControl(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   Directives
	}{
		{"none", nil, Directives{}},
		{"empty", []string{""}, Directives{}},
		{"flags", []string{"no-store, no-cache, private, public, must-revalidate, proxy-revalidate, no-transform, immutable"},
			Directives{NoStore: true, NoCache: true, Private: true, Public: true, MustRevalidate: true, ProxyRevalidate: true, NoTransform: true, Immutable: true}},
		{"case-insensitive", []string{"NO-STORE, Max-Age=60"}, Directives{NoStore: true, MaxAge: time.Minute, HasMaxAge: true}},
		{"ages", []string{"max-age=60, s-maxage=120, stale-while-revalidate=30, stale-if-error=86400"},
			Directives{MaxAge: time.Minute, HasMaxAge: true, SMaxAge: 2 * time.Minute, HasSMaxAge: true,
				StaleWhileRevalidate: 30 * time.Second, HasStaleWhileRevalidate: true, StaleIfError: 24 * time.Hour, HasStaleIfError: true}},
		{"multiple lines", []string{"public", "max-age=5"}, Directives{Public: true, MaxAge: 5 * time.Second, HasMaxAge: true}},
		{"whitespace", []string{"  public ,\tmax-age = 5 ,, "}, Directives{Public: true, MaxAge: 5 * time.Second, HasMaxAge: true}},
		{"quoted value", []string{`max-age="60"`}, Directives{MaxAge: time.Minute, HasMaxAge: true}},
		{"private field names", []string{`private="Set-Cookie, X-Foo", max-age=10`}, Directives{Private: true, MaxAge: 10 * time.Second, HasMaxAge: true}},
		{"no-cache field names", []string{`no-cache="Set-Cookie"`}, Directives{NoCache: true}},
		{"escaped quote in value", []string{`private="a\",max-age=9", public`}, Directives{Private: true, Public: true}},
		{"negative max-age", []string{"max-age=-1"}, Directives{HasMaxAge: true}},
		{"invalid max-age", []string{"max-age=abc"}, Directives{HasMaxAge: true}},
		{"empty max-age", []string{"max-age="}, Directives{HasMaxAge: true}},
		{"bare s-maxage", []string{"s-maxage"}, Directives{HasSMaxAge: true}},
		{"fractional max-age", []string{"max-age=1.5"}, Directives{HasMaxAge: true}},
		{"huge max-age", []string{"max-age=99999999999999999999999"}, Directives{MaxAge: MaxDeltaSeconds, HasMaxAge: true}},
		{"first occurrence wins", []string{"max-age=10, max-age=20"}, Directives{MaxAge: 10 * time.Second, HasMaxAge: true}},
		{"first invalid wins", []string{"max-age=x", "max-age=20"}, Directives{HasMaxAge: true}},
		{"invalid swr ignored", []string{"stale-while-revalidate=x, stale-if-error=-5"}, Directives{}},
		{"invalid swr then valid", []string{"stale-while-revalidate=x, stale-while-revalidate=5"}, Directives{StaleWhileRevalidate: 5 * time.Second, HasStaleWhileRevalidate: true}},
		{"unknown ignored", []string{"foo=bar, community=\"UCI\", max-age=1"}, Directives{MaxAge: time.Second, HasMaxAge: true}},
		{"name prefix is not name", []string{"max-agex=5, no-stored"}, Directives{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseCacheControl(tt.values); got != tt.want {
				t.Errorf("ParseCacheControl(%q) =\n %+v, want\n %+v", tt.values, got, tt.want)
			}
		})
	}
}

func TestParseCacheControlAllocs(t *testing.T) {
	v := []string{`public, max-age=60, s-maxage=300, stale-while-revalidate=30, private="x"`}
	if n := testing.AllocsPerRun(100, func() { ParseCacheControl(v) }); n != 0 {
		t.Errorf("ParseCacheControl allocates %v times, want 0", n)
	}
}

func TestParseDeltaSeconds(t *testing.T) {
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"0", 0, true},
		{"60", time.Minute, true},
		{`"60"`, time.Minute, true},
		{"2147483648", MaxDeltaSeconds, true},
		{"2147483649", MaxDeltaSeconds, true},
		{"", 0, false},
		{`""`, 0, false},
		{"-1", 0, false},
		{"1e3", 0, false},
		{" 1", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseDeltaSeconds(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseDeltaSeconds(%q) = %v, %v, want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}
