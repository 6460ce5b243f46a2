package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/internal/boltsafe"
)

// Run starts the workers of every kind registered so far and maintenance
// (reclaiming expired or orphaned leases, deleting done jobs past
// Options.Retention), and returns nil once ctx is done and every worker has
// stopped. Handlers still running when ctx is done see their context
// cancelled; Run waits for them to return. A job whose handler returns an
// error because of the shutdown gets its attempt back and is ready again at
// once (for the next Run, such as the one started by caddy reload); a job
// whose handler returns nil is completed.
//
// Several Runs may be active at once, on one Queue or on Queues sharing the
// database: claims are transactional and leases of live Runs are renewed, so
// a job never runs twice at once. Concurrency limits apply per Run.
func (q *Queue) Run(ctx context.Context) error {
	q.mu.Lock()
	q.runs++
	kinds := make([]*kind, 0, len(q.kinds))
	for _, k := range q.kinds {
		kinds = append(kinds, k)
	}
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.runs--
		q.mu.Unlock()
	}()

	owner := q.hub.newOwner()
	defer q.hub.dropOwner(owner)
	q.maintain()

	var wg sync.WaitGroup
	for _, k := range kinds {
		wg.Go(func() { q.dispatch(ctx, k, owner) })
	}
	wg.Go(func() {
		t := time.NewTicker(q.opts.PollInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				q.maintain()
			}
		}
	})
	wg.Wait()
	return nil
}

// dispatch claims ready jobs of k while this Run has free handler slots and
// runs them, until ctx is done and its handlers have returned.
func (q *Queue) dispatch(ctx context.Context, k *kind, owner uint64) {
	wake := q.hub.subscribe(k.name)
	defer q.hub.unsubscribe(k.name, wake)
	finished := make(chan struct{}, k.cfg.Concurrency)
	inflight := 0
	defer func() {
		for ; inflight > 0; inflight-- {
			<-finished
		}
	}()
	timer := time.NewTimer(q.opts.PollInterval)
	defer timer.Stop()

	for {
		wait := q.opts.PollInterval
		if free := k.cfg.Concurrency - inflight; free > 0 && ctx.Err() == nil {
			tasks, next, err := q.claim(k, free*k.cfg.BatchSize, owner)
			switch {
			case err != nil && errors.Is(err, ErrUnavailable):
				// Said once by the file's owner; not once a poll.
				q.log.Debug("claiming jobs", zap.String("kind", k.name), zap.Error(err))
			case err != nil:
				q.log.Error("claiming jobs", zap.String("kind", k.name), zap.Error(err))
			}
			// A full claim fills every free slot; otherwise nothing else is
			// due before next (or a wake-up).
			for len(tasks) > 0 {
				n := min(len(tasks), k.cfg.BatchSize)
				batch := tasks[:n:n]
				tasks = tasks[n:]
				inflight++
				go func() {
					defer func() { finished <- struct{}{} }()
					// Each finish commit also claims the slot's next batch.
					for len(batch) > 0 {
						batch = q.runBatch(ctx, k, batch, owner)
					}
				}()
			}
			if !next.IsZero() {
				wait = min(wait, max(next.Sub(q.now()), time.Millisecond))
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-finished:
			inflight--
		case <-wake:
		case <-timer.C:
		}
		// Collect every slot freed meanwhile (the last claim waited for a
		// commit), so that the next claim fills them all in one commit.
		for drained := false; !drained; {
			select {
			case <-finished:
				inflight--
			default:
				drained = true
			}
		}
	}
}

// claim claims up to max due, unblocked ready jobs of k for owner, in
// run-at order, in one commit. next is the run-at time of the earliest job
// not yet due (zero if none or unknown). When nothing is due it commits
// nothing.
func (q *Queue) claim(k *kind, limit int, owner uint64) (tasks []*Task, next time.Time, err error) {
	var due bool
	err = q.view(func(tx *bolt.Tx) error {
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		_, next, due = scanReady(b, k.name, q.now().UTC(), 1)
		return nil
	})
	if err != nil || !due {
		return nil, next, err
	}
	err = q.commit.do(func(tx *bolt.Tx) error {
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		tasks, next, err = q.claimTx(b, k, limit, owner, q.now().UTC())
		return err
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("jobs: claiming %s jobs: %w", k.name, err)
	}
	return tasks, next, nil
}

// claimTx claims up to limit due, unblocked ready jobs of k for owner in b's
// transaction.
func (q *Queue) claimTx(b *txBuckets, k *kind, limit int, owner uint64, now time.Time) ([]*Task, time.Time, error) {
	var tasks []*Task
	keys, next, _ := scanReady(b, k.name, now, limit)
	for _, key := range keys {
		_, id, _ := splitReadyKey(key, len(readyPrefix(k.name)))
		r, err := b.load(id)
		if err != nil || r == nil || r.State != StateReady || r.Blocked || r.Kind != k.name {
			// Unreadable or stale index entry: drop it so that it cannot
			// stall the kind. The record stays for Get.
			q.log.Error("dropping unusable ready-index entry", zap.String("kind", k.name),
				zap.String("id", formatID(id)), zap.Error(err))
			if err := b.ready.Delete(key); err != nil {
				return nil, next, err
			}
			continue
		}
		claim, err := b.running.NextSequence()
		if err != nil {
			return nil, next, err
		}
		n := r.clone()
		n.State = StateRunning
		n.Attempts++
		n.Owner, n.Claim = owner, claim
		n.StartedAt, n.UpdatedAt = now, now
		n.LeaseUntil = now.Add(q.opts.Lease)
		if err := b.save(r, n); err != nil {
			return nil, next, err
		}
		tasks = append(tasks, &Task{Job: n.Job, q: q, id: id, claim: claim})
	}
	return tasks, next, nil
}

// scanReady returns (copies of) the ready-index keys of up to limit due jobs
// of kind, and the run-at time of the first job not yet due if the scan got
// that far. Malformed keys are skipped.
func scanReady(b *txBuckets, kind string, now time.Time, limit int) (keys [][]byte, next time.Time, due bool) {
	prefix := readyPrefix(kind)
	nowBits := timeBits(now)
	c := b.ready.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		runAt, _, ok := splitReadyKey(k, len(prefix))
		if !ok {
			continue
		}
		if runAt > nowBits {
			return keys, time.Unix(0, int64(runAt)).UTC(), len(keys) > 0
		}
		if len(keys) == limit {
			break
		}
		keys = append(keys, bytes.Clone(k))
	}
	return keys, time.Time{}, len(keys) > 0
}

// runBatch runs one handler call for tasks, renewing their lease meanwhile,
// records the outcome and, in the same commit unless Run is stopping, claims
// the next batch for this slot, which it returns.
func (q *Queue) runBatch(runCtx context.Context, k *kind, tasks []*Task, owner uint64) []*Task {
	ctx, cancel := context.WithTimeout(runCtx, k.cfg.Timeout)
	defer cancel()
	stopRenew := make(chan struct{})
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		q.renewLoop(k, tasks, stopRenew, cancel)
	}()

	for _, t := range tasks {
		q.log.Debug("job started", t.ref().LogFields()...)
	}
	start := time.Now()
	var errs []error
	if err := runCtx.Err(); err != nil {
		// Claimed as Run stopped: give the jobs back without running them.
		errs = make([]error, len(tasks))
		for i := range errs {
			errs[i] = err
		}
	} else {
		errs = q.callHandler(ctx, k, tasks)
	}
	elapsed := time.Since(start)
	close(stopRenew)
	<-renewed

	shutdown := runCtx.Err() != nil
	claimNext := k.cfg.BatchSize
	if shutdown {
		claimNext = 0
	}
	next, err := q.finish(k, tasks, errs, elapsed, shutdown, claimNext, owner)
	if err != nil {
		// The claims stay; their leases expire and the jobs run again.
		q.log.Error("recording job results", zap.String("kind", k.name), zap.Error(err))
		return nil
	}
	return next
}

