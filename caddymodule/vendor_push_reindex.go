package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendors"
)

// A rebuild (reindex) pushes every stored record of a resource to one of
// its push targets again, from the records store alone (no call to the
// source vendor): live records as upserts, deleted ones as deletes. It runs
// as a durable vendor.reindex job that saves its page after each one, so a
// failed or interrupted rebuild resumes there. Each record is read and
// pushed under the record's push lock, so a rebuild never overwrites a
// newer version that a push job sent meanwhile.

// reindexPageSize is how many records a rebuild reads per page.
const reindexPageSize = 100

// ReindexRequest is the body of POST /craftedge/reindex.
type ReindexRequest struct {
	Vendor   string `json:"vendor"`
	Resource string `json:"resource"`
	// Target is the push target vendor.
	Target string `json:"target"`
}

// ReindexStatus is the progress of a rebuild, as the admin API reports it
// and the reindex command shows it.
type ReindexStatus struct {
	Vendor   string `json:"vendor"`
	Resource string `json:"resource"`
	Target   string `json:"target"`
	JobID    string `json:"job_id"`
	// State is "running", "done" or "failed" (see Error).
	State string `json:"state"`
	// Page is the next page of stored records to push.
	Page int `json:"page,omitempty"`
	// Records counts the records pushed so far (Deleted of them as
	// deletes); Total the records stored when the rebuild started.
	Records int `json:"records"`
	Deleted int `json:"deleted"`
	Total   int `json:"total"`
	// StartedAt is when the rebuild's first attempt started.
	StartedAt time.Time `json:"started_at,omitzero"`
	// Error is the last attempt's error (a running rebuild retries).
	Error string `json:"error,omitempty"`
}

// reindexPayload is the payload of a vendor.reindex job.
type reindexPayload struct {
	Vendor   string `json:"vendor"`
	Resource string `json:"resource"`
	Target   string `json:"target"`
}

// reindexContext is a rebuild's saved progress.
type reindexContext struct {
	Page      int       `json:"page"`
	Records   int       `json:"records"`
	Deleted   int       `json:"deleted"`
	Total     int       `json:"total"`
	StartedAt time.Time `json:"started_at"`
}

// startReindex returns the active rebuild of a resource's target, or
// enqueues one; keys chain as the backfill's do.
func (a *App) startReindex(ctx context.Context, req ReindexRequest) (jobs.Job, bool, error) {
	if _, ok := a.pushTarget(req.Vendor, req.Resource, req.Target); !ok {
		return jobs.Job{}, false, caddy.APIError{HTTPStatus: http.StatusNotFound,
			Err: fmt.Errorf("vendor %q resource %q has no push target %q", req.Vendor, req.Resource, req.Target)}
	}
	payload, _ := json.Marshal(reindexPayload(req))
	base := "reindex:" + boundedKey(req.Target+":"+req.Vendor+":"+req.Resource)
	key := base
	for range maxBackfillChain {
		job, created, err := a.jobs.Enqueue(ctx, jobs.EnqueueRequest{
			Kind: jobKindReindex, Key: key, Entity: base, Payload: payload,
		})
		if err != nil || created || (job.State != jobs.StateDone && job.State != jobs.StateDead) {
			return job, created, err
		}
		key = base + ":after:" + job.ID
	}
	return jobs.Job{}, false, fmt.Errorf("more than %d rebuilds of %s/%s to %s finished within the job retention",
		maxBackfillChain, req.Vendor, req.Resource, req.Target)
}

