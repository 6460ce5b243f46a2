package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/internal/boltsafe"
	"github.com/craftedge/craftedge/jobs"
)

// JobsConfig configures the durable job queue of the app.
type JobsConfig struct {
	// Retention is how long a done job keeps its idempotency key, so the
	// same work enqueued again within it is not done twice. Default 24h.
	Retention caddy.Duration `json:"retention,omitempty"`

	// Lease is how long a claimed job is reserved for its worker (renewed
	// while it runs); a job whose worker died runs again after it.
	// Default 1m.
	Lease caddy.Duration `json:"lease,omitempty"`

	// Kinds overrides the retry and concurrency settings of job kinds,
	// by kind name (e.g. "vendor.sync", "outbox").
	Kinds map[string]JobKindConfig `json:"kinds,omitempty"`
}

// JobKindConfig sets how one kind of job runs and retries.
type JobKindConfig struct {
	// Concurrency is how many workers run jobs of this kind at once.
	Concurrency int `json:"concurrency,omitempty"`

	// BatchSize is how many ready jobs a worker takes at once (for vendor
	// batch APIs, 50-200 is typical).
	BatchSize int `json:"batch_size,omitempty"`

	// BaseBackoff and MaxBackoff bound the exponential backoff with full
	// jitter between attempts.
	BaseBackoff caddy.Duration `json:"base_backoff,omitempty"`
	MaxBackoff  caddy.Duration `json:"max_backoff,omitempty"`

	// MaxAttempts is how many attempts a job gets before it is
	// dead-lettered.
	MaxAttempts int `json:"max_attempts,omitempty"`

	// Timeout bounds one attempt.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// jobKind is a kind of job some part of craftedge runs: its defaults and
// a constructor for its handler, bound to the running app.
type jobKind struct {
	defaults jobs.KindConfig
	handler  func(a *App) jobs.Handler
}

var (
	jobKindsMu sync.Mutex
	jobKinds   = map[string]jobKind{}
)

// registerJobKind makes a kind of job known to every craftedge app loaded
// afterwards. It is called from init functions (and tests).
func registerJobKind(name string, defaults jobs.KindConfig, handler func(a *App) jobs.Handler) {
	jobKindsMu.Lock()
	defer jobKindsMu.Unlock()
	jobKinds[name] = jobKind{defaults: defaults, handler: handler}
}

// provisionJobs opens this config's queue on the shared bbolt file and
// registers every known kind with its configured overrides.
func (a *App) provisionJobs() error {
	cfg := a.Jobs
	if cfg == nil {
		cfg = &JobsConfig{}
	}
	q, err := jobs.Open(a.store.DB(), jobs.Options{
		Logger:    a.logger.Named("jobs"),
		Now:       nowFunc,
		Retention: time.Duration(cfg.Retention),
		Lease:     time.Duration(cfg.Lease),
		OnAttempt: observeJobAttempt,
		Available: a.storageAvailable,
		OnPanic:   a.storagePanicked,
	})
	if err != nil {
		return fmt.Errorf("craftedge: opening job queue: %w", err)
	}
	jobKindsMu.Lock()
	defer jobKindsMu.Unlock()
	for name := range cfg.Kinds {
		if _, ok := jobKinds[name]; !ok {
			return fmt.Errorf("craftedge: jobs: unknown job kind %q (known: %v)", name, knownJobKindsLocked())
		}
	}
	for name, kind := range jobKinds {
		kc := kindConfig(kind.defaults, cfg.Kinds[name])
		if err := q.Register(name, kc, a.guardJobHandler(kind.handler(a))); err != nil {
			return fmt.Errorf("craftedge: registering job kind %q: %w", name, err)
		}
	}
	a.jobs = q
	return nil
}

// guardJobHandler runs h so that a panic of bbolt (or a memory fault on
// the mapped file) inside a job, as it reads or writes the shared file
// outside the queue's own transactions (records, snapshots, lineage),
// marks the file damaged, as everywhere else, and fails the batch with
// that error, instead of counting as the handler's own panic and leaving
// the file in use. The queue refuses its own transactions on the damaged
// file, so the attempt is not recorded. Any other panic is the handler's
// bug: it goes on to the queue, which counts it as a failed attempt and
// logs it with the stack that raised it (PanicError.Stack).
func (a *App) guardJobHandler(h jobs.Handler) jobs.Handler {
	return func(ctx context.Context, tasks []*jobs.Task) (errs []error) {
		err := boltsafe.Run(func() error {
			errs = h(ctx, tasks)
			return nil
		})
		var p *boltsafe.PanicError
		if !errors.As(err, &p) {
			return errs
		}
		if !p.Storage {
			panic(p) // the queue logs p.Value with p.Stack, where it was raised
		}
		err = fmt.Errorf("job %s: %w", tasks[0].Job.Kind, a.store.MarkDamaged(err))
		errs = make([]error, len(tasks))
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
}

// kindConfig is a kind's defaults with the configured overrides applied
// (zero fields keep the default).
func kindConfig(kc jobs.KindConfig, o JobKindConfig) jobs.KindConfig {
	if o.Concurrency > 0 {
		kc.Concurrency = o.Concurrency
	}
	if o.BatchSize > 0 {
		kc.BatchSize = o.BatchSize
	}
	if o.BaseBackoff > 0 {
		kc.BaseBackoff = time.Duration(o.BaseBackoff)
	}
	if o.MaxBackoff > 0 {
		kc.MaxBackoff = time.Duration(o.MaxBackoff)
	}
	if o.MaxAttempts > 0 {
		kc.MaxAttempts = o.MaxAttempts
	}
	if o.Timeout > 0 {
		kc.Timeout = time.Duration(o.Timeout)
	}
	return kc
}

func knownJobKindsLocked() []string {
	names := make([]string, 0, len(jobKinds))
	for n := range jobKinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// startJobs runs the workers until Stop. A job interrupted by a reload or
// shutdown gets its attempt back and runs again in the next config's
// workers; leases keep two configs from running one job at once.
func (a *App) startJobs() {
	ctx, cancel := context.WithCancel(a.ctx)
	done := make(chan struct{})
	a.stopJobs = func() {
		cancel()
		<-done
	}
	go func() {
		defer close(done)
		if err := a.jobs.Run(ctx); err != nil && ctx.Err() == nil {
			a.logger.Error("job workers stopped", zap.Error(err))
		}
	}()
}
