package vendors

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eapache/go-resiliency/breaker"
	"go.uber.org/zap"
)

// Breaker states as reported in Stats.
const (
	BreakerClosed   = "closed"
	BreakerOpen     = "open"
	BreakerHalfOpen = "half-open"
)

// circuit wraps go-resiliency's breaker and records its transitions (the
// library has no callbacks, so the state is compared after every call and
// whenever Stats is read).
type circuit struct {
	cb  *breaker.Breaker
	log *zap.Logger
	now func() time.Time
	// onChange, if set, is called after a transition, outside mu.
	onChange func(from, to string)
	// trial is set while the one call a half-open breaker lets through is
	// in flight: go-resiliency alone lets every concurrent call through,
	// so a struggling vendor would get them all (each waiting its
	// timeout) instead of one probe.
	trial atomic.Bool

	mu          sync.Mutex
	last        breaker.State
	since       time.Time
	transitions map[string]uint64
}

func newCircuit(cfg BreakerConfig, log *zap.Logger, now func() time.Time) *circuit {
	return &circuit{
		cb:          breaker.New(cfg.Failures, cfg.Successes, cfg.Cooldown),
		log:         log,
		now:         now,
		last:        breaker.Closed,
		since:       now(),
		transitions: map[string]uint64{},
	}
}

// run calls work under the breaker. work returns a non-nil error only for
// failures that should count against the vendor. run reports whether the
// breaker refused the call (work was not called).
func (c *circuit) run(work func() error) (refused bool) {
	if c.cb.GetState() == breaker.HalfOpen {
		if !c.trial.CompareAndSwap(false, true) {
			return true
		}
		defer c.trial.Store(false)
	}
	err := c.cb.Run(work)
	c.observe()
	return errors.Is(err, breaker.ErrBreakerOpen)
}

// observe records a state change since the last look.
func (c *circuit) observe() {
	st := c.cb.GetState()
	c.mu.Lock()
	if st == c.last {
		c.mu.Unlock()
		return
	}
	from, to := stateName(c.last), stateName(st)
	c.log.Info("vendor circuit breaker changed state", zap.String("from", from), zap.String("to", to))
	c.last = st
	c.since = c.now()
	c.transitions[to]++
	c.mu.Unlock()
	if c.onChange != nil {
		c.onChange(from, to)
	}
}

// status returns the state, since when, and the transition counts.
func (c *circuit) status() (string, time.Time, map[string]uint64) {
	c.observe()
	c.mu.Lock()
	defer c.mu.Unlock()
	tr := make(map[string]uint64, 3)
	for _, s := range []string{BreakerClosed, BreakerOpen, BreakerHalfOpen} {
		tr[s] = c.transitions[s]
	}
	return stateName(c.last), c.since, tr
}

func stateName(s breaker.State) string {
	switch s {
	case breaker.Open:
		return BreakerOpen
	case breaker.HalfOpen:
		return BreakerHalfOpen
	}
	return BreakerClosed
}
