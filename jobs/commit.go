package jobs

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// committer groups concurrent write operations into shared bbolt
// transactions, so that one commit (two fdatasyncs) serves every operation
// that arrived while the previous commit was in flight. Unlike bolt.DB.Batch
// there is no timer: an operation on an idle queue commits at once.
//
// The first caller to find the committer idle becomes the leader: it commits
// every pending operation in one transaction, then hands leadership to the
// first operation that queued meanwhile (so no caller commits for others
// forever) or marks the committer idle.
type committer struct {
	db    *bolt.DB
	guard *storageGuard

	mu      sync.Mutex
	pending []*commitOp
	busy    bool

	// Counters for benchmarks and tests: successful write transactions,
	// operations they carried, and time spent in Update.
	commits, ops, nanos atomic.Uint64
}

// commitOp is one queued operation. ch receives true when the operation's
// caller must lead the next commit, false when the operation is finished.
type commitOp struct {
	fn  func(*bolt.Tx) error
	err error
	ch  chan bool
}

// do runs fn in a write transaction, possibly shared with other operations,
// and returns once that transaction is committed (fn's error, or the commit's
// error). fn may run more than once (if another operation sharing its
// transaction fails, the others are re-run on their own), so it must only
// produce effects through tx and through variables it assigns afresh on
// every run.
func (c *committer) do(fn func(*bolt.Tx) error) error {
	op := &commitOp{fn: fn, ch: make(chan bool, 1)}
	c.mu.Lock()
	c.pending = append(c.pending, op)
	if c.busy {
		c.mu.Unlock()
		if lead := <-op.ch; !lead {
			return op.err
		}
		c.mu.Lock()
	}
	c.busy = true
	group := c.pending
	c.pending = nil
	c.mu.Unlock()

	c.run(group)

	c.mu.Lock()
	if len(c.pending) > 0 {
		c.pending[0].ch <- true // the next leader commits the next group
	} else {
		c.busy = false
	}
	c.mu.Unlock()
	return op.err
}

// run commits group in one transaction and finishes every operation but the
// caller's own (the caller reads its err directly). If one operation fails,
// the transaction is rolled back and the others are re-run one by one so that
// one bad operation cannot fail its neighbours.
func (c *committer) run(group []*commitOp) {
	var failed *commitOp
	start := time.Now()
	defer func() { c.nanos.Add(uint64(time.Since(start))) }()
	err := c.update(func(tx *bolt.Tx) error {
		for _, op := range group {
			if err := safeCall(op.fn, tx); err != nil {
				failed = op
				return err
			}
		}
		return nil
	})
	switch {
	case err == nil:
		c.commits.Add(1)
		c.ops.Add(uint64(len(group)))
	case failed != nil && len(group) > 1:
		failed.err = err
		for _, op := range group {
			if op == failed {
				continue
			}
			op.err = c.update(func(tx *bolt.Tx) error { return safeCall(op.fn, tx) })
			if op.err == nil {
				c.commits.Add(1)
				c.ops.Add(1)
			}
		}
	default:
		for _, op := range group {
			op.err = err
		}
	}
	for _, op := range group {
		select {
		case op.ch <- false:
		default: // the leader's own channel may already hold nothing; it does not wait
		}
	}
}

// safeCall runs fn, turning a panic into an error so that a bug in one
// operation cannot wedge the committer with busy set.
func safeCall(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("jobs: transaction panicked: %v", r)
		}
	}()
	return fn(tx)
}
