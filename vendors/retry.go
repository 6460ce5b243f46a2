package vendors

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/craftedge/craftedge/circuit"
)

// errTransport marks a request that failed below HTTP (connection refused or
// reset, TLS, a malformed response). Not exported: callers see it only
// through the message; IsPermanent is false for it.
var errTransport = errors.New("transport error")

// isVendorFailure reports whether err says the vendor is unhealthy: a
// timeout, a transport error, a 5xx or a 408. These count against the
// breaker, fail over to the next region and are retried.
func isVendorFailure(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrTimeout) || errors.Is(err, errTransport) {
		return true
	}
	var se *StatusError
	return errors.As(err, &se) && (se.Code >= 500 || se.Code == http.StatusRequestTimeout)
}

// backoff returns the full-jitter delay before the n-th retry (n ≥ 1): a
// uniformly random duration in [0, min(MaxDelay, BaseDelay·2^(n-1))].
func backoff(p RetryPolicy, n int, rnd func() float64) time.Duration {
	ceiling := p.MaxDelay
	if n-1 < 32 {
		if d := p.BaseDelay << (n - 1); d > 0 && d < ceiling {
			ceiling = d
		}
	}
	return time.Duration(rnd() * float64(ceiling))
}

// retryDelay decides whether a GET that failed with err is retried, and
// after how long. A 429 is retried after its Retry-After if that is within
// Retry.MaxRetryAfter; vendor failures after a backoff; nothing else.
func (c *Client) retryDelay(ctx context.Context, err error, n int) (time.Duration, bool) {
	if ctx.Err() != nil {
		return 0, false
	}
	var rl *RateLimitedError
	if errors.As(err, &rl) {
		if rl.RetryAfter > c.cfg.Retry.MaxRetryAfter {
			return 0, false
		}
		return rl.RetryAfter, true
	}
	if !isVendorFailure(err) {
		return 0, false
	}
	return backoff(c.cfg.Retry, n, c.rand), true
}

// retryGET runs call, retrying it per Config.Retry. Each attempt is hedged
// across regions and runs under the breaker. It returns the last attempt's
// error when it gives up; a retry the breaker refused (it opened during
// the retries, or refuses the path whose half-open trial just failed)
// gives up with the vendor's failure before it, not ErrBreakerOpen, which
// says no call was made.
func (c *Client) retryGET(ctx context.Context, call *getCall) (*rawResponse, error) {
	var failed error // the last attempt that reached the vendor
	for attempt := 0; ; attempt++ {
		resp, err := c.attempt(ctx, call, attempt)
		if err == nil {
			return resp, nil
		}
		if failed != nil && errors.Is(err, ErrBreakerOpen) {
			return nil, fmt.Errorf("%w (retry %d refused: circuit breaker open)", failed, attempt)
		}
		failed = err
		if attempt >= c.cfg.Retry.Retries {
			return nil, err
		}
		delay, ok := c.retryDelay(ctx, err, attempt+1)
		if !ok {
			return nil, err
		}
		c.stats.retries.Add(1)
		c.log.Debug("retrying vendor GET", zap.String("resource", call.resource),
			zap.String("path", call.path), zap.Int("retry", attempt+1),
			zap.Duration("delay", delay), zap.Error(err))
		if serr := c.sleep(ctx, delay); serr != nil {
			return nil, fmt.Errorf("%w (gave up retrying: %w)", err, serr)
		}
	}
}

// attempt runs one hedged try of call under the breaker.
func (c *Client) attempt(ctx context.Context, call *getCall, attempt int) (*rawResponse, error) {
	var (
		resp *rawResponse
		err  error
	)
	berr := c.breaker.RunOn(call.path, func() circuit.Outcome {
		resp, err = c.hedged(ctx, call, attempt)
		return breakerOutcome(ctx, call.path, err)
	})
	if errors.Is(berr, circuit.ErrOpen) {
		return nil, c.refuse(call.resource, call.method, call.path, call.v, attempt, OutcomeBreakerOpen, ErrBreakerOpen)
	}
	return resp, err
}
