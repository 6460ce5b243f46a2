package vendorsim

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// OutageMode is how an endpoint in an outage treats requests.
type OutageMode string

// The outage modes.
const (
	// OutageNone serves normally.
	OutageNone OutageMode = ""
	// OutageClose closes the connection without a response (hijacked and
	// reset), as a crashed vendor or a dead load balancer would.
	OutageClose OutageMode = "close"
	// OutageHang never answers: the request is held until the client gives
	// up, the outage is lifted (or any knob changes) or the Sim closes,
	// and then its connection is closed.
	OutageHang OutageMode = "hang"
)

// DefaultRetryAfter is the Retry-After of a throttled response when
// ChaosConfig.RetryAfter is zero.
const DefaultRetryAfter = time.Second

// ChaosConfig is the set of chaos knobs of one endpoint. The zero value
// turns everything off. Knobs are applied in this order: Outage, then
// Latency+Jitter, then throttling, then ErrorRate, then the API itself
// (authentication included).
type ChaosConfig struct {
	// Latency delays every request by this much, plus a uniformly random
	// extra in [0, Jitter).
	Latency time.Duration
	Jitter  time.Duration
	// ErrorRate is the fraction (0..1) of requests answered with 500, 502
	// or 503 (chosen at random) instead of being served.
	ErrorRate float64
	// ThrottleNext answers the next N requests with 429; it counts down.
	ThrottleNext int
	// ThrottleRate is the fraction (0..1) of the other requests answered
	// with 429.
	ThrottleRate float64
	// RetryAfter is sent with 429 and 503 as Retry-After in whole seconds
	// (rounded up). Zero means DefaultRetryAfter.
	RetryAfter time.Duration
	// SchemaChange renames fields in responses (records, list items and
	// write responses) so that a mapping written for the old schema
	// breaks: products "title" -> "name" and "price.amount" ->
	// "price.value"; contacts "firstname" -> "first_name" and "lastname" ->
	// "last_name". Writes are still accepted in the old schema.
	SchemaChange bool
	// Outage takes the endpoint down; see OutageMode.
	Outage OutageMode
	// FailAfterWrite is the fraction (0..1) of successful writes (fresh or
	// replayed) whose response is lost: the effect is kept but the client
	// gets a 502, as when a proxy times out after the vendor committed.
	FailAfterWrite float64
	// Only, when not empty, limits every knob to requests whose path starts
	// with one of these prefixes (e.g. "/v1/" for the CRM alone).
	Only []string
}

// Validate reports the first knob out of range.
func (c ChaosConfig) Validate() error {
	rates := []struct {
		name string
		v    float64
	}{{"ErrorRate", c.ErrorRate}, {"ThrottleRate", c.ThrottleRate}, {"FailAfterWrite", c.FailAfterWrite}}
	for _, r := range rates {
		if math.IsNaN(r.v) || r.v < 0 || r.v > 1 {
			return fmt.Errorf("vendorsim: chaos %s %v is not a fraction in 0..1", r.name, r.v)
		}
	}
	switch {
	case c.Latency < 0:
		return fmt.Errorf("vendorsim: chaos Latency %v is negative", c.Latency)
	case c.Jitter < 0:
		return fmt.Errorf("vendorsim: chaos Jitter %v is negative", c.Jitter)
	case c.RetryAfter < 0:
		return fmt.Errorf("vendorsim: chaos RetryAfter %v is negative", c.RetryAfter)
	case c.ThrottleNext < 0:
		return fmt.Errorf("vendorsim: chaos ThrottleNext %d is negative", c.ThrottleNext)
	}
	switch c.Outage {
	case OutageNone, OutageClose, OutageHang:
	default:
		return fmt.Errorf("vendorsim: chaos Outage %q is not %q, %q or empty", c.Outage, OutageClose, OutageHang)
	}
	return nil
}

