package httpcache

import (
	"net/http"
	"time"

	"github.com/dunglas/httpsfv"
)

// Targeted cache-control fields (RFC 9213) this cache obeys, most specific
// first. Craftedge-Cache-Control targets craftedge alone (RFC 9213 §2.1:
// a field targeted at one implementation), so an origin can give it a policy
// that neither a downstream CDN nor browsers see: it is never passed on.
// CDN-Cache-Control targets every CDN cache, craftedge included, and is
// passed on unchanged so the CDN in front obeys it too.
const (
	TargetedFieldOwn = "Craftedge-Cache-Control"
	TargetedFieldCDN = "Cdn-Cache-Control"
)

// targetedFields is the order in which targeted fields are tried.
var targetedFields = [...]string{TargetedFieldOwn, TargetedFieldCDN}

// ResponseDirectives returns the cache directives craftedge obeys for a
// response (RFC 9213 §2.2): those of the first targeted field, in the order
// Craftedge-Cache-Control, CDN-Cache-Control, that is present and valid (a
// Structured Fields Dictionary, RFC 9651); else those of Cache-Control.
// source is the canonical name of the field used. When a targeted field is
// used, Cache-Control is ignored entirely (a targeted field of only unknown
// directives, such as "none", means no directives). An invalid targeted
// field is ignored as if absent. Directives with a value of the wrong type
// (max-age=1.5, max-age="60", a negative delta) are ignored, not coerced
// (RFC 9213 §2.1).
func ResponseDirectives(h http.Header) (d Directives, source string) {
	for _, name := range targetedFields {
		lines := h[name]
		if len(lines) == 0 {
			continue
		}
		if d, ok := parseTargeted(lines); ok {
			return d, name
		}
	}
	return ParseCacheControl(h["Cache-Control"]), "Cache-Control"
}

// parseTargeted parses a targeted field's lines as a Structured Fields
// Dictionary of cache directives.
func parseTargeted(lines []string) (Directives, bool) {
	var d Directives
	dict, err := httpsfv.UnmarshalDictionary(lines)
	if err != nil {
		return d, false
	}
	for _, name := range dict.Names() {
		m, _ := dict.Get(name)
		var value any = true // an inner list counts as present
		if item, ok := m.(httpsfv.Item); ok {
			value = item.Value
		}
		present := value != false
		switch name {
		case "no-store":
			d.NoStore = present
		case "no-cache":
			d.NoCache = present
		case "private":
			d.Private = present
		case "public":
			d.Public = present
		case "must-revalidate":
			d.MustRevalidate = present
		case "proxy-revalidate":
			d.ProxyRevalidate = present
		case "no-transform":
			d.NoTransform = present
		case "immutable":
			d.Immutable = present
		case "max-age":
			d.MaxAge, d.HasMaxAge = sfDelta(value, d.MaxAge, d.HasMaxAge)
		case "s-maxage":
			d.SMaxAge, d.HasSMaxAge = sfDelta(value, d.SMaxAge, d.HasSMaxAge)
		case "stale-while-revalidate":
			d.StaleWhileRevalidate, d.HasStaleWhileRevalidate = sfDelta(value, d.StaleWhileRevalidate, d.HasStaleWhileRevalidate)
		case "stale-if-error":
			d.StaleIfError, d.HasStaleIfError = sfDelta(value, d.StaleIfError, d.HasStaleIfError)
		}
	}
	return d, true
}

// sfDelta reads a delta-seconds directive of a targeted field: a
// non-negative Integer, clamped to MaxDeltaSeconds. Other values leave the
// directive as it was (absent).
func sfDelta(v any, cur time.Duration, has bool) (time.Duration, bool) {
	n, ok := v.(int64)
	if !ok || n < 0 {
		return cur, has
	}
	return min(time.Duration(min(n, int64(MaxDeltaSeconds/time.Second)))*time.Second, MaxDeltaSeconds), true
}
