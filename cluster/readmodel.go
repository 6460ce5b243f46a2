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

// DefaultReadModelMaxPending bounds the record versions waiting for NATS.
const DefaultReadModelMaxPending = 100000

// RecordVersion is one version of a vendor record as the cluster
// replicates it. The cluster orders versions by UpdatedAt and Deleted,
// the rule vendors.Records.Put applies, and carries Data as it is.
type RecordVersion struct {
	Vendor   string `json:"vendor"`
	Resource string `json:"resource"`
	ID       string `json:"id"`
	Version  string `json:"version"`
	// UpdatedAt is the vendor's update time; zero never loses to a
	// stored version.
	UpdatedAt time.Time `json:"updated_at"`
	Deleted   bool      `json:"deleted,omitempty"`
	// Data is the caller's stored form of the record (sensitive fields
	// sealed: vendors.Records.MarshalReplica), opaque to the cluster.
	Data []byte `json:"data"`

	// Node published it; Boot is its process. Set by Publish.
	Node string `json:"node"`
	Boot string `json:"boot"`
	// Revision is the bucket's revision of this version, on receipt.
	Revision uint64 `json:"-"`
}

// supersedes reports whether v should replace old in the bucket: the
// rule of vendors.Records.Put (same version and deletion: no; a stored
// deletion never counts as later; otherwise v must not be older).
func (v RecordVersion) supersedes(old RecordVersion) bool {
	switch {
	case old.Version == v.Version && old.Deleted == v.Deleted:
		return false
	case old.Deleted:
		return true
	case !v.UpdatedAt.IsZero() && v.UpdatedAt.Before(old.UpdatedAt):
		return false
	}
	return true
}

func (v RecordVersion) key() string {
	enc := base64.RawURLEncoding.EncodeToString
	return "r." + enc([]byte(v.Vendor)) + "." + enc([]byte(v.Resource)) + "." + enc([]byte(v.ID))
}

// RetryLater wraps an error of a read model's apply function that says
// the version could not be stored now (a full disk, a storage file being
// replaced) but can be later: the read model does not move past it, and
// applies it again, then the versions after it, after a pause (doubling
// from ReconnectWait up to a minute while it keeps failing). Any other
// error refuses the version for good: it is skipped and counted.
func RetryLater(err error) error { return &retryLater{err} }

type retryLater struct{ err error }

func (e *retryLater) Error() string { return e.err.Error() }
func (e *retryLater) Unwrap() error { return e.err }

// IsRetryLater reports whether err was wrapped by RetryLater.
func IsRetryLater(err error) bool {
	var r *retryLater
	return errors.As(err, &r)
}

const maxReadModelRetryPause = time.Minute

// MaxUpdatedAhead bounds how far ahead of the clock a record version's
// UpdatedAt may be (the vendor's clock): a version further ahead would
// refuse every later one. The bucket's value is replaced by a node's
// version whatever its order when it is further ahead; nodes should
// refuse to apply such a version.
const MaxUpdatedAhead = 24 * time.Hour

// ReadModelConfig configures the replicated read model.
type ReadModelConfig struct {
	// MaxPending bounds the record versions this node holds in memory
	// while NATS is unreachable (one per record: a newer version replaces
	// a pending one). Beyond it the oldest pending version is dropped and
	// counted; the next change or sync of that record repairs it. Zero
	// selects 100000.
	MaxPending int
}

// ReadModelStats counts what this node did.
type ReadModelStats struct {
	// Ready: the node applied every version the bucket held when it last
	// (re)connected.
	Ready bool
	// Published versions stored in the bucket; Superseded ones the bucket
	// already had a newer (or the same) version of.
	Published, Superseded uint64
	// Applied versions of other nodes handed to apply; ApplyErrors those
	// apply refused; Malformed bucket values that were not versions;
	// Retries versions apply could not store then (RetryLater), each
	// applied again later.
	Applied, ApplyErrors, Malformed, Retries uint64
	// Pending versions wait for NATS; Dropped overflowed MaxPending.
	Pending int
	Dropped uint64
	// Revision is the bucket revision of the last version applied.
	Revision uint64
}

