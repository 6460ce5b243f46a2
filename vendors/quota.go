package vendors

import (
	"context"
	"fmt"
	"time"
)

// Quota is a request budget a vendor shares with other processes: cluster
// mode's cluster-wide rate limit (cluster.Quota), so that the vendor's
// configured rate holds for every node together. Reserve returns 0 when
// one request may be sent now, otherwise how long to wait before asking
// again; its errors are ctx's.
type Quota interface {
	Reserve(ctx context.Context) (time.Duration, error)
}

// quotaBox holds a Quota in an atomic.Pointer.
type quotaBox struct{ q Quota }

// SetQuota makes every request of c take one unit of q after its token of
// the local bucket (which still shapes this node's bursts); nil removes
// it. Safe to call while requests run (cluster mode sets it when the node
// joins).
func (c *Client) SetQuota(q Quota) {
	if q == nil {
		c.limiter.quota.Store(nil)
		return
	}
	c.limiter.quota.Store(&quotaBox{q: q})
}

// waitQuota takes one unit of the shared quota, if any, sleeping while it
// says to wait; waited is the local token's wait, returned with the
// quota's added. A wait past ctx's deadline fails at once, like the local
// bucket's.
func (l *limiter) waitQuota(ctx context.Context, waited time.Duration) (time.Duration, error) {
	box := l.quota.Load()
	if box == nil {
		return waited, nil
	}
	for {
		d, err := box.q.Reserve(ctx)
		if err != nil {
			return waited, err
		}
		if d <= 0 {
			return waited, nil
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
			return waited, fmt.Errorf("vendors: %s: waiting %v for the cluster's rate limit would pass the deadline: %w", l.vendor, d, context.DeadlineExceeded)
		}
		l.stats.tokenWaits.Add(1)
		l.stats.tokenWaitNano.Add(uint64(d))
		if err := l.sleep(ctx, d); err != nil {
			return waited, err
		}
		waited += d
	}
}
