package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/internal/boltsafe"
)

// ErrLeaseHeld is returned (wrapped in a *HeldError) when another node
// holds the lease.
var ErrLeaseHeld = errors.New("cluster: lease held by another node")

// ErrLeaseLost is returned by Renew and Release when the lease expired
// or was taken by another node.
var ErrLeaseLost = errors.New("cluster: lease lost")

// HeldError names the holder of a lease that could not be acquired.
type HeldError struct {
	Name   string
	Holder string
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("cluster: lease %q is held by node %s", e.Name, e.Holder)
}

func (e *HeldError) Is(target error) bool { return target == ErrLeaseHeld }

// leaseValue is what a lease key holds.
type leaseValue struct {
	Holder string    `json:"holder"`
	Boot   string    `json:"boot"` // the holder's process
	Since  time.Time `json:"since"`
}

// Lease is a lease this node holds. It expires Config.LeaseTTL after
// its last renewal; its holder renews it before (Lead does so).
type Lease struct {
	n    *Node
	name string
	key  string
	rev  uint64
}

// Name is the lease's name.
func (l *Lease) Name() string { return l.name }

// leaseKey maps a lease name (any string, e.g. "sync:shop") to a key.
func leaseKey(name string) string {
	return "l." + base64.RawURLEncoding.EncodeToString([]byte(name))
}

func (n *Node) leaseBucket() (jetstream.KeyValue, error) {
	n.mu.Lock()
	kv := n.leases
	n.mu.Unlock()
	if kv == nil || !n.nc.IsConnected() {
		return nil, errNotConnected
	}
	return kv, nil
}

// AcquireLease takes the lease name if nobody holds it (or an earlier
// process of this same node did). Otherwise it returns a *HeldError
// (errors.Is ErrLeaseHeld), or ErrNotConnected-style errors when NATS
// is unreachable.
func (n *Node) AcquireLease(ctx context.Context, name string) (*Lease, error) {
	if name == "" {
		return nil, errors.New("cluster: lease name is empty")
	}
	kv, err := n.leaseBucket()
	if err != nil {
		return nil, err
	}
	ctx, cancel := n.opCtx(ctx)
	defer cancel()
	l := &Lease{n: n, name: name, key: leaseKey(name)}
	data := n.leaseValue()
	rev, err := kv.Create(ctx, l.key, data)
	if err == nil {
		l.rev = rev
		return l, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("cluster: acquiring lease %q: %w", name, err)
	}
	e, err := kv.Get(ctx, l.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, &HeldError{Name: name} // expired between the two calls: try again
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: reading lease %q: %w", name, err)
	}
	var v leaseValue
	_ = json.Unmarshal(e.Value(), &v)
	if v.Holder == n.cfg.NodeName && v.Boot != n.boot {
		// An earlier process of this node held it: it is gone (node names
		// are unique), so take it over without waiting for the TTL.
		if rev, err := kv.Update(ctx, l.key, data, e.Revision()); err == nil {
			l.rev = rev
			return l, nil
		}
	}
	return nil, &HeldError{Name: name, Holder: v.Holder}
}

func (n *Node) leaseValue() []byte {
	data, _ := json.Marshal(leaseValue{Holder: n.cfg.NodeName, Boot: n.boot, Since: time.Now()})
	return data
}

// Renew extends the lease by LeaseTTL if this node still holds it
// (compare-and-set on the revision); ErrLeaseLost if not.
func (l *Lease) Renew(ctx context.Context) error {
	kv, err := l.n.leaseBucket()
	if err != nil {
		return err
	}
	ctx, cancel := l.n.opCtx(ctx)
	defer cancel()
	rev, err := kv.Update(ctx, l.key, l.n.leaseValue(), l.rev)
	if err != nil {
		return l.failed("renewing", err)
	}
	l.rev = rev
	return nil
}

// failed maps a failed compare-and-set to ErrLeaseLost, and wraps any
// other error.
func (l *Lease) failed(doing string, err error) error {
	var apiErr *jetstream.APIError
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.Is(err, jetstream.ErrKeyNotFound) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return fmt.Errorf("%w: %q", ErrLeaseLost, l.name)
	}
	return fmt.Errorf("cluster: %s lease %q: %w", doing, l.name, err)
}

// Release gives the lease up at once, if this node still holds it.
func (l *Lease) Release(ctx context.Context) error {
	kv, err := l.n.leaseBucket()
	if err != nil {
		return err
	}
	ctx, cancel := l.n.opCtx(ctx)
	defer cancel()
	if err := kv.Delete(ctx, l.key, jetstream.LastRevision(l.rev)); err != nil {
		return l.failed("releasing", err)
	}
	return nil
}

