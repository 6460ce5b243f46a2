package esi

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// Limits bound what Parse accepts and what an Assembly fetches. Zero is a
// limit, not "unset": MaxIncludes 0 refuses every include. Start from
// DefaultLimits.
type Limits struct {
	// MaxIncludes is the most <esi:include> tags one template may hold
	// (refused includes count too).
	MaxIncludes int
	// MaxAttrLen is the longest attribute value accepted, in bytes.
	MaxAttrLen int
	// MaxTagLen is the longest <esi:…> tag accepted, from "<" to ">".
	MaxTagLen int
	// MaxRemoveDepth is how deep <esi:remove> elements may nest.
	MaxRemoveDepth int
	// MaxDepth is how deep includes nest when assembling: the page's
	// includes are at depth 1, theirs at 2, …; deeper ones fail.
	MaxDepth int
	// MaxFetches is the most fragments one assembled response fetches,
	// over every depth (an alt counts as a fetch).
	MaxFetches int
	// Budget bounds the time one assembly waits for its fragments,
	// counted from NewAssembly; a fragment not had by then gets its stale
	// copy or fails. Zero: no budget of the assembly's own (the deadline
	// of the context given to NewAssembly, if any, still holds).
	Budget time.Duration
}

// DefaultLimits are the limits the handler uses unless configured.
func DefaultLimits() Limits {
	return Limits{
		MaxIncludes:    32,
		MaxAttrLen:     2048,
		MaxTagLen:      8192,
		MaxRemoveDepth: 8,
		MaxDepth:       3,
		MaxFetches:     64,
	}
}

// Validate reports a negative limit.
func (l Limits) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"max_includes", l.MaxIncludes}, {"max_attr_len", l.MaxAttrLen}, {"max_tag_len", l.MaxTagLen},
		{"max_remove_depth", l.MaxRemoveDepth}, {"max_depth", l.MaxDepth}, {"max_fetches", l.MaxFetches}} {
		if f.v < 0 {
			return fmt.Errorf("esi: %s is %d, must be 0 or more", f.name, f.v)
		}
	}
	if l.Budget < 0 {
		return fmt.Errorf("esi: budget is %s, must be 0 or more", l.Budget)
	}
	return nil
}

// Parse errors. Every error Parse returns wraps ErrMalformed,
// ErrUnsupported or ErrLimit and names the byte offset.
var (
	ErrMalformed   = errors.New("esi: malformed markup")
	ErrUnsupported = errors.New("esi: unsupported")
	ErrLimit       = errors.New("esi: limit exceeded")
)

var (
	tagOpen        = []byte("<esi:")
	tagClose       = []byte("</esi:")
	commentOpen    = []byte("<!--esi")
	commentEnd     = []byte("-->")
	removeClose    = []byte("</esi:remove")
	removeOpenName = "remove"
)

// Parse parses body, whose upstream opted into ESI, into a Template. Every
// include's src and alt go through pol (nil refuses every include); an
// include either attribute fails is dropped and listed in Refused. It never
// panics, whatever the bytes.
func Parse(body []byte, pol *Policy, lim Limits) (*Template, error) {
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	p := parser{body: body, pol: pol, lim: lim, t: &Template{BodyLen: len(body)}}
	if err := p.region(0, len(body), false); err != nil {
		return nil, err
	}
	return p.t, nil
}

type parser struct {
	body     []byte
	pol      *Policy
	lim      Limits
	t        *Template
	includes int
}

// static appends body[start:end] as a static part, merging with a
// preceding adjacent static part.
func (p *parser) static(start, end int) {
	if end <= start {
		return
	}
	if n := len(p.t.Parts); n > 0 {
		last := &p.t.Parts[n-1]
		if last.Kind == KindStatic && last.End == start {
			last.End = end
			return
		}
	}
	p.t.Parts = append(p.t.Parts, Part{Kind: KindStatic, Start: start, End: end})
}

