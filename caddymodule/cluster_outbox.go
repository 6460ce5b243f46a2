package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/craftedge/craftedge/cluster"
	"github.com/craftedge/craftedge/internal/boltsafe"
	"github.com/craftedge/craftedge/jobs"
)

// Cluster mode's outbox. With a cluster node the app accepts outbox
// writes into the cluster's outbox stream (cluster.Outbox) instead of its
// local queue, and its workers deliver them with the same handler
// (runOutbox), whichever node accepted them: a write acknowledged by any
// node is delivered even if that node never comes back. Without NATS a
// write is refused with 503 (see docs/guides/cluster.md for why it is not
// kept in the local queue). Other kinds of jobs stay in the local queue.

// errClusterOutboxUnreachable wraps an outbox write refused because this
// node cannot reach the cluster's JetStream, or JetStream does not answer
// (cluster.ErrUnavailable): jobs.ErrUnavailable (503).
var errClusterOutboxUnreachable = fmt.Errorf("%w: the cluster outbox (NATS JetStream) is unreachable", jobs.ErrUnavailable)

// clusterOutbox is the cluster's outbox as the app's jobs.OutboxBackend,
// with this node's workers.
type clusterOutbox struct {
	app  *App
	o    *cluster.Outbox
	stop func()
}

var _ jobs.OutboxBackend = (*clusterOutbox)(nil)

// outboxBackend is where the records API writes outbox jobs and reads
// their state: the cluster's outbox when cluster mode shares it, the
// local queue otherwise.
func (a *App) outboxBackend() jobs.OutboxBackend {
	if a.clusterLive != nil {
		if co := a.clusterLive.outbox.Load(); co != nil {
			return co
		}
	}
	return a.jobs
}

// clusterOutboxConfig maps the outbox kind's configuration (defaults and
// the jobs block's overrides) and the queue's retention to the cluster's.
func (a *App) clusterOutboxConfig() cluster.OutboxConfig {
	jobKindsMu.Lock()
	kc := jobKinds[jobKindOutbox].defaults
	jobKindsMu.Unlock()
	var retention time.Duration
	if a.Jobs != nil {
		kc = kindConfig(kc, a.Jobs.Kinds[jobKindOutbox])
		retention = time.Duration(a.Jobs.Retention)
	}
	return cluster.OutboxConfig{
		MaxAttempts: kc.MaxAttempts,
		BaseBackoff: kc.BaseBackoff,
		MaxBackoff:  kc.MaxBackoff,
		Concurrency: kc.Concurrency,
		Timeout:     kc.Timeout,
		Retention:   retention,
		Permanent:   jobs.IsPermanent,
		RetryDelay:  jobs.RetryDelay,
	}
}

// startClusterOutbox moves the outbox onto node: writes accepted from now
// on go to the cluster, and this node's workers deliver the cluster's
// jobs until stopClusterOutbox. Jobs already in the local queue are
// delivered by the local workers as before.
func (a *App) startClusterOutbox(node *cluster.Node) (*clusterOutbox, error) {
	o, err := cluster.NewOutbox(node, a.clusterOutboxConfig())
	if err != nil {
		return nil, fmt.Errorf("craftedge: cluster outbox: %w", err)
	}
	ctx, cancel := context.WithCancel(a.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := o.Run(ctx, a.observedClusterOutbox); err != nil {
			a.logger.Error("cluster outbox workers stopped", zap.Error(err))
		}
	}()
	co := &clusterOutbox{app: a, o: o}
	co.stop = func() {
		a.clusterLive.outbox.CompareAndSwap(co, nil)
		cancel()
		<-done
		o.Close()
	}
	a.clusterLive.outbox.Store(co)
	return co, nil
}

// Stop hands the outbox back to the local queue and stops this node's
// workers (an attempt they were running is given back and runs again, on
// any node). Call it before the node's Close.
func (co *clusterOutbox) Stop() { co.stop() }

// observedClusterOutbox runs one attempt and counts it in the job
// metrics (craftedge_jobs_attempts_total and the duration histogram),
// kind "outbox" as for the local queue. Its outcome is the handler's: a
// permanent error is "dead"; another error is "retry" even on the last
// attempt (the cluster, not the handler, dead-letters it then: see the
// cluster's dead count in /craftedge/health).
func (a *App) observedClusterOutbox(ctx context.Context, j cluster.OutboxJob) error {
	start := time.Now()
	err := a.runClusterOutbox(ctx, j)
	info := jobs.AttemptInfo{Ref: jobs.Ref{ID: j.ID, Kind: j.Kind, Correlation: j.Correlation, Attempt: j.Attempts},
		Outcome: jobs.AttemptDone, Duration: time.Since(start), Err: err}
	switch {
	case err == nil:
	case ctx.Err() != nil:
		info.Outcome = jobs.AttemptInterrupted
	case jobs.IsPermanent(err):
		info.Outcome = jobs.AttemptDead
	default:
		info.Outcome = jobs.AttemptRetry
	}
	observeJobAttempt(info)
	return err
}

