package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendors"
)

// A backfill is a full sync pass of one vendor resource: every item is
// listed again from the first page, whatever the cursor. It runs either in
// the running instance, as a vendor.sync job with Full set (POST
// /craftedge/backfill, so the bbolt file stays with its owner), or, when
// no instance runs, in the `craftedge backfill` process against the same
// bbolt file (Backfill). Both save their progress after every page, so a
// stopped backfill resumes where it stopped.

// BackfillStatus is the progress of a backfill, as the admin API reports it
// and the command shows it.
type BackfillStatus struct {
	Vendor   string `json:"vendor"`
	Resource string `json:"resource"`
	// JobID is the vendor.sync job running the backfill in the instance;
	// empty when the command runs it itself.
	JobID string `json:"job_id,omitempty"`
	// State is "running", "done", "failed" (the job is dead or the pass
	// failed; see Error) or "stopped" (interrupted; a rerun resumes).
	State string `json:"state"`
	// Resumed reports a pass that continued from saved progress.
	Resumed bool `json:"resumed,omitempty"`
	// Page is the next page to fetch; Pages, Records and Changed count
	// the pages fetched, items listed and records changed so far.
	Page    int `json:"page,omitempty"`
	Pages   int `json:"pages"`
	Records int `json:"records"`
	Changed int `json:"changed"`
	// Total is the list size the vendor reports (0 when it reports none).
	Total int `json:"total,omitempty"`
	// StartedAt is when the pass started.
	StartedAt time.Time `json:"started_at,omitzero"`
	// Cursor is the delta-sync cursor after a completed pass.
	Cursor time.Time `json:"cursor,omitzero"`
	// Error is why the backfill failed or stopped.
	Error string `json:"error,omitempty"`
}

// Backfill states.
const (
	BackfillRunning = "running"
	BackfillDone    = "done"
	BackfillFailed  = "failed"
	BackfillStopped = "stopped"
)

// ErrStorageLocked is returned by Backfill when another process (a running
// craftedge) holds the bbolt file: ask it through its admin API instead.
var ErrStorageLocked = errors.New("the storage file is locked by another process (a running craftedge?)")

// statusFromState converts a sync state to a backfill status: a pass in
// progress, or the last completed one.
func statusFromState(vendor, resource string, st vendors.SyncState) BackfillStatus {
	if !st.InProgress() && !st.LastCompleted.IsZero() {
		return BackfillStatus{
			Vendor: vendor, Resource: resource, State: BackfillDone,
			Pages: st.LastPages, Records: st.LastSeen, Changed: st.LastChanged, Cursor: st.LastCursor,
		}
	}
	return BackfillStatus{
		Vendor: vendor, Resource: resource, State: BackfillRunning,
		Page: st.Page, Pages: st.Pages, Records: st.Seen, Changed: st.Changed, Total: st.Total, StartedAt: st.StartedAt,
	}
}

// BackfillOptions configure a backfill run by the command itself.
type BackfillOptions struct {
	// Config is the Caddy JSON config (as `caddy adapt` prints it); the
	// craftedge app in it gives the storage path and the vendor config.
	Config []byte
	// Vendor and Resource select what to backfill.
	Vendor, Resource string
	// Restart drops saved progress and starts from the first page.
	Restart bool
	// Progress, if set, is called after every page.
	Progress func(BackfillStatus)
	// Logger logs the vendor client's warnings; nil discards them.
	Logger *zap.Logger
	// LockTimeout is how long to wait for the bbolt file lock before
	// returning ErrStorageLocked. Default 1s.
	LockTimeout time.Duration
}

