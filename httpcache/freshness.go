package httpcache

import (
	"net/http"
	"time"
)

// FreshnessLifetime returns how long a response is fresh as a shared cache
// sees it (RFC 9111 §4.2.1): s-maxage, else max-age, else Expires minus Date
// (a missing or invalid Date counts as now). An Expires that is not one
// valid HTTP-date (ParseHTTPDate: "0", a one-digit hour, extra spaces, or
// several field lines) means already expired (RFC 9111 §5.3). explicit is true when any of those was
// present; otherwise it returns 0 and false and the caller applies its
// configured TTL. The lifetime is never negative and at most
// MaxDeltaSeconds.
func FreshnessLifetime(h http.Header, d Directives, now time.Time) (lifetime time.Duration, explicit bool) {
	switch {
	case d.HasSMaxAge:
		return d.SMaxAge, true
	case d.HasMaxAge:
		return d.MaxAge, true
	}
	expiresLines := h["Expires"]
	if len(expiresLines) == 0 {
		return 0, false
	}
	if len(expiresLines) > 1 {
		return 0, true
	}
	expires, ok := ParseHTTPDate(expiresLines[0])
	if !ok {
		return 0, true
	}
	date := now
	if t, ok := headerDate(h); ok {
		date = t
	}
	return min(max(expires.Sub(date), 0), MaxDeltaSeconds), true
}

// InitialAge returns the age a response already has when it is stored
// (RFC 9111 §4.2.3): the larger of its apparent age, max(0, now - Date),
// and its Age header when valid. Since the cache does not track when it
// sent the request, the response delay is taken as 0. A missing or invalid
// Date gives an apparent age of 0.
func InitialAge(h http.Header, now time.Time) time.Duration {
	var apparent time.Duration
	if date, ok := headerDate(h); ok {
		apparent = max(now.Sub(date), 0)
	}
	return min(max(apparent, AgeValue(h)), MaxDeltaSeconds)
}

// headerDate parses the response's Date header: one field line holding a
// valid HTTP-date, else false.
func headerDate(h http.Header) (time.Time, bool) {
	lines := h["Date"]
	if len(lines) != 1 {
		return time.Time{}, false
	}
	return ParseHTTPDate(lines[0])
}

// ResponseDate returns the response's Date when it is one valid HTTP-date.
func ResponseDate(h http.Header) (time.Time, bool) { return headerDate(h) }

// AgeValue returns the response's Age header (0 when absent or invalid).
// Age is delta-seconds (RFC 9111 §5.1): only ASCII digits are valid, so
// "10s", "-5", "1.5", a quoted or a comma-separated value are invalid and
// ignored; of several field lines the first is used.
// The gateway uses it, not InitialAge, for the age a response arrives
// with: origins behind it are one hop away, and a Craft server whose clock
// runs behind the gateway's would otherwise make every response arrive
// stale (Varnish ignores Date for the same reason).
func AgeValue(h http.Header) time.Duration {
	lines := h["Age"]
	if len(lines) == 0 {
		return 0
	}
	v := trimOWS(lines[0])
	if v == "" || v[0] == '"' {
		return 0
	}
	age, _ := parseDeltaSeconds(v)
	return min(age, MaxDeltaSeconds)
}

// StalePolicy says how a stored response may be served once stale (RFC 9111
// §4.2.4, RFC 5861).
type StalePolicy struct {
	// Prohibited: the response forbids serving it stale beyond the windows
	// below (no-cache, must-revalidate, proxy-revalidate, or s-maxage,
	// which implies proxy-revalidate for a shared cache, §5.2.2.10).
	Prohibited bool
	// WhileRevalidate is the stale-while-revalidate window.
	WhileRevalidate time.Duration
	// IfError is how long past freshness it may be served when the origin
	// fails: its stale-if-error, else (when not prohibited) the cache's
	// configured default.
	IfError time.Duration
}

// StaleAllowance derives the StalePolicy of a response from its directives.
// no-cache, must-revalidate and proxy-revalidate forbid every stale use,
// including the origin's own stale-while-revalidate and stale-if-error.
// s-maxage forbids stale use except for the explicit stale-while-revalidate
// and stale-if-error windows of the same response, which RFC 5861 grants
// "regardless of other freshness information" and which are the origin's
// explicit permission (§4.2.4). defaultIfError is never applied to a
// prohibited response.
func StaleAllowance(d Directives, defaultIfError time.Duration) StalePolicy {
	strict := d.NoCache || d.MustRevalidate || d.ProxyRevalidate
	p := StalePolicy{Prohibited: strict || d.HasSMaxAge}
	if strict {
		return p
	}
	if d.HasStaleWhileRevalidate {
		p.WhileRevalidate = d.StaleWhileRevalidate
	}
	switch {
	case d.HasStaleIfError:
		p.IfError = d.StaleIfError
	case !p.Prohibited:
		p.IfError = defaultIfError
	}
	return p
}
