package httpcache

import (
	"strings"
	"testing"
)

func TestMatcher(t *testing.T) {
	tests := []struct {
		name  string
		names []string
		fold  bool
		in    string
		want  bool
	}{
		{"empty matches nothing", nil, false, "a", false},
		{"exact", []string{"a", "b"}, false, "b", true},
		{"exact not prefix", []string{"ab"}, false, "abc", false},
		{"prefix", []string{"utm_*"}, false, "utm_source", true},
		{"prefix equal", []string{"utm_*"}, false, "utm_", true},
		{"prefix miss", []string{"utm_*"}, false, "utm", false},
		{"star any", []string{"*"}, false, "", true},
		{"case-sensitive", []string{"Abc"}, false, "abc", false},
		{"fold exact", []string{"/Shop"}, true, "/sHOP", true},
		{"fold prefix", []string{"/Shop/*"}, true, "/SHOP/cart", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := newMatcher("test", tt.names, tt.fold, func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			if got := m.match(tt.in); got != tt.want {
				t.Errorf("match(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if got := m.empty(); got != (len(tt.names) == 0) {
				t.Errorf("empty() = %v", got)
			}
		})
	}
}

func TestNewMatcherErrors(t *testing.T) {
	noDigits := func(s string) string {
		if strings.ContainsAny(s, "0123456789") {
			return "no digits"
		}
		return ""
	}
	tests := []struct {
		names   []string
		wantErr string
	}{
		{[]string{"a", "b*"}, ""},
		{[]string{"a", ""}, "test[1]: empty name"},
		{[]string{"*a"}, `test[0] "*a": "*" is only allowed at the end`},
		{[]string{"a**"}, `test[0] "a**"`},
		{[]string{"a1*"}, `test[0] "a1*": no digits`},
	}
	for _, tt := range tests {
		_, err := newMatcher("test", tt.names, false, noDigits)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("newMatcher(%q): %v", tt.names, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("newMatcher(%q) error = %v, want %q", tt.names, err, tt.wantErr)
		}
	}
}

func TestValidRules(t *testing.T) {
	tests := []struct {
		name  string
		fn    func(string) string
		in    string
		valid bool
	}{
		{"path ok", validPathRule, "/a/b", true},
		{"path relative", validPathRule, "a", false},
		{"path empty", validPathRule, "", false},
		{"path query", validPathRule, "/a?b", false},
		{"cookie ok", validCookieRule, "cart_id", true},
		{"cookie any", validCookieRule, "", true},
		{"cookie bad", validCookieRule, "a;b", false},
		{"query ok", validQueryRule, "page[x]", true},
		{"query any", validQueryRule, "", true},
		{"query bad", validQueryRule, "a&b", false},
	}
	for _, tt := range tests {
		if got := tt.fn(tt.in) == ""; got != tt.valid {
			t.Errorf("%s: valid(%q) = %v, want %v", tt.name, tt.in, got, tt.valid)
		}
	}
}
