package esi

import (
	"bytes"
	"errors"
	"testing"
)

func TestTemplateCache(t *testing.T) {
	page := `<p>a</p><esi:include src="/f"/><p>b</p>`
	stored, _, err := Compile([]byte(page), &Policy{Scheme: "https", Host: "example.com"}, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	c := &TemplateCache{MaxBytes: 1 << 20}
	t1, err := c.Get(stored)
	if err != nil {
		t.Fatal(err)
	}
	// The caller's bytes may change afterwards: the cache kept its own.
	b := bytes.Clone(stored)
	t2, err := c.Get(b)
	if err != nil || t2 != t1 {
		t.Fatalf("second Get: %p %v, want the cached %p", t2, err, t1)
	}
	for i := range b {
		b[i] = 0
	}
	if t3, err := c.Get(stored); err != nil || t3 != t1 || t3.Parts[1].Src != "/f" {
		t.Fatalf("cached template changed with the caller's bytes: %v", err)
	}

	// Other bytes under the same checksum and length are never answered
	// with the cached template: they are decoded (and fail their
	// checksum).
	forged := bytes.Clone(stored)
	forged[len(forged)-6] ^= 1
	if _, err := c.Get(forged); !errors.Is(err, ErrBadTemplate) {
		t.Fatalf("forged template: %v, want ErrBadTemplate", err)
	}

	// Zero MaxBytes keeps nothing; a bound makes it start over.
	var off TemplateCache
	a, _ := off.Get(stored)
	if b, _ := off.Get(stored); a == b {
		t.Error("a TemplateCache with MaxBytes 0 kept a template")
	}
	small := &TemplateCache{MaxBytes: 8 * len(stored)}
	for i := 0; i < 20; i++ {
		if _, err := small.Get(stored); err != nil {
			t.Fatal(err)
		}
	}
	if small.bytes > small.MaxBytes {
		t.Errorf("cache holds %d bytes, bound %d", small.bytes, small.MaxBytes)
	}
}
