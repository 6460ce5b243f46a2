// Package circuit is the circuit breaker of craftedge's Craft upstreams and
// vendor APIs: one implementation with one configuration.
//
// Semantics (outlier detection by consecutive failures, as Envoy does,
// with a spread condition):
//   - Closed: every call goes through. A call ends in a success, a
//     failure (a 5xx, a timeout: possibly one page's bug), a connection
//     failure (the upstream could not be reached at all: never one page's
//     bug) or is ignored (cancelled by the caller). A success ends the
//     current run of consecutive failures. The breaker opens when the run
//     holds Failures failures spanning MinPaths distinct paths (query
//     strings ignored; each connection failure counts as a path of its
//     own), or Failures connection failures. So one broken or slow page,
//     however often requested and with whatever query string, never opens
//     it, and sporadic errors among successes never add up.
//   - Open: every call is refused (ErrOpen) for Cooldown.
//   - Half-open: one trial call at a time goes through; Successes trial
//     successes in a row close the breaker. The same rule as when closed
//     decides what reopens it (for Cooldown): a connection failure at
//     once; failures (5xx, timeouts) once the trials that failed since it
//     half-opened span MinPaths distinct paths with no success in
//     between. So a trial that happens to be the one broken page (always
//     500) does not keep a healthy site's breaker open: the breaker stays
//     half-open and the next call is the next trial. A path whose trial
//     failed is refused for one Cooldown (the trials go to other paths),
//     then may be a trial again. A failure that does
//     not reopen it neither counts as a success.
//
// The state machine is sony/gobreaker (v2); this package adds the
// spread-aware trip policy, the one-trial-at-a-time gate, transition
// logging with a reason, and status for health output.
package circuit

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"
)

// State is a breaker state.
type State int

// The breaker states. Their values are those of the
// craftedge_breaker_state gauges.
const (
	Closed   State = 0
	HalfOpen State = 1
	Open     State = 2
)

// String returns "closed", "half-open" or "open".
func (s State) String() string {
	switch s {
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return "closed"
}

// ErrOpen is returned by Run when the breaker refused the call: open, or
// half-open with its trial call in flight.
var ErrOpen = errors.New("circuit breaker open")

// Kind classifies the outcome of one call.
type Kind uint8

const (
	// Success: the upstream answered (2xx-4xx). Ends the run of failures.
	Success Kind = iota
	// Failure: a 5xx or a timeout. It may be one page's bug, so a run of
	// them opens the breaker only when it spans MinPaths paths.
	Failure
	// ConnFailure: a transport error, the upstream could not be reached or
	// dropped the connection (refused, reset, dial timeout, no upstream
	// available). Not one page's bug: counts regardless of path.
	ConnFailure
	// Ignore: neither a success nor a failure (the caller gave up).
	Ignore
)

// Outcome is what a call reports to the breaker.
type Outcome struct {
	Kind Kind
	// Path is the request path; anything from '?' on is ignored.
	Path string
	// Reason describes a failure for the transition log, e.g. "status
	// 500", "timeout after 2s", "dial tcp …: connection refused".
	Reason string
}

// Options are a Breaker's collaborators; every field is optional.
type Options struct {
	// Logger receives every transition (open at warn level, the others
	// at info) with the new state and the reason. The caller adds the
	// breaker's name (upstream or vendor). nil means zap.NewNop().
	Logger *zap.Logger
	// Now stamps the Since of Status and times a failed path's rest while
	// half-open (see RunOn); nil means time.Now. The cooldown itself runs
	// on gobreaker's wall clock.
	Now func() time.Time
	// OnChange, if set, is called after every transition, outside the
	// breaker's locks, synchronously: keep it fast.
	OnChange func(from, to State, reason string)
}

// Breaker is one circuit breaker. It is safe for concurrent use.
type Breaker struct {
	cfg      Config
	cb       *gobreaker.CircuitBreaker[struct{}]
	log      *zap.Logger
	now      func() time.Time
	onChange func(from, to State, reason string)

	// trial is set while the one call a half-open breaker lets through is
	// in flight: every other call is refused as if the breaker were still
	// open, so the callers of a struggling upstream get their copies (or
	// errors) at once instead of each waiting for its timeout. (gobreaker
	// alone lets Successes calls through at once.)
	trial atomic.Bool

	// mu guards the fields below. Lock order: gobreaker's lock, then mu
	// (gobreaker calls tripPolicy and stateChanged under its lock).
	mu          sync.Mutex
	run         run
	lastFailure string
	state       State
	since       time.Time
	transitions [3]uint64
	pending     []transition
}

// run is the current run of consecutive failures.
type run struct {
	failures int
	conn     int // connection failures among them
	// paths are the distinct paths of the others, each with when it
	// last failed (Options.Now: see failedInTrial).
	paths map[string]time.Time
	last  string // the last failure, for the log
}

type transition struct {
	from, to State
	reason   string
}

// errFailed and errIgnored carry an outcome through gobreaker.
var (
	errFailed  = errors.New("failed")
	errIgnored = errors.New("ignored")
)

// New returns a closed breaker. cfg's zero fields take their defaults;
// cfg must be valid (Config.Validate).
func New(cfg Config, opts Options) *Breaker {
	cfg = cfg.WithDefaults()
	b := &Breaker{
		cfg: cfg, log: opts.Logger, now: opts.Now, onChange: opts.OnChange,
		run: run{paths: make(map[string]time.Time, cfg.MinPaths)},
	}
	if b.log == nil {
		b.log = zap.NewNop()
	}
	if b.now == nil {
		b.now = time.Now
	}
	b.since = b.now()
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		MaxRequests: uint32(cfg.Successes),
		Timeout:     time.Duration(cfg.Cooldown),
		ReadyToTrip: func(gobreaker.Counts) bool { return b.tripPolicy() },
		IsExcluded:  func(err error) bool { return errors.Is(err, errIgnored) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			b.stateChanged(fromGobreaker(from), fromGobreaker(to))
		},
	})
	return b
}

