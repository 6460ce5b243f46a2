package esi

import (
	"errors"
	"strings"
	"testing"
)

var testPolicy = &Policy{Scheme: "https", Host: "example.com", Reserved: []string{"/craftedge/", "/vendors/", "/admin/"}}

// render writes t's static parts and includes as "{src|alt|c}" markers.
func render(t *Template, body []byte) string {
	var b strings.Builder
	for _, p := range t.Parts {
		switch p.Kind {
		case KindStatic:
			b.Write(body[p.Start:p.End])
		case KindInclude:
			b.WriteString("{" + p.Src)
			if p.Alt != "" {
				b.WriteString("|" + p.Alt)
			}
			if p.Continue {
				b.WriteString("|c")
			}
			b.WriteString("}")
		}
	}
	return b.String()
}

func TestParse(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"plain", "<p>hello</p>", "<p>hello</p>"},
		{"include", `a<esi:include src="/f"/>b`, "a{/f}b"},
		{"include attrs", `a<esi:include  src='/f?x=1&amp;y=2' alt="/g" onerror="continue" />b`, "a{/f?x=1&y=2|/g|c}b"},
		{"include closed", "a<esi:include src=/f></esi:include>b", "a{/f}b"},
		{"absolute same host", `<esi:include src="https://EXAMPLE.com:443/f#frag"/>`, "{/f}"},
		{"unknown attr ignored", `<esi:include src="/f" maxwait="10"/>`, "{/f}"},
		{"remove", "a<esi:remove>fallback <a href=/f>f</a></esi:remove>b", "ab"},
		{"nested remove", "a<esi:remove>x<esi:remove>y</esi:remove>z</esi:remove>b", "ab"},
		{"remove with include inside", `a<esi:remove><esi:include src="//evil/"/></esi:remove>b`, "ab"},
		{"comment tag", `a<esi:comment text="note"/>b`, "ab"},
		{"esi comment", "a<!--esi <p>x</p><esi:include src=\"/f\"/> -->b", "a <p>x</p>{/f} b"},
		{"html comment kept", "a<!-- <p> -->b", "a<!-- <p> -->b"},
		{"lookalike", "a<esix:include src=/f/>b<es", "a<esix:include src=/f/>b<es"},
		{"empty", "", ""},
	} {
		tmpl, err := Parse([]byte(c.in), testPolicy, DefaultLimits())
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got := render(tmpl, []byte(c.in)); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
		if len(tmpl.Refused) != 0 {
			t.Errorf("%s: refused %v", c.name, tmpl.Refused)
		}
	}
}

func TestParseErrors(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxIncludes = 2
	lim.MaxAttrLen = 16
	lim.MaxTagLen = 64
	lim.MaxRemoveDepth = 2
	for _, c := range []struct {
		name, in string
		want     error
		offset   string
	}{
		{"unterminated tag", `a<esi:include src="/f"`, ErrMalformed, "byte 1"},
		{"unterminated quote", `a<esi:include src="/f/>b`, ErrMalformed, "byte"},
		{"unterminated remove", "a<esi:remove>b", ErrMalformed, "byte 1"},
		{"unterminated esi comment", "a<!--esi b", ErrMalformed, "byte 1"},
		{"nested esi comment", "<!--esi <!--esi --> -->", ErrMalformed, "byte 8"},
		{"stray close", "a</esi:include>", ErrMalformed, "byte 1"},
		{"no src", "<esi:include alt=/f/>", ErrMalformed, "byte 0"},
		{"no name", "<esi: src=/f/>", ErrMalformed, "byte 0"},
		{"duplicate attr", `<esi:include src="/a" src="/b"/>`, ErrMalformed, "byte"},
		{"unclosed include", `<esi:include src="/a">x`, ErrMalformed, "byte 0"},
		{"valueless attr", `<esi:include src/>`, ErrMalformed, "byte"},
		{"choose", "<esi:choose></esi:choose>", ErrUnsupported, "byte 0"},
		{"onerror other", `<esi:include src="/f" onerror="abort"/>`, ErrUnsupported, "byte 0"},
		{"too many", `<esi:include src="/a"/><esi:include src="/b"/><esi:include src="/c"/>`, ErrLimit, "byte 46"},
		{"long attr", `<esi:include src="/aaaaaaaaaaaaaaaaaaaaaaaa"/>`, ErrLimit, "byte"},
		{"long tag", `<esi:include src="/a"` + strings.Repeat(" ", 100) + `/>`, ErrLimit, "byte 0"},
		{"deep remove", "<esi:remove><esi:remove><esi:remove>x</esi:remove></esi:remove></esi:remove>", ErrLimit, "byte"},
		{"non-ascii entity", `<esi:include src="/&#x100;"/>`, ErrMalformed, "byte"},
		{"remove inside comment unterminated", "<!--esi <esi:remove> --></esi:remove>", ErrMalformed, "byte 8"},
	} {
		_, err := Parse([]byte(c.in), testPolicy, lim)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.offset) {
			t.Errorf("%s: %v does not name %q", c.name, err, c.offset)
		}
	}
}

func TestParseZeroLimits(t *testing.T) {
	var lim Limits // zero is a limit: no includes at all
	lim.MaxAttrLen, lim.MaxTagLen = 100, 100
	if _, err := Parse([]byte(`<esi:include src="/a"/>`), testPolicy, lim); !errors.Is(err, ErrLimit) {
		t.Fatalf("MaxIncludes 0: %v, want ErrLimit", err)
	}
	lim.MaxIncludes = -1
	if _, err := Parse(nil, testPolicy, lim); err == nil || !strings.Contains(err.Error(), "max_includes") {
		t.Fatalf("negative limit: %v", err)
	}
}

// TestParseInjection: includes a page reflects from visitor input never
// leave the site; they are dropped and reported.
func TestParseInjection(t *testing.T) {
	body := `<p>Search: <esi:include src="http://127.0.0.1:2019/config/"/></p>` +
		`<esi:include src="/craftedge/purge?all=1"/>` +
		`<esi:include src="https://example.com/vendors/crm/customers"/>` +
		`<esi:include src="https://evil.example/x" alt="/ok"/>` +
		`<esi:include src="/ok" alt="//evil.example/x"/>` +
		`<esi:include src="/fine"/>`
	tmpl, err := Parse([]byte(body), testPolicy, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := render(tmpl, []byte(body)), "<p>Search: </p>{/fine}"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if len(tmpl.Refused) != 5 {
		t.Fatalf("refused %d, want 5: %v", len(tmpl.Refused), tmpl.Refused)
	}
	for _, r := range tmpl.Refused {
		if !errors.Is(r.Err, ErrRefused) {
			t.Errorf("%v: not ErrRefused", r)
		}
	}
	if r := tmpl.Refused[4]; r.Attr != "alt" {
		t.Errorf("refusal of a bad alt names %q", r.Attr)
	}
	if s := tmpl.Refused[0].String(); !strings.Contains(s, "byte 11") || !strings.Contains(s, "127.0.0.1:2019") {
		t.Errorf("refusal string %q", s)
	}
	if _, err := Parse([]byte(`<esi:include src="/a"/>`), nil, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
}

// TestParseHugeAttribute: a megabyte-long attribute is refused by the tag
// limit without scanning past it quadratically.
func TestParseHugeAttribute(t *testing.T) {
	body := `<esi:include src="/` + strings.Repeat("a", 1<<20) + `"/>`
	if _, err := Parse([]byte(body), testPolicy, DefaultLimits()); !errors.Is(err, ErrLimit) {
		t.Fatalf("err %v, want ErrLimit", err)
	}
}