// region parses body[start:end]; inComment is set inside <!--esi … -->,
// where another such comment cannot open.
func (p *parser) region(start, end int, inComment bool) error {
	b := p.body[:end]
	pos := start
	for pos < end {
		i := bytes.IndexByte(b[pos:], '<')
		if i < 0 {
			break
		}
		at := pos + i
		rest := b[at:]
		switch {
		case bytes.HasPrefix(rest, commentOpen):
			if inComment {
				return fmt.Errorf("%w at byte %d: <!--esi inside <!--esi", ErrMalformed, at)
			}
			inner := at + len(commentOpen)
			j := bytes.Index(b[inner:], commentEnd)
			if j < 0 {
				return fmt.Errorf("%w at byte %d: unterminated <!--esi comment", ErrMalformed, at)
			}
			p.static(pos, at)
			if err := p.region(inner, inner+j, true); err != nil {
				return err
			}
			pos = inner + j + len(commentEnd)
		case bytes.HasPrefix(rest, tagClose):
			return fmt.Errorf("%w at byte %d: closing tag without an opening one", ErrMalformed, at)
		case bytes.HasPrefix(rest, tagOpen):
			tag, err := p.tag(at, end)
			if err != nil {
				return err
			}
			p.static(pos, at)
			next, err := p.element(tag, end)
			if err != nil {
				return err
			}
			pos = next
		default:
			// Not ESI: keep scanning after the "<".
			p.static(pos, at+1)
			pos = at + 1
		}
	}
	p.static(pos, end)
	return nil
}

// tagInfo is one parsed <esi:name attr…> or <esi:name …/> tag.
type tagInfo struct {
	at, end     int // offset of "<" and one past ">"
	name        string
	selfClosing bool
	attrs       []attr
}

type attr struct{ name, value string }

// tag parses the ESI start tag at body[at:], within end.
func (p *parser) tag(at, end int) (tagInfo, error) {
	b := p.body[:end]
	ti := tagInfo{at: at}
	i := at + len(tagOpen)
	ns := i
	for i < end && isNameByte(b[i]) {
		i++
	}
	ti.name = string(b[ns:i])
	if ti.name == "" {
		return ti, fmt.Errorf("%w at byte %d: <esi: without an element name", ErrMalformed, at)
	}
	limit := min(end, at+p.lim.MaxTagLen)
	for {
		for i < limit && isSpace(b[i]) {
			i++
		}
		if i >= limit {
			if limit < end {
				return ti, fmt.Errorf("%w at byte %d: <esi:%s> tag longer than %d bytes", ErrLimit, at, ti.name, p.lim.MaxTagLen)
			}
			return ti, fmt.Errorf("%w at byte %d: unterminated <esi:%s> tag", ErrMalformed, at, ti.name)
		}
		switch c := b[i]; {
		case c == '>':
			ti.end = i + 1
			return ti, nil
		case c == '/':
			if i+1 < limit && b[i+1] == '>' {
				ti.end, ti.selfClosing = i+2, true
				return ti, nil
			}
			return ti, fmt.Errorf("%w at byte %d: stray '/' in <esi:%s> tag", ErrMalformed, i, ti.name)
		case isNameByte(c):
			a, next, err := p.attr(i, limit, end, ti.name)
			if err != nil {
				return ti, err
			}
			for _, prev := range ti.attrs {
				if prev.name == a.name {
					return ti, fmt.Errorf("%w at byte %d: duplicate attribute %s in <esi:%s>", ErrMalformed, i, a.name, ti.name)
				}
			}
			ti.attrs = append(ti.attrs, a)
			i = next
		default:
			return ti, fmt.Errorf("%w at byte %d: unexpected %q in <esi:%s> tag", ErrMalformed, i, c, ti.name)
		}
	}
}

