package httpcache

import (
	"net/url"
	"strings"
	"testing"
)

func TestKey(t *testing.T) {
	custom := KeyRules{IgnoreQuery: []string{"sessid", "ref_*"}}
	if err := custom.Compile(); err != nil {
		t.Fatal(err)
	}
	var uncompiled KeyRules
	tests := []struct {
		name                         string
		rules                        *KeyRules
		scheme, host, path, rawQuery string
		want                         string
	}{
		{"no query", &custom, "https", "Example.COM", "/a/b", "", "https://example.com/a/b"},
		{"scheme lowered", &custom, "HTTPS", "example.com", "/", "", "https://example.com/"},
		{"empty path", &custom, "https", "example.com", "", "", "https://example.com/"},
		{"default https port", &custom, "https", "example.com:443", "/", "", "https://example.com/"},
		{"default http port", &custom, "http", "example.com:80", "/", "", "http://example.com/"},
		{"other port kept", &custom, "https", "example.com:8443", "/", "", "https://example.com:8443/"},
		{"http port on https kept", &custom, "https", "example.com:80", "/", "", "https://example.com:80/"},
		{"path as given", &custom, "https", "h", "/A%20b/C", "", "https://h/A%20b/C"},
		{"sorted", &custom, "https", "h", "/", "b=2&a=1", "https://h/?a=1&b=2"},
		{"same name: PHP's last value", &custom, "https", "h", "/", "a=2&b=1&a=1", "https://h/?a=1&b=1"},
		{"plain after array replaces it", &custom, "https", "h", "/", "a[]=1&a=2", "https://h/?a=2"},
		{"array after plain replaces it", &custom, "https", "h", "/", "a=2&a[]=1", "https://h/?a%5B%5D=1"},
		{"arrays after the last plain", &custom, "https", "h", "/", "a[]=1&a=2&a[]=3&a[x]=4", "https://h/?a%5B%5D=3&a%5Bx%5D=4"},
		{"nested arrays kept", &custom, "https", "h", "/", "a[x]=1&a[x][]=2", "https://h/?a%5Bx%5D=1&a%5Bx%5D%5B%5D=2"},
		{"one PHP variable, spelled apart", &custom, "https", "h", "/", "a_b=2&a.b=1", "https://h/?a.b=1"},
		{"one PHP variable, other order", &custom, "https", "h", "/", "a.b=1&a%20b=3&a_b=2", "https://h/?a_b=2"},
		{"sorted by PHP variable", &custom, "https", "h", "/", "b.c=1&b_a=2&a[]=3&a.=4", "https://h/?a%5B%5D=3&a.=4&b_a=2&b.c=1"},
		{"names PHP ignores kept", &custom, "https", "h", "/", "[x]=1&[x]=2", "https://h/?%5Bx%5D=1&%5Bx%5D=2"},
		{"php arrays keep order", &custom, "https", "h", "/", "c[]=2&c[]=1", "https://h/?c%5B%5D=2&c%5B%5D=1"},
		{"tracking dropped", &custom, "https", "h", "/", "utm_source=x&page=2&gclid=1&fbclid=2", "https://h/?page=2"},
		{"only tracking", &custom, "https", "h", "/p", "utm_source=x&utm_medium=y", "https://h/p"},
		{"utm prefix only", &custom, "https", "h", "/", "utm=1", "https://h/?utm=1"},
		{"tracking case-sensitive", &custom, "https", "h", "/", "GCLID=1", "https://h/?GCLID=1"},
		{"escaped tracking name", &custom, "https", "h", "/", "utm%5Fsource=x&a=1", "https://h/?a=1"},
		{"custom exact", &custom, "https", "h", "/", "sessid=1&a=1", "https://h/?a=1"},
		{"custom prefix", &custom, "https", "h", "/", "ref_site=1&a=1", "https://h/?a=1"},
		{"uncompiled uses defaults", &uncompiled, "https", "h", "/", "sessid=1&gclid=2", "https://h/?sessid=1"},
		{"no equals", &custom, "https", "h", "/", "a", "https://h/?a"},
		{"empty value", &custom, "https", "h", "/", "a=", "https://h/?a="},
		{"no equals vs empty value", &custom, "https", "h", "/", "a=&a", "https://h/?a"},
		{"empty value vs no equals", &custom, "https", "h", "/", "a&a=", "https://h/?a="},
		{"empty pieces", &custom, "https", "h", "/", "&&a=1&&", "https://h/?a=1"},
		{"empty name kept", &custom, "https", "h", "/", "=x", "https://h/?=x"},
		{"decode and re-encode", &custom, "https", "h", "/", "q=caf%c3%a9+au+lait&x=a%2Fb", "https://h/?q=caf%C3%A9+au+lait&x=a%2Fb"},
		{"space encodings equal", &custom, "https", "h", "/", "q=a%20b", "https://h/?q=a+b"},
		{"unreserved unescaped", &custom, "https", "h", "/", "q=%41%2D%7E", "https://h/?q=A-~"},
		{"plus literal", &custom, "https", "h", "/", "q=%2B", "https://h/?q=%2B"},
		{"invalid escape kept", &custom, "https", "h", "/", "q=100%zz", "https://h/?q=100%25zz"},
		{"trailing percent", &custom, "https", "h", "/", "q=%", "https://h/?q=%25"},
		{"semicolon is data", &custom, "https", "h", "/", "a=1;b=2", "https://h/?a=1%3Bb%3D2"},
		{"many params", &custom, "https", "h", "/", "p17=1&p16=1&p15=1&p14=1&p13=1&p12=1&p11=1&p10=1&p09=1&p08=1&p07=1&p06=1&p05=1&p04=1&p03=1&p02=1&p01=1",
			"https://h/?p01=1&p02=1&p03=1&p04=1&p05=1&p06=1&p07=1&p08=1&p09=1&p10=1&p11=1&p12=1&p13=1&p14=1&p15=1&p16=1&p17=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rules.Key(tt.scheme, tt.host, tt.path, tt.rawQuery); got != tt.want {
				t.Errorf("Key(%q, %q, %q, %q) = %q, want %q", tt.scheme, tt.host, tt.path, tt.rawQuery, got, tt.want)
			}
		})
	}
}

