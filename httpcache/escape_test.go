package httpcache

import (
	"net/url"
	"strings"
	"testing"
)

func TestUnescapeQuery(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"abc", "abc"},
		{"a+b", "a b"},
		{"a%20b", "a b"},
		{"%2B", "+"},
		{"caf%C3%a9", "café"},
		{"%", "%"},
		{"%4", "%4"},
		{"%zz", "%zz"},
		{"a%4g", "a%4g"},
		{"100%", "100%"},
		{"%%41", "%A"},
	}
	for _, tt := range tests {
		if got := unescapeQuery(tt.in); got != tt.want {
			t.Errorf("unescapeQuery(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if n := testing.AllocsPerRun(10, func() { unescapeQuery("plain_name") }); n != 0 {
		t.Errorf("unescapeQuery without escapes allocates %v times", n)
	}
}

func TestUnhex(t *testing.T) {
	tests := []struct {
		c    byte
		want byte
		ok   bool
	}{
		{'0', 0, true}, {'9', 9, true}, {'a', 10, true}, {'F', 15, true}, {'g', 0, false}, {'/', 0, false},
	}
	for _, tt := range tests {
		if got, ok := unhex(tt.c); got != tt.want || ok != tt.ok {
			t.Errorf("unhex(%q) = %d, %v", tt.c, got, ok)
		}
	}
}

func TestQueryEscapeMatchesStdlib(t *testing.T) {
	var all []byte
	for c := 0; c < 256; c++ {
		all = append(all, byte(c))
	}
	for _, s := range []string{"", "abc", "a b+c/d?e=f&g", "café", string(all)} {
		want := url.QueryEscape(s)
		var b strings.Builder
		writeQueryEscaped(&b, s)
		if got := b.String(); got != want {
			t.Errorf("writeQueryEscaped(%q) = %q, want %q", s, got, want)
		}
		if got := queryEscapedLen(s); got != len(want) {
			t.Errorf("queryEscapedLen(%q) = %d, want %d", s, got, len(want))
		}
	}
}

func TestShouldEscapeQuery(t *testing.T) {
	for c := 0; c < 256; c++ {
		s := string([]byte{byte(c)})
		want := url.QueryEscape(s) != s
		if got := shouldEscapeQuery(byte(c)); got != want {
			t.Errorf("shouldEscapeQuery(%#x) = %v, want %v", c, got, want)
		}
	}
}
