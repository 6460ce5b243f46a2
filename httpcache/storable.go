package httpcache

import (
	"net/http"
	"slices"
)

// Reasons returned by Storable.
const (
	// NotStorableSetCookie: the response sets a cookie.
	NotStorableSetCookie = "set-cookie"
	// NotStorableNoStore: Cache-Control: no-store.
	NotStorableNoStore = "no-store"
	// NotStorablePrivate: Cache-Control: private.
	NotStorablePrivate = "private"
	// NotStorableVary: Vary: *.
	NotStorableVary = "vary"
	// NotStorableStatus: the status code may not be stored.
	NotStorableStatus = "status"
	// NotStorableAuthorization: the request had Authorization and the
	// response did not allow sharing it (RFC 9111 §3.5).
	NotStorableAuthorization = "authorization"
)

// Storable reports why a response must not be stored by a shared cache, or
// "" if it may be. In order:
//   - a Set-Cookie header: "set-cookie";
//   - no-store: "no-store"; private (with or without field names): "private";
//   - Vary containing "*": "vary";
//   - the status: 1xx, 206, 304 and every 5xx (501 included: upstream
//     failures are handled by serving stale, never by caching the error)
//     are never stored; 200, 203, 204, 300, 301, 308, 404, 405, 410 and 414
//     (heuristically cacheable, RFC 9110 §15.1) always may be; any other
//     status only with explicit freshness (explicit from FreshnessLifetime);
//     otherwise "status";
//   - when requestHadAuthorization, only a response with public, s-maxage or
//     must-revalidate may be stored (RFC 9111 §3.5): else "authorization".
//
// no-cache responses are storable; the caller must revalidate them before
// each reuse.
func Storable(status int, h http.Header, d Directives, explicit bool, requestHadAuthorization bool) string {
	switch {
	case len(h["Set-Cookie"]) > 0:
		return NotStorableSetCookie
	case d.NoStore:
		return NotStorableNoStore
	case d.Private:
		return NotStorablePrivate
	case varyHasStar(h):
		return NotStorableVary
	}
	switch {
	case status < 200, status == http.StatusPartialContent, status == http.StatusNotModified, status >= 500:
		return NotStorableStatus
	case heuristicallyCacheable(status):
	case !explicit:
		return NotStorableStatus
	}
	if requestHadAuthorization && !d.Public && !d.HasSMaxAge && !d.MustRevalidate {
		return NotStorableAuthorization
	}
	return ""
}

// heuristicallyCacheable reports whether status is cacheable by default
// (RFC 9110 §15.1), less 501.
func heuristicallyCacheable(status int) bool {
	switch status {
	case 200, 203, 204, 300, 301, 308, 404, 405, 410, 414:
		return true
	}
	return false
}

// varyHasStar reports whether a Vary header line lists "*", without
// allocating.
func varyHasStar(h http.Header) bool {
	for _, line := range h["Vary"] {
		for line != "" {
			var item string
			item, line = nextListItem(line)
			if item == "*" {
				return true
			}
		}
	}
	return false
}

// VaryHeaders returns the canonical names of the request headers listed in
// Vary (all lines, comma separated), sorted and deduplicated, without
// Accept-Encoding since the cache negotiates encodings itself. star is true
// when Vary lists "*" (the other names are still returned). names is nil
// when nothing remains.
func VaryHeaders(h http.Header) (names []string, star bool) {
	for _, line := range h["Vary"] {
		for line != "" {
			var item string
			item, line = nextListItem(line)
			switch {
			case item == "":
			case item == "*":
				star = true
			case equalFold(item, "Accept-Encoding"):
			default:
				names = append(names, http.CanonicalHeaderKey(item))
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names), star
}
