package httpcache

import "strings"

// This file holds the query-component percent-decoding and canonical
// re-encoding used by cache keys and bypass rules.

// unhex returns the value of the hex digit c and whether c is one.
func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unescapeQuery decodes a query component the way PHP's urldecode does:
// "+" is a space, "%XX" is a byte, and an invalid "%" escape is kept
// literally instead of failing. It returns s itself, without allocating,
// when s contains neither "%" nor "+".
func unescapeQuery(s string) string {
	i := strings.IndexAny(s, "%+")
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		switch c {
		case '+':
			b.WriteByte(' ')
			continue
		case '%':
			if i+2 < len(s) {
				hi, ok1 := unhex(s[i+1])
				lo, ok2 := unhex(s[i+2])
				if ok1 && ok2 {
					b.WriteByte(hi<<4 | lo)
					i += 2
					continue
				}
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// shouldEscapeQuery reports whether url.QueryEscape escapes c: everything
// but ASCII letters, digits and "-_.~".
func shouldEscapeQuery(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return false
	case c == '-' || c == '_' || c == '.' || c == '~':
		return false
	}
	return true
}

// queryEscapedLen returns len(url.QueryEscape(s)) without building it.
func queryEscapedLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if s[i] != ' ' && shouldEscapeQuery(s[i]) {
			n += 2
		}
	}
	return n
}

// writeQueryEscaped writes url.QueryEscape(s) to b without the intermediate
// string.
func writeQueryEscaped(b *strings.Builder, s string) {
	const hexUpper = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ':
			b.WriteByte('+')
		case shouldEscapeQuery(c):
			b.WriteByte('%')
			b.WriteByte(hexUpper[c>>4])
			b.WriteByte(hexUpper[c&15])
		default:
			b.WriteByte(c)
		}
	}
}
