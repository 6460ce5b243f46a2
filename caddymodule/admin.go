package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/jobs"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// maxAdminBody bounds admin request bodies.
const maxAdminBody = 1 << 20

// adminAPI serves craftedge's routes on Caddy's admin endpoint:
//
//	POST /craftedge/purge          purge by tags, urls, prefixes, hosts or all
//	GET  /craftedge/health         memory tier, snapshots, breakers, kill switch
//	PUT  /craftedge/snapshot-only  set or clear the kill-switch override
//	     /craftedge/jobs...         the job queue (see handleJobs)
//	     /craftedge/backfill...     start and watch a vendor backfill (see handleBackfill)
//	GET  /craftedge/lineage         what changed a record (see handleLineage)
//	POST /craftedge/reencrypt       seal sensitive values again under the current key
//
// Admin modules are provisioned before apps, so the app is resolved per
// request.
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.craftedge",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes returns the admin routes.
func (a adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/craftedge/purge", Handler: caddy.AdminHandlerFunc(a.handlePurge)},
		{Pattern: "/craftedge/health", Handler: caddy.AdminHandlerFunc(a.handleHealth)},
		{Pattern: "/craftedge/snapshot-only", Handler: caddy.AdminHandlerFunc(a.handleSnapshotOnly)},
		{Pattern: "/craftedge/jobs", Handler: caddy.AdminHandlerFunc(a.handleJobs)},
		{Pattern: "/craftedge/jobs/", Handler: caddy.AdminHandlerFunc(a.handleJobs)},
		{Pattern: "/craftedge/backfill", Handler: caddy.AdminHandlerFunc(a.handleBackfill)},
		{Pattern: "/craftedge/backfill/", Handler: caddy.AdminHandlerFunc(a.handleBackfill)},
		{Pattern: "/craftedge/lineage", Handler: caddy.AdminHandlerFunc(a.handleLineage)},
		{Pattern: "/craftedge/reencrypt", Handler: caddy.AdminHandlerFunc(a.handleReencrypt)},
	}
}

func runningApp() (*App, error) {
	app := currentApp.Load()
	if app == nil {
		return nil, caddy.APIError{
			HTTPStatus: http.StatusServiceUnavailable,
			Err:        errors.New("craftedge is not running: no craftedge handler or app in the current config"),
		}
	}
	return app, nil
}

func requireMethod(r *http.Request, method string) error {
	if r.Method != method {
		return caddy.APIError{
			HTTPStatus: http.StatusMethodNotAllowed,
			Err:        fmt.Errorf("method %s not allowed; use %s", r.Method, method),
		}
	}
	return nil
}

// decodeJSONBody strictly decodes a JSON object body into v.
func decodeJSONBody(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAdminBody+1))
	if err != nil {
		return badRequest(fmt.Errorf("reading body: %w", err))
	}
	if len(body) > maxAdminBody {
		return caddy.APIError{HTTPStatus: http.StatusRequestEntityTooLarge, Err: fmt.Errorf("body larger than %d bytes", maxAdminBody)}
	}
	if err := decodeStrictJSON(body, v); err != nil {
		return badRequest(err)
	}
	return nil
}

// decodeStrictJSON decodes one JSON object from body into v, refusing
// unknown fields and trailing data.
func decodeStrictJSON(body []byte, v any) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		return errors.New("empty body: expected a JSON object")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON body: %w", err)
	}
	if dec.More() {
		return errors.New("malformed JSON body: trailing data after the object")
	}
	return nil
}

func badRequest(err error) error {
	return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
}

// ErrorBody is the one JSON body of every error answer written by
// craftedge's HTTP handlers (records API, webhooks and remote purge, status
// page): {"error": "<what went wrong>"}, plus "reason", a stable word for
// machines, where the route has one (webhook rejections: bad_signature,
// stale, ...). Admin API routes return caddy.APIError, which Caddy's admin
// server renders with the same "error" field.
type ErrorBody struct {
	// Error says what went wrong, for a person.
	Error string `json:"error"`
	// Reason is a stable machine-readable word for the error, if the
	// route has a fixed set of them.
	Reason string `json:"reason,omitempty"`
}

