package httpcache

import "time"

// MaxDeltaSeconds is the largest delta-seconds value honoured: greater
// values are clamped to it (2^31 seconds, RFC 9111 §1.2.2).
const MaxDeltaSeconds = 1 << 31 * time.Second

// Directives are the parsed Cache-Control directives of a response (or
// request). Unknown directives are ignored. When a directive with a value
// appears more than once, the first occurrence wins (RFC 9111 §4.2.1).
type Directives struct {
	// NoStore, NoCache, Private, Public, MustRevalidate, ProxyRevalidate,
	// NoTransform and Immutable report the presence of the directive of the
	// same name. The field-name forms no-cache="x" and private="x" count as
	// plain no-cache and private, which is the conservative reading.
	NoStore, NoCache, Private, Public, MustRevalidate, ProxyRevalidate, NoTransform, Immutable bool
	// MaxAge, SMaxAge, StaleWhileRevalidate and StaleIfError are the values
	// of max-age, s-maxage, stale-while-revalidate and stale-if-error, valid
	// when the matching Has* field is true.
	MaxAge, SMaxAge, StaleWhileRevalidate, StaleIfError time.Duration
	// HasMaxAge, HasSMaxAge, HasStaleWhileRevalidate and HasStaleIfError
	// report whether the directive was present. An invalid or negative
	// max-age or s-maxage is present with a value of 0 (already stale); an
	// invalid stale-while-revalidate or stale-if-error is ignored.
	HasMaxAge, HasSMaxAge, HasStaleWhileRevalidate, HasStaleIfError bool
}

// ParseCacheControl parses all Cache-Control header lines (pass
// h.Values("Cache-Control")). Directives are comma separated with
// case-insensitive names; values may be quoted, and commas inside quotes do
// not split. Delta-seconds greater than MaxDeltaSeconds are clamped to it.
// It does not allocate.
func ParseCacheControl(values []string) Directives {
	var d Directives
	for _, line := range values {
		for line != "" {
			var item string
			item, line = nextListItem(line)
			name, value, _ := cutByte(item, '=')
			name, value = trimOWS(name), trimOWS(value)
			switch {
			case equalFold(name, "no-store"):
				d.NoStore = true
			case equalFold(name, "no-cache"):
				d.NoCache = true
			case equalFold(name, "private"):
				d.Private = true
			case equalFold(name, "public"):
				d.Public = true
			case equalFold(name, "must-revalidate"):
				d.MustRevalidate = true
			case equalFold(name, "proxy-revalidate"):
				d.ProxyRevalidate = true
			case equalFold(name, "no-transform"):
				d.NoTransform = true
			case equalFold(name, "immutable"):
				d.Immutable = true
			case equalFold(name, "max-age"):
				if !d.HasMaxAge {
					d.MaxAge, _ = parseDeltaSeconds(value)
					d.HasMaxAge = true
				}
			case equalFold(name, "s-maxage"):
				if !d.HasSMaxAge {
					d.SMaxAge, _ = parseDeltaSeconds(value)
					d.HasSMaxAge = true
				}
			case equalFold(name, "stale-while-revalidate"):
				if v, ok := parseDeltaSeconds(value); ok && !d.HasStaleWhileRevalidate {
					d.StaleWhileRevalidate, d.HasStaleWhileRevalidate = v, true
				}
			case equalFold(name, "stale-if-error"):
				if v, ok := parseDeltaSeconds(value); ok && !d.HasStaleIfError {
					d.StaleIfError, d.HasStaleIfError = v, true
				}
			}
		}
	}
	return d
}

// parseDeltaSeconds parses a delta-seconds value (RFC 9111 §1.2.2),
// tolerating surrounding quotes. It returns 0 and false for anything but
// digits (including negative numbers), and clamps large values to
// MaxDeltaSeconds.
func parseDeltaSeconds(s string) (time.Duration, bool) {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	if s == "" {
		return 0, false
	}
	const maxSeconds = int64(MaxDeltaSeconds / time.Second)
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < maxSeconds {
			n = n*10 + int64(c-'0')
		}
	}
	return time.Duration(min(n, maxSeconds)) * time.Second, true
}