// Backfill runs (or resumes) a backfill in this process against the bbolt
// file of the craftedge app in opts.Config. It returns when the pass
// completes, fails, or ctx ends (State "stopped", progress saved).
func Backfill(ctx context.Context, opts BackfillOptions) (BackfillStatus, error) {
	out := BackfillStatus{Vendor: opts.Vendor, Resource: opts.Resource, State: BackfillFailed}
	app, err := appFromConfig(opts.Config)
	if err != nil {
		return out, err
	}
	vc, ok := app.Vendors[opts.Vendor]
	if !ok || vc == nil {
		return out, fmt.Errorf("vendor %q is not configured in the craftedge app", opts.Vendor)
	}
	if _, ok := vc.Resources[opts.Resource]; !ok {
		return out, fmt.Errorf("vendor %q has no resource %q", opts.Vendor, opts.Resource)
	}
	repl := caddy.NewReplacer()
	headers := make(map[string]string, len(vc.Headers))
	for k, v := range vc.Headers {
		headers[k] = repl.ReplaceAll(v, "")
	}
	cfg := vc.vendorsConfig(opts.Vendor, headers)
	logger := opts.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	client, err := vendors.NewClient(cfg, vendors.ClientOptions{Logger: logger})
	if err != nil {
		return out, err // Validate's errors name the vendor
	}
	defer client.Close()
	if !client.Enabled() {
		return out, fmt.Errorf("vendor %q is disabled (enabled off): a backfill would make no call", opts.Vendor)
	}

	db, recs, err := app.openStorageForCommand(opts.LockTimeout)
	if err != nil {
		return out, err
	}
	defer db.Close()

	state, err := recs.LoadSyncState(opts.Vendor, opts.Resource)
	if err != nil {
		return out, err
	}
	// Resume only a backfill's own progress; a delta pass's mirror (left
	// by a sync job) or Restart starts over.
	if opts.Restart || !state.InProgress() || !state.Backfill {
		state = vendors.SyncState{LastCompleted: state.LastCompleted, LastCursor: state.LastCursor}
	}
	resumed := state.InProgress()
	report := func(st vendors.SyncState) {
		if opts.Progress != nil {
			s := statusFromState(opts.Vendor, opts.Resource, st)
			s.Resumed = resumed
			opts.Progress(s)
		}
	}
	if resumed {
		report(state)
	}
	err = vendors.Sync(ctx, client, recs, opts.Resource, &state, vendors.SyncOptions{
		Full: true,
		Save: func(st vendors.SyncState) error {
			if err := recs.SaveSyncState(opts.Vendor, opts.Resource, st); err != nil {
				return err
			}
			if st.InProgress() {
				report(st)
			}
			return nil
		},
	})
	out = statusFromState(opts.Vendor, opts.Resource, state)
	out.Resumed = resumed
	switch {
	case err == nil:
		return out, nil
	case ctx.Err() != nil:
		out.State = BackfillStopped
		out.Error = "interrupted; rerun to resume"
		return out, nil
	default:
		out.State = BackfillFailed
		out.Error = err.Error()
		return out, err
	}
}

// openStorageForCommand opens the app's bbolt file and its records for a
// command run without an instance (backfill, reindex), waiting at most
// lockTimeout (default 1s) for the file lock: ErrStorageLocked when an
// instance holds it.
func (a *App) openStorageForCommand(lockTimeout time.Duration) (*bolt.DB, *vendors.Records, error) {
	path := a.Storage
	if path == "" {
		path = filepath.Join(caddy.AppDataDir(), defaultStorageFilename)
	}
	if lockTimeout <= 0 {
		lockTimeout = time.Second
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, nil, fmt.Errorf("storage %s: %w", path, ErrStorageLocked)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("storage %s: %w", path, err)
	}
	recs, err := a.openRecords(db)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, recs, nil
}

// appFromConfig decodes the craftedge app of a Caddy JSON config.
func appFromConfig(cfgJSON []byte) (*App, error) {
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return nil, fmt.Errorf("decoding config: %w", err)
	}
	raw, ok := cfg.Apps["craftedge"]
	if !ok {
		return nil, errors.New("the config has no craftedge app (no global craftedge option)")
	}
	app := new(App)
	if err := json.Unmarshal(raw, app); err != nil {
		return nil, fmt.Errorf("decoding the craftedge app: %w", err)
	}
	return app, nil
}

// backfillRequest is the body of POST /craftedge/backfill.
type backfillRequest struct {
	Vendor   string `json:"vendor"`
	Resource string `json:"resource"`
}