// applies reports whether the knobs cover path.
func (c *ChaosConfig) applies(path string) bool {
	if len(c.Only) == 0 {
		return true
	}
	for _, p := range c.Only {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// Chaos holds an endpoint's chaos knobs. It is safe for concurrent use;
// a change applies to requests that arrive after it.
type Chaos struct {
	mu      sync.Mutex
	cfg     ChaosConfig
	release chan struct{} // closed on every change; frees hung requests
	rng     *lockedRand
	sleep   func(context.Context, time.Duration) error
	simDone <-chan struct{}
	onHang  func() // test hook: a request started hanging
}

func newChaos(rng *lockedRand, sleep func(context.Context, time.Duration) error, simDone <-chan struct{}) *Chaos {
	return &Chaos{release: make(chan struct{}), rng: rng, sleep: sleep, simDone: simDone}
}

// Get returns the current knobs.
func (c *Chaos) Get() ChaosConfig {
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg := c.cfg
	cfg.Only = append([]string(nil), cfg.Only...)
	return cfg
}

// Set replaces the knobs after validating them.
func (c *Chaos) Set(cfg ChaosConfig) error {
	return c.Update(func(cur *ChaosConfig) { *cur = cfg })
}

// Update changes the knobs in place under the lock (fn must not call c),
// validating the result; on error nothing changes.
func (c *Chaos) Update(fn func(*ChaosConfig)) error {
	return c.update(func(cfg *ChaosConfig) error { fn(cfg); return nil })
}

// update is Update with a fn that can veto the change.
func (c *Chaos) update(fn func(*ChaosConfig) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := c.cfg
	next.Only = append([]string(nil), c.cfg.Only...)
	if err := fn(&next); err != nil {
		return err
	}
	if err := next.Validate(); err != nil {
		return err
	}
	c.cfg = next
	close(c.release)
	c.release = make(chan struct{})
	return nil
}

// Clear turns every knob off.
func (c *Chaos) Clear() { _ = c.Set(ChaosConfig{}) }

// verdict is what the knobs decided for one request.
type verdict struct {
	outage     OutageMode
	release    <-chan struct{}
	delay      time.Duration
	status     int // 429, 500, 502, 503 or 0 to serve
	retryAfter time.Duration
}

// decide rolls the knobs for a request to path.
func (c *Chaos) decide(path string) verdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg := &c.cfg
	if !cfg.applies(path) {
		return verdict{}
	}
	v := verdict{outage: cfg.Outage, release: c.release, delay: cfg.Latency, retryAfter: cfg.RetryAfter}
	if v.outage != OutageNone {
		return v
	}
	if cfg.Jitter > 0 {
		v.delay += time.Duration(c.rng.Int64N(int64(cfg.Jitter)))
	}
	switch {
	case cfg.ThrottleNext > 0:
		cfg.ThrottleNext--
		v.status = http.StatusTooManyRequests
	case c.rng.hit(cfg.ThrottleRate):
		v.status = http.StatusTooManyRequests
	case c.rng.hit(cfg.ErrorRate):
		v.status = [...]int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable}[c.rng.IntN(3)]
	}
	return v
}

// intercept applies the knobs to a request. It reports whether it answered
// (or dropped) the request itself.
func (c *Chaos) intercept(w *recorder, r *http.Request) bool {
	v := c.decide(r.URL.Path)
	switch v.outage {
	case OutageClose:
		w.count(StatusNoResponse)
		dropConnection(w.ResponseWriter)
		return true
	case OutageHang:
		w.count(StatusNoResponse)
		if c.onHang != nil {
			c.onHang()
		}
		select {
		case <-r.Context().Done():
		case <-v.release:
		case <-c.simDone:
		}
		dropConnection(w.ResponseWriter)
		return true
	}
	if v.delay > 0 {
		if err := c.sleep(r.Context(), v.delay); err != nil {
			w.count(StatusNoResponse) // the client left
			return true
		}
	}
	if v.status == 0 {
		return false
	}
	spec := specForPath(r.URL.Path)
	switch v.status {
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", retryAfterSeconds(v.retryAfter))
		writeError(w, spec, v.status, codeRateLimited, "rate limit exceeded")
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", retryAfterSeconds(v.retryAfter))
		writeHTML(w, v.status)
	case http.StatusBadGateway:
		writeHTML(w, v.status)
	default:
		writeError(w, spec, v.status, codeInternal, "internal error")
	}
	return true
}

// renames returns the schema-change renames in force for a request to
// path of spec's API, or nil.
func (c *Chaos) renames(spec *apiSpec, path string) [][2]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.cfg.SchemaChange || !c.cfg.applies(path) {
		return nil
	}
	return spec.renames
}

// loseWriteResponse rolls FailAfterWrite for a write to path.
func (c *Chaos) loseWriteResponse(path string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg.applies(path) && c.rng.hit(c.cfg.FailAfterWrite)
}

// retryAfterSeconds formats d as a Retry-After value: whole seconds,
// rounded up, at least 1.
func retryAfterSeconds(d time.Duration) string {
	if d <= 0 {
		d = DefaultRetryAfter
	}
	return strconv.FormatInt(max(1, int64(math.Ceil(d.Seconds()))), 10)
}

// writeHTML answers like a load balancer in front of a failing vendor.
func writeHTML(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	text := strconv.Itoa(status) + " " + http.StatusText(status)
	_, _ = fmt.Fprintf(w, "<html><head><title>%s</title></head><body><h1>%s</h1></body></html>\n", text, text)
}
