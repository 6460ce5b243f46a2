package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/internal/boltsafe"
)

// DefaultCheckMaxBytes is the largest file Open checks page by page (a walk
// of every bucket and bbolt's Tx.Check) when Options.CheckMaxBytes is 0.
// Checking reads the whole file once: about a second per few hundred MiB
// from a cold page cache.
const DefaultCheckMaxBytes = 256 << 20

// ErrDamaged is wrapped by every error of a store whose file was found
// damaged; test with errors.Is. Errors that carry details are *DamagedError.
var ErrDamaged = errors.New("snapshot: storage file is damaged")

// DamagedError says which file was found damaged, why, and where it was
// moved.
type DamagedError struct {
	// Path is the file as configured.
	Path string
	// MovedTo is where the damaged file was renamed to; empty if the
	// rename failed (MoveErr says why).
	MovedTo string
	// MoveErr is why the file could not be moved aside, if it could not.
	MoveErr error
	// At is when the damage was found.
	At time.Time
	// Cause is what was wrong: a consistency-check finding, a truncation,
	// or a panic of bbolt caught at the storage boundary.
	Cause error
}

func (e *DamagedError) Error() string {
	where := "moved to " + e.MovedTo
	if e.MovedTo == "" {
		where = fmt.Sprintf("could not be moved aside: %v", e.MoveErr)
	}
	return fmt.Sprintf("snapshot: storage file %s is damaged (%s): %v", e.Path, where, e.Cause)
}

// Unwrap returns ErrDamaged and the cause.
func (e *DamagedError) Unwrap() []error { return []error{ErrDamaged, e.Cause} }

// safely runs fn, turning a panic, and a memory fault on the mapped file
// (which would otherwise kill the process), into a *boltsafe.PanicError.
func safely(fn func() error) error { return boltsafe.Run(fn) }

// panicked reports whether err is a caught panic.
func panicked(err error) bool {
	var p *boltsafe.PanicError
	return errors.As(err, &p)
}

// Damaged returns what was found wrong with the file, or nil while it is
// sound. A damaged store serves no snapshots (Get finds nothing, Put
// refuses), keeps purge marks and kill-switch overrides in memory only,
// and never touches the file again.
func (s *Store) Damaged() *DamagedError { return s.damaged.Load() }

// guard runs one bbolt operation of the store: refused with the damage once
// the file is damaged, and with a panic caught, the file marked damaged.
func (s *Store) guard(fn func() error) error {
	if d := s.damaged.Load(); d != nil {
		return d
	}
	err := safely(fn)
	if panicked(err) {
		return s.MarkDamaged(err)
	}
	return err
}

// MarkDamaged records that the file is damaged (cause says how it was
// found; other stores sharing the file through DB call it when they catch
// a panic of bbolt): it logs an error naming the file, moves the file aside
// to <path>.damaged-<UTC time>, closes it in the background, and calls
// Options.OnDamaged. From then on the store serves no snapshots. Only the
// first call has an effect; every call returns the *DamagedError.
func (s *Store) MarkDamaged(cause error) error {
	// The error is published only once complete (other goroutines format
	// it as soon as they see it); marking serializes the first callers.
	s.damageMu.Lock()
	if d := s.damaged.Load(); d != nil {
		s.damageMu.Unlock()
		return d
	}
	d := &DamagedError{Path: s.path, At: time.Now(), Cause: cause}
	d.MovedTo, d.MoveErr = moveAside(s.path, d.At)
	s.damaged.Store(d)
	s.damageMu.Unlock()
	s.logDamaged(d)
	// Closing waits for transactions in flight; a panicked one may never
	// finish, so never wait for it here.
	if db := s.db; db != nil {
		go func() { _ = safely(db.Close) }()
	}
	// Queued records will never be written (a batch being committed is
	// accounted for by its Flush).
	s.mu.Lock()
	s.pendingN.Add(-int64(len(s.pending)))
	for _, p := range s.pending {
		s.queuedBytes -= int64(len(p.enc))
	}
	s.pending = map[string]pendingRecord{}
	s.mu.Unlock()
	if s.opts.OnDamaged != nil {
		s.opts.OnDamaged(d)
	}
	return d
}

func (s *Store) logDamaged(d *DamagedError) {
	s.log.Error("storage file is damaged; moved aside, serving without snapshots (memory tier and origin only), durable jobs refused until a reload or restart opens a fresh file",
		zap.String("damaged_path", d.Path), zap.String("moved_to", d.MovedTo),
		zap.NamedError("move_error", d.MoveErr), zap.Error(d.Cause))
}

