package httpcache

import (
	"net/http"
	"slices"
	"testing"
)

func TestStorable(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		h        http.Header
		cc       string
		explicit bool
		auth     bool
		want     string
	}{
		{"plain 200", 200, hdr(), "", false, false, ""},
		{"set-cookie", 200, hdr("Set-Cookie", "a=1"), "public, max-age=60", true, false, NotStorableSetCookie},
		{"set-cookie before status", 500, hdr("Set-Cookie", "a=1"), "", false, false, NotStorableSetCookie},
		{"no-store", 200, hdr(), "no-store, public", false, false, NotStorableNoStore},
		{"private", 200, hdr(), "private, max-age=60", true, false, NotStorablePrivate},
		{"private field", 200, hdr(), `private="X-User"`, false, false, NotStorablePrivate},
		{"vary star", 200, hdr("Vary", "Accept, *"), "", false, false, NotStorableVary},
		{"vary normal", 200, hdr("Vary", "Accept-Encoding, Cookie"), "", false, false, ""},
		{"no-cache storable", 200, hdr(), "no-cache", false, false, ""},
		{"404", 404, hdr(), "", false, false, ""},
		{"301", 301, hdr(), "", false, false, ""},
		{"308", 308, hdr(), "", false, false, ""},
		{"204", 204, hdr(), "", false, false, ""},
		{"410", 410, hdr(), "", false, false, ""},
		{"302 implicit", 302, hdr(), "", false, false, NotStorableStatus},
		{"302 explicit", 302, hdr(), "max-age=60", true, false, ""},
		{"403 explicit", 403, hdr(), "max-age=60", true, false, ""},
		{"206", 206, hdr(), "max-age=60", true, false, NotStorableStatus},
		{"304", 304, hdr(), "max-age=60", true, false, NotStorableStatus},
		{"100", 100, hdr(), "max-age=60", true, false, NotStorableStatus},
		{"500", 500, hdr(), "max-age=60", true, false, NotStorableStatus},
		{"501", 501, hdr(), "", false, false, NotStorableStatus},
		{"503", 503, hdr(), "public, max-age=60", true, false, NotStorableStatus},
		{"auth plain", 200, hdr(), "max-age=60", true, true, NotStorableAuthorization},
		{"auth public", 200, hdr(), "public", false, true, ""},
		{"auth s-maxage", 200, hdr(), "s-maxage=60", true, true, ""},
		{"auth must-revalidate", 200, hdr(), "must-revalidate", false, true, ""},
		{"auth status first", 302, hdr(), "", false, true, NotStorableStatus},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := ParseCacheControl([]string{tt.cc})
			if got := Storable(tt.status, tt.h, d, tt.explicit, tt.auth); got != tt.want {
				t.Errorf("Storable(%d, %v, %q) = %q, want %q", tt.status, tt.h, tt.cc, got, tt.want)
			}
		})
	}
}

func TestHeuristicallyCacheable(t *testing.T) {
	for status := 100; status < 600; status++ {
		want := slices.Contains([]int{200, 203, 204, 300, 301, 308, 404, 405, 410, 414}, status)
		if got := heuristicallyCacheable(status); got != want {
			t.Errorf("heuristicallyCacheable(%d) = %v, want %v", status, got, want)
		}
	}
}

func TestVaryHasStar(t *testing.T) {
	tests := []struct {
		h    http.Header
		want bool
	}{
		{hdr(), false},
		{hdr("Vary", "*"), true},
		{hdr("Vary", "Accept", "Vary", " * "), true},
		{hdr("Vary", "Accept, X-*"), false},
	}
	for _, tt := range tests {
		if got := varyHasStar(tt.h); got != tt.want {
			t.Errorf("varyHasStar(%v) = %v, want %v", tt.h, got, tt.want)
		}
	}
}

func TestVaryHeaders(t *testing.T) {
	tests := []struct {
		name     string
		h        http.Header
		want     []string
		wantStar bool
	}{
		{"none", hdr(), nil, false},
		{"accept-encoding only", hdr("Vary", "Accept-Encoding"), nil, false},
		{"canonical sorted dedup", hdr("Vary", "x-foo, Accept-Language,accept-encoding", "Vary", "Cookie, X-FOO"), []string{"Accept-Language", "Cookie", "X-Foo"}, false},
		{"star", hdr("Vary", "Accept, *"), []string{"Accept"}, true},
		{"empty items", hdr("Vary", " , ,"), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, star := VaryHeaders(tt.h)
			if !slices.Equal(got, tt.want) || star != tt.wantStar {
				t.Errorf("VaryHeaders = %q, %v, want %q, %v", got, star, tt.want, tt.wantStar)
			}
		})
	}
}
