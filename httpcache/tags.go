package httpcache

import "net/http"

// DefaultTagHeaders are the response headers cache tags are read from, as
// emitted for Cloudflare, Fastly, Varnish (xkey), Akamai and others.
var DefaultTagHeaders = []string{"Cache-Tag", "Surrogate-Key", "Xkey", "Cache-Tags", "Edge-Cache-Tag"}

// Limits on the tags taken from one response, so a hostile or buggy
// upstream cannot blow up the tag index.
const (
	// MaxTags is the most tags kept per response; later ones are dropped.
	MaxTags = 1000
	// MaxTagLen is the longest tag kept, in bytes; longer ones are dropped.
	MaxTagLen = 256
)

// mapDedupThreshold is the tag count above which deduplication switches
// from a linear scan to a map.
const mapDedupThreshold = 32

// tagSet accumulates unique tags in first-seen order, within the limits.
type tagSet struct {
	tags []string
	seen map[string]struct{}
}

// add splits value on commas and whitespace and adds each new tag. It
// reports false once MaxTags is reached.
func (s *tagSet) add(value string) bool {
	for i := 0; i < len(value); {
		for i < len(value) && isTagSeparator(value[i]) {
			i++
		}
		j := i
		for j < len(value) && !isTagSeparator(value[j]) {
			j++
		}
		if tag := value[i:j]; tag != "" && len(tag) <= MaxTagLen && !s.has(tag) {
			if len(s.tags) >= MaxTags {
				return false
			}
			s.tags = append(s.tags, tag)
			if s.seen != nil {
				s.seen[tag] = struct{}{}
			} else if len(s.tags) > mapDedupThreshold {
				s.seen = make(map[string]struct{}, 2*len(s.tags))
				for _, t := range s.tags {
					s.seen[t] = struct{}{}
				}
			}
		}
		i = j
	}
	return true
}

// has reports whether tag was already added.
func (s *tagSet) has(tag string) bool {
	if s.seen != nil {
		_, ok := s.seen[tag]
		return ok
	}
	for _, t := range s.tags {
		if t == tag {
			return true
		}
	}
	return false
}

// isTagSeparator reports whether c separates tags: a comma or whitespace.
func isTagSeparator(c byte) bool {
	return c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n'
}

// ParseTags reads cache tags from the given response headers (all their
// lines; pass DefaultTagHeaders for the usual ones), splitting on commas
// and whitespace, dropping empty and duplicate tags and keeping first-seen
// order. At most MaxTags tags are kept, and tags longer than MaxTagLen bytes
// are dropped. The result is nil when there are no tags.
func ParseTags(h http.Header, headers []string) []string {
	var s tagSet
	for _, name := range headers {
		for _, line := range h.Values(name) {
			if !s.add(line) {
				return s.tags
			}
		}
	}
	return s.tags
}

// SplitTags splits one header value into tags the way ParseTags does (used
// for Cache-Purge-Tag request headers).
func SplitTags(value string) []string {
	var s tagSet
	s.add(value)
	return s.tags
}