// WriteError answers with status and body as JSON, marked
// Cache-Control: no-store (an error must not be kept by a cache or CDN in
// front). Every handler's error body goes through here.
func WriteError(w http.ResponseWriter, status int, body ErrorBody) error {
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, status, body)
}

// writeAPIError answers with status and the error body (see ErrorBody)
// saying fmt.Sprintf(format, args...).
func writeAPIError(w http.ResponseWriter, status int, format string, args ...any) error {
	return WriteError(w, status, ErrorBody{Error: fmt.Sprintf(format, args...)})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (adminAPI) handlePurge(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodPost); err != nil {
		return err
	}
	app, err := runningApp()
	if err != nil {
		return err
	}
	var req PurgeRequest
	if err := decodeJSONBody(r, &req); err != nil {
		return err
	}
	if err := req.validate(); err != nil {
		return badRequest(err)
	}
	n, err := app.purge(&req, "admin")
	if cdnForwardFailed(err) {
		// The local purge stands; say what did not happen.
		return writeJSON(w, http.StatusOK, map[string]any{"purged": n, "cdn_error": err.Error()})
	}
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	return writeJSON(w, http.StatusOK, map[string]int{"purged": n})
}

// snapshotOnlyRequest is the body of PUT /craftedge/snapshot-only.
type snapshotOnlyRequest struct {
	Enabled  *bool  `json:"enabled"`
	Upstream string `json:"upstream,omitempty"`
}

func (adminAPI) handleSnapshotOnly(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodPut); err != nil {
		return err
	}
	app, err := runningApp()
	if err != nil {
		return err
	}
	var req snapshotOnlyRequest
	if err := decodeJSONBody(r, &req); err != nil {
		return err
	}
	if req.Enabled == nil {
		return badRequest(errors.New(`"enabled" (true or false) is required`))
	}
	if err := app.checkOverrideUpstream(req.Upstream, *req.Enabled); err != nil {
		return badRequest(err)
	}
	if err := app.setOverride(req.Upstream, *req.Enabled); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("storing override: %w", err)}
	}
	app.logger.Warn("snapshot-only override changed",
		zap.String("upstream", req.Upstream), zap.Bool("enabled", *req.Enabled))
	return writeJSON(w, http.StatusOK, app.killSwitchStatus())
}

func (adminAPI) handleHealth(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodGet); err != nil {
		return err
	}
	app, err := runningApp()
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, app.health())
}

// Health is the body of GET /craftedge/health.
type Health struct {
	Memory     any               `json:"memory"`
	WarmStart  WarmStartHealth   `json:"warm_start"`
	Snapshots  SnapshotHealth    `json:"snapshots"`
	Storage    StorageHealth     `json:"storage"`
	Upstreams  []UpstreamHealth  `json:"upstreams"`
	KillSwitch KillSwitchStatus  `json:"snapshot_only"`
	Served     map[string]uint64 `json:"served"`
	Jobs       *JobsHealth       `json:"jobs,omitempty"`
	Vendors    []VendorHealth    `json:"vendors,omitempty"`
	Cluster    *ClusterHealth    `json:"cluster,omitempty"`
	Time       time.Time         `json:"time"`
}

// SnapshotHealth describes the snapshot store.
type SnapshotHealth struct {
	Path        string `json:"path"`
	Count       int64  `json:"count"`
	Bytes       int64  `json:"bytes"`
	FileBytes   int64  `json:"file_bytes"`
	Pending     int    `json:"pending"`
	Written     uint64 `json:"written"`
	Dropped     uint64 `json:"dropped"`
	WriteErrors uint64 `json:"write_errors"`
	Evicted     uint64 `json:"evicted"`
}

