package esi

import (
	"errors"
	"reflect"
	"testing"
)

func TestTemplateRoundTrip(t *testing.T) {
	body := []byte(`<html>a<esi:include src="/f" alt="/g" onerror="continue"/>b<esi:remove>x</esi:remove>c<esi:include src="/h?x=1"/></html>`)
	tmpl, err := Parse(body, testPolicy, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	for _, compress := range []bool{false, true} {
		if compress {
			if err := tmpl.Compress(body); err != nil {
				t.Fatal(err)
			}
		}
		b, err := tmpl.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnmarshalTemplate(b)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.Refused = nil
		if !reflect.DeepEqual(normalize(got), normalize(tmpl)) {
			t.Errorf("compress=%v: round trip\n got %+v\nwant %+v", compress, got, tmpl)
		}
	}
}

// normalize maps empty slices to nil for comparison.
func normalize(t *Template) *Template {
	c := *t
	c.Parts = append([]Part(nil), t.Parts...)
	for i := range c.Parts {
		if len(c.Parts[i].Deflate) == 0 {
			c.Parts[i].Deflate = nil
		}
		if len(c.Parts[i].Zstd) == 0 {
			c.Parts[i].Zstd = nil
		}
	}
	return &c
}

// TestUnmarshalDamaged: every truncation and every single-byte change of a
// stored template is an error, never a panic.
func TestUnmarshalDamaged(t *testing.T) {
	body := []byte(`a<esi:include src="/f"/>b`)
	tmpl, _ := Parse(body, testPolicy, DefaultLimits())
	if err := tmpl.Compress(body); err != nil {
		t.Fatal(err)
	}
	b, _ := tmpl.MarshalBinary()
	for n := 0; n < len(b); n++ {
		if _, err := UnmarshalTemplate(b[:n]); !errors.Is(err, ErrBadTemplate) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	for i := range b {
		d := append([]byte(nil), b...)
		d[i] ^= 0x41
		if _, err := UnmarshalTemplate(d); !errors.Is(err, ErrBadTemplate) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
}

// TestUnmarshalForged: a template with a valid checksum but invalid fields
// (an include to another host, ranges out of order) is refused.
func TestUnmarshalForged(t *testing.T) {
	for name, tmpl := range map[string]*Template{
		"other host":   {BodyLen: 1, Parts: []Part{{Kind: KindInclude, Src: "//evil.example/"}}},
		"backslash":    {BodyLen: 1, Parts: []Part{{Kind: KindInclude, Src: "/\\evil"}}},
		"dot segment":  {BodyLen: 1, Parts: []Part{{Kind: KindInclude, Src: "/a/../b"}}},
		"out of range": {BodyLen: 1, Parts: []Part{{Kind: KindStatic, Start: 0, End: 2}}},
		"overlap": {BodyLen: 4, Parts: []Part{
			{Kind: KindStatic, Start: 0, End: 3}, {Kind: KindStatic, Start: 2, End: 4}}},
		"inverted":       {BodyLen: 4, Parts: []Part{{Kind: KindStatic, Start: 3, End: 2}}},
		"missing frames": {BodyLen: 4, Compressed: true, Parts: []Part{{Kind: KindStatic, Start: 0, End: 4}}},
	} {
		b, err := tmpl.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := UnmarshalTemplate(b); !errors.Is(err, ErrBadTemplate) {
			t.Errorf("%s: %v, want ErrBadTemplate", name, err)
		}
	}
	if _, err := UnmarshalTemplate([]byte("ESI\x02" + "0123456789abcdef")); !errors.Is(err, ErrBadTemplate) {
		t.Errorf("other version: %v", err)
	}
}
