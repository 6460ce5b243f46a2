package esi

import (
	"errors"
	"fmt"
)

// Kind says what a Part of a Template is.
type Kind uint8

const (
	// KindStatic is a byte range of the stored body, written as is.
	KindStatic Kind = iota + 1
	// KindInclude is an <esi:include>, replaced by its fragment.
	KindInclude
)

// Part is one piece of a Template, in output order.
type Part struct {
	Kind Kind
	// Start and End delimit a static part in the body: body[Start:End].
	Start, End int

	// Src and Alt are an include's resolved same-site paths (path and
	// query, as Policy.Resolve returns them); Alt is empty when absent.
	Src, Alt string
	// Continue reports onerror="continue": a fragment that cannot be had
	// at all is left out instead of failing the page.
	Continue bool

	// Deflate is the static part compressed as raw deflate ending with a
	// sync flush (no final block), CRC its CRC-32 (IEEE) over the identity
	// bytes, Zstd one complete zstd frame; all are empty until
	// Template.Compress.
	Deflate []byte
	CRC     uint32
	Zstd    []byte
	// crcOp is crcShift(Len()), set with Deflate (Compress,
	// UnmarshalTemplate); zero when not.
	crcOp uint32
}

// Len is the number of identity bytes of a static part.
func (p *Part) Len() int { return p.End - p.Start }

// Template is a parsed body: its static parts (as ranges of the body, which
// is stored beside it, not in it) and its includes, in order.
type Template struct {
	// BodyLen is the length of the body the template was parsed from;
	// assembling against a body of another length is an error.
	BodyLen int
	Parts   []Part
	// Compressed reports whether every static part carries its deflate
	// segment and zstd frame.
	Compressed bool
	// Refused lists the includes the Policy refused (dropped from the
	// output). It is not serialized: log it when the page is stored.
	Refused []Refusal
}

// Refusal is an include dropped because its src or alt failed the Policy.
type Refusal struct {
	// Offset is the byte offset of the include tag in the body.
	Offset int
	// Attr is "src" or "alt"; Value the attribute as written (truncated
	// to 256 bytes).
	Attr, Value string
	Err         error
}

// String describes the refusal for a log line.
func (r Refusal) String() string {
	return fmt.Sprintf("include at byte %d, %s=%q: %v", r.Offset, r.Attr, r.Value, r.Err)
}

// Includes returns the number of include parts.
func (t *Template) Includes() int {
	n := 0
	for i := range t.Parts {
		if t.Parts[i].Kind == KindInclude {
			n++
		}
	}
	return n
}

// Static returns the template of a body with no ESI processing: one static
// part covering it (none for an empty body). Fragments that did not opt in
// are stored with it, so they too are served from precompressed segments.
func Static(body []byte) *Template {
	t := &Template{BodyLen: len(body)}
	if len(body) > 0 {
		t.Parts = []Part{{Kind: KindStatic, Start: 0, End: len(body)}}
	}
	return t
}

// ErrBodyMismatch is returned when a template is used with a body of
// another length than the one it was parsed from.
var ErrBodyMismatch = errors.New("esi: template does not match the stored body")

// check validates t against a body length: parts in bounds, in order and
// not overlapping, includes with a path-absolute same-site path.
func (t *Template) check(bodyLen int) error {
	if err := t.checkRanges(bodyLen); err != nil {
		return err
	}
	for i := range t.Parts {
		p := &t.Parts[i]
		if p.Kind != KindInclude {
			continue
		}
		if err := checkPath(p.Src); err != nil {
			return fmt.Errorf("%w: part %d src: %v", ErrBadTemplate, i, err)
		}
		if p.Alt != "" {
			if err := checkPath(p.Alt); err != nil {
				return fmt.Errorf("%w: part %d alt: %v", ErrBadTemplate, i, err)
			}
		}
	}
	return nil
}

// checkRanges is the part of check the hit path repeats (templates from
// Parse or UnmarshalTemplate passed check already): what keeps Write from
// slicing out of bounds. It does not allocate.
func (t *Template) checkRanges(bodyLen int) error {
	if t.BodyLen != bodyLen {
		return fmt.Errorf("%w: template for %d bytes, body of %d", ErrBodyMismatch, t.BodyLen, bodyLen)
	}
	prev := 0
	for i := range t.Parts {
		p := &t.Parts[i]
		switch p.Kind {
		case KindStatic:
			if p.Start < prev || p.End < p.Start || p.End > bodyLen {
				return fmt.Errorf("%w: part %d range [%d,%d) out of order or bounds (body %d)", ErrBadTemplate, i, p.Start, p.End, bodyLen)
			}
			prev = p.End
		case KindInclude:
		default:
			return fmt.Errorf("%w: part %d of unknown kind %d", ErrBadTemplate, i, p.Kind)
		}
	}
	return nil
}

// Recheck resolves every include of t through pol again, for templates
// stored under an earlier configuration (a snapshot after a restart, the
// memory tier across a reload that changed Reserved): an include pol now
// refuses makes it fail, and the caller re-parses the body or skips it.
func (t *Template) Recheck(pol *Policy) error {
	for i := range t.Parts {
		p := &t.Parts[i]
		if p.Kind != KindInclude {
			continue
		}
		for _, ref := range []string{p.Src, p.Alt} {
			if ref == "" {
				continue
			}
			if _, err := pol.Resolve(ref); err != nil {
				return fmt.Errorf("part %d: %w", i, err)
			}
		}
	}
	return nil
}