// LeaseHolder returns the node holding the lease name, "" if none.
func (n *Node) LeaseHolder(ctx context.Context, name string) (string, error) {
	kv, err := n.leaseBucket()
	if err != nil {
		return "", err
	}
	ctx, cancel := n.opCtx(ctx)
	defer cancel()
	e, err := kv.Get(ctx, leaseKey(name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("cluster: reading lease %q: %w", name, err)
	}
	var v leaseValue
	_ = json.Unmarshal(e.Value(), &v)
	return v.Holder, nil
}

// Lead runs fn while this node holds the lease name, for work that must
// run on one node at a time (a vendor's sync schedule). It tries to
// acquire the lease every LeaseTTL/4; once acquired it renews it every
// LeaseTTL/3 and runs fn with a context that is cancelled when the lease
// is lost, or when renewals have failed for 2/3 of LeaseTTL (another node
// may take it over after LeaseTTL). Lead then waits for fn to return and
// campaigns again. When fn returns by itself, Lead releases the lease and
// returns nil; when ctx ends, it cancels fn, releases and returns
// ctx.Err().
func (n *Node) Lead(ctx context.Context, name string, fn func(ctx context.Context)) error {
	ttl := n.cfg.LeaseTTL
	for {
		l, err := n.AcquireLease(ctx, name)
		if err != nil {
			if !errors.Is(err, ErrLeaseHeld) && !ErrNotConnected(err) && ctx.Err() == nil {
				n.log.Warn("acquiring a lease", zap.String("lease", name), zap.Error(err))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(ttl / 4):
			}
			continue
		}
		n.log.Info("lease acquired", zap.String("lease", name))
		finished, panicked := n.hold(ctx, l, fn)
		n.release(l)
		if panicked != nil {
			panic(panicked)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if finished {
			return nil
		}
	}
}

// TryLead runs fn under the lease name if this node can acquire it now,
// for a piece of work that must not run on two nodes at once (one job):
// it does not campaign. It returns the AcquireLease error when the lease
// is held elsewhere (errors.Is ErrLeaseHeld) or NATS is unreachable
// (ErrNotConnected), without running fn. Once acquired it renews the
// lease as Lead does and cancels fn's context when the lease is lost;
// after fn returns it releases the lease and returns nil, or an error
// wrapping ErrLeaseLost if the lease was lost while fn ran, or ctx.Err().
func (n *Node) TryLead(ctx context.Context, name string, fn func(ctx context.Context)) error {
	l, err := n.AcquireLease(ctx, name)
	if err != nil {
		return err
	}
	finished, panicked := n.hold(ctx, l, fn)
	n.release(l)
	if panicked != nil {
		panic(panicked)
	}
	switch {
	case finished:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return fmt.Errorf("%w: %q (its work was stopped)", ErrLeaseLost, name)
}

// release gives l up after its work, within Config.Timeout (a lease not
// released expires after LeaseTTL).
func (n *Node) release(l *Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Timeout)
	defer cancel()
	if err := l.Release(ctx); err != nil && !errors.Is(err, ErrLeaseLost) {
		n.log.Warn("releasing a lease (it expires after its TTL)", zap.String("lease", l.name), zap.Error(err))
	}
}

// hold runs fn under l until fn returns (true) or the lease is lost or
// ctx ends (false, after fn returned). fn runs in a goroutine of its own
// (hold renews the lease meanwhile), under boltsafe.Run: a panic in it is
// returned as panicked, which Lead and TryLead raise again in their
// caller's goroutine once the lease is released, so the caller's recovery
// (the job queue's, a job's storage guard) sees it as if fn had run
// there, and a bbolt panic or memory fault on the node's file stays
// known as one, instead of killing the process from a goroutine nothing
// recovers in.
func (n *Node) hold(ctx context.Context, l *Lease, fn func(context.Context)) (finished bool, panicked *boltsafe.PanicError) {
	ttl := n.cfg.LeaseTTL
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := boltsafe.Run(func() error {
			fn(fctx)
			return nil
		})
		errors.As(err, &panicked)
	}()
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	lastOK := time.Now()
	for {
		select {
		case <-done:
			return true, panicked
		case <-ctx.Done():
			cancel()
			<-done
			return false, panicked
		case <-tick.C:
			rctx, rcancel := context.WithTimeout(ctx, ttl/3)
			err := l.Renew(rctx)
			rcancel()
			switch {
			case err == nil:
				lastOK = time.Now()
				continue
			case errors.Is(err, ErrLeaseLost):
				n.log.Warn("lease lost", zap.String("lease", l.name))
			case time.Since(lastOK) < ttl*2/3:
				continue // transient: try again at the next tick
			default:
				n.log.Warn("lease not renewed in time; stopping its work", zap.String("lease", l.name), zap.Error(err))
			}
			cancel()
			<-done
			return false, panicked
		}
	}
}
