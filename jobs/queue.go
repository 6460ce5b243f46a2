package jobs

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// Defaults for zero Options and KindConfig fields.
const (
	DefaultRetention    = 24 * time.Hour
	DefaultLease        = time.Minute
	DefaultPollInterval = time.Second

	DefaultConcurrency = 1
	DefaultBatchSize   = 1
	DefaultBaseBackoff = time.Second
	DefaultMaxBackoff  = 15 * time.Minute
	DefaultMaxAttempts = 10
	DefaultTimeout     = 5 * time.Minute
)

// Limits on names and configuration.
const (
	maxKindLen    = 128
	maxKeyLen     = 1024
	maxConcurency = 1024
	maxBatchSize  = 10000
)

// Options configure a Queue. Zero values select the documented defaults.
type Options struct {
	// Logger receives worker errors and corrupt-record warnings, used as
	// given (the caller names it); nil means zap.NewNop().
	Logger *zap.Logger

	// Now is the clock for run-at times, leases and retention; nil means
	// time.Now. Waiting between polls uses real timers, capped at
	// PollInterval, so a test clock that jumps is noticed within one poll.
	Now func() time.Time

	// Retention is how long a done job is kept (and keeps its idempotency
	// key) after it finished; default 24h.
	Retention time.Duration

	// Lease is how long a claim lasts without renewal; running handlers
	// renew it every Lease/3. A claim whose lease expires is taken back
	// (and the handler holding it, if any, is cancelled at its next
	// renewal), so Lease must comfortably exceed any pause of the process.
	// Claims of a Run that is gone (a killed process) are taken back at
	// once, without waiting for the lease. Default 1m.
	Lease time.Duration

	// PollInterval is the longest a worker sleeps before looking for ready
	// jobs, expired leases and expired done jobs; enqueues on a Queue
	// sharing the same DB wake workers at once. Default 1s.
	PollInterval time.Duration

	// OnAttempt, if set, is called once per finished attempt after its
	// outcome is committed (for metrics), from worker goroutines: keep it
	// fast and safe for concurrent use. Attempts whose claim was lost, or
	// whose outcome failed to commit, are not reported.
	OnAttempt func(AttemptInfo)

	// Available, if set, is called before every transaction; a non-nil
	// error refuses it (wrapped in ErrUnavailable) without touching the
	// file: the owner of a shared file found it damaged. Enqueue then
	// fails, so a caller never believes a job was stored when it was not.
	Available func() error

	// OnPanic, if set, is called when bbolt panics in one of the queue's
	// transactions (a damaged file); the operation fails with
	// ErrUnavailable.
	OnPanic func(error)
}

// KindConfig configures the workers of one kind. Zero values select the
// documented defaults.
type KindConfig struct {
	// Concurrency is the number of handler calls of this kind that may run
	// at once in one Run; default 1.
	Concurrency int
	// BatchSize is the most ready jobs handed to one handler call; default
	// 1. A call gets whatever is ready, up to BatchSize; it does not wait
	// for a full batch.
	BatchSize int
	// BaseBackoff and MaxBackoff shape the retry delay (see the package
	// doc); defaults 1s and 15m.
	BaseBackoff, MaxBackoff time.Duration
	// MaxAttempts is how many attempts a job gets before it is
	// dead-lettered; default 10.
	MaxAttempts int
	// Timeout bounds one handler call (its context's deadline); default 5m.
	Timeout time.Duration
}

