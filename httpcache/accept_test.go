package httpcache

import "testing"

func TestPreferredEncoding(t *testing.T) {
	tests := []struct {
		ae             string
		haveGzip, have bool // have = haveZstd
		want           string
	}{
		{"", true, true, ""},
		{"gzip", true, true, "gzip"},
		{"gzip", false, true, ""},
		{"zstd", true, false, ""},
		{"gzip, deflate, br, zstd", true, true, "zstd"},
		{"gzip, deflate, br, zstd", true, false, "gzip"},
		{"gzip, deflate, br", true, true, "gzip"},
		{"GZIP, ZSTD", true, true, "zstd"},
		{"  gzip ;  q = 0.8 ,zstd;q=0.5", true, true, "gzip"},
		{"gzip;q=0.5, zstd;q=0.5", true, true, "zstd"},
		{"gzip;q=0, zstd;q=0", true, true, ""},
		{"zstd;q=0, gzip", true, true, "gzip"},
		{"*", true, true, "zstd"},
		{"*", true, false, "gzip"},
		{"*;q=0", true, true, ""},
		{"gzip;q=0.2, *;q=0.5", true, true, "zstd"},
		{"zstd;q=0.9, *;q=0", true, true, "zstd"},
		{"identity;q=0", true, true, ""},
		{"identity;q=0, gzip", true, true, "gzip"},
		{"gzip;q=0.5, identity", true, true, ""},
		{"gzip, identity;q=0.5", true, true, "gzip"},
		{"x-gzip", true, true, "gzip"},
		{"br", true, true, ""},
		{"gzip;q=abc", true, true, ""},
		{"gzip;q=2", true, true, ""},
		{"gzip;q=1.000", true, true, "gzip"},
		{"gzip;q=1.001", true, true, ""},
		{"gzip;q=0.001", true, true, "gzip"},
		{`gzip;q="0.5"`, true, true, "gzip"},
		{"gzip;Q=0", true, true, ""},
		{"gzip;level=1;q=0", true, true, ""},
		{"gzip;level=1", true, true, "gzip"},
		{"gzip;q=0, gzip", true, true, ""}, // first occurrence wins
		{",,gzip,,", true, true, "gzip"},
		{"gzip", false, false, ""},
	}
	for _, tt := range tests {
		if got := PreferredEncoding(tt.ae, tt.haveGzip, tt.have); got != tt.want {
			t.Errorf("PreferredEncoding(%q, gzip=%v, zstd=%v) = %q, want %q", tt.ae, tt.haveGzip, tt.have, got, tt.want)
		}
	}
}

func TestPreferredEncodingAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { PreferredEncoding("gzip, deflate, br, zstd;q=0.9, *;q=0.1", true, true) }); n != 0 {
		t.Errorf("PreferredEncoding allocates %v times, want 0", n)
	}
}

func TestParseQValue(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"1", 1000},
		{"1.", 1000},
		{"1.0", 1000},
		{"0", 0},
		{"0.5", 500},
		{"0.25", 250},
		{"0.125", 125},
		{"0.1234", 123},
		{`"0.5"`, 500},
		{"", 0},
		{"2", 0},
		{"1.5", 0},
		{"0,5", 0},
		{"-1", 0},
		{"0.x", 0},
	}
	for _, tt := range tests {
		if got := parseQValue(tt.in); got != tt.want {
			t.Errorf("parseQValue(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestParseQParams(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"", 1000},
		{"q=0.3", 300},
		{" q = 0.3 ", 300},
		{"a=1; q=0", 0},
		{"a=1", 1000},
	}
	for _, tt := range tests {
		if got := parseQParams(tt.in); got != tt.want {
			t.Errorf("parseQParams(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestFirstQ(t *testing.T) {
	tests := []struct{ old, q, want int }{
		{qUnset, 500, 500},
		{0, 500, 0},
		{1000, 0, 1000},
	}
	for _, tt := range tests {
		if got := firstQ(tt.old, tt.q); got != tt.want {
			t.Errorf("firstQ(%d, %d) = %d, want %d", tt.old, tt.q, got, tt.want)
		}
	}
}