// runReindex runs (or resumes) a rebuild.
func (a *App) runReindex(ctx context.Context, t *jobs.Task) error {
	var p reindexPayload
	if err := json.Unmarshal(t.Job.Payload, &p); err != nil {
		return jobs.Permanent(fmt.Errorf("vendor.reindex: bad payload: %w", err))
	}
	target, ok := a.pushTarget(p.Vendor, p.Resource, p.Target)
	if !ok {
		return jobs.Permanent(fmt.Errorf("vendor.reindex: %s/%s no longer pushes to %q", p.Vendor, p.Resource, p.Target))
	}
	var st reindexContext
	if len(t.Job.Context) > 0 {
		if err := json.Unmarshal(t.Job.Context, &st); err != nil {
			a.logger.Warn("vendor.reindex: ignoring unreadable job context", zap.String("job", t.Job.ID), zap.Error(err))
			st = reindexContext{}
		}
	}
	if st.Page < 0 {
		return nil // done; the completion was not recorded
	}
	if st.Page == 0 {
		total, err := a.records.Count(p.Vendor, p.Resource)
		if err != nil {
			return fmt.Errorf("vendor.reindex: counting records: %w", err)
		}
		st = reindexContext{Page: 1, Total: total, StartedAt: nowFunc().UTC()}
		if err := a.saveReindex(t, st); err != nil {
			return err
		}
	}
	log := a.logger.With(zap.String("vendor", p.Vendor), zap.String("resource", p.Resource),
		zap.String("target", p.Target), zap.String("job", t.Job.ID))
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		pg, err := a.records.List(p.Vendor, p.Resource, time.Time{}, st.Page, reindexPageSize)
		if err != nil {
			return fmt.Errorf("vendor.reindex: listing page %d: %w", st.Page, err)
		}
		for _, rec := range pg.Records {
			err := a.reindexOne(ctx, target, rec, "reindex:"+t.Job.ID+":")
			if err != nil {
				log.Info("rebuild: push failed; the page is pushed again on retry", zap.Int("page", st.Page), zap.Error(err))
				return vendorJobError(err)
			}
			st.Records++
			if rec.Deleted {
				st.Deleted++
			}
		}
		if !pg.HasMore {
			st.Page = -1 // done
			log.Info("rebuild done", zap.Int("records", st.Records), zap.Int("deleted", st.Deleted))
			return a.saveReindex(t, st)
		}
		st.Page = pg.NextPage
		if err := a.saveReindex(t, st); err != nil {
			return err
		}
	}
}

// reindexOne pushes the stored record under its push lock, read again
// there (a push job may have sent a newer version while the page was
// read). Its Idempotency-Key is keyPrefix, the record and the state it
// pushes: a retried page replays what the failed attempt sent, and a record
// that changed since is sent under a key of its own (an index refuses a
// key reused for another body).
func (a *App) reindexOne(ctx context.Context, target *pushTarget, listed vendors.Record, keyPrefix string) error {
	entity := pushEntity(target.vendor, listed.Vendor, listed.Resource, listed.ID)
	unlock := a.push.lock(entity)
	defer unlock()
	rec, err := a.records.Get(listed.Vendor, listed.Resource, listed.ID)
	if err != nil {
		return fmt.Errorf("vendor.reindex: reading %s: %w", listed.ID, err)
	}
	return a.pushRecord(ctx, target, rec, keyPrefix+boundedKey(entity+":"+recordState(rec)))
}

func (a *App) saveReindex(t *jobs.Task, st reindexContext) error {
	b, _ := json.Marshal(st)
	return t.SaveContext(b)
}

// reindexStatusOfJob describes a rebuild job.
func reindexStatusOfJob(j jobs.Job) ReindexStatus {
	var p reindexPayload
	_ = json.Unmarshal(j.Payload, &p)
	var st reindexContext
	_ = json.Unmarshal(j.Context, &st)
	s := ReindexStatus{Vendor: p.Vendor, Resource: p.Resource, Target: p.Target, JobID: j.ID,
		Page: max(st.Page, 0), Records: st.Records, Deleted: st.Deleted, Total: st.Total, StartedAt: st.StartedAt,
		State: BackfillRunning, Error: j.LastError}
	switch j.State {
	case jobs.StateDone:
		s.State, s.Error = BackfillDone, ""
	case jobs.StateDead:
		s.State = BackfillFailed
	}
	return s
}