// StorageHealth says whether the bbolt file is usable. A damaged file is
// moved aside and craftedge keeps serving from memory and the origin, with
// snapshots off and durable writes (jobs, outbox) refused, until a reload
// or restart opens a fresh file.
type StorageHealth struct {
	// Path is the configured bbolt file.
	Path string `json:"path"`
	// Damaged is true when the file was found damaged.
	Damaged bool `json:"damaged"`
	// Error is what was wrong with it.
	Error string `json:"error,omitempty"`
	// MovedTo is where the damaged file was moved (empty if moving it
	// failed; Error then says why).
	MovedTo string `json:"moved_to,omitempty"`
	// Since is when the damage was found.
	Since *time.Time `json:"since,omitempty"`
}

// JobsHealth is the job queue's depth and age (the age of the oldest ready
// job: the queue's lag).
type JobsHealth struct {
	Ready           int                       `json:"ready"`
	Running         int                       `json:"running"`
	Done            int                       `json:"done"`
	Dead            int                       `json:"dead"`
	QueueAgeSeconds float64                   `json:"queue_age_seconds"`
	Kinds           map[string]jobs.KindStats `json:"kinds"`
}

// UpstreamHealth describes one upstream's breaker and kill switch.
type UpstreamHealth struct {
	Name         string    `json:"name"`
	Breaker      string    `json:"breaker"`
	Since        time.Time `json:"since"`
	Opens        uint64    `json:"opens"`
	SnapshotOnly bool      `json:"snapshot_only"`
}

// KillSwitchStatus is the configured and overridden kill-switch state.
type KillSwitchStatus struct {
	// Configured is the global snapshot_only of the Caddyfile/JSON.
	Configured bool `json:"configured"`
	// Overrides are the admin overrides in force ("" = all upstreams).
	Overrides map[string]bool `json:"overrides"`
	// ClusterPending are changes made on this node that the cluster has
	// not stored yet (NATS unreachable); they apply here and are shared
	// when NATS is back. Absent without a cluster.
	ClusterPending map[string]bool `json:"cluster_pending,omitempty"`
}

func (a *App) killSwitchStatus() KillSwitchStatus {
	o := map[string]bool{}
	if p := a.overrides.Load(); p != nil {
		for k, v := range *p {
			o[k] = v
		}
	}
	return KillSwitchStatus{Configured: a.SnapshotOnly, Overrides: o, ClusterPending: a.pendingOverrides()}
}

func (a *App) health() Health {
	st := a.store.Stats()
	h := Health{
		Memory:    a.memory.Stats(),
		WarmStart: warmStartHealth(),
		Snapshots: SnapshotHealth{
			Path: a.Storage, Count: st.Count, Bytes: st.Bytes, FileBytes: st.FileBytes,
			Pending: st.Pending, Written: st.Written, Dropped: st.Dropped,
			WriteErrors: st.WriteErrors, Evicted: st.Evicted,
		},
		Storage:    a.storageHealth(),
		KillSwitch: a.killSwitchStatus(),
		Served: map[string]uint64{
			"bypass":   a.counters.bypassed.Load(),
			"stale":    a.counters.staleServed.Load(),
			"snapshot": a.counters.snapshotServed.Load(),
			"fallback": a.counters.fallbackServed.Load(),
			"purges":   a.counters.purges.Load(),
		},
		Time: nowFunc().UTC(),
	}
	if st, err := a.jobs.Stats(); err == nil {
		h.Jobs = &JobsHealth{
			Ready: st.Totals.Ready, Running: st.Totals.Running, Done: st.Totals.Done, Dead: st.Totals.Dead,
			QueueAgeSeconds: st.Totals.QueueAgeSeconds, Kinds: st.Kinds,
		}
	}
	h.Vendors = a.vendorsHealth()
	h.Cluster = a.clusterHealth()
	for _, u := range a.upstreamList() {
		state, since, opens := u.breaker.status()
		h.Upstreams = append(h.Upstreams, UpstreamHealth{
			Name: u.name, Breaker: state, Since: since.UTC(), Opens: opens,
			SnapshotOnly: a.SnapshotOnly || u.handlerSnapshotOnly || a.overrideOn(u.name),
		})
	}
	return h
}

// Interface guards.
var _ caddy.AdminRouter = adminAPI{}
