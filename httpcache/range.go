package httpcache

import "time"

// RangeOutcome is how a Range request is answered from a stored complete
// response.
type RangeOutcome uint8

const (
	// RangeFull: answer 200 with the whole representation (no Range, an
	// invalid or non-bytes Range, several ranges, or a failed If-Range).
	RangeFull RangeOutcome = iota
	// RangePartial: answer 206 with the bytes start..end (inclusive).
	RangePartial
	// RangeUnsatisfiable: answer 416 with Content-Range: bytes */size.
	RangeUnsatisfiable
)

// ParseRange evaluates a Range header value against a representation of
// size bytes (RFC 9110 §14.1.2, §14.2). Only a single byte range is
// answered partially; a request for several ranges gets the full
// representation (a server may ignore Range, §14.2), which avoids
// multipart/byteranges and overlapping-range abuse. A syntactically invalid
// value or another unit is ignored (RangeFull). It does not allocate.
func ParseRange(v string, size int64) (start, end int64, outcome RangeOutcome) {
	v = trimOWS(v)
	if !hasPrefixFold(v, "bytes=") {
		return 0, 0, RangeFull
	}
	v = v[len("bytes="):]
	var spec string
	n := 0
	for v != "" {
		var item string
		item, v = nextListItem(v)
		if item == "" {
			continue
		}
		n++
		spec = item
	}
	if n != 1 {
		return 0, 0, RangeFull
	}
	dash := -1
	for i := 0; i < len(spec); i++ {
		if spec[i] == '-' {
			dash = i
			break
		}
	}
	if dash < 0 {
		return 0, 0, RangeFull
	}
	first, last := spec[:dash], spec[dash+1:]
	if first == "" {
		// suffix-range: the last n bytes.
		suffix, ok := parseDigits(last)
		if !ok {
			return 0, 0, RangeFull
		}
		if suffix == 0 || size == 0 {
			return 0, 0, RangeUnsatisfiable
		}
		return max(size-suffix, 0), size - 1, RangePartial
	}
	s, ok := parseDigits(first)
	if !ok {
		return 0, 0, RangeFull
	}
	e := size - 1
	if last != "" {
		l, ok := parseDigits(last)
		if !ok || l < s {
			return 0, 0, RangeFull
		}
		e = min(l, size-1)
	}
	if s >= size {
		return 0, 0, RangeUnsatisfiable
	}
	return s, e, RangePartial
}

// parseDigits parses 1*DIGIT into an int64 (saturating).
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < 1<<59 {
			n = n*10 + int64(c-'0')
		}
	}
	return n, true
}

// IfRangeMatches evaluates an If-Range value (RFC 9110 §13.1.5) against the
// representation about to be sent: an entity tag matches only under strong
// comparison (neither side weak, same opaque tag); an HTTP-date matches only
// when it equals lastModified exactly and lastModified is a strong
// validator, i.e. the response's date is at least one second after it
// (§8.8.2.2). Anything else, including an invalid value, does not match.
func IfRangeMatches(v, etag string, lastModified, date time.Time) bool {
	v = trimOWS(v)
	if v == "" {
		return false
	}
	if v[0] == '"' || hasPrefixFold(v, "W/") {
		etag = trimOWS(etag)
		return len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' && len(etag) >= 2 && etag[0] == '"' && v == etag
	}
	t, ok := ParseHTTPDate(v)
	if !ok || lastModified.IsZero() || date.IsZero() {
		return false
	}
	return t.Equal(lastModified.Truncate(time.Second)) && date.Sub(lastModified) >= time.Second
}