// callHandler calls k's handler, turning a panic or a malformed result into
// one error per task.
func (q *Queue) callHandler(ctx context.Context, k *kind, tasks []*Task) (errs []error) {
	defer func() {
		if r := recover(); r != nil {
			stack := debug.Stack()
			if p, ok := r.(*boltsafe.PanicError); ok && p.Stack != nil {
				// Recovered and raised again (by a storage guard around
				// the handler, or from a goroutine it ran work in): the
				// stack where it was raised first.
				r, stack = p.Value, p.Stack
			}
			q.log.Error("job handler panicked", zap.String("kind", k.name), zap.Any("panic", r),
				zap.ByteString("stack", stack))
			err := fmt.Errorf("handler panicked: %v", r)
			errs = make([]error, len(tasks))
			for i := range errs {
				errs[i] = err
			}
		}
	}()
	if len(tasks) == 1 {
		ctx = withRef(ctx, tasks[0].ref())
	}
	errs = k.h(ctx, tasks)
	switch {
	case errs == nil:
		errs = make([]error, len(tasks))
	case len(errs) != len(tasks):
		err := fmt.Errorf("handler returned %d results for %d tasks", len(errs), len(tasks))
		errs = make([]error, len(tasks))
		for i := range errs {
			errs[i] = err
		}
	}
	return errs
}

