package httpcache

import (
	"net/http"
	"time"
)

// NotModified reports whether a GET or HEAD request's validators match the
// stored representation, so a 304 may be sent instead of it (RFC 9110
// §13.2.2). If-None-Match takes precedence: it matches when it is "*" or
// lists one of etags under weak comparison. Otherwise If-Modified-Since
// matches when lastModified (second precision) is not after it; a zero
// lastModified, an invalid date or several values never match. etags are
// all the entity tags this representation is known by (e.g. `"abc"`,
// `"abc-gzip"`). It does not allocate when the request has neither header.
func NotModified(r *http.Request, etags []string, lastModified time.Time) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != "" {
		return false
	}
	if inm := r.Header["If-None-Match"]; len(inm) > 0 {
		for _, line := range inm {
			if isStar(line) {
				return true
			}
			for _, etag := range etags {
				if ETagMatch(line, etag) {
					return true
				}
			}
		}
		return false
	}
	ims := r.Header["If-Modified-Since"]
	if len(ims) != 1 || lastModified.IsZero() {
		return false
	}
	since, err := http.ParseTime(trimOWS(ims[0]))
	if err != nil {
		return false
	}
	return !lastModified.Truncate(time.Second).After(since)
}

// isStar reports whether an If-None-Match value is "*".
func isStar(v string) bool { return trimOWS(v) == "*" }

// ETagMatch reports whether the If-None-Match value ifNoneMatch ("*" or a
// comma-separated list of entity tags) matches etag under weak comparison
// (RFC 9110 §8.8.3.2): W/ prefixes are ignored on both sides. Unquoted tags
// are tolerated and compared by their content. It does not allocate.
func ETagMatch(ifNoneMatch string, etag string) bool {
	if trimOWS(etag) == "" {
		return isStar(ifNoneMatch)
	}
	want := opaqueTag(etag)
	s := ifNoneMatch
	for {
		for s != "" && (isOWS(s[0]) || s[0] == ',') {
			s = s[1:]
		}
		if s == "" {
			return false
		}
		var tag string
		if len(s) >= 2 && s[0] == 'W' && s[1] == '/' {
			s = s[2:]
		}
		if s != "" && s[0] == '"' {
			end := 1
			for end < len(s) && s[end] != '"' {
				end++
			}
			tag, s = s[1:end], s[min(end+1, len(s)):]
		} else {
			end := 0
			for end < len(s) && s[end] != ',' && !isOWS(s[end]) {
				end++
			}
			tag, s = s[:end], s[end:]
		}
		if tag == "*" || tag == want {
			return true
		}
	}
}

// opaqueTag returns the content of an entity tag without its W/ prefix and
// quotes.
func opaqueTag(etag string) string {
	etag = trimOWS(etag)
	if len(etag) >= 2 && etag[0] == 'W' && etag[1] == '/' {
		etag = etag[2:]
	}
	if len(etag) >= 2 && etag[0] == '"' && etag[len(etag)-1] == '"' {
		etag = etag[1 : len(etag)-1]
	}
	return etag
}
