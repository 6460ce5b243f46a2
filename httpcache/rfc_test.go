package httpcache

import (
	"net/http"
	"testing"
	"time"
)

func TestParseHTTPDate(t *testing.T) {
	want := time.Date(1994, 11, 6, 8, 49, 37, 0, time.UTC)
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"Sun, 06 Nov 1994 08:49:37 GMT", true},
		{" Sun, 06 Nov 1994 08:49:37 GMT ", true},
		{"Sunday, 06-Nov-94 08:49:37 GMT", true},
		{"Sun Nov  6 08:49:37 1994", true},
		{"Sun Nov 06 08:49:37 1994", true},
		{"Sun, 06 Nov 1994 8:49:37 GMT", false},
		{"Sun,  06 Nov 1994 08:49:37 GMT", false},
		{"Sun, 06 Nov 1994 08:49:37 UTC", false},
		{"sun, 06 Nov 1994 08:49:37 GMT", false},
		{"Sun, 06 nov 1994 08:49:37 GMT", false},
		{"Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT", false},
		{"Sunday, 06-Nov-94 8:49:37 GMT", false},
		{"Sun Nov 6 08:49:37 1994", false},
		{"0", false},
		{"", false},
	} {
		got, ok := ParseHTTPDate(tc.in)
		if ok != tc.ok || ok && !got.Equal(want) {
			t.Errorf("ParseHTTPDate(%q) = %v, %v; want ok=%v", tc.in, got, ok, tc.ok)
		}
	}
}

func TestAgeValueStrict(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"10": 10 * time.Second, " 10 ": 10 * time.Second, "10s": 0, "-10": 0, "1.5": 0, `"10"`: 0, "10, 20": 0,
	} {
		if got := AgeValue(http.Header{"Age": {in}}); got != want {
			t.Errorf("AgeValue(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestResponseDirectivesTargeted(t *testing.T) {
	tests := []struct {
		name   string
		h      http.Header
		source string
		check  func(Directives) bool
	}{
		{"cache-control only", hdr("Cache-Control", "max-age=5"), "Cache-Control",
			func(d Directives) bool { return d.HasMaxAge && d.MaxAge == 5*time.Second }},
		{"cdn wins", hdr("Cache-Control", "no-store", "CDN-Cache-Control", "max-age=60, stale-if-error=30"), "Cdn-Cache-Control",
			func(d Directives) bool {
				return !d.NoStore && d.MaxAge == time.Minute && d.StaleIfError == 30*time.Second
			}},
		{"own wins over cdn", hdr("CDN-Cache-Control", "max-age=60", "Craftedge-Cache-Control", "private"), "Craftedge-Cache-Control",
			func(d Directives) bool { return d.Private && !d.HasMaxAge }},
		{"invalid own falls back to cdn", hdr("CDN-Cache-Control", "max-age=60", "Craftedge-Cache-Control", "max-age=(("), "Cdn-Cache-Control",
			func(d Directives) bool { return d.MaxAge == time.Minute }},
		{"invalid cdn ignored", hdr("Cache-Control", "no-cache", "CDN-Cache-Control", "max-age=60;;"), "Cache-Control",
			func(d Directives) bool { return d.NoCache && !d.HasMaxAge }},
		{"none means no directives", hdr("Cache-Control", "no-store", "CDN-Cache-Control", "none"), "Cdn-Cache-Control",
			func(d Directives) bool { return d == Directives{} }},
		{"wrong types ignored", hdr("CDN-Cache-Control", `max-age=1.5, s-maxage="9", stale-if-error=-1, no-store=?0`), "Cdn-Cache-Control",
			func(d Directives) bool { return d == Directives{} }},
		{"private with field names", hdr("CDN-Cache-Control", `private="set-cookie", no-cache=("a" "b")`), "Cdn-Cache-Control",
			func(d Directives) bool { return d.Private && d.NoCache }},
	}
	for _, tt := range tests {
		d, src := ResponseDirectives(tt.h)
		if src != tt.source || !tt.check(d) {
			t.Errorf("%s: source %q, directives %+v", tt.name, src, d)
		}
	}
}

func TestStaleAllowance(t *testing.T) {
	const def = time.Hour
	for _, tc := range []struct {
		cc         string
		prohibited bool
		swr, sie   time.Duration
	}{
		{"max-age=10", false, 0, def},
		{"max-age=10, stale-while-revalidate=5, stale-if-error=7", false, 5 * time.Second, 7 * time.Second},
		{"max-age=10, must-revalidate, stale-if-error=7", true, 0, 0},
		{"max-age=10, proxy-revalidate", true, 0, 0},
		{"no-cache, stale-while-revalidate=5", true, 0, 0},
		{"s-maxage=10", true, 0, 0},
		{"s-maxage=10, stale-while-revalidate=5, stale-if-error=7", true, 5 * time.Second, 7 * time.Second},
	} {
		p := StaleAllowance(ParseCacheControl([]string{tc.cc}), def)
		if p.Prohibited != tc.prohibited || p.WhileRevalidate != tc.swr || p.IfError != tc.sie {
			t.Errorf("%q: %+v", tc.cc, p)
		}
	}
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		v          string
		size       int64
		start, end int64
		out        RangeOutcome
	}{
		{"bytes=0-9", 100, 0, 9, RangePartial},
		{"BYTES=0-9", 100, 0, 9, RangePartial},
		{"bytes=90-200", 100, 90, 99, RangePartial},
		{"bytes=50-", 100, 50, 99, RangePartial},
		{"bytes=-10", 100, 90, 99, RangePartial},
		{"bytes=-200", 100, 0, 99, RangePartial},
		{"bytes=100-", 100, 0, 0, RangeUnsatisfiable},
		{"bytes=-0", 100, 0, 0, RangeUnsatisfiable},
		{"bytes=0-", 0, 0, 0, RangeUnsatisfiable},
		{"bytes=0-1,3-4", 100, 0, 0, RangeFull},
		{"bytes=0-1, ", 100, 0, 1, RangePartial},
		{"bytes=5-1", 100, 0, 0, RangeFull},
		{"bytes=a-1", 100, 0, 0, RangeFull},
		{"items=0-1", 100, 0, 0, RangeFull},
		{"bytes=", 100, 0, 0, RangeFull},
	} {
		s, e, out := ParseRange(tc.v, tc.size)
		if out != tc.out || out == RangePartial && (s != tc.start || e != tc.end) {
			t.Errorf("ParseRange(%q, %d) = %d, %d, %d", tc.v, tc.size, s, e, out)
		}
	}
}

func TestIfRangeMatches(t *testing.T) {
	lm := time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)
	date := lm.Add(time.Hour)
	for _, tc := range []struct {
		v, etag string
		lm, d   time.Time
		want    bool
	}{
		{`"a"`, `"a"`, lm, date, true},
		{`"a"`, `"b"`, lm, date, false},
		{`W/"a"`, `W/"a"`, lm, date, false},
		{`"a"`, `W/"a"`, lm, date, false},
		{lm.Format(http.TimeFormat), `"a"`, lm, date, true},
		{lm.Format(http.TimeFormat), `"a"`, lm, lm, false}, // weak Last-Modified
		{lm.Add(time.Second).Format(http.TimeFormat), `"a"`, lm, date, false},
		{"garbage", `"a"`, lm, date, false},
	} {
		if got := IfRangeMatches(tc.v, tc.etag, tc.lm, tc.d); got != tc.want {
			t.Errorf("IfRangeMatches(%q, %q) = %v", tc.v, tc.etag, got)
		}
	}
}