// renewLoop extends the leases of tasks every Lease/3 until stop is closed.
// If a lease was lost (the job was reclaimed after a stall), it cancels the
// batch.
func (q *Queue) renewLoop(k *kind, tasks []*Task, stop <-chan struct{}, cancel context.CancelFunc) {
	t := time.NewTicker(max(q.opts.Lease/3, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		lost := 0
		err := q.commit.do(func(tx *bolt.Tx) error {
			lost = 0
			b, err := buckets(tx)
			if err != nil {
				return err
			}
			until := q.now().UTC().Add(q.opts.Lease)
			for _, task := range tasks {
				r, err := q.claimed(b, task.id, task.claim)
				if errors.Is(err, ErrLeaseLost) {
					lost++
					continue
				} else if err != nil {
					return err
				}
				n := r.clone()
				n.LeaseUntil = until
				if err := b.save(r, n); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			q.log.Error("renewing job leases", zap.String("kind", k.name), zap.Error(err))
		}
		if lost > 0 {
			q.log.Warn("job lease lost; cancelling the batch", zap.String("kind", k.name), zap.Int("lost", lost))
			cancel()
		}
	}
}

// finish records the outcome of one handler call: done, retry later, dead
// letter, or (interrupted by shutdown) ready again with the attempt given
// back. Tasks whose claim was lost are skipped: another claim owns the job.
// In the same commit it claims up to claimNext more jobs of k for owner and
// returns them.
func (q *Queue) finish(k *kind, tasks []*Task, errs []error, elapsed time.Duration, shutdown bool,
	claimNext int, owner uint64) ([]*Task, error) {
	notify := false
	var (
		next     []*Task
		finished []AttemptInfo
	)
	err := q.commit.do(func(tx *bolt.Tx) error {
		notify, next, finished = false, nil, finished[:0]
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		now := q.now().UTC()
		for i, task := range tasks {
			r, err := q.claimed(b, task.id, task.claim)
			if err != nil {
				q.log.Warn("dropping the result of a job whose claim is gone", zap.String("kind", k.name),
					zap.String("id", task.Job.ID), zap.Error(err))
				continue
			}
			n := r.clone()
			n.UpdatedAt = now
			n.Owner, n.Claim, n.LeaseUntil = 0, 0, time.Time{}
			att := Attempt{At: r.StartedAt, Duration: elapsed}
			info := AttemptInfo{Ref: task.ref(), Duration: elapsed, Err: errs[i]}
			switch jerr := errs[i]; {
			case jerr == nil:
				n.State, n.FinishedAt, n.LastError = StateDone, now, ""
				info.Outcome = AttemptDone
			case shutdown && !IsPermanent(jerr):
				att.Error = "interrupted by shutdown: " + errorText(jerr)
				n.State, n.RunAt = StateReady, now
				n.Attempts = max(n.Attempts-1, 0)
				notify = true
				info.Outcome = AttemptInterrupted
			default:
				att.Error = errorText(jerr)
				n.LastError = att.Error
				if IsPermanent(jerr) || n.Attempts >= k.cfg.MaxAttempts {
					n.State, n.FinishedAt = StateDead, now
					info.Outcome = AttemptDead
				} else {
					delay, ok := retryDelay(jerr)
					if !ok {
						delay = backoff(k.cfg, n.Attempts, q.jitter)
					}
					n.State, n.RunAt = StateReady, now.Add(delay)
					notify = true
					info.Outcome = AttemptRetry
				}
			}
			finished = append(finished, info)
			n.History = append(n.History, att)
			if n.Entity != "" {
				notify = true // the next job of the entity may be unblocked
			}
			if err := b.save(r, n); err != nil {
				return err
			}
		}
		if claimNext > 0 {
			next, _, err = q.claimTx(b, k, claimNext, owner, now)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: finishing %d %s jobs: %w", len(tasks), k.name, err)
	}
	if notify {
		q.hub.notify(k.name)
	}
	for _, info := range finished {
		q.logAttempt(info)
		if q.opts.OnAttempt != nil {
			q.opts.OnAttempt(info)
		}
	}
	return next, nil
}

// logAttempt logs a finished attempt with the job's LogFields: done at
// info, a failure that will be retried at warn, a dead letter at error.
// Errors are the handler's (vendors' errors never carry header values or
// whole bodies).
func (q *Queue) logAttempt(info AttemptInfo) {
	f := append(info.LogFields(), zap.Duration("duration", info.Duration))
	switch info.Outcome {
	case AttemptDone:
		q.log.Info("job done", f...)
	case AttemptInterrupted:
		q.log.Info("job interrupted by shutdown; it will run again", append(f, zap.Error(info.Err))...)
	case AttemptRetry:
		q.log.Warn("job attempt failed; will retry", append(f, zap.Error(info.Err))...)
	case AttemptDead:
		q.log.Error("job dead-lettered", append(f, zap.Error(info.Err))...)
	}
}