// Config returns the breaker's configuration with defaults applied.
func (b *Breaker) Config() Config { return b.cfg }

// Allow reports whether a call may go through now: closed, or half-open
// with no trial call in flight. Run decides again.
func (b *Breaker) Allow() bool {
	if b.cfg.Disabled {
		return true
	}
	st := b.cb.State()
	b.flush()
	switch st {
	case gobreaker.StateOpen:
		return false
	case gobreaker.StateHalfOpen:
		return !b.trial.Load()
	}
	return true
}

// Run calls work under the breaker and records its outcome. It returns
// ErrOpen, without calling work, when the breaker refuses the call.
func (b *Breaker) Run(work func() Outcome) error { return b.RunOn("", work) }

// RunOn is Run for a call on path (anything from '?' on is ignored):
// while half-open it also refuses a call on a path whose trial already
// failed since the breaker half-opened. Such a failure does not reopen
// the breaker (it may be one broken page), so without this one path
// asked again and again (a visitor, or an attacker varying the query)
// would take every trial and keep a down upstream half-open, called one
// request at a time instead of resting; now the trials go to other
// paths, which close the breaker or reopen it. The refusal lasts one
// Cooldown from that failure: the path then may be a trial again (one per
// Cooldown at most, the rate of an open breaker's trials), so traffic on
// failed paths alone cannot keep the breaker half-open for good.
func (b *Breaker) RunOn(path string, work func() Outcome) error {
	if b.cfg.Disabled {
		work()
		return nil
	}
	if b.cb.State() == gobreaker.StateHalfOpen {
		if b.failedInTrial(path) {
			b.flush()
			return ErrOpen
		}
		if !b.trial.CompareAndSwap(false, true) {
			b.flush()
			return ErrOpen
		}
		defer b.trial.Store(false)
	}
	_, err := b.cb.Execute(func() (struct{}, error) {
		o := work()
		return struct{}{}, b.record(o)
	})
	b.flush()
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return ErrOpen
	}
	return nil
}