// maintenanceAPI is the admin module of the stored records' derived
// copies: index rebuilds and the media maintenance job.
//
//	POST /craftedge/reindex            {"vendor","resource","target"}: start (or join) a rebuild
//	GET  /craftedge/reindex/{job}      its progress
//	POST /craftedge/media/gc           run the media maintenance job now
type maintenanceAPI struct{}

func init() { caddy.RegisterModule(maintenanceAPI{}) }

// CaddyModule returns the Caddy module information.
func (maintenanceAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.craftedge_maintenance",
		New: func() caddy.Module { return new(maintenanceAPI) },
	}
}

// Routes returns the admin routes.
func (m maintenanceAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/craftedge/reindex", Handler: caddy.AdminHandlerFunc(m.handleReindex)},
		{Pattern: "/craftedge/reindex/", Handler: caddy.AdminHandlerFunc(m.handleReindex)},
		{Pattern: "/craftedge/media/gc", Handler: caddy.AdminHandlerFunc(m.handleMediaGC)},
	}
}

func (maintenanceAPI) handleReindex(w http.ResponseWriter, r *http.Request) error {
	app, err := runningApp()
	if err != nil {
		return err
	}
	id := strings.Trim(strings.TrimPrefix(r.URL.Path, "/craftedge/reindex"), "/")
	if id != "" {
		if err := requireMethod(r, http.MethodGet); err != nil {
			return err
		}
		j, err := app.jobs.Get(id)
		if err != nil {
			return jobsAPIError(err)
		}
		if j.Kind != jobKindReindex {
			return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("job %s is not a rebuild", id)}
		}
		return writeJSON(w, http.StatusOK, reindexStatusOfJob(j))
	}
	if err := requireMethod(r, http.MethodPost); err != nil {
		return err
	}
	var req ReindexRequest
	if err := decodeJSONBody(r, &req); err != nil {
		return err
	}
	if req.Vendor == "" || req.Resource == "" || req.Target == "" {
		return badRequest(errors.New("vendor, resource and target are required"))
	}
	j, created, err := app.startReindex(r.Context(), req)
	if err != nil {
		return err
	}
	if created {
		app.logger.Info("index rebuild started", zap.String("vendor", req.Vendor), zap.String("resource", req.Resource),
			zap.String("target", req.Target), zap.String("job", j.ID))
	}
	w.Header().Set("Location", "/craftedge/reindex/"+j.ID)
	status := http.StatusOK
	if created {
		status = http.StatusAccepted
	}
	return writeJSON(w, status, reindexStatusOfJob(j))
}

// MediaGCStarted is the answer of POST /craftedge/media/gc.
type MediaGCStarted struct {
	// Job is the media.gc job's id, to follow at /craftedge/jobs/{id}.
	Job   string     `json:"job"`
	State jobs.State `json:"state"`
}

func (maintenanceAPI) handleMediaGC(w http.ResponseWriter, r *http.Request) error {
	app, err := runningApp()
	if err != nil {
		return err
	}
	if err := requireMethod(r, http.MethodPost); err != nil {
		return err
	}
	if app.media == nil {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("no media store: no resource has media fields")}
	}
	// Unkeyed: each call runs the job once more (it holds the store's
	// maintenance lock, so runs never overlap).
	j, _, err := app.jobs.Enqueue(r.Context(), jobs.EnqueueRequest{Kind: jobKindMediaGC})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/craftedge/jobs/"+j.ID)
	return writeJSON(w, http.StatusAccepted, MediaGCStarted{Job: j.ID, State: j.State})
}

// ReindexOptions configure a rebuild run by the reindex command itself,
// when no instance runs.
type ReindexOptions struct {
	// Config is the Caddy JSON config; the craftedge app in it gives the
	// storage path, the resource's push target and the target vendor.
	Config []byte
	// Vendor, Resource and Target select the rebuild.
	Vendor, Resource, Target string
	// Progress, if set, is called after every page.
	Progress func(ReindexStatus)
	// Logger logs the target client's warnings; nil discards them.
	Logger *zap.Logger
	// LockTimeout is how long to wait for the bbolt file lock before
	// returning ErrStorageLocked. Default 1s.
	LockTimeout time.Duration
}

