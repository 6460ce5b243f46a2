package httpcache

import (
	"net/http"
	"testing"
	"time"
)

func TestNotModified(t *testing.T) {
	lm := time.Date(2025, 1, 2, 3, 4, 5, 500, time.UTC)
	etags := []string{`"abc"`, `"abc-gzip"`}
	tests := []struct {
		name         string
		req          *http.Request
		etags        []string
		lastModified time.Time
		want         bool
	}{
		{"no validators", newReq("GET", "/"), etags, lm, false},
		{"inm match", newReq("GET", "/", "If-None-Match", `"abc"`), etags, lm, true},
		{"inm second etag", newReq("GET", "/", "If-None-Match", `"x", "abc-gzip"`), etags, lm, true},
		{"inm weak", newReq("GET", "/", "If-None-Match", `W/"abc"`), etags, lm, true},
		{"inm weak stored", newReq("GET", "/", "If-None-Match", `"w"`), []string{`W/"w"`}, lm, true},
		{"inm star", newReq("HEAD", "/", "If-None-Match", "*"), nil, lm, true},
		{"inm no match wins over ims", newReq("GET", "/", "If-None-Match", `"zzz"`, "If-Modified-Since", lm.Format(http.TimeFormat)), etags, lm, false},
		{"inm second line", newReq("GET", "/", "If-None-Match", `"x"`, "If-None-Match", `"abc"`), etags, lm, true},
		{"post", newReq("POST", "/", "If-None-Match", `"abc"`), etags, lm, false},
		{"ims equal", newReq("GET", "/", "If-Modified-Since", lm.Format(http.TimeFormat)), etags, lm, true},
		{"ims later", newReq("GET", "/", "If-Modified-Since", lm.Add(time.Hour).Format(http.TimeFormat)), etags, lm, true},
		{"ims earlier", newReq("GET", "/", "If-Modified-Since", lm.Add(-time.Second).Format(http.TimeFormat)), etags, lm, false},
		{"ims zero lastModified", newReq("GET", "/", "If-Modified-Since", lm.Format(http.TimeFormat)), etags, time.Time{}, false},
		{"ims invalid", newReq("GET", "/", "If-Modified-Since", "yesterday"), etags, lm, false},
		{"ims two values", newReq("GET", "/", "If-Modified-Since", lm.Format(http.TimeFormat), "If-Modified-Since", lm.Format(http.TimeFormat)), etags, lm, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NotModified(tt.req, tt.etags, tt.lastModified); got != tt.want {
				t.Errorf("NotModified = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNotModifiedAllocs(t *testing.T) {
	r := newReq("GET", "/", "Accept", "text/html")
	etags := []string{`"abc"`}
	lm := time.Now()
	if n := testing.AllocsPerRun(100, func() { NotModified(r, etags, lm) }); n != 0 {
		t.Errorf("NotModified allocates %v times, want 0", n)
	}
	r.Header.Set("If-None-Match", `W/"x", "abc"`)
	if n := testing.AllocsPerRun(100, func() { NotModified(r, etags, lm) }); n != 0 {
		t.Errorf("NotModified with If-None-Match allocates %v times, want 0", n)
	}
}

func TestETagMatch(t *testing.T) {
	tests := []struct {
		inm, etag string
		want      bool
	}{
		{`"a"`, `"a"`, true},
		{`"a"`, `"b"`, false},
		{`"a"`, `W/"a"`, true},
		{`W/"a"`, `"a"`, true},
		{`"b", "a"`, `"a"`, true},
		{`"b","a"`, `"a"`, true},
		{` "b" ,  W/"a" `, `"a"`, true},
		{`"a,b"`, `"a,b"`, true},
		{`"a,b"`, `"a"`, false},
		{`"a`, `"a"`, true}, // unterminated: content compared
		{`a`, `"a"`, true},  // unquoted tolerated
		{`*`, `"a"`, true},
		{` * `, `"a"`, true},
		{`*`, ``, true},
		{`"a"`, ``, false},
		{``, `"a"`, false},
		{`""`, `""`, true},
		{`"ab"`, `"a"`, false},
		{`W/`, `"a"`, false},
	}
	for _, tt := range tests {
		if got := ETagMatch(tt.inm, tt.etag); got != tt.want {
			t.Errorf("ETagMatch(%q, %q) = %v, want %v", tt.inm, tt.etag, got, tt.want)
		}
	}
}

func TestOpaqueTag(t *testing.T) {
	tests := []struct{ in, want string }{
		{`"a"`, "a"},
		{`W/"a"`, "a"},
		{` "a" `, "a"},
		{`a`, "a"},
		{`""`, ""},
		{`"`, `"`},
	}
	for _, tt := range tests {
		if got := opaqueTag(tt.in); got != tt.want {
			t.Errorf("opaqueTag(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