func TestKeyMatchesQueryEscape(t *testing.T) {
	var k KeyRules
	for c := 0; c < 256; c++ {
		v := string([]byte{'a', byte(c), 'z'})
		raw := "v=" + url.QueryEscape(v)
		want := "https://h/?v=" + url.QueryEscape(v)
		if got := k.Key("https", "h", "/", raw); got != want {
			t.Fatalf("byte %#x: Key = %q, want %q", c, got, want)
		}
	}
}

func TestKeyRulesCompile(t *testing.T) {
	tests := []struct {
		name    string
		ignore  []string
		wantErr string
	}{
		{"none", nil, ""},
		{"valid", []string{"a", "b_*", "*"}, ""},
		{"empty", []string{"a", ""}, "ignore query[1]: empty name"},
		{"inner star", []string{"a*b"}, `"a*b"`},
		{"equals", []string{"a=b"}, `"a=b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := KeyRules{IgnoreQuery: tt.ignore}
			err := k.Compile()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Compile: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Compile error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestKeyIgnoreAll(t *testing.T) {
	k := KeyRules{IgnoreQuery: []string{"*"}}
	if err := k.Compile(); err != nil {
		t.Fatal(err)
	}
	if got, want := k.Key("https", "h", "/", "page=2&a=1"), "https://h/"; got != want {
		t.Errorf("Key = %q, want %q", got, want)
	}
}

func TestKeyAllocs(t *testing.T) {
	var k KeyRules
	if err := k.Compile(); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { k.Key("https", "Example.com", "/blog/post", "") }); n != 1 {
		t.Errorf("Key without query allocates %v times, want 1", n)
	}
	if n := testing.AllocsPerRun(100, func() { k.Key("https", "example.com", "/blog", "page=2&sort=title&utm_source=x") }); n != 1 {
		t.Errorf("Key with a plain query allocates %v times, want 1", n)
	}
}

func TestPathKey(t *testing.T) {
	tests := []struct{ scheme, host, path, want string }{
		{"https", "Example.com", "/A", "https://example.com/A"},
		{"http", "example.com:80", "", "http://example.com/"},
		{"HTTP", "[::1]:80", "/x", "http://[::1]/x"},
		{"ws", "Example.com:80", "/x", "ws://example.com:80/x"},
	}
	for _, tt := range tests {
		if got := PathKey(tt.scheme, tt.host, tt.path); got != tt.want {
			t.Errorf("PathKey(%q, %q, %q) = %q, want %q", tt.scheme, tt.host, tt.path, got, tt.want)
		}
	}
}

func TestKeyForURL(t *testing.T) {
	tests := []struct {
		raw                string
		wantPath, wantFull string
		wantErr            string
	}{
		{raw: "https://Example.com/a?b=1&utm_source=x#frag", wantPath: "https://example.com/a", wantFull: "https://example.com/a?b=1"},
		{raw: "http://example.com", wantPath: "http://example.com/", wantFull: "http://example.com/"},
		{raw: "HTTPS://example.com:443/a%20b?z=1&a=2", wantPath: "https://example.com/a%20b", wantFull: "https://example.com/a%20b?a=2&z=1"},
		{raw: "https://user:pw@example.com/a", wantPath: "https://example.com/a", wantFull: "https://example.com/a"},
		{raw: "/relative?x=1", wantErr: "not an absolute URL"},
		{raw: "example.com/a", wantErr: "not an absolute URL"},
		{raw: "ftp://example.com/a", wantErr: `scheme "ftp"`},
		{raw: "mailto:a@example.com", wantErr: `scheme "mailto"`},
		{raw: "https:opaque", wantErr: "not an absolute URL"},
		{raw: "https://exa mple.com/", wantErr: "invalid URL"},
		{raw: "", wantErr: "not an absolute URL"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			p, f, err := KeyForURL(tt.raw)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("KeyForURL(%q) error = %v, want %q", tt.raw, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("KeyForURL(%q): %v", tt.raw, err)
			}
			if p != tt.wantPath || f != tt.wantFull {
				t.Errorf("KeyForURL(%q) = %q, %q, want %q, %q", tt.raw, p, f, tt.wantPath, tt.wantFull)
			}
		})
	}
}

func TestKeyForURLMatchesKey(t *testing.T) {
	var k KeyRules
	u, _ := url.Parse("https://example.com/a/b%2Fc?x=1&a=%20")
	_, full, err := KeyForURL(u.String())
	if err != nil {
		t.Fatal(err)
	}
	if got := k.Key("https", u.Host, u.EscapedPath(), u.RawQuery); got != full {
		t.Errorf("Key = %q, KeyForURL = %q", got, full)
	}
}
