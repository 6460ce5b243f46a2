// Package snapshot is craftedge's durable tier: the last good copy of every
// cacheable response, kept in a bbolt file and served when the origin fails or
// the kill switch is on.
//
// Writes are write-behind: Put only queues the record in memory and a single
// writer goroutine commits queued records in batches, so the request path
// never waits on the disk. Purges never delete snapshots; they leave purge
// marks (per tag, per key prefix, or for everything) that Stale checks in
// memory. Eviction is by age and by total bytes, oldest first.
//
// All buckets in the file are named after their purpose so that other stores
// (durable jobs, outbox) can share the file through Store.DB.
package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// Bucket names. Every bucket used by this package is listed here; other
// packages sharing the file must pick names that do not collide.
var (
	bucketSnapshots     = []byte("snapshots")         // record key → encoded record
	bucketSnapshotsTime = []byte("snapshots_by_time") // 8-byte BE StoredAt nanos + record key → empty
	bucketPurges        = []byte("purges")            // tag → 8-byte BE purge time (unix nanos)
	bucketPurgePrefixes = []byte("purge_prefixes")    // key prefix → 8-byte BE purge time
	bucketMeta          = []byte("meta")              // see meta keys below
	bucketOverrides     = []byte("overrides")         // upstream ("" = all) → 1
)

// Keys in the meta bucket.
var (
	metaFormat   = []byte("snapshots_format")    // on-disk layout version, one byte
	metaCount    = []byte("snapshots_count")     // 8-byte BE number of snapshots
	metaBytes    = []byte("snapshots_bytes")     // 8-byte BE sum of encoded snapshot sizes
	metaPurgeAll = []byte("snapshots_purge_all") // 8-byte BE time of the last purge-all
)

// formatVersion is the layout version stored in the meta bucket.
const formatVersion = 1

// Defaults for zero Options fields.
const (
	DefaultFlushInterval = 20 * time.Millisecond
	DefaultQueueSize     = 4096
	DefaultQueueBytes    = 8 << 20
	DefaultEvictInterval = time.Minute
	DefaultOpenTimeout   = 2 * time.Second
)

// ErrClosed is returned by operations on a closed Store.
var ErrClosed = errors.New("snapshot: store is closed")

// Options configure a Store. Zero values select the documented defaults.
type Options struct {
	// Path is the bbolt file. Its parent directory is created (mode 0700)
	// if it is missing.
	Path string

	// MaxBytes bounds the sum of the encoded sizes of stored snapshots
	// (the bbolt values, see Stats.Bytes); 0 means unbounded. When it is
	// exceeded the oldest snapshots (by StoredAt) are evicted first. A
	// single record whose encoded size exceeds MaxBytes is refused by Put.
	MaxBytes int64

	// MaxAge evicts snapshots whose StoredAt is older than this; 0 keeps
	// them forever.
	MaxAge time.Duration

	// FlushInterval is how long the writer waits after the first queued
	// record before committing the batch; default 20ms.
	FlushInterval time.Duration

	// QueueSize is the maximum number of records queued and not yet
	// committed; default 4096. When the queue is full, Put drops the record
	// and counts it in Stats.Dropped.
	QueueSize int

	// QueueBytes bounds the encoded bytes of the records queued and not
	// yet committed, so the write-behind queue's memory does not depend on
	// response sizes; default 8 MiB. A record that would take the queue
	// over it is dropped like one over QueueSize (a single record larger
	// than QueueBytes is still accepted into an empty queue).
	QueueBytes int64

	// EvictInterval is how often the background evictor runs; default 1m.
	EvictInterval time.Duration

	// OpenTimeout is how long Open waits for the file lock held by another
	// process (or another Store in this process); default 2s.
	OpenTimeout time.Duration

	// Logger receives write and eviction errors; nil means zap.NewNop().
	Logger *zap.Logger

	// Now is the clock used for StoredAt defaults and eviction; nil means
	// time.Now.
	Now func() time.Time

	// CheckMaxBytes bounds the size of a file Open checks for damage page
	// by page (a walk of every bucket, then bbolt's Tx.Check); 0 means
	// DefaultCheckMaxBytes, negative never checks. Whatever the size, Open
	// checks that the file is not shorter than its meta page says, and
	// every operation catches bbolt's panics (see Damaged).
	CheckMaxBytes int64

	// OnDamaged, if set, is called once when the file is found damaged (at
	// Open or later), after it was moved aside. It must not call the
	// store's methods that touch the file.
	OnDamaged func(*DamagedError)

	// OnFlush, if set, is called after every write-behind transaction
	// (Flush) with the number of records in the batch, how long the
	// transaction took (fsyncs included) and its error: for a write
	// latency histogram. It runs on the writer's goroutine; keep it fast.
	OnFlush func(records int, d time.Duration, err error)
}

