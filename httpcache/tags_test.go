package httpcache

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestParseTags(t *testing.T) {
	long := strings.Repeat("x", MaxTagLen)
	tests := []struct {
		name    string
		h       http.Header
		headers []string
		want    []string
	}{
		{"none", hdr(), DefaultTagHeaders, nil},
		{"one header", hdr("Cache-Tag", "a,b c"), DefaultTagHeaders, []string{"a", "b", "c"}},
		{"several headers and lines", hdr("Surrogate-Key", "k1 k2", "Cache-Tag", "a", "Cache-Tag", "b, k1", "Xkey", "x"), DefaultTagHeaders,
			[]string{"a", "b", "k1", "k2", "x"}},
		{"duplicates and empties", hdr("Cache-Tag", " a,,a ,\tb , a"), DefaultTagHeaders, []string{"a", "b"}},
		{"case-sensitive", hdr("Cache-Tag", "A a"), DefaultTagHeaders, []string{"A", "a"}},
		{"non-canonical header name", hdr("Cache-Tag", "a"), []string{"cache-tag"}, []string{"a"}},
		{"other headers ignored", hdr("X-Tags", "a"), DefaultTagHeaders, nil},
		{"custom list", hdr("X-Tags", "a", "Cache-Tag", "b"), []string{"X-Tags"}, []string{"a"}},
		{"too long dropped", hdr("Cache-Tag", long+" "+long+"y ok"), DefaultTagHeaders, []string{long, "ok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseTags(tt.h, tt.headers); !slices.Equal(got, tt.want) {
				t.Errorf("ParseTags = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseTagsLimit(t *testing.T) {
	var b strings.Builder
	for i := range MaxTags + 50 {
		fmt.Fprintf(&b, "t%d,t%d ", i, i) // duplicates must not count
	}
	h := hdr("Cache-Tag", b.String(), "Surrogate-Key", "late")
	got := ParseTags(h, DefaultTagHeaders)
	if len(got) != MaxTags {
		t.Fatalf("len = %d, want %d", len(got), MaxTags)
	}
	if got[0] != "t0" || got[MaxTags-1] != fmt.Sprintf("t%d", MaxTags-1) {
		t.Errorf("order not kept: first %q last %q", got[0], got[MaxTags-1])
	}
}

func TestSplitTags(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{" , ", nil},
		{"a", []string{"a"}},
		{"a, b\tc\r\nd", []string{"a", "b", "c", "d"}},
		{"b a b", []string{"b", "a"}},
	}
	for _, tt := range tests {
		if got := SplitTags(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("SplitTags(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestTagSetDedupSwitchesToMap(t *testing.T) {
	var s tagSet
	for i := range 3 * mapDedupThreshold {
		s.add(fmt.Sprintf("t%d t%d", i, i/2))
	}
	if s.seen == nil {
		t.Fatal("map not built")
	}
	if len(s.tags) != 3*mapDedupThreshold || len(s.seen) != len(s.tags) {
		t.Errorf("tags = %d, seen = %d, want %d", len(s.tags), len(s.seen), 3*mapDedupThreshold)
	}
}