// record adds o to the current run and returns the error gobreaker
// counts it by.
func (b *Breaker) record(o Outcome) error {
	if o.Kind == Ignore {
		return errIgnored
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	r := &b.run
	if o.Kind == Success {
		r.reset()
		return nil
	}
	halfOpen := b.state == HalfOpen
	path := o.Path
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	r.failures++
	if o.Kind == ConnFailure {
		r.conn++
	} else if _, seen := r.paths[path]; seen || len(r.paths) < max(b.cfg.MinPaths, b.cfg.Failures) {
		// Bounded: a run longer than Failures has fewer than MinPaths
		// paths, or it would have opened the breaker.
		r.paths[path] = b.now()
	}
	r.last = o.Reason
	if path != "" {
		r.last += " on " + path
	}
	b.lastFailure = r.last
	if halfOpen && o.Kind == Failure && len(r.paths) < b.cfg.MinPaths {
		// Possibly one page's bug: not enough to reopen (see the
		// package doc); gobreaker neither counts it nor closes on it.
		return errIgnored
	}
	return errFailed
}

// failedInTrial reports whether a trial call on path failed since the
// breaker half-opened (the run is reset at every transition) less than a
// Cooldown ago: a failed path rests as an open breaker would, then may
// be a trial again, so a half-open breaker asked only for paths whose
// trials failed (one page, one vendor item, a sync's one list) is not
// stuck half-open once the upstream is back.
func (b *Breaker) failedInTrial(path string) bool {
	if path == "" {
		return false
	}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	at, failed := b.run.paths[path]
	return b.state == HalfOpen && failed && b.now().Sub(at) < time.Duration(b.cfg.Cooldown)
}

func (r *run) reset() {
	r.failures, r.conn, r.last = 0, 0, ""
	clear(r.paths)
}

// tripPolicy is gobreaker's ReadyToTrip: the current run opens the
// breaker when it holds Failures connection failures, or Failures
// failures over MinPaths distinct paths.
func (b *Breaker) tripPolicy() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := &b.run
	return r.conn >= b.cfg.Failures ||
		(r.failures >= b.cfg.Failures && len(r.paths)+r.conn >= b.cfg.MinPaths)
}

// stateChanged is gobreaker's OnStateChange (under its lock): it notes the
// transition and its reason; flush logs and reports it.
func (b *Breaker) stateChanged(from, to State) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var reason string
	switch {
	case to == Open && from == Closed:
		r := &b.run
		spread := fmt.Sprintf("over %d distinct paths", len(r.paths)+r.conn)
		if r.conn == r.failures {
			spread = "all connection failures"
		} else if r.conn > 0 {
			spread += fmt.Sprintf(" (%d connection failures)", r.conn)
		}
		reason = fmt.Sprintf("%d consecutive failures %s, last: %s", r.failures, spread, r.last)
	case to == Open && b.run.conn == 0 && len(b.run.paths) > 1:
		reason = fmt.Sprintf("trial calls failed on %d distinct paths, last: %s", len(b.run.paths), b.lastFailure)
	case to == Open:
		reason = "trial call failed: " + b.lastFailure
	case to == HalfOpen:
		reason = fmt.Sprintf("cooldown of %s elapsed, letting a trial call through", b.cfg.Cooldown)
	default:
		reason = fmt.Sprintf("%d trial call(s) succeeded", b.cfg.Successes)
	}
	b.run.reset()
	b.state = to
	b.since = b.now()
	b.transitions[to]++
	b.pending = append(b.pending, transition{from: from, to: to, reason: reason})
}

// flush logs and reports the transitions noted since the last flush,
// outside every lock.
func (b *Breaker) flush() {
	b.mu.Lock()
	if len(b.pending) == 0 {
		b.mu.Unlock()
		return
	}
	pending := b.pending
	b.pending = nil
	b.mu.Unlock()
	for _, t := range pending {
		log := b.log.Info
		if t.to == Open {
			log = b.log.Warn
		}
		log("circuit breaker "+t.to.String(),
			zap.String("state", t.to.String()), zap.String("from", t.from.String()),
			zap.String("reason", t.reason))
		if b.onChange != nil {
			b.onChange(t.from, t.to, t.reason)
		}
	}
}

// Status is a breaker's state for health output.
type Status struct {
	State State
	// Since is when the breaker entered State.
	Since time.Time
	// Transitions counts the entries into each state, by State.
	Transitions [3]uint64
}

// Status returns the current state (an open breaker whose cooldown has
// elapsed is half-open).
func (b *Breaker) Status() Status {
	if !b.cfg.Disabled {
		b.cb.State() // applies an elapsed cooldown
		b.flush()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return Status{State: b.state, Since: b.since, Transitions: b.transitions}
}

func fromGobreaker(s gobreaker.State) State {
	switch s {
	case gobreaker.StateOpen:
		return Open
	case gobreaker.StateHalfOpen:
		return HalfOpen
	}
	return Closed
}