// Store is a bbolt-backed snapshot store. All methods are safe for
// concurrent use.
type Store struct {
	db   *bolt.DB
	path string

	// damaged is set once the file is found damaged; scratch is true when
	// db is a scratch database standing in for a file damaged at Open.
	damaged atomic.Pointer[DamagedError]
	// damageMu serializes MarkDamaged, so damaged is stored once, complete.
	damageMu sync.Mutex
	scratch  bool

	opts Options
	log  *zap.Logger
	now  func() time.Time

	// mu guards pending, inflight, queuedBytes and closed. Put, Get and
	// Delete take it briefly; it is never held across disk I/O.
	mu          sync.RWMutex
	pending     map[string]pendingRecord // queued, not yet handed to the writer
	inflight    map[string]pendingRecord // being committed by Flush
	queuedBytes int64                    // encoded size of pending and inflight
	closed      bool

	// writeMu serialises every transaction that changes snapshots or the
	// totals (flush, delete, evict), so the in-memory totals are published
	// in commit order.
	writeMu sync.Mutex

	purges    purgeMarks
	overrides overrideSet

	// tagMarks and prefixMarks coalesce purge marks into group commits
	// (markQueue); markCommits counts their transactions.
	tagMarks, prefixMarks markQueue
	markCommits           atomic.Uint64

	// maxBytes and maxAge are Options.MaxBytes and MaxAge, changeable
	// while the store runs (SetLimits: a config reload).
	maxBytes, maxAge atomic.Int64

	count, bytes, fileBytes atomic.Int64
	pendingN                atomic.Int64
	dropped, rejected       atomic.Uint64
	written, writeErrors    atomic.Uint64
	evicted                 atomic.Uint64
	lastWriteNanos          atomic.Int64

	wake      chan struct{} // a record was queued
	evictKick chan struct{} // a flush could not bring Bytes under MaxBytes
	stop      chan struct{}
	done      sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the snapshot file at opts.Path, creates
// the buckets, loads purge marks, overrides and totals into memory, and
// starts the writer and evictor goroutines, which Close stops.
//
// The file is locked exclusively: if another process (or another Store)
// holds it, Open fails after opts.OpenTimeout.
func Open(opts Options) (*Store, error) {
	if opts.Path == "" {
		return nil, errors.New("snapshot: Options.Path is required")
	}
	if opts.MaxBytes < 0 || opts.MaxAge < 0 || opts.FlushInterval < 0 || opts.QueueSize < 0 ||
		opts.QueueBytes < 0 || opts.EvictInterval < 0 || opts.OpenTimeout < 0 {
		return nil, fmt.Errorf("snapshot: opening %s: negative option", opts.Path)
	}
	if opts.FlushInterval == 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.QueueSize == 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.QueueBytes == 0 {
		opts.QueueBytes = DefaultQueueBytes
	}
	if opts.EvictInterval == 0 {
		opts.EvictInterval = DefaultEvictInterval
	}
	if opts.OpenTimeout == 0 {
		opts.OpenTimeout = DefaultOpenTimeout
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CheckMaxBytes == 0 {
		opts.CheckMaxBytes = DefaultCheckMaxBytes
	}

	path := opts.Path
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("snapshot: creating directory for %s: %w", path, err)
		}
	}
	damaged := func(cause error) (*Store, error) {
		d := &DamagedError{Path: path, At: time.Now(), Cause: cause}
		d.MovedTo, d.MoveErr = moveAside(path, d.At)
		return movedStore(opts, d)
	}
	if err := checkFile(path, opts.CheckMaxBytes, opts.OpenTimeout); err != nil {
		var finding *checkFinding
		if errors.As(err, &finding) {
			return damaged(finding)
		}
		return nil, openError(path, err)
	}
	var db *bolt.DB
	err := safely(func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.OpenTimeout})
		return err
	})
	switch {
	case panicked(err), errors.Is(err, bolt.ErrChecksum):
		return damaged(err)
	case err != nil:
		return nil, openError(path, err)
	}

	s := newStore(db, opts)
	if err := safely(s.load); err != nil {
		_ = safely(db.Close)
		if panicked(err) {
			return damaged(err)
		}
		return nil, err
	}
	s.updateFileBytes()

	s.done.Add(2)
	go s.writeLoop()
	go s.evictLoop()
	return s, nil
}

// openError explains why bbolt could not open path.
func openError(path string, err error) error {
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return fmt.Errorf("snapshot: opening %s: file is locked (is it in use by another craftedge?): %w", path, err)
	case errors.Is(err, bolt.ErrInvalid), errors.Is(err, bolt.ErrVersionMismatch):
		return fmt.Errorf("snapshot: opening %s: not a bbolt database (left as it is; point storage elsewhere or remove it): %w", path, err)
	}
	return fmt.Errorf("snapshot: opening %s: %w", path, err)
}

