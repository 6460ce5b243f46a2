package jobs

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/craftedge/craftedge/internal/boltsafe"
)

// storageGuard stands between the queue and bbolt: it refuses every
// transaction once the file is known to be damaged (Options.Available) and
// turns a panic of bbolt, or a memory fault on the mapped file, into
// ErrUnavailable (reporting it to Options.OnPanic) instead of letting it
// kill a worker goroutine or wedge the committer.
type storageGuard struct {
	available func() error
	onPanic   func(error)
}

func (g *storageGuard) run(fn func() error) (err error) {
	if g.available != nil {
		if err := g.available(); err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	err = boltsafe.Run(fn)
	var p *boltsafe.PanicError
	if errors.As(err, &p) {
		err = fmt.Errorf("%w: the file is damaged: %w", ErrUnavailable, err)
		if g.onPanic != nil {
			g.onPanic(err)
		}
	}
	return err
}

// view runs a read transaction under the guard.
func (q *Queue) view(fn func(*bolt.Tx) error) error {
	return q.guard.run(func() error { return q.db.View(fn) })
}

// update runs a write transaction under the guard.
func (c *committer) update(fn func(*bolt.Tx) error) error {
	return c.guard.run(func() error { return c.db.Update(fn) })
}
