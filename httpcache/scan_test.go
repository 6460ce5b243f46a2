package httpcache

import "testing"

func TestTrimOWS(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"  ", ""},
		{" \ta b\t ", "a b"},
		{"x", "x"},
	}
	for _, tt := range tests {
		if got := trimOWS(tt.in); got != tt.want {
			t.Errorf("trimOWS(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFoldHelpers(t *testing.T) {
	tests := []struct {
		s, t                  string
		equal, prefix, suffix bool
	}{
		{"Abc", "aBC", true, true, true},
		{"abcdef", "ABC", false, true, false},
		{"abcdef", "DEF", false, false, true},
		{"ab", "abc", false, false, false},
		{"", "", true, true, true},
		{"a-1", "A-1", true, true, true},
		{"[", "{", false, false, false}, // not folded
	}
	for _, tt := range tests {
		if got := equalFold(tt.s, tt.t); got != tt.equal {
			t.Errorf("equalFold(%q, %q) = %v", tt.s, tt.t, got)
		}
		if got := hasPrefixFold(tt.s, tt.t); got != tt.prefix {
			t.Errorf("hasPrefixFold(%q, %q) = %v", tt.s, tt.t, got)
		}
		if got := hasSuffixFold(tt.s, tt.t); got != tt.suffix {
			t.Errorf("hasSuffixFold(%q, %q) = %v", tt.s, tt.t, got)
		}
	}
}

func TestLowerASCII(t *testing.T) {
	for c := 0; c < 256; c++ {
		want := byte(c)
		if c >= 'A' && c <= 'Z' {
			want = byte(c) + 32
		}
		if got := lowerASCII(byte(c)); got != want {
			t.Errorf("lowerASCII(%#x) = %#x, want %#x", c, got, want)
		}
	}
}

func TestNextListItem(t *testing.T) {
	tests := []struct{ in, item, rest string }{
		{"", "", ""},
		{"a", "a", ""},
		{" a , b", "a", " b"},
		{`a="x,y", b`, `a="x,y"`, " b"},
		{`a="x\",y", b`, `a="x\",y"`, " b"},
		{`a="unterminated, b`, `a="unterminated, b`, ""},
		{",b", "", "b"},
	}
	for _, tt := range tests {
		item, rest := nextListItem(tt.in)
		if item != tt.item || rest != tt.rest {
			t.Errorf("nextListItem(%q) = %q, %q, want %q, %q", tt.in, item, rest, tt.item, tt.rest)
		}
	}
}

func TestCutByte(t *testing.T) {
	tests := []struct {
		s             string
		before, after string
		found         bool
	}{
		{"a=b", "a", "b", true},
		{"a", "a", "", false},
		{"=", "", "", true},
		{"a=b=c", "a", "b=c", true},
	}
	for _, tt := range tests {
		b, a, f := cutByte(tt.s, '=')
		if b != tt.before || a != tt.after || f != tt.found {
			t.Errorf("cutByte(%q) = %q, %q, %v", tt.s, b, a, f)
		}
	}
}

func TestIsToken(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"X-Foo", true},
		{"a_b.c~!#$%&'*+^`|", true},
		{"", false},
		{"a b", false},
		{"a:b", false},
		{"a\x7f", false},
		{"é", false},
		{`a"b`, false},
	}
	for _, tt := range tests {
		if got := isToken(tt.in); got != tt.want {
			t.Errorf("isToken(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