// newStore builds a Store on db (nil for a damaged file) without starting
// its goroutines.
func newStore(db *bolt.DB, opts Options) *Store {
	s := &Store{
		db:        db,
		path:      opts.Path,
		opts:      opts,
		log:       opts.Logger.With(zap.String("path", opts.Path)),
		now:       opts.Now,
		pending:   make(map[string]pendingRecord),
		wake:      make(chan struct{}, 1),
		evictKick: make(chan struct{}, 1),
		stop:      make(chan struct{}),
	}
	s.maxBytes.Store(opts.MaxBytes)
	s.maxAge.Store(int64(opts.MaxAge))
	s.purges.init()
	s.overrides.init()
	return s
}

// load creates the buckets, checks the layout version, loads (or, for a file
// without them, recomputes) the totals, and loads purge marks and overrides.
func (s *Store) load() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketSnapshots, bucketSnapshotsTime, bucketPurges,
			bucketPurgePrefixes, bucketMeta, bucketOverrides} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("creating bucket %q: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(metaFormat); {
		case v == nil:
			if err := meta.Put(metaFormat, []byte{formatVersion}); err != nil {
				return err
			}
		case len(v) != 1 || v[0] != formatVersion:
			return fmt.Errorf("unsupported snapshot format %x (this build reads %d)", v, formatVersion)
		}

		count, okC := getUint64(meta, metaCount)
		bytes, okB := getUint64(meta, metaBytes)
		if !okC || !okB {
			var err error
			if count, bytes, err = s.rebuildTotals(tx); err != nil {
				return err
			}
		}
		s.count.Store(int64(count))
		s.bytes.Store(int64(bytes))

		if err := s.purges.load(tx, s.log); err != nil {
			return err
		}
		return s.overrides.load(tx)
	})
	if err != nil {
		return fmt.Errorf("snapshot: loading %s: %w", s.path, err)
	}
	return nil
}

// rebuildTotals scans the snapshots bucket, recomputes count and bytes, and
// adds any missing time-index entries. It runs only when the totals are
// absent (a new file, or one written before totals were kept).
func (s *Store) rebuildTotals(tx *bolt.Tx) (count, bytes uint64, err error) {
	snaps := tx.Bucket(bucketSnapshots)
	idx := tx.Bucket(bucketSnapshotsTime)
	var missing [][]byte
	err = snaps.ForEach(func(k, v []byte) error {
		count++
		bytes += uint64(len(v))
		if at, err := decodeStoredAt(v); err == nil {
			ik := timeKey(at, k)
			if idx.Get(ik) == nil {
				missing = append(missing, ik)
			}
		} else {
			s.log.Warn("unreadable snapshot while recomputing totals",
				zap.ByteString("key", k), zap.Error(err))
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	for _, ik := range missing {
		if err := idx.Put(ik, []byte{}); err != nil {
			return 0, 0, err
		}
	}
	if err := putTotals(tx, int64(count), int64(bytes)); err != nil {
		return 0, 0, err
	}
	return count, bytes, nil
}

// SetLimits changes MaxBytes and MaxAge of a running store (a config
// reload keeps the store open). Tighter bounds take effect at the next
// eviction pass, which it starts at once.
func (s *Store) SetLimits(maxBytes int64, maxAge time.Duration) error {
	if maxBytes < 0 || maxAge < 0 {
		return errors.New("snapshot: SetLimits: negative bound")
	}
	old := s.maxBytes.Swap(maxBytes)
	oldAge := s.maxAge.Swap(int64(maxAge))
	if old != maxBytes || oldAge != int64(maxAge) {
		select {
		case s.evictKick <- struct{}{}:
		default:
		}
	}
	return nil
}

// DB returns the underlying bbolt database so other stores can keep their
// own buckets in the same file. Callers must not touch this package's
// buckets (see the bucket names in store.go) and must not close it. They
// should refuse durable writes once Damaged is non-nil and report a panic
// of bbolt with MarkDamaged. For a file found damaged at Open, DB is an
// empty scratch database (an unlinked temporary file) so those stores can
// still open; after damage found later, DB is closed and every transaction
// fails with bbolt's ErrDatabaseNotOpen.
func (s *Store) DB() *bolt.DB { return s.db }

// Path returns the path of the bbolt file.
func (s *Store) Path() string { return s.path }

// Close stops the writer and evictor goroutines, commits everything still
// queued, and closes the file. Put after Close returns false; Close is
// idempotent and returns the same result every time.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.stop)
		s.done.Wait()
		if s.damaged.Load() != nil {
			// MarkDamaged closes a damaged file in the background;
			// a scratch database is closed (and gone) here.
			if s.scratch {
				_ = s.db.Close()
			}
			return
		}
		flushErr := s.Flush()
		closeErr := safely(s.db.Close)
		if closeErr != nil {
			closeErr = fmt.Errorf("snapshot: closing %s: %w", s.path, closeErr)
		}
		s.closeErr = errors.Join(flushErr, closeErr)
	})
	return s.closeErr
}

// isClosed reports whether Close has started.
func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// updateFileBytes caches the size of the file for Stats.
func (s *Store) updateFileBytes() {
	if s.damaged.Load() != nil {
		return
	}
	if fi, err := os.Stat(s.path); err == nil {
		s.fileBytes.Store(fi.Size())
	}
}