// attr parses name="value", name='value' or name=value at b[i:].
func (p *parser) attr(i, limit, end int, tagName string) (attr, int, error) {
	b := p.body
	tooLong := func(at int) error {
		if limit < end {
			return fmt.Errorf("%w at byte %d: <esi:%s> tag longer than %d bytes", ErrLimit, at, tagName, p.lim.MaxTagLen)
		}
		return fmt.Errorf("%w at byte %d: unterminated <esi:%s> tag", ErrMalformed, at, tagName)
	}
	ns := i
	for i < limit && isNameByte(b[i]) {
		i++
	}
	a := attr{name: string(b[ns:i])}
	for i < limit && isSpace(b[i]) {
		i++
	}
	if i >= limit {
		return a, i, tooLong(ns)
	}
	if b[i] != '=' {
		return a, i, fmt.Errorf("%w at byte %d: attribute %s without a value in <esi:%s>", ErrMalformed, ns, a.name, tagName)
	}
	i++
	for i < limit && isSpace(b[i]) {
		i++
	}
	if i >= limit {
		return a, i, tooLong(ns)
	}
	var vs, ve int
	if q := b[i]; q == '"' || q == '\'' {
		vs = i + 1
		j := bytes.IndexByte(b[vs:limit], q)
		if j < 0 {
			if limit-vs > p.lim.MaxAttrLen {
				return a, i, fmt.Errorf("%w at byte %d: attribute %s longer than %d bytes", ErrLimit, ns, a.name, p.lim.MaxAttrLen)
			}
			return a, i, tooLong(ns)
		}
		ve = vs + j
		i = ve + 1
	} else {
		vs = i
		for i < limit && !isSpace(b[i]) && b[i] != '>' && !(b[i] == '/' && i+1 < limit && b[i+1] == '>') {
			if b[i] == '"' || b[i] == '\'' || b[i] == '<' || b[i] == '=' || b[i] == '`' {
				return a, i, fmt.Errorf("%w at byte %d: %q in unquoted attribute %s", ErrMalformed, i, b[i], a.name)
			}
			i++
		}
		ve = i
		if ve == vs {
			return a, i, fmt.Errorf("%w at byte %d: attribute %s without a value in <esi:%s>", ErrMalformed, ns, a.name, tagName)
		}
	}
	if ve-vs > p.lim.MaxAttrLen {
		return a, i, fmt.Errorf("%w at byte %d: attribute %s longer than %d bytes", ErrLimit, ns, a.name, p.lim.MaxAttrLen)
	}
	v, err := unescapeAttr(b[vs:ve])
	if err != nil {
		return a, i, fmt.Errorf("%w at byte %d: attribute %s: %v", ErrMalformed, vs, a.name, err)
	}
	a.value = v
	if i < limit && !isSpace(b[i]) && b[i] != '>' && b[i] != '/' {
		return a, i, fmt.Errorf("%w at byte %d: no space after attribute %s", ErrMalformed, i, a.name)
	}
	return a, i, nil
}

// element handles a parsed tag and returns where scanning resumes.
func (p *parser) element(ti tagInfo, end int) (int, error) {
	switch ti.name {
	case "include":
		next := ti.end
		if !ti.selfClosing {
			// <esi:include …></esi:include>: only whitespace between.
			j := ti.end
			for j < end && isSpace(p.body[j]) {
				j++
			}
			closeTag := []byte("</esi:include>")
			if !bytes.HasPrefix(p.body[j:end], closeTag) {
				return 0, fmt.Errorf("%w at byte %d: <esi:include> neither self-closed nor closed by </esi:include>", ErrMalformed, ti.at)
			}
			next = j + len(closeTag)
		}
		return next, p.include(ti)
	case "comment":
		if !ti.selfClosing {
			return 0, fmt.Errorf("%w at byte %d: <esi:comment> must be self-closed", ErrMalformed, ti.at)
		}
		return ti.end, nil
	case removeOpenName:
		if ti.selfClosing {
			return ti.end, nil
		}
		return p.skipRemove(ti, end)
	}
	return 0, fmt.Errorf("%w at byte %d: <esi:%.64s> (supported: include, remove, comment)", ErrUnsupported, ti.at, ti.name)
}

// skipRemove finds the </esi:remove> closing ti, counting nested removes.
func (p *parser) skipRemove(ti tagInfo, end int) (int, error) {
	b := p.body[:end]
	depth := 1
	openTag := []byte("<esi:remove")
	for pos := ti.end; ; {
		i := bytes.Index(b[pos:], []byte("esi:remove"))
		if i < 0 {
			return 0, fmt.Errorf("%w at byte %d: unterminated <esi:remove>", ErrMalformed, ti.at)
		}
		at := pos + i
		switch {
		case at >= 2 && bytes.HasPrefix(b[at-2:], removeClose):
			j := at + len("esi:remove")
			for j < len(b) && isSpace(b[j]) {
				j++
			}
			if j >= len(b) || b[j] != '>' {
				return 0, fmt.Errorf("%w at byte %d: malformed </esi:remove>", ErrMalformed, at-2)
			}
			depth--
			if depth == 0 {
				return j + 1, nil
			}
			pos = j + 1
			continue
		case at >= 1 && bytes.HasPrefix(b[at-1:], openTag) && at+len("esi:remove") < len(b) &&
			(isSpace(b[at+len("esi:remove")]) || b[at+len("esi:remove")] == '>'):
			depth++
			if depth > p.lim.MaxRemoveDepth {
				return 0, fmt.Errorf("%w at byte %d: <esi:remove> nested deeper than %d", ErrLimit, at-1, p.lim.MaxRemoveDepth)
			}
		}
		pos = at + len("esi:remove")
	}
}

