package httpcache

import (
	"net/http"
	"time"
)

// FreshnessLifetime returns how long a response is fresh as a shared cache
// sees it (RFC 9111 §4.2.1): s-maxage, else max-age, else Expires minus Date
// (a missing or invalid Date counts as now; an invalid Expires, such as
// "0", means already expired). explicit is true when any of those was
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
	expires, err := http.ParseTime(trimOWS(expiresLines[0]))
	if err != nil {
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
	var ageValue time.Duration
	if lines := h["Age"]; len(lines) > 0 {
		ageValue, _ = parseDeltaSeconds(trimOWS(lines[0]))
	}
	return min(max(apparent, ageValue), MaxDeltaSeconds)
}

// headerDate parses the response's Date header.
func headerDate(h http.Header) (time.Time, bool) {
	lines := h["Date"]
	if len(lines) == 0 {
		return time.Time{}, false
	}
	t, err := http.ParseTime(trimOWS(lines[0]))
	return t, err == nil
}

// AgeValue returns the response's Age header (0 when absent or invalid).
// The gateway uses it, not InitialAge, for the age a response arrives
// with: origins behind it are one hop away, and a Craft server whose clock
// runs behind the gateway's would otherwise make every response arrive
// stale (Varnish ignores Date for the same reason).
func AgeValue(h http.Header) time.Duration {
	lines := h["Age"]
	if len(lines) == 0 {
		return 0
	}
	age, _ := parseDeltaSeconds(trimOWS(lines[0]))
	return min(age, MaxDeltaSeconds)
}