// moveAside renames path to path.damaged-<time>, adding -2, -3, ... if
// that name is taken.
func moveAside(path string, at time.Time) (string, error) {
	base := path + ".damaged-" + at.UTC().Format("20060102T150405Z")
	to := base
	for i := 2; ; i++ {
		if _, err := os.Lstat(to); errors.Is(err, os.ErrNotExist) {
			break
		}
		if i > 100 {
			return "", fmt.Errorf("no free name like %s", base)
		}
		to = fmt.Sprintf("%s-%d", base, i)
	}
	if err := os.Rename(path, to); err != nil {
		return "", err
	}
	return to, nil
}

// checkFile looks for damage in an existing file before it is opened for
// writing: a file shorter than its meta page says (truncated), and, for
// files up to checkMax bytes, a walk of every bucket, key and value
// followed by bbolt's consistency check (Tx.Check). It opens the file read
// only, so nothing is written to a damaged file. It returns a *checkFinding
// for damage, another error when the file cannot be checked (locked, not a
// bbolt file), and nil for a sound or missing file.
func checkFile(path string, checkMax int64, timeout time.Duration) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) || err == nil && fi.Size() == 0 {
		return nil
	}
	if err != nil {
		return err
	}
	var db *bolt.DB
	err = safely(func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: timeout})
		return err
	})
	switch {
	case errors.Is(err, bolt.ErrChecksum):
		return &checkFinding{fmt.Errorf("both meta pages are corrupt: %w", err)}
	case panicked(err):
		return &checkFinding{err}
	case err != nil:
		return err
	}
	defer func() { _ = safely(db.Close) }()
	return db.View(func(tx *bolt.Tx) error {
		if want := tx.Size(); fi.Size() < want {
			return &checkFinding{fmt.Errorf("truncated: the file is %d bytes, its meta page says %d", fi.Size(), want)}
		}
		if checkMax < 0 || fi.Size() > checkMax {
			return nil
		}
		// The walk reads every page the check will, in this goroutine,
		// where a fault on a wild page number is an error; tx.Check runs
		// its own goroutine, where it would kill the process.
		if err := safely(func() error { return walkBuckets(tx.Cursor()) }); err != nil {
			return &checkFinding{fmt.Errorf("reading every bucket: %w", err)}
		}
		var found []error
		for err := range tx.Check() {
			if len(found) < 5 {
				found = append(found, err)
			}
		}
		if len(found) > 0 {
			return &checkFinding{fmt.Errorf("consistency check: %w", errors.Join(found...))}
		}
		return nil
	})
}

// checkFinding is damage found by checkFile.
type checkFinding struct{ err error }

func (c *checkFinding) Error() string { return c.err.Error() }
func (c *checkFinding) Unwrap() error { return c.err }

// walkBuckets reads every key and value under c, recursing into nested
// buckets.
func walkBuckets(c *bolt.Cursor) error {
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v != nil {
			if len(v) > 0 {
				touched ^= v[0] ^ v[len(v)-1] // fault in the value's pages
			}
			continue
		}
		b := c.Bucket().Bucket(k)
		if b == nil {
			return fmt.Errorf("key %q has no value and is not a bucket", k)
		}
		if err := walkBuckets(b.Cursor()); err != nil {
			return err
		}
	}
	return nil
}

// touched keeps the walk's reads from being optimised away.
var touched byte

// movedStore is what Open returns for a file found damaged: a store that
// never touches the file, with a scratch database (see DB) for the stores
// sharing the file.
func movedStore(opts Options, d *DamagedError) (*Store, error) {
	s := newStore(nil, opts)
	s.damaged.Store(d)
	s.logDamaged(d)
	scratch, err := openScratch(opts.Path, opts.OpenTimeout)
	if err != nil {
		return nil, fmt.Errorf("%w; and opening a scratch database failed: %v", d, err)
	}
	s.db = scratch
	s.scratch = true
	if opts.OnDamaged != nil {
		opts.OnDamaged(d)
	}
	return s, nil
}

// openScratch opens an empty bbolt database in an unlinked temporary file
// (next to path, or in the temp directory): it disappears when closed.
func openScratch(path string, timeout time.Duration) (*bolt.DB, error) {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".scratch-*")
	if err != nil {
		if f, err = os.CreateTemp("", "craftedge-scratch-*.db"); err != nil {
			return nil, err
		}
	}
	name := f.Name()
	_ = f.Close()
	db, err := bolt.Open(name, 0o600, &bolt.Options{Timeout: timeout})
	_ = os.Remove(name)
	return db, err
}