// ReadModel replicates vendor record versions through the key-value
// bucket <ns>_records (one key per record, its latest version): every
// node publishes the versions it stores and applies every other node's,
// so all nodes serve the same versions from their own store. See the
// package doc.
type ReadModel struct {
	n     *Node
	cfg   ReadModelConfig
	apply func(RecordVersion) error

	bg *background
	q  *latestQueue[RecordVersion]

	ready                                                                    atomic.Bool
	rev                                                                      atomic.Uint64
	published, superseded, applied, applyErrors, malformed, dropped, retries atomic.Uint64
	// failing counts the retries in a row (the pause doubles with it).
	failing int
}

// NewReadModel starts replicating on n: apply is called, one version at a
// time from one goroutine, with every version other nodes publish (and
// with every version in the bucket after this process starts, its own
// included: apply must ignore versions it already has, as Records.Put
// does). Close stops it (before the node's Close).
func NewReadModel(n *Node, apply func(RecordVersion) error, cfg ReadModelConfig) (*ReadModel, error) {
	if apply == nil {
		return nil, errors.New("cluster: read model: nil apply")
	}
	switch {
	case cfg.MaxPending < 0:
		return nil, fmt.Errorf("cluster: read model: max_pending %d is negative", cfg.MaxPending)
	case cfg.MaxPending == 0:
		cfg.MaxPending = DefaultReadModelMaxPending
	}
	m := &ReadModel{n: n, cfg: cfg, apply: apply, q: newLatestQueue[RecordVersion]()}
	m.bg = n.background("read model", m.session)
	return m, nil
}

// Close stops replicating; versions still pending are dropped.
func (m *ReadModel) Close() { m.bg.stop() }

// Publish hands a version this node stored to the other nodes. It never
// blocks: the version waits in memory (see MaxPending) and is stored in
// the bucket, unless the bucket holds a newer one, as soon as NATS is
// reachable. Call it after the version is committed locally.
func (m *ReadModel) Publish(v RecordVersion) {
	v.Node, v.Boot, v.Revision = m.n.cfg.NodeName, m.n.boot, 0
	k := v.key()
	m.q.putIf(k, v, 0, nil)
	if d := m.q.trim(m.cfg.MaxPending, k); d > 0 {
		m.dropped.Add(uint64(d))
	}
}

// Flush waits until every version published so far is stored, or ctx
// ends.
func (m *ReadModel) Flush(ctx context.Context) error { return m.q.flush(ctx) }

// Ready reports whether this node applied every version the bucket held
// when it last (re)connected.
func (m *ReadModel) Ready() bool { return m.ready.Load() }

// Stats returns this node's counters.
func (m *ReadModel) Stats() ReadModelStats {
	p := m.q.len()
	return ReadModelStats{Ready: m.ready.Load(), Published: m.published.Load(), Superseded: m.superseded.Load(),
		Applied: m.applied.Load(), ApplyErrors: m.applyErrors.Load(), Malformed: m.malformed.Load(),
		Retries: m.retries.Load(), Pending: p, Dropped: m.dropped.Load(), Revision: m.rev.Load()}
}

// session sets the bucket up, publishes pending versions and applies the
// bucket's, until ctx ends.
func (m *ReadModel) session(ctx context.Context) error {
	m.ready.Store(false)
	kv, err := m.n.ensureBucket(ctx, jetstream.KeyValueConfig{
		Bucket:      m.n.name("records"),
		Description: "craftedge read model: the latest version of every vendor record",
		History:     1,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel() // follow may end first (a version to apply again)
		wg.Wait()
	}()
	wg.Go(func() { m.publishLoop(ctx, kv) })
	return m.follow(ctx, kv)
}

// follow applies the bucket's versions: all of them at the first session
// of this process, then from the last revision applied.
func (m *ReadModel) follow(ctx context.Context, kv jetstream.KeyValue) error {
	var opts []jetstream.WatchOpt
	if r := m.rev.Load(); r > 0 {
		opts = append(opts, jetstream.ResumeFromRevision(r+1))
	}
	w, err := kv.WatchAll(ctx, opts...)
	if err != nil {
		return fmt.Errorf("cluster: read model: watching: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("cluster: read model: watch closed")
			}
			if e == nil {
				m.ready.Store(true)
				continue
			}
			if err := m.applyEntry(e); err != nil {
				// Not applied, not passed: the next session resumes
				// from this revision, after a pause.
				m.ready.Store(false)
				m.retries.Add(1)
				m.failing++
				pause := min(m.n.cfg.ReconnectWait<<min(m.failing-1, 16), maxReadModelRetryPause)
				m.n.log.Error("read model: a replicated record version could not be stored here; applying it again later",
					zap.String("key", e.Key()), zap.Uint64("revision", e.Revision()), zap.Duration("retry_in", pause), zap.Error(err))
				if !m.n.pause(ctx, pause) {
					return nil
				}
				return fmt.Errorf("cluster: read model: revision %d: %w", e.Revision(), err)
			}
			m.failing = 0
		}
	}
}

