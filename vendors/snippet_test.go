package vendors

import "testing"

func TestSnippet(t *testing.T) {
	for _, tc := range []struct {
		in      string
		secrets []string
		limit   int
		want    string
	}{
		{"héllo", nil, 2, "h…"}, // never cuts inside a rune
		{"abc", nil, 5, "abc"},
		{"abc", nil, 3, "abc"},
		{" token=s3cret\n", []string{"s3cret"}, 100, "token=REDACTED"},
		{"a\x00b", nil, 10, "a b"},
	} {
		if got := Snippet([]byte(tc.in), tc.secrets, tc.limit); got != tc.want {
			t.Errorf("Snippet(%q, %q, %d) = %q, want %q", tc.in, tc.secrets, tc.limit, got, tc.want)
		}
	}
}
