package esi

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse: whatever the body, Parse does not panic; a template it
// returns has static ranges in order within the body, includes whose
// paths pass the policy, no more includes than the limit, and survives a
// serialization round trip.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`a<esi:include src="/f" alt="/g" onerror="continue"/>b`,
		"<esi:remove>x<esi:remove>y</esi:remove></esi:remove>",
		"<!--esi <esi:include src=/f/> -->",
		`<esi:include src="http://127.0.0.1:2019/config/"/>`,
		`<esi:include src='/a&amp;b&#47;c'></esi:include>`,
		"<esi:include src=\"/a", "<!--esi", "<esi:remove>", "</esi:x>", "<esi:",
		`<esi:comment text="x"/><esi:choose>`,
	} {
		f.Add([]byte(s))
	}
	lim := DefaultLimits()
	lim.MaxIncludes, lim.MaxAttrLen, lim.MaxTagLen, lim.MaxRemoveDepth = 4, 64, 256, 3
	f.Fuzz(func(t *testing.T, body []byte) {
		tmpl, err := Parse(body, testPolicy, lim)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrLimit) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if err := tmpl.check(len(body)); err != nil {
			t.Fatalf("template fails its own check: %v", err)
		}
		if n := tmpl.Includes() + len(tmpl.Refused); n > lim.MaxIncludes {
			t.Fatalf("%d includes, limit %d", n, lim.MaxIncludes)
		}
		var out bytes.Buffer
		for _, p := range tmpl.Parts {
			if p.Kind == KindStatic {
				out.Write(body[p.Start:p.End])
				continue
			}
			if _, err := testPolicy.Resolve(p.Src); err != nil {
				t.Fatalf("include %q fails the policy: %v", p.Src, err)
			}
		}
		if out.Len() > len(body) {
			t.Fatalf("output %d bytes from a %d-byte body", out.Len(), len(body))
		}
		b, err := tmpl.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := UnmarshalTemplate(b); err != nil {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzUnmarshalTemplate: arbitrary stored bytes never panic and a decoded
// template always passes its checks.
func FuzzUnmarshalTemplate(f *testing.F) {
	body := []byte(`a<esi:include src="/f"/>b`)
	tmpl, _ := Parse(body, testPolicy, DefaultLimits())
	b, _ := tmpl.MarshalBinary()
	f.Add(b)
	_ = tmpl.Compress(body)
	b, _ = tmpl.MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		tmpl, err := UnmarshalTemplate(b)
		if err != nil {
			return
		}
		if err := tmpl.check(tmpl.BodyLen); err != nil {
			t.Fatal(err)
		}
	})
}