// Reindex rebuilds an index in this process from the bbolt file of the
// craftedge app in opts.Config (read only: the records are not changed),
// pushing every stored record to the target. It returns when every
// record is pushed, a push fails, or ctx ends (State "stopped"; a rerun
// starts over: pushes are idempotent).
func Reindex(ctx context.Context, opts ReindexOptions) (ReindexStatus, error) {
	out := ReindexStatus{Vendor: opts.Vendor, Resource: opts.Resource, Target: opts.Target, State: BackfillFailed}
	app, err := appFromConfig(opts.Config)
	if err != nil {
		return out, err
	}
	vc, ok := app.Vendors[opts.Vendor]
	if !ok || vc == nil {
		return out, fmt.Errorf("vendor %q is not configured in the craftedge app", opts.Vendor)
	}
	res, ok := vc.Resources[opts.Resource]
	if !ok || res == nil {
		return out, fmt.Errorf("vendor %q has no resource %q", opts.Vendor, opts.Resource)
	}
	var push *VendorPush
	for _, p := range res.Push {
		if p != nil && p.Vendor == opts.Target {
			push = p
		}
	}
	if push == nil {
		return out, fmt.Errorf("resource %s/%s has no push target %q", opts.Vendor, opts.Resource, opts.Target)
	}
	spec, err := push.spec()
	if err != nil {
		return out, fmt.Errorf("push %q: %w", opts.Target, err)
	}
	tc, ok := app.Vendors[opts.Target]
	if !ok || tc == nil {
		return out, fmt.Errorf("push target %q is not a configured vendor", opts.Target)
	}
	repl := caddy.NewReplacer()
	headers := make(map[string]string, len(tc.Headers))
	for k, v := range tc.Headers {
		headers[k] = repl.ReplaceAll(v, "")
	}
	logger := opts.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	client, err := vendors.NewClient(tc.vendorsConfig(opts.Target, headers), vendors.ClientOptions{Logger: logger})
	if err != nil {
		return out, err
	}
	defer client.Close()
	target := &pushTarget{vendor: opts.Target, spec: spec, client: client}
	for _, f := range res.Sensitive {
		if !slices.Contains(spec.Fields, f) {
			target.drop = append(target.drop, f)
		}
	}
	db, recs, err := app.openStorageForCommand(opts.LockTimeout)
	if err != nil {
		return out, err
	}
	defer db.Close()
	if out.Total, err = recs.Count(opts.Vendor, opts.Resource); err != nil {
		return out, err
	}
	out.State, out.StartedAt = BackfillRunning, time.Now().UTC()
	run := strconv.FormatInt(out.StartedAt.UnixNano(), 36)
	local := &App{records: recs, logger: logger}
	for page := 1; ; {
		if ctx.Err() != nil {
			out.State, out.Error = BackfillStopped, "interrupted; rerun to push every record again"
			return out, nil
		}
		pg, err := recs.List(opts.Vendor, opts.Resource, time.Time{}, page, reindexPageSize)
		if err != nil {
			out.State, out.Error = BackfillFailed, err.Error()
			return out, err
		}
		for _, rec := range pg.Records {
			key := "reindex:local:" + run + ":" + pushEntity(opts.Target, opts.Vendor, opts.Resource, rec.ID)
			if err := local.pushRecord(ctx, target, rec, key); err != nil {
				if ctx.Err() != nil {
					out.State, out.Error = BackfillStopped, "interrupted; rerun to push every record again"
					return out, nil
				}
				out.State, out.Error = BackfillFailed, err.Error()
				return out, err
			}
			out.Records++
			if rec.Deleted {
				out.Deleted++
			}
		}
		if !pg.HasMore {
			out.State, out.Page = BackfillDone, 0
			if opts.Progress != nil {
				opts.Progress(out)
			}
			return out, nil
		}
		page = pg.NextPage
		out.Page = page
		if opts.Progress != nil {
			opts.Progress(out)
		}
	}
}
