package circuit

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Defaults of the zero Config fields.
const (
	DefaultFailures  = 5
	DefaultMinPaths  = 3
	DefaultSuccesses = 1
	DefaultCooldown  = 30 * time.Second
)

// Config sets a circuit breaker's thresholds. The zero value of each field
// selects its default; zero is never a meaningful threshold here (a
// breaker that opens on zero failures, closes on zero successes or stays
// open for no time), so it cannot be confused with a setting. Negative
// values are invalid (Validate). To turn the breaker off, set Disabled.
type Config struct {
	// Disabled turns the breaker off: every call goes through and
	// failures are not counted.
	Disabled bool `json:"disabled,omitempty"`

	// Failures is how many consecutive failures (any success in between
	// resets the count) open the breaker, provided they span MinPaths
	// distinct paths. Connection failures need no spread: Failures of
	// them in a row open it. Default 5.
	Failures int `json:"failures,omitempty"`

	// MinPaths is how many distinct paths (query strings ignored) the
	// current run of consecutive failures must span to open the breaker,
	// so that failures concentrated on one page (a broken template, an
	// always-slow search) never take every other page down. A connection
	// failure counts as a path of its own. 1 means any failures open it.
	// The same spread reopens a half-open breaker: its trial calls that
	// failed must span MinPaths distinct paths (a connection failure
	// reopens it at once). Default 3.
	MinPaths int `json:"min_paths,omitempty"`

	// Successes is how many trial calls in a row must succeed in the
	// half-open state to close the breaker. Trial calls go one at a time.
	// Default 1.
	Successes int `json:"successes,omitempty"`

	// Cooldown is how long the breaker stays open before it lets a trial
	// call through (half-open). Default 30s.
	Cooldown Duration `json:"cooldown,omitempty"`
}

// WithDefaults returns c with its zero fields set to the defaults.
func (c Config) WithDefaults() Config {
	if c.Failures == 0 {
		c.Failures = DefaultFailures
	}
	if c.MinPaths == 0 {
		c.MinPaths = DefaultMinPaths
	}
	if c.Successes == 0 {
		c.Successes = DefaultSuccesses
	}
	if c.Cooldown == 0 {
		c.Cooldown = Duration(DefaultCooldown)
	}
	return c
}

// maxThreshold bounds Failures, MinPaths and Successes: the breaker keeps
// at most MinPaths paths per run, and gobreaker counts in uint32.
const maxThreshold = 1 << 16

// Validate reports a negative or absurdly large threshold.
func (c Config) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"failures", c.Failures}, {"min_paths", c.MinPaths}, {"successes", c.Successes}} {
		if f.v < 0 {
			return fmt.Errorf("breaker %s must not be negative (got %d)", f.name, f.v)
		}
		if f.v > maxThreshold {
			return fmt.Errorf("breaker %s must be at most %d (got %d)", f.name, maxThreshold, f.v)
		}
	}
	if c.Cooldown < 0 {
		return fmt.Errorf("breaker cooldown must not be negative (got %s)", time.Duration(c.Cooldown))
	}
	return nil
}

// Duration is a time.Duration that reads JSON as a Go duration string
// ("30s", "1m30s") or an integer number of nanoseconds, as
// caddy.Duration does, without depending on Caddy.
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("invalid duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("invalid duration %s: want a string such as \"30s\" or integer nanoseconds", b)
	}
	*d = Duration(n)
	return nil
}

// String formats d as time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }
