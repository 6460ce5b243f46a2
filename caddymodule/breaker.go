package caddymodule

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/eapache/go-resiliency/breaker"
)

// BreakerConfig sets an upstream's circuit breaker thresholds.
type BreakerConfig struct {
	// Failures is how many failures, each within Cooldown of the previous
	// one, open the breaker. Default 5.
	Failures int `json:"failures,omitempty"`

	// Successes is how many consecutive successes in the half-open state
	// close the breaker again. Default 1.
	Successes int `json:"successes,omitempty"`

	// Cooldown is how long the breaker stays open before it lets a trial
	// request through (half-open), and the error-free gap that resets the
	// failure count. Default 30s.
	Cooldown caddy.Duration `json:"cooldown,omitempty"`
}

func (c *BreakerConfig) setDefaults() {
	if c.Failures <= 0 {
		c.Failures = 5
	}
	if c.Successes <= 0 {
		c.Successes = 1
	}
	if c.Cooldown <= 0 {
		c.Cooldown = caddy.Duration(30 * time.Second)
	}
}

// errUpstreamFailed is what a failed upstream call reports to the breaker.
var errUpstreamFailed = errors.New("upstream failed")

// circuit wraps go-resiliency's circuit breaker and remembers when it last
// changed state, for health reporting.
type circuit struct {
	name string
	cb   *breaker.Breaker

	// trial is set while the one call the half-open breaker lets through
	// is in flight; every other call is refused as if the breaker were
	// still open, so the visitors of a struggling upstream keep getting
	// copies at once instead of each waiting for the timeout.
	trial atomic.Bool

	mu        sync.Mutex
	lastState breaker.State
	since     time.Time
	opens     uint64
}

func newBreaker(name string, cfg BreakerConfig) *circuit {
	return &circuit{
		name:  name,
		cb:    breaker.New(cfg.Failures, cfg.Successes, time.Duration(cfg.Cooldown)),
		since: time.Now(),
	}
}

// Destruct implements caddy.Destructor (breakers live in the usage pool).
func (b *circuit) Destruct() error { return nil }

// allow reports whether a call may go upstream now: closed, or half-open
// with no trial call in flight.
func (b *circuit) allow() bool {
	switch b.cb.GetState() {
	case breaker.Open:
		return false
	case breaker.HalfOpen:
		return !b.trial.Load()
	}
	return true
}

// run executes work under the breaker; it returns breaker.ErrBreakerOpen
// without calling work while the breaker is open, or half-open with its
// trial call in flight (go-resiliency alone lets every concurrent call
// through in half-open).
func (b *circuit) run(work func() error) error {
	if b.cb.GetState() == breaker.HalfOpen {
		if !b.trial.CompareAndSwap(false, true) {
			return breaker.ErrBreakerOpen
		}
		defer b.trial.Store(false)
	}
	err := b.cb.Run(work)
	b.observe()
	return err
}

func (b *circuit) observe() {
	st := b.cb.GetState()
	b.mu.Lock()
	if st != b.lastState {
		if st == breaker.Open {
			b.opens++
		}
		initMetrics()
		metrics.breakerTransitions.WithLabelValues(b.name, stateName(st)).Inc()
		b.lastState = st
		b.since = time.Now()
	}
	b.mu.Unlock()
}

// status describes the breaker for health output.
func (b *circuit) status() (state string, since time.Time, opens uint64) {
	b.observe()
	b.mu.Lock()
	defer b.mu.Unlock()
	return stateName(b.lastState), b.since, b.opens
}

func stateName(s breaker.State) string {
	switch s {
	case breaker.Open:
		return "open"
	case breaker.HalfOpen:
		return "half-open"
	default:
		return "closed"
	}
}

// upstreamState is one named upstream of a config: its breaker settings
// and the (pooled, reload-surviving) breaker.
type upstreamState struct {
	name    string
	config  BreakerConfig
	breaker *circuit
	// handlerSnapshotOnly: a handler of this upstream has snapshot_only on.
	handlerSnapshotOnly bool
}
