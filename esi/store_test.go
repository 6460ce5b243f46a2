package esi

import (
	"bytes"
	"context"
	"testing"
)

func TestOptedIn(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want bool
	}{
		{[]string{`content="ESI/1.0"`}, true},
		{[]string{`max-age=60, content="ESI/1.0"`}, true},
		{[]string{`Content="esi/1.0 ESI-Inline/1.0"`}, true},
		{[]string{`content="ESI-Inline/1.0 ESI/1.0";edge`}, true},
		{[]string{`content=ESI/1.0`}, true},
		{[]string{`no-store`, `content="ESI/1.0"`}, true},
		{nil, false},
		{[]string{``}, false},
		{[]string{`content="ESI/2.0"`}, false},
		{[]string{`max-age=60`}, false},
		{[]string{`xcontent="ESI/1.0"`}, false},
		{[]string{`content="ESI/1.0`}, false},
	} {
		if got := OptedIn(c.in); got != c.want {
			t.Errorf("OptedIn(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

// TestCompileRoundTrip: what Compile stores is what an assembly needs.
func TestCompileRoundTrip(t *testing.T) {
	page := []byte(`a<esi:include src="/f"/>b<esi:include src="//evil/"/>`)
	stored, tmpl, err := Compile(page, testPolicy, DefaultLimits())
	if err != nil || len(tmpl.Refused) != 1 {
		t.Fatalf("%v %v", err, tmpl)
	}
	frag := []byte("F")
	fragStored, err := CompileStatic(frag)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := UnmarshalTemplate(stored)
	if err != nil {
		t.Fatal(err)
	}
	src := Sources{
		Fetch: func(ctx context.Context, path string, depth int) (Fragment, error) {
			ft, err := UnmarshalTemplate(fragStored)
			return Fragment{Body: frag, Template: ft}, err
		},
	}
	a, err := NewAssembly(context.Background(), pt, page, src, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Prepare(WaitAll); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := a.Write(&out, CodingIdentity); err != nil || out.String() != "aFb" {
		t.Fatalf("%q %v", out.String(), err)
	}
}
