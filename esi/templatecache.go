package esi

import (
	"bytes"
	"encoding/binary"
	"sync"
)

// TemplateCache keeps decoded templates for the hit path, so a page and
// its fragments are not decoded (nor their checksums computed) on every
// hit. It is keyed by the stored form's own checksum and length, and a
// cached template is used only when its stored bytes equal the ones asked
// about (a checksum collision decodes anew), so it never returns the
// template of other bytes. Templates it returns are shared: never modify
// them. The zero value is ready; MaxBytes bounds the stored bytes it
// holds (past it, it starts over).
type TemplateCache struct {
	// MaxBytes bounds the bytes of the stored templates kept (each is
	// kept once, decoded templates alias it). Zero: nothing is kept.
	MaxBytes int

	mu    sync.RWMutex
	byKey map[templateKey]cachedTemplate
	bytes int
}

type templateKey struct {
	sum uint32
	n   int
}

type cachedTemplate struct {
	raw []byte
	t   *Template
}

// Get returns the template stored as b, decoding it when it is not cached
// (UnmarshalTemplate's errors). b is not retained.
func (c *TemplateCache) Get(b []byte) (*Template, error) {
	if len(b) < 4 || c.MaxBytes <= 0 {
		return UnmarshalTemplate(b)
	}
	k := templateKey{sum: binary.BigEndian.Uint32(b[len(b)-4:]), n: len(b)}
	c.mu.RLock()
	ct, ok := c.byKey[k]
	c.mu.RUnlock()
	if ok && bytes.Equal(ct.raw, b) {
		return ct.t, nil
	}
	if len(b) > c.MaxBytes/8 {
		return UnmarshalTemplate(b)
	}
	raw := bytes.Clone(b) // the decoded template aliases it
	t, err := UnmarshalTemplate(raw)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byKey == nil || c.bytes+len(raw) > c.MaxBytes {
		c.byKey = make(map[templateKey]cachedTemplate)
		c.bytes = 0
	}
	if old, ok := c.byKey[k]; ok {
		c.bytes -= len(old.raw)
	}
	c.byKey[k] = cachedTemplate{raw: raw, t: t}
	c.bytes += len(raw)
	return t, nil
}
