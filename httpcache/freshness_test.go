package httpcache

import (
	"net/http"
	"testing"
	"time"
)

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestFreshnessLifetime(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(d time.Duration) string { return now.Add(d).Format(http.TimeFormat) }
	tests := []struct {
		name         string
		h            http.Header
		cc           string
		want         time.Duration
		wantExplicit bool
	}{
		{"nothing", hdr(), "", 0, false},
		{"s-maxage wins", hdr(), "max-age=10, s-maxage=20", 20 * time.Second, true},
		{"max-age", hdr("Expires", at(time.Hour)), "max-age=10", 10 * time.Second, true},
		{"max-age zero", hdr(), "max-age=0", 0, true},
		{"invalid max-age", hdr(), "max-age=x", 0, true},
		{"expires minus date", hdr("Date", at(-time.Minute), "Expires", at(time.Hour)), "", time.Hour + time.Minute, true},
		{"expires without date", hdr("Expires", at(time.Hour)), "", time.Hour, true},
		{"expires invalid date", hdr("Date", "yesterday", "Expires", at(time.Hour)), "", time.Hour, true},
		{"expires in past", hdr("Expires", at(-time.Hour)), "", 0, true},
		{"expires zero", hdr("Expires", "0"), "", 0, true},
		{"expires empty", hdr("Expires", ""), "", 0, true},
		// Several lines combine to "d1, d2", not an HTTP-date (RFC 9111 §5.3).
		{"expires two lines", hdr("Expires", at(time.Minute), "Expires", at(time.Hour)), "", 0, true},
		{"expires one-digit hour", hdr("Expires", "Thu, 02 Jan 2025 4:04:05 GMT"), "", 0, true},
		{"expires extra space", hdr("Expires", "Thu,  02 Jan 2025 04:04:05 GMT"), "", 0, true},
		{"expires asctime", hdr("Expires", now.Add(time.Hour).Format(time.ANSIC)), "", time.Hour, true},
		{"expires rfc850", hdr("Expires", now.Add(time.Hour).Format("Monday, 02-Jan-06 15:04:05 GMT")), "", time.Hour, true},
		{"expires far future clamped", hdr("Expires", "Fri, 01 Jan 2100 00:00:00 GMT"), "", MaxDeltaSeconds, true},
		{"other directives only", hdr(), "public, stale-while-revalidate=60", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := ParseCacheControl([]string{tt.cc})
			got, explicit := FreshnessLifetime(tt.h, d, now)
			if got != tt.want || explicit != tt.wantExplicit {
				t.Errorf("FreshnessLifetime = %v, %v, want %v, %v", got, explicit, tt.want, tt.wantExplicit)
			}
		})
	}
}

func TestInitialAge(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(d time.Duration) string { return now.Add(d).Format(http.TimeFormat) }
	tests := []struct {
		name string
		h    http.Header
		want time.Duration
	}{
		{"nothing", hdr(), 0},
		{"date now", hdr("Date", at(0)), 0},
		{"date past", hdr("Date", at(-30*time.Second)), 30 * time.Second},
		{"date future", hdr("Date", at(time.Hour)), 0},
		{"invalid date", hdr("Date", "nope"), 0},
		{"age only", hdr("Age", "100"), 100 * time.Second},
		{"age larger than apparent", hdr("Date", at(-10*time.Second), "Age", "100"), 100 * time.Second},
		{"apparent larger than age", hdr("Date", at(-200*time.Second), "Age", "100"), 200 * time.Second},
		{"invalid age", hdr("Date", at(-5*time.Second), "Age", "-3"), 5 * time.Second},
		{"huge age", hdr("Age", "999999999999"), MaxDeltaSeconds},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := InitialAge(tt.h, now); got != tt.want {
				t.Errorf("InitialAge = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHeaderDate(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name   string
		h      http.Header
		want   time.Time
		wantOK bool
	}{
		{"missing", hdr(), time.Time{}, false},
		{"valid", hdr("Date", now.Format(http.TimeFormat)), now, true},
		{"spaces", hdr("Date", " "+now.Format(http.TimeFormat)+" "), now, true},
		{"invalid", hdr("Date", "x"), time.Time{}, false},
	}
	for _, tt := range tests {
		got, ok := headerDate(tt.h)
		if !got.Equal(tt.want) || ok != tt.wantOK {
			t.Errorf("%s: headerDate = %v, %v, want %v, %v", tt.name, got, ok, tt.want, tt.wantOK)
		}
	}
}
