package vendors

import (
	"sync/atomic"
	"time"
)

// Outcomes of a request, as counted in Stats and reported in RequestInfo.
// The set is fixed and small, for metric labels.
const (
	OutcomeOK             = "ok"              // 2xx
	OutcomeRedirect       = "redirect"        // 3xx (redirects are never followed)
	OutcomeNotFound       = "not_found"       // 404
	OutcomeClientError    = "client_error"    // other 4xx but 408 and 429
	OutcomeRateLimited    = "rate_limited"    // 429 from the vendor
	OutcomeServerError    = "server_error"    // 5xx and 408
	OutcomeTimeout        = "timeout"         // Config.Timeout elapsed
	OutcomeTransportError = "transport_error" // connection refused, reset, bad response…
	OutcomeBodyTooLarge   = "body_too_large"  // body over Config.MaxBodyBytes
	OutcomeCanceled       = "canceled"        // the caller's context ended (includes a lost hedge)
	OutcomeThrottled      = "throttled"       // not sent: an earlier 429's Retry-After has not passed, or the token wait exceeds the deadline
	OutcomeBreakerOpen    = "breaker_open"    // not sent: the breaker is open
	OutcomeDisabled       = "disabled"        // not sent: Enabled is off
)

var outcomes = []string{OutcomeOK, OutcomeRedirect, OutcomeNotFound, OutcomeClientError,
	OutcomeRateLimited, OutcomeServerError, OutcomeTimeout, OutcomeTransportError,
	OutcomeBodyTooLarge, OutcomeCanceled, OutcomeThrottled, OutcomeBreakerOpen, OutcomeDisabled}

// RequestInfo describes one request to a vendor, or one call refused before
// sending (Sent false), for ClientOptions.OnRequest: the lead feeds
// Prometheus histograms and counters from it.
type RequestInfo struct {
	Vendor   string
	Resource string // "" for Do
	Method   string
	// Region is the host of the base URL the request went to ("" if not
	// sent).
	Region string
	// Sent reports whether the request reached the network.
	Sent bool
	// Canary is true when the call used the canary configuration.
	Canary bool
	// Hedge is true for a request sent to a further region while an
	// earlier one had not answered (or had failed).
	Hedge bool
	// Attempt is 0 for the first try of a call and n for its n-th retry.
	Attempt int
	// StatusCode is the HTTP status, 0 if none was received.
	StatusCode int
	// Outcome is one of the Outcome constants.
	Outcome string
	// Duration is the time from sending the request to reading the whole
	// body (or failing); 0 if not sent.
	Duration time.Duration
	// TokenWait is how long the request waited for a token of the vendor's
	// token bucket before it was sent (0 when a token was free or the call
	// was refused before the bucket).
	TokenWait time.Duration
	// Err is the request's error, if any. It never contains header values.
	Err error
}

// stats holds one vendor's counters. All fields are updated atomically.
type stats struct {
	byOutcome     map[string]*atomic.Uint64 // fixed key set, read-only map
	byClass       [6]atomic.Uint64          // index: status/100
	latencyCount  atomic.Uint64
	latencyNanos  atomic.Uint64
	rateLimited   atomic.Uint64 // 429s received
	throttled     atomic.Uint64 // calls refused locally during a Retry-After window
	tokenWaits    atomic.Uint64
	tokenWaitNano atomic.Uint64
	retries       atomic.Uint64
	hedges        atomic.Uint64
	hedgeWins     atomic.Uint64
	coalesced     atomic.Uint64
	canary        atomic.Uint64
	calls         atomic.Uint64
}

func newStats() *stats {
	s := &stats{byOutcome: make(map[string]*atomic.Uint64, len(outcomes))}
	for _, o := range outcomes {
		s.byOutcome[o] = new(atomic.Uint64)
	}
	return s
}

// observe counts one request.
func (s *stats) observe(info RequestInfo) {
	if c := s.byOutcome[info.Outcome]; c != nil {
		c.Add(1)
	}
	if info.StatusCode >= 100 && info.StatusCode < 600 {
		s.byClass[info.StatusCode/100].Add(1)
	}
	if info.Sent {
		s.latencyCount.Add(1)
		s.latencyNanos.Add(uint64(max(info.Duration, 0)))
	}
}

// Stats is a point-in-time copy of one vendor's counters. Counters only
// grow (until the Client is replaced).
type Stats struct {
	Vendor string `json:"vendor"`
	// Calls is the number of Get, List, Upsert and Do calls.
	Calls uint64 `json:"calls"`
	// Requests counts requests (and refused calls) by Outcome.
	Requests map[string]uint64 `json:"requests"`
	// StatusClasses counts responses by class: "2xx", "3xx", "4xx", "5xx".
	StatusClasses map[string]uint64 `json:"status_classes"`
	// Latency is the number and total duration of requests sent.
	LatencyCount uint64        `json:"latency_count"`
	LatencySum   time.Duration `json:"latency_sum"`
	// RateLimited counts 429s received from the vendor.
	RateLimited uint64 `json:"rate_limited"`
	// Throttled counts calls refused locally because an earlier 429's
	// Retry-After had not passed.
	Throttled uint64 `json:"throttled"`
	// TokenWaits counts requests that waited for the token bucket, and
	// TokenWaitTime the total time they waited.
	TokenWaits    uint64        `json:"token_waits"`
	TokenWaitTime time.Duration `json:"token_wait_time"`
	// Retries counts GET retries; Hedges counts requests sent to a further
	// region, HedgeWins those whose answer was used.
	Retries   uint64 `json:"retries"`
	Hedges    uint64 `json:"hedges"`
	HedgeWins uint64 `json:"hedge_wins"`
	// Coalesced counts GET calls that shared another call's request.
	Coalesced uint64 `json:"coalesced"`
	// Canary counts live reads that used the canary configuration.
	Canary uint64 `json:"canary"`
	// Breaker is the circuit breaker's state: "closed", "open" or
	// "half-open", since BreakerSince; BreakerTransitions counts entries
	// into each state.
	Breaker            string            `json:"breaker"`
	BreakerSince       time.Time         `json:"breaker_since"`
	BreakerTransitions map[string]uint64 `json:"breaker_transitions"`
}

// snapshot copies the counters.
func (s *stats) snapshot(vendor string) Stats {
	out := Stats{
		Vendor:        vendor,
		Calls:         s.calls.Load(),
		Requests:      make(map[string]uint64, len(s.byOutcome)),
		StatusClasses: make(map[string]uint64, 4),
		LatencyCount:  s.latencyCount.Load(),
		LatencySum:    time.Duration(s.latencyNanos.Load()),
		RateLimited:   s.rateLimited.Load(),
		Throttled:     s.throttled.Load(),
		TokenWaits:    s.tokenWaits.Load(),
		TokenWaitTime: time.Duration(s.tokenWaitNano.Load()),
		Retries:       s.retries.Load(),
		Hedges:        s.hedges.Load(),
		HedgeWins:     s.hedgeWins.Load(),
		Coalesced:     s.coalesced.Load(),
		Canary:        s.canary.Load(),
	}
	for o, c := range s.byOutcome {
		out.Requests[o] = c.Load()
	}
	for i, name := range []string{"", "1xx", "2xx", "3xx", "4xx", "5xx"} {
		if i > 0 {
			out.StatusClasses[name] = s.byClass[i].Load()
		}
	}
	return out
}
