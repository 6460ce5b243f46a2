package vendors

import (
	"context"

	"go.uber.org/zap"
)

// hedged sends call to the variant's first base URL and, if it has not
// answered after Config.HedgeDelay, the same request to the next one, and so
// on. The first good answer (any status but 5xx, 408 and 429) wins and the
// other requests are cancelled. A region that fails outright (timeout,
// transport error, 5xx, 408) fails over to the next at once. A 429 ends the
// attempt: the vendor's limit is per account, not per region.
func (c *Client) hedged(ctx context.Context, call *getCall, attempt int) (*rawResponse, error) {
	urls := call.v.baseURLs
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // cancels the requests that lost

	type result struct {
		region int
		resp   *rawResponse
		err    error
	}
	results := make(chan result, len(urls)) // buffered: losers never block
	next, pending := 0, 0
	launch := func() {
		region := next
		next++
		pending++
		if region > 0 {
			c.stats.hedges.Add(1)
		}
		go func() {
			resp, err := c.send(ctx, outbound{
				resource: call.resource, method: call.method, path: call.path,
				header: call.header, v: call.v, region: region, attempt: attempt,
			})
			results <- result{region, resp, err}
		}()
	}
	var timer <-chan struct{}
	arm := func() {
		timer = nil
		if next >= len(urls) || c.cfg.HedgeDelay <= 0 {
			return
		}
		fired := make(chan struct{})
		timer = fired
		go func() {
			if c.sleep(ctx, c.cfg.HedgeDelay) == nil {
				close(fired)
			}
		}()
	}

	launch()
	arm()
	var lastErr error
	for pending > 0 {
		select {
		case <-timer:
			c.log.Debug("hedging vendor GET", zap.String("path", call.path), zap.Int("region", next))
			launch()
			arm()
		case r := <-results:
			pending--
			if r.err == nil {
				if r.region > 0 {
					c.stats.hedgeWins.Add(1)
				}
				return r.resp, nil
			}
			lastErr = r.err
			if !isVendorFailure(r.err) {
				return nil, r.err
			}
			if next < len(urls) {
				launch()
				arm()
			}
		}
	}
	return nil, lastErr
}