// runClusterOutbox runs one attempt of a cluster outbox job with the
// local outbox's handler. A node whose storage file is damaged, or fails
// to record the vendor's answer (a full disk), gives the job back
// (cluster.OutboxGiveBack) instead of using up one of its attempts: any
// node may run it, with the same Idempotency-Key. A panic of bbolt while
// the answer is recorded (damaged pages) is the file's damage: the file
// is marked damaged (moved aside, named in the log, as guardStorage
// does) and the job given back. Any other panic is the handler's own
// bug: it goes on to the cluster outbox, which counts it as a failed
// attempt.
func (a *App) runClusterOutbox(ctx context.Context, j cluster.OutboxJob) error {
	if j.Kind != jobKindOutbox {
		return jobs.Permanent(fmt.Errorf("cluster outbox: job of kind %q (this node runs %q)", j.Kind, jobKindOutbox))
	}
	if d := a.store.Damaged(); d != nil {
		return cluster.OutboxGiveBack(fmt.Errorf("cluster outbox: this node cannot record the answer: %w", d))
	}
	err := boltsafe.Run(func() error { return a.runOutbox(ctx, jobs.ExternalTask(jobFromCluster(j))) })
	var p *boltsafe.PanicError
	if errors.As(err, &p) {
		if !p.Storage {
			panic(p) // the cluster outbox logs p.Value with p.Stack, where it was raised
		}
		err = a.store.MarkDamaged(err)
	}
	if err != nil && a.storageFailure(err) {
		return cluster.OutboxGiveBack(fmt.Errorf("cluster outbox: recording the answer in %s: %w", a.store.Path(), err))
	}
	return err
}

// Enqueue accepts an outbox write into the cluster; see jobs.OutboxBackend.
func (co *clusterOutbox) Enqueue(ctx context.Context, req jobs.EnqueueRequest) (jobs.Job, bool, error) {
	if req.Kind != jobKindOutbox {
		return jobs.Job{}, false, fmt.Errorf("%w: %q in the cluster outbox", jobs.ErrUnknownKind, req.Kind)
	}
	if !req.RunAt.IsZero() || len(req.Context) > 0 {
		return jobs.Job{}, false, fmt.Errorf("%w: the cluster outbox takes no run-at time or context", jobs.ErrInvalid)
	}
	j, created, err := co.o.Accept(ctx, cluster.OutboxRequest{Kind: req.Kind, Key: req.Key, Entity: req.Entity,
		Correlation: req.Correlation, Payload: req.Payload})
	switch {
	case errors.Is(err, cluster.ErrOutboxInvalid):
		return jobs.Job{}, false, fmt.Errorf("%w (%w)", jobs.ErrInvalid, err)
	case cluster.ErrUnavailable(err):
		return jobs.Job{}, false, fmt.Errorf("%w (%w)", errClusterOutboxUnreachable, err)
	case err != nil:
		return jobs.Job{}, false, fmt.Errorf("craftedge: cluster outbox: %w", err)
	}
	return jobFromCluster(j), created, nil
}

// Get returns a cluster outbox job's last recorded state.
func (co *clusterOutbox) Get(id string) (jobs.Job, error) {
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return jobs.Job{}, fmt.Errorf("%w: %q", jobs.ErrInvalidID, id)
	}
	ctx, cancel := context.WithTimeout(co.app.ctx, 5*time.Second)
	defer cancel()
	j, err := co.o.Get(ctx, id)
	switch {
	case errors.Is(err, cluster.ErrOutboxNotFound):
		return jobs.Job{}, fmt.Errorf("%w (%w)", jobs.ErrNotFound, err)
	case cluster.ErrUnavailable(err):
		return jobs.Job{}, fmt.Errorf("%w (%w)", errClusterOutboxUnreachable, err)
	case err != nil:
		return jobs.Job{}, err
	}
	return jobFromCluster(j), nil
}

// jobFromCluster is a cluster outbox job as package jobs shows one.
func jobFromCluster(j cluster.OutboxJob) jobs.Job {
	state := jobs.State(j.State)
	if _, err := jobs.ParseState(j.State); err != nil {
		state = jobs.StateReady
	}
	runAt := j.RunAt
	if runAt.IsZero() {
		runAt = j.CreatedAt
	}
	return jobs.Job{
		ID: j.ID, Kind: j.Kind, Key: j.Key, Entity: j.Entity, Correlation: j.Correlation,
		Payload: j.Payload, State: state, RunAt: runAt, CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt,
		FinishedAt: j.FinishedAt, Attempts: j.Attempts, LastError: j.LastError,
	}
}

// refuseClusterWrite answers a write refused because the cluster outbox
// is unreachable: 503, Retry-After, and a body saying nothing was stored.
func (a *App) refuseClusterWrite(w http.ResponseWriter, what string, err error) error {
	a.logger.Warn(what+" refused: the cluster outbox is unreachable", zap.Error(err))
	w.Header().Set("Retry-After", "5")
	return writeAPIError(w, http.StatusServiceUnavailable,
		"%s not accepted: this node cannot reach the cluster's outbox (NATS JetStream); nothing was stored, retry (on any node)", what)
}
