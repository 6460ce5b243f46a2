package vendors

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// limiter is a vendor's token bucket (golang.org/x/time/rate) shared by all
// its callers, plus the window during which an earlier 429's Retry-After
// forbids calling the vendor at all. Its clock and sleep are injectable so
// tests can drive it deterministically.
type limiter struct {
	vendor string
	lim    *rate.Limiter
	now    func() time.Time
	sleep  func(context.Context, time.Duration) error
	stats  *stats

	mu           sync.Mutex
	blockedUntil time.Time

	// quota is the cluster-wide budget taken after the local token; see
	// SetQuota.
	quota atomic.Pointer[quotaBox]
}

func newLimiter(vendor string, cfg RateLimit, now func() time.Time, sleep func(context.Context, time.Duration) error, st *stats) *limiter {
	return &limiter{
		vendor: vendor,
		lim:    rate.NewLimiter(rate.Limit(cfg.PerSecond), cfg.Burst),
		now:    now,
		sleep:  sleep,
		stats:  st,
	}
}

// wait takes one token, sleeping until it is due, and returns how long it
// waited for it (0 when a token was free; RequestInfo.TokenWait). It fails
// at once with a local *RateLimitedError during a Retry-After window, and
// with an error wrapping context.DeadlineExceeded if ctx's deadline comes
// before the token (the token is then given back).
func (l *limiter) wait(ctx context.Context) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := l.now()
	if left := l.blockedFor(now); left > 0 {
		l.stats.throttled.Add(1)
		return 0, &RateLimitedError{Vendor: l.vendor, RetryAfter: left, Local: true}
	}
	r := l.lim.ReserveN(now, 1)
	if !r.OK() {
		return 0, fmt.Errorf("vendors: %s: token bucket refuses a single token (burst 0?)", l.vendor)
	}
	d := r.DelayFrom(now)
	if d <= 0 {
		return l.waitQuota(ctx, 0)
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		r.CancelAt(now)
		return 0, fmt.Errorf("vendors: %s: waiting %v for a rate-limit token would pass the deadline: %w", l.vendor, d, context.DeadlineExceeded)
	}
	l.stats.tokenWaits.Add(1)
	l.stats.tokenWaitNano.Add(uint64(d))
	if err := l.sleep(ctx, d); err != nil {
		r.CancelAt(l.now())
		return d, err
	}
	return l.waitQuota(ctx, d)
}

// block forbids requests until now+d (extending, never shortening, the
// current window).
func (l *limiter) block(d time.Duration) {
	if d <= 0 {
		return
	}
	until := l.now().Add(d)
	l.mu.Lock()
	if until.After(l.blockedUntil) {
		l.blockedUntil = until
	}
	l.mu.Unlock()
}

// blockedFor returns what is left of the Retry-After window at now.
func (l *limiter) blockedFor(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.blockedUntil) {
		return l.blockedUntil.Sub(now)
	}
	return 0
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