// withDefaults validates c and fills in defaults.
func (c KindConfig) withDefaults() (KindConfig, error) {
	if c.Concurrency < 0 || c.BatchSize < 0 || c.BaseBackoff < 0 || c.MaxBackoff < 0 ||
		c.MaxAttempts < 0 || c.Timeout < 0 {
		return c, fmt.Errorf("%w: negative KindConfig field", ErrInvalid)
	}
	if c.Concurrency > maxConcurency || c.BatchSize > maxBatchSize {
		return c, fmt.Errorf("%w: Concurrency above %d or BatchSize above %d", ErrInvalid, maxConcurency, maxBatchSize)
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BaseBackoff == 0 {
		c.BaseBackoff = DefaultBaseBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(DefaultMaxBackoff, c.BaseBackoff)
	}
	if c.MaxBackoff < c.BaseBackoff {
		return c, fmt.Errorf("%w: MaxBackoff %v below BaseBackoff %v", ErrInvalid, c.MaxBackoff, c.BaseBackoff)
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c, nil
}

// kind is a registered kind.
type kind struct {
	name string
	cfg  KindConfig
	h    Handler
}

// Queue is a durable job queue in a shared bbolt database. All methods are
// safe for concurrent use. A Queue has nothing to close: its goroutines live
// only inside Run.
type Queue struct {
	db     *bolt.DB
	opts   Options
	log    *zap.Logger
	now    func() time.Time
	commit *committer
	guard  *storageGuard
	hub    *hub

	// jitter returns a uniform random int64 in [0, n]; replaced by tests.
	jitter func(n int64) int64

	mu    sync.Mutex
	kinds map[string]*kind
	runs  int // Runs in progress
}

// Open returns a Queue keeping its jobs in db, creating its buckets (all
// named "jobs_…") if needed. db is typically snapshot.Store.DB(); the queue
// never closes it, and it must stay open until every Run has returned.
func Open(db *bolt.DB, opts Options) (*Queue, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: nil database", ErrInvalid)
	}
	if opts.Retention < 0 || opts.Lease < 0 || opts.PollInterval < 0 {
		return nil, fmt.Errorf("%w: negative Options field", ErrInvalid)
	}
	if opts.Retention == 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Lease == 0 {
		opts.Lease = DefaultLease
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	guard := &storageGuard{available: opts.Available, onPanic: opts.OnPanic}
	// Open itself is not refused by Available: a queue on an unavailable
	// file opens, and refuses every operation after.
	openGuard := &storageGuard{onPanic: opts.OnPanic}
	err := openGuard.run(func() error {
		return db.Update(func(tx *bolt.Tx) error {
			for _, name := range allBuckets {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return fmt.Errorf("creating bucket %q: %w", name, err)
				}
			}
			meta := tx.Bucket(bucketMeta)
			switch v := meta.Get(metaFormat); {
			case v == nil:
				return meta.Put(metaFormat, []byte{formatVersion})
			case len(v) != 1 || v[0] != formatVersion:
				return fmt.Errorf("unsupported jobs format %x (this build reads %d)", v, formatVersion)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: opening queue in %s: %w", db.Path(), err)
	}
	return &Queue{
		db:     db,
		opts:   opts,
		log:    opts.Logger,
		now:    opts.Now,
		commit: &committer{db: db, guard: guard},
		guard:  guard,
		hub:    hubFor(db),
		jitter: func(n int64) int64 { return mrand.Int64N(n + 1) },
		kinds:  make(map[string]*kind),
	}, nil
}

// Register installs the handler for kind. It must be called before Run (a
// Run only serves the kinds registered when it started) and only once per
// kind. Kind names are non-empty, at most 128 bytes, without NUL bytes.
func (q *Queue) Register(kindName string, cfg KindConfig, h Handler) error {
	if err := validName("kind", kindName, maxKindLen, false); err != nil {
		return err
	}
	if h == nil {
		return fmt.Errorf("%w: nil handler for kind %q", ErrInvalid, kindName)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return fmt.Errorf("registering kind %q: %w", kindName, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.runs > 0 {
		return fmt.Errorf("%w: registering kind %q while Run is running", ErrInvalid, kindName)
	}
	if _, dup := q.kinds[kindName]; dup {
		return fmt.Errorf("%w: kind %q registered twice", ErrInvalid, kindName)
	}
	q.kinds[kindName] = &kind{name: kindName, cfg: cfg, h: h}
	return nil
}

// kind returns the registered kind, or nil.
func (q *Queue) kind(name string) *kind {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.kinds[name]
}

// kindConfig returns the configuration of a kind, or the defaults for a kind
// this Queue does not know (a job left by an older configuration).
func (q *Queue) kindConfig(name string) KindConfig {
	if k := q.kind(name); k != nil {
		return k.cfg
	}
	cfg, _ := KindConfig{}.withDefaults()
	return cfg
}

// validName checks a kind, key or entity.
func validName(what, s string, maxLen int, emptyOK bool) error {
	switch {
	case s == "" && !emptyOK:
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	case len(s) > maxLen:
		return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalid, what, maxLen)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%w: %s contains a NUL byte", ErrInvalid, what)
	}
	return nil
}

// hub is the state shared by every Queue on one *bolt.DB in this process:
// the Runs alive (whose leases are trusted) and the workers to wake.
type hub struct {
	mu   sync.Mutex
	live map[uint64]struct{}
	subs map[string]map[chan struct{}]struct{}
}

var hubs sync.Map // *bolt.DB → *hub

// hubFor returns the hub of db.
func hubFor(db *bolt.DB) *hub {
	h, _ := hubs.LoadOrStore(db, &hub{
		live: make(map[uint64]struct{}),
		subs: make(map[string]map[chan struct{}]struct{}),
	})
	return h.(*hub)
}

// newOwner registers a new live Run and returns its token, random so that
// tokens of a previous process never match.
func (h *hub) newOwner() uint64 {
	var b [8]byte
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		_, _ = rand.Read(b[:])
		tok := binary.BigEndian.Uint64(b[:])
		if _, taken := h.live[tok]; tok != 0 && !taken {
			h.live[tok] = struct{}{}
			return tok
		}
	}
}

// dropOwner unregisters a Run.
func (h *hub) dropOwner(tok uint64) {
	h.mu.Lock()
	delete(h.live, tok)
	h.mu.Unlock()
}

// alive reports whether the Run holding tok is still running in this process.
func (h *hub) alive(tok uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.live[tok]
	return ok
}

// subscribe returns a channel woken when jobs of kind may have become ready.
func (h *hub) subscribe(kind string) chan struct{} {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs[kind] == nil {
		h.subs[kind] = make(map[chan struct{}]struct{})
	}
	h.subs[kind][ch] = struct{}{}
	h.mu.Unlock()
	return ch
}

// unsubscribe removes a channel returned by subscribe.
func (h *hub) unsubscribe(kind string, ch chan struct{}) {
	h.mu.Lock()
	delete(h.subs[kind], ch)
	if len(h.subs[kind]) == 0 {
		delete(h.subs, kind)
	}
	h.mu.Unlock()
}

// notify wakes the workers of the given kinds.
func (h *hub) notify(kinds ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, k := range kinds {
		for ch := range h.subs[k] {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}