// applyEntry applies one bucket entry; an error (apply's RetryLater) means
// it must be applied again, the revision not passed.
func (m *ReadModel) applyEntry(e jetstream.KeyValueEntry) error {
	if e.Operation() != jetstream.KeyValuePut {
		m.rev.Store(e.Revision())
		return nil
	}
	var v RecordVersion
	if err := json.Unmarshal(e.Value(), &v); err != nil || v.key() != e.Key() {
		m.malformed.Add(1)
		m.n.log.Error("read model: skipping a bucket value that is not a record version", zap.String("key", e.Key()), zap.Error(err))
		m.rev.Store(e.Revision())
		return nil
	}
	if v.Node == m.n.cfg.NodeName && v.Boot == m.n.boot {
		m.rev.Store(e.Revision())
		return nil // stored here first
	}
	v.Revision = e.Revision()
	if err := m.apply(v); err != nil {
		if IsRetryLater(err) {
			return err
		}
		m.applyErrors.Add(1)
		m.n.log.Error("read model: refusing a replicated record version",
			zap.String("vendor", v.Vendor), zap.String("resource", v.Resource), zap.String("id", v.ID),
			zap.String("from", v.Node), zap.Error(err))
		m.rev.Store(e.Revision())
		return nil
	}
	m.applied.Add(1)
	m.rev.Store(e.Revision())
	return nil
}

// publishLoop stores pending versions in order until ctx ends.
func (m *ReadModel) publishLoop(ctx context.Context, kv jetstream.KeyValue) {
	for {
		k, it, ok := m.q.wait(ctx)
		if !ok {
			return
		}
		if err := m.store(ctx, kv, it.v); err != nil {
			if ctx.Err() != nil {
				return
			}
			m.n.log.Warn("read model: publishing a record version failed; retrying", zap.Error(err))
			if !m.n.pause(ctx, m.n.cfg.ReconnectWait) {
				return
			}
			continue
		}
		m.q.done(k, it)
	}
}

// store writes v unless the bucket has a version v does not supersede,
// with compare-and-set on the key's revision: the bucket's value of a
// record only ever moves forward, whatever order nodes publish in.
func (m *ReadModel) store(ctx context.Context, kv jetstream.KeyValue, v RecordVersion) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	k := v.key()
	for range 16 {
		octx, cancel := m.n.opCtx(ctx)
		e, err := kv.Get(octx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = kv.Create(octx, k, data)
		case err != nil:
		default:
			// A value dated far ahead is no node's (see MaxUpdatedAhead):
			// it never holds a record back.
			var old RecordVersion
			if json.Unmarshal(e.Value(), &old) == nil && !v.supersedes(old) &&
				!old.UpdatedAt.After(time.Now().Add(MaxUpdatedAhead)) {
				cancel()
				m.superseded.Add(1)
				return nil
			}
			_, err = kv.Update(octx, k, data, e.Revision())
		}
		cancel()
		if err == nil {
			m.published.Add(1)
			return nil
		}
		if !casConflict(err) {
			return fmt.Errorf("cluster: read model: storing %s/%s %q: %w", v.Vendor, v.Resource, v.ID, err)
		}
	}
	return fmt.Errorf("cluster: read model: storing %s/%s %q: too many concurrent writers", v.Vendor, v.Resource, v.ID)
}

// casConflict reports a lost compare-and-set.
func casConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
