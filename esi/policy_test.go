package esi

import (
	"errors"
	"strings"
	"testing"
)

func TestPolicyResolve(t *testing.T) {
	pol := &Policy{Scheme: "https", Host: "example.com", Reserved: []string{"/craftedge/", "/vendors/", "/admin"}}
	for _, c := range []struct{ in, want string }{
		{"/_fragments/csrf", "/_fragments/csrf"},
		{"/a/b?x=1&y=%2F", "/a/b?x=1&y=%2F"},
		{"/a#frag", "/a"},
		{"https://example.com/a?b", "/a?b"},
		{"HTTPS://Example.COM:443/a", "/a"},
		{"https://example.com", "/"},
		{"https://example.com?x", "/?x"},
		{"/a/", "/a/"},
		{"/a/.b/..c", "/a/.b/..c"},
		{"/craftedgex", "/craftedgex"},
		{"/?q=../..", "/?q=../.."},
	} {
		got, err := pol.Resolve(c.in)
		if err != nil || got != c.want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, why string }{
		{"", "empty"},
		{"http://127.0.0.1:2019/config/", "admin endpoint, another host"},
		{"http://localhost:2019/load", "admin endpoint by name"},
		{"https://127.0.0.1/a", "another host"},
		{"https://example.com.evil.net/a", "suffix host"},
		{"https://example.com:8443/a", "another port"},
		{"http://example.com/a", "scheme change"},
		{"ftp://example.com/a", "scheme change"},
		{"//evil.example/a", "network-path reference"},
		{"///evil.example/a", "network-path reference"},
		{"https://user@example.com/a", "userinfo"},
		{"https://example.com@evil.example/a", "userinfo to another host"},
		{"/\\evil.example/a", "backslash"},
		{"https:\\\\evil.example", "backslash"},
		{"/a\x00b", "NUL"},
		{"/a\r\nX-Injected: 1", "CRLF"},
		{"/a b", "space"},
		{"/caf\xc3\xa9", "non-ASCII"},
		{"fragment.html", "relative"},
		{"../a", "relative"},
		{"javascript:alert(1)", "no authority"},
		{"data:text/html,x", "no authority"},
		{"/a/../craftedge/purge", "dot segment"},
		{"/a/%2e%2e/craftedge/", "encoded dot segment"},
		{"/a/%2E%2E/x", "encoded dot segment"},
		{"/a/./b", "dot segment"},
		{"/..", "dot segment"},
		{"/a//b", "empty segment"},
		{"/a%2f%2fb", "encoded empty segment"},
		{"/a%5cb", "encoded backslash"},
		{"/a%00", "encoded NUL"},
		{"/a%0d%0a", "encoded CRLF"},
		{"/a%zz", "bad escape"},
		{"/a%2", "truncated escape"},
		{"/craftedge/purge", "reserved"},
		{"/CraftEdge/purge", "reserved, case"},
		{"/craftedge", "reserved, no slash"},
		{"/%63raftedge/purge", "reserved, encoded"},
		{"/craftedge%2fpurge", "reserved, encoded slash"},
		{"https://example.com/vendors/crm/customers", "vendor route on the page's host"},
		{"/vendors/shop/products?id=1", "vendor route"},
		{"/admin/settings", "reserved without trailing slash"},
		{"/adminer", "reserved prefix as written"},
	} {
		got, err := pol.Resolve(c.in)
		if err == nil {
			t.Errorf("Resolve(%q) = %q, want refusal (%s)", c.in, got, c.why)
			continue
		}
		if !errors.Is(err, ErrRefused) {
			t.Errorf("Resolve(%q): %v does not wrap ErrRefused", c.in, err)
		}
	}
}

func TestPolicyHostForms(t *testing.T) {
	for _, c := range []struct {
		scheme, host, ref string
		ok                bool
	}{
		{"http", "example.com:80", "http://example.com/a", true},
		{"http", "example.com", "http://example.com:80/a", true},
		{"http", "localhost:8080", "http://localhost:8080/a", true},
		{"http", "localhost:8080", "http://localhost/a", false},
		{"https", "[::1]:443", "https://[::1]/a", true},
		{"https", "[::1]", "https://[::2]/a", false},
		{"https", "", "https:///a", false},
	} {
		pol := &Policy{Scheme: c.scheme, Host: c.host}
		_, err := pol.Resolve(c.ref)
		if (err == nil) != c.ok {
			t.Errorf("%s://%s: Resolve(%q) err %v, want ok=%v", c.scheme, c.host, c.ref, err, c.ok)
		}
	}
}

// TestPolicyCheck: the caller's own rules (the handler's bypass rules)
// refuse what prefixes cannot express.
func TestPolicyCheck(t *testing.T) {
	pol := &Policy{Scheme: "https", Host: "example.com", Check: func(path string) error {
		if strings.Contains(path, "p=admin") {
			return errors.New("control panel request")
		}
		return nil
	}}
	if _, err := pol.Resolve("/index.php?p=admin/users"); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "control panel") {
		t.Fatalf("Check not applied: %v", err)
	}
	if got, err := pol.Resolve("/index.php?p=news"); err != nil || got != "/index.php?p=news" {
		t.Fatalf("%q %v", got, err)
	}
}

// TestRecheck: a template stored before a prefix was reserved fails the
// new policy.
func TestRecheck(t *testing.T) {
	body := []byte(`<esi:include src="/internal/x" alt="/ok"/>`)
	old := &Policy{Scheme: "https", Host: "example.com"}
	tmpl, err := Parse(body, old, DefaultLimits())
	if err != nil || tmpl.Includes() != 1 {
		t.Fatal(err)
	}
	if err := tmpl.Recheck(old); err != nil {
		t.Fatal(err)
	}
	now := &Policy{Scheme: "https", Host: "example.com", Reserved: []string{"/internal/"}}
	if err := tmpl.Recheck(now); !errors.Is(err, ErrRefused) {
		t.Fatalf("Recheck: %v", err)
	}
}
