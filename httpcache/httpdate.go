package httpcache

import (
	"net/http"
	"time"
)

// ParseHTTPDate parses an HTTP-date strictly (RFC 9110 §5.6.7): the
// preferred IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") or one of the two
// obsolete forms, RFC 850 ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime
// ("Sun Nov  6 08:49:37 1994"), with their exact spacing, two-digit hours,
// minutes and seconds, and case-sensitive names. Surrounding whitespace is
// trimmed. Go's http.ParseTime is more lenient (it takes a one-digit hour,
// for one), which a cache must not be: an Expires it cannot read means the
// response is already expired (RFC 9111 §5.3).
func ParseHTTPDate(s string) (time.Time, bool) {
	s = trimOWS(s)
	var layout string
	switch {
	case len(s) == 29 && matchDate(s, "Aaa, 00 Aaa 0000 00:00:00 GMT"):
		layout = http.TimeFormat
	case len(s) == 24 && (matchDate(s, "Aaa Aaa 00 00:00:00 0000") || matchDate(s, "Aaa Aaa  0 00:00:00 0000")):
		layout = time.ANSIC
	default:
		comma := -1
		for i := 0; i < len(s) && i < 10; i++ {
			if s[i] == ',' {
				comma = i
				break
			}
		}
		if comma < 6 || !isDayNameLong(s[:comma]) || !matchDate(s[comma:], ", 00-Aaa-00 00:00:00 GMT") {
			return time.Time{}, false
		}
		layout = time.RFC850
	}
	t, err := time.Parse(layout, s)
	if err != nil {
		return time.Time{}, false
	}
	if layout == http.TimeFormat && !isDayName(s[:3]) || layout == time.ANSIC && !isDayName(s[:3]) {
		return time.Time{}, false
	}
	return t.UTC(), true
}

// matchDate reports whether s has the shape of pattern: '0' stands for a
// digit, 'A' for an upper-case letter, 'a' for a lower-case letter; every
// other byte must match itself.
func matchDate(s, pattern string) bool {
	if len(s) != len(pattern) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch pattern[i] {
		case '0':
			if c < '0' || c > '9' {
				return false
			}
		case 'A':
			if c < 'A' || c > 'Z' {
				return false
			}
		case 'a':
			if c < 'a' || c > 'z' {
				return false
			}
		default:
			if c != pattern[i] {
				return false
			}
		}
	}
	return true
}

func isDayName(s string) bool {
	switch s {
	case "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun":
		return true
	}
	return false
}

func isDayNameLong(s string) bool {
	switch s {
	case "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday":
		return true
	}
	return false
}
