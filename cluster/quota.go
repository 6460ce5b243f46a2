package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// DefaultQuotaWindow is a quota's window when QuotaConfig.Window is zero.
const DefaultQuotaWindow = time.Second

// QuotaConfig configures a cluster-wide request quota (a vendor's rate
// limit held by the cluster as a whole).
type QuotaConfig struct {
	// Limit is how many requests every node together may make per
	// Window; at least 1.
	Limit int64
	// Window is the counting window; default 1s. A vendor rate of r
	// requests per second is Limit r·Window.
	Window time.Duration
	// Block is how many requests a node reserves in one compare-and-set,
	// so that NATS is asked once per Block requests, not per request;
	// default max(1, Limit/10). Reserved requests a node does not use in
	// its window are lost, never lent.
	Block int64
	// FallbackNodes is the number of nodes assumed while NATS is
	// unreachable before any reservation told how many there are: each
	// node then allows Limit/FallbackNodes per window on its own. Default
	// 1 (a lone node keeps its whole limit).
	FallbackNodes int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// quotaState is the value of a quota's key: the window in use (its index
// since the epoch), the requests reserved in it, by node.
type quotaState struct {
	Window int64            `json:"window"`
	Total  int64            `json:"total"`
	By     map[string]int64 `json:"by,omitempty"`
	// PrevNodes is how many nodes reserved in the window before.
	PrevNodes int `json:"prev_nodes,omitempty"`
}

// QuotaStats counts what this node did with a quota.
type QuotaStats struct {
	// Granted requests (Reserve returned 0); Refused calls (a wait).
	Granted, Refused uint64
	// Reservations are successful compare-and-sets; Fallback counts
	// requests granted from the local share while NATS was unreachable.
	Reservations, Fallback uint64
	// Nodes is how many nodes reserved in the last window seen or the
	// one before it: the share of each while NATS is unreachable.
	Nodes int
}

// Quota is a request budget shared by the cluster: one key per quota in
// the bucket <ns>_quotas holds the current window and how many requests
// the nodes reserved in it. A node reserves a block with compare-and-set,
// so the total reserved in a window never exceeds Limit; it hands the
// block out locally. The window advances when the first node's clock
// enters the next one; a node whose clock lags joins the stored window
// rather than opening an older one, so clock skew moves window edges but
// never runs two windows at once.
type Quota struct {
	n    *Node
	name string
	key  string
	cfg  QuotaConfig
	now  func() time.Time

	mu        sync.Mutex
	window    int64 // window of the local block
	left      int64 // requests left in it
	exhausted bool  // the cluster's budget for window is used up
	nodes     int   // nodes seen in the last window
	fbWindow  int64 // fallback window and its use
	fbUsed    int64

	granted, refused, reservations, fallback atomic.Uint64
}

// Quota returns the cluster-wide quota name (a vendor's name) with cfg.
// Every node must use the same Limit and Window for one name.
func (n *Node) Quota(name string, cfg QuotaConfig) (*Quota, error) {
	switch {
	case name == "":
		return nil, errors.New("cluster: quota: empty name")
	case cfg.Limit < 1:
		return nil, fmt.Errorf("cluster: quota %q: limit %d: at least 1", name, cfg.Limit)
	case cfg.Window < 0 || cfg.Block < 0 || cfg.FallbackNodes < 0:
		return nil, fmt.Errorf("cluster: quota %q: negative window, block or fallback_nodes", name)
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultQuotaWindow
	}
	if cfg.Window < time.Millisecond {
		return nil, fmt.Errorf("cluster: quota %q: window %s is shorter than 1ms", name, cfg.Window)
	}
	if cfg.Block == 0 {
		cfg.Block = max(1, cfg.Limit/10)
	}
	cfg.Block = min(cfg.Block, cfg.Limit)
	if cfg.FallbackNodes == 0 {
		cfg.FallbackNodes = 1
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Quota{n: n, name: name, key: "q." + base64.RawURLEncoding.EncodeToString([]byte(name)), cfg: cfg, now: now,
		window: -1, fbWindow: -1}, nil
}

// quotaBucket returns the bucket, creating it on first use in a session.
func (n *Node) quotaBucket(ctx context.Context) (jetstream.KeyValue, error) {
	return n.quotas.get(ctx, n, jetstream.KeyValueConfig{
		Bucket:      n.name("quotas"),
		Description: "craftedge cluster-wide request quotas (vendor rate limits): window and reservations, by quota",
		History:     1,
	})
}

// Reserve takes one request from the quota: 0 when it may be sent now,
// otherwise how long to wait before asking again (the cluster's budget
// for this window is used up). It asks NATS only when this node's block
// is used up. While NATS is unreachable it grants from a local share of
// Limit (Limit divided by the number of nodes last seen reserving), so
// the cluster stays near its limit without NATS. Errors are ctx's only.
func (q *Quota) Reserve(ctx context.Context) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := q.now()
	w := now.UnixNano() / int64(q.cfg.Window)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.window >= w {
		if q.left > 0 {
			q.left--
			q.granted.Add(1)
			return 0, nil
		}
		if q.exhausted {
			return q.refuse(now, q.window), nil
		}
	}
	for range 16 {
		granted, window, err := q.reserve(ctx, w)
		switch {
		case err == nil && granted > 0:
			q.window, q.left, q.exhausted = window, granted-1, false
			q.reservations.Add(1)
			q.granted.Add(1)
			return 0, nil
		case err == nil:
			q.window, q.left, q.exhausted = window, 0, true
			return q.refuse(now, window), nil
		case casConflict(err):
			continue
		case ctx.Err() != nil:
			return 0, ctx.Err()
		default:
			q.n.quotas.drop() // set up again next time (the bucket may be gone)
			if !ErrNotConnected(err) {
				q.n.log.Warn("cluster quota: reserving failed; using the local share", zap.String("quota", q.name), zap.Error(err))
			}
			return q.fallbackReserve(now, w), nil
		}
	}
	return q.fallbackReserve(now, w), nil
}

// reserve runs one compare-and-set on the quota's key for window w (or
// the stored window, if later): it returns the block granted (0 if the
// window is used up) and the window it belongs to.
func (q *Quota) reserve(ctx context.Context, w int64) (int64, int64, error) {
	kv, err := q.n.quotaBucket(ctx)
	if err != nil {
		return 0, 0, err
	}
	octx, cancel := q.n.opCtx(ctx)
	defer cancel()
	var st quotaState
	var rev uint64
	e, err := kv.Get(octx, q.key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return 0, 0, err
	default:
		rev = e.Revision()
		if json.Unmarshal(e.Value(), &st) != nil {
			st = quotaState{}
		}
	}
	if st.Window < w {
		prev := 0
		if st.Window == w-1 {
			prev = len(st.By)
		}
		st = quotaState{Window: w, PrevNodes: prev}
	}
	q.nodes = max(len(st.By), st.PrevNodes, 1)
	avail := q.cfg.Limit - st.Total
	if avail <= 0 {
		return 0, st.Window, nil
	}
	grant := min(q.cfg.Block, avail)
	st.Total += grant
	if st.By == nil {
		st.By = map[string]int64{}
	}
	st.By[q.n.cfg.NodeName] += grant
	q.nodes = max(len(st.By), st.PrevNodes)
	data, _ := json.Marshal(st)
	if rev == 0 {
		_, err = kv.Create(octx, q.key, data)
	} else {
		_, err = kv.Update(octx, q.key, data, rev)
	}
	if err != nil {
		return 0, 0, err
	}
	return grant, st.Window, nil
}

// refuse counts a refusal and returns the wait until window ends by this
// node's clock (at least a tenth of the window, for a clock that lags).
func (q *Quota) refuse(now time.Time, window int64) time.Duration {
	q.refused.Add(1)
	end := time.Unix(0, (window+1)*int64(q.cfg.Window))
	return max(end.Sub(now), q.cfg.Window/10, time.Millisecond)
}

// fallbackReserve grants from this node's share while NATS is away.
func (q *Quota) fallbackReserve(now time.Time, w int64) time.Duration {
	nodes := q.nodes
	if nodes == 0 {
		nodes = q.cfg.FallbackNodes
	}
	share := max(1, q.cfg.Limit/int64(nodes))
	if q.fbWindow != w {
		q.fbWindow, q.fbUsed = w, 0
	}
	if q.fbUsed >= share {
		return q.refuse(now, w)
	}
	q.fbUsed++
	q.fallback.Add(1)
	q.granted.Add(1)
	return 0
}

// Stats returns this node's counters for the quota.
func (q *Quota) Stats() QuotaStats {
	q.mu.Lock()
	nodes := q.nodes
	q.mu.Unlock()
	return QuotaStats{Granted: q.granted.Load(), Refused: q.refused.Load(), Reservations: q.reservations.Load(),
		Fallback: q.fallback.Load(), Nodes: nodes}
}