// include records an include part, or a refusal.
func (p *parser) include(ti tagInfo) error {
	p.includes++
	if p.includes > p.lim.MaxIncludes {
		return fmt.Errorf("%w at byte %d: more than %d includes", ErrLimit, ti.at, p.lim.MaxIncludes)
	}
	part := Part{Kind: KindInclude}
	var src, alt string
	haveSrc, haveAlt := false, false
	for _, a := range ti.attrs {
		switch a.name {
		case "src":
			src, haveSrc = a.value, true
		case "alt":
			alt, haveAlt = a.value, true
		case "onerror":
			if a.value != "continue" {
				return fmt.Errorf("%w at byte %d: onerror=%q (only \"continue\")", ErrUnsupported, ti.at, truncate(a.value, 64))
			}
			part.Continue = true
		}
		// Other attributes (dca, maxwait, …) are ignored, as other
		// processors ignore what they do not implement.
	}
	if !haveSrc {
		return fmt.Errorf("%w at byte %d: <esi:include> without src", ErrMalformed, ti.at)
	}
	refuse := func(name, value string, err error) {
		p.t.Refused = append(p.t.Refused, Refusal{Offset: ti.at, Attr: name, Value: truncate(value, 256), Err: err})
	}
	if p.pol == nil {
		refuse("src", src, errors.New("no include policy"))
		return nil
	}
	var err error
	if part.Src, err = p.pol.Resolve(src); err != nil {
		refuse("src", src, err)
		return nil
	}
	if haveAlt {
		if part.Alt, err = p.pol.Resolve(alt); err != nil {
			refuse("alt", alt, err)
			return nil
		}
	}
	p.t.Parts = append(p.t.Parts, part)
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }

func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == ':' || c == '.'
}

// unescapeAttr decodes the XML entities an attribute value may use (&amp;
// &lt; &gt; &quot; &apos; and numeric references to ASCII); any other "&"
// is kept as written.
func unescapeAttr(v []byte) (string, error) {
	if bytes.IndexByte(v, '&') < 0 {
		return string(v), nil
	}
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if v[i] != '&' {
			out = append(out, v[i])
			continue
		}
		j := bytes.IndexByte(v[i:], ';')
		if j < 0 || j > 8 {
			out = append(out, '&')
			continue
		}
		ent := string(v[i+1 : i+j])
		var c byte
		switch ent {
		case "amp":
			c = '&'
		case "lt":
			c = '<'
		case "gt":
			c = '>'
		case "quot":
			c = '"'
		case "apos":
			c = '\''
		default:
			n, ok := numericRef(ent)
			if !ok {
				out = append(out, '&')
				continue
			}
			if n >= 0x80 {
				return "", fmt.Errorf("character reference &%s; outside ASCII", ent)
			}
			c = byte(n)
		}
		out = append(out, c)
		i += j
	}
	return string(out), nil
}

func numericRef(ent string) (int, bool) {
	if len(ent) < 2 || ent[0] != '#' {
		return 0, false
	}
	base, digits := 10, ent[1:]
	if digits[0] == 'x' || digits[0] == 'X' {
		base, digits = 16, digits[1:]
	}
	if digits == "" || len(digits) > 6 {
		return 0, false
	}
	n := 0
	for _, c := range []byte(digits) {
		var d int
		switch {
		case '0' <= c && c <= '9':
			d = int(c - '0')
		case base == 16 && 'a' <= c && c <= 'f':
			d = int(c-'a') + 10
		case base == 16 && 'A' <= c && c <= 'F':
			d = int(c-'A') + 10
		default:
			return 0, false
		}
		n = n*base + d
	}
	return n, true
}