// startBackfill returns the active backfill job of a vendor resource, or
// enqueues one. Backfill keys form a chain, "backfill:<vendor>:<resource>"
// then ":after:<id of the finished one>": concurrent starts compute the
// same key, so the queue's key dedupe lets only one of them create a job.
func (a *App) startBackfill(ctx context.Context, vendor, resource string) (jobs.Job, bool, error) {
	vc, ok := a.Vendors[vendor]
	if !ok {
		return jobs.Job{}, false, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("unknown vendor %q", vendor)}
	}
	if r, ok := vc.Resources[resource]; !ok || r.List == nil {
		return jobs.Job{}, false, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("vendor %q has no listable resource %q", vendor, resource)}
	}
	payload, _ := json.Marshal(vendorSyncPayload{Vendor: vendor, Resource: resource, Full: true})
	base := "backfill:" + vendor + ":" + resource
	key := base
	// Finished backfills keep their key for the queue's retention; the
	// chain is as long as the backfills finished within it.
	for range maxBackfillChain {
		job, created, err := a.jobs.Enqueue(ctx, jobs.EnqueueRequest{
			Kind: jobKindVendorSync, Key: key, Entity: syncEntity(vendor, resource), Payload: payload,
		})
		if err != nil || created || (job.State != jobs.StateDone && job.State != jobs.StateDead) {
			return job, created, err
		}
		key = base + ":after:" + job.ID
	}
	return jobs.Job{}, false, fmt.Errorf("more than %d backfills of %s/%s finished within the job retention", maxBackfillChain, vendor, resource)
}

// maxBackfillChain bounds the walk along finished backfills' keys.
const maxBackfillChain = 1000

// syncEntity orders a resource's sync passes (scheduled deltas and
// backfills) one after the other: two passes at once would share the
// rate limit, purge twice and overwrite each other's progress marks.
func syncEntity(vendor, resource string) string { return vendor + ":" + resource }

// backfillStatusOfJob describes a backfill job.
func backfillStatusOfJob(j jobs.Job) BackfillStatus {
	var p vendorSyncPayload
	_ = json.Unmarshal(j.Payload, &p)
	var st vendors.SyncState
	if len(j.Context) > 0 {
		_ = json.Unmarshal(j.Context, &st)
	}
	s := statusFromState(p.Vendor, p.Resource, st)
	s.JobID = j.ID
	switch j.State {
	case jobs.StateDone:
		s.State = BackfillDone
	case jobs.StateDead:
		s.State = BackfillFailed
		s.Error = j.LastError
	default:
		s.State = BackfillRunning
		s.Error = j.LastError
	}
	return s
}

// handleBackfill serves
//
//	POST /craftedge/backfill        {"vendor","resource"}: start (or join) a backfill
//	GET  /craftedge/backfill/{job}  its progress
func (adminAPI) handleBackfill(w http.ResponseWriter, r *http.Request) error {
	app, err := runningApp()
	if err != nil {
		return err
	}
	id := strings.Trim(strings.TrimPrefix(r.URL.Path, "/craftedge/backfill"), "/")
	if id != "" {
		if err := requireMethod(r, http.MethodGet); err != nil {
			return err
		}
		j, err := app.jobs.Get(id)
		if err != nil {
			return jobsAPIError(err)
		}
		var p vendorSyncPayload
		if j.Kind != jobKindVendorSync || json.Unmarshal(j.Payload, &p) != nil || !p.Full {
			return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("job %s is not a backfill", id)}
		}
		return writeJSON(w, http.StatusOK, backfillStatusOfJob(j))
	}
	if err := requireMethod(r, http.MethodPost); err != nil {
		return err
	}
	var req backfillRequest
	if err := decodeJSONBody(r, &req); err != nil {
		return err
	}
	if req.Vendor == "" || req.Resource == "" {
		return badRequest(errors.New("vendor and resource are required"))
	}
	j, created, err := app.startBackfill(r.Context(), req.Vendor, req.Resource)
	if err != nil {
		return err
	}
	if created {
		app.logger.Info("backfill started", zap.String("vendor", req.Vendor), zap.String("resource", req.Resource), zap.String("job", j.ID))
	}
	w.Header().Set("Location", "/craftedge/backfill/"+j.ID)
	status := http.StatusOK
	if created {
		status = http.StatusAccepted
	}
	return writeJSON(w, status, backfillStatusOfJob(j))
}
