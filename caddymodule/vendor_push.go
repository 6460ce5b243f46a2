package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendors"
)

// A resource's push targets send its normalized records to other
// configured vendors (a search index, an analytics endpoint) on every
// change: a vendor.push job per changed record and target, ordered per
// record (the job's entity), keyed by the record's version (a sync
// listing it again adds nothing), sent through the target vendor's client
// (its breaker, token bucket and timeout) with the job's key as
// Idempotency-Key. The job pushes the record as stored when it runs, and
// only if it is still the version the job was enqueued for: a later
// change has its own job behind it, so a record that changed three times
// while the index was down reaches it once, at its last version, and a
// deletion is pushed as a delete.

// Job kinds of the push targets.
const (
	jobKindPush    = "vendor.push"
	jobKindReindex = "vendor.reindex"
)

func init() {
	registerJobKind(jobKindPush, jobs.KindConfig{
		Concurrency: 4, BaseBackoff: time.Second, MaxBackoff: 15 * time.Minute,
		MaxAttempts: 20, Timeout: time.Minute,
	}, func(a *App) jobs.Handler { return jobs.Single(a.runPush) })
	registerJobKind(jobKindReindex, jobs.KindConfig{
		Concurrency: 1, BaseBackoff: 5 * time.Second, MaxBackoff: 10 * time.Minute,
		MaxAttempts: 10, Timeout: time.Hour,
	}, func(a *App) jobs.Handler { return jobs.Single(a.runReindex) })
}

// VendorPush sends a resource's records to another configured vendor
// (`push <vendor> [<preset> <index>] { ... }` in the resource block). The
// request shapes start from Preset (with Index) and the other fields
// override them; without a preset, Path is required. See
// docs/reference/vendor.md#push.
type VendorPush struct {
	// Vendor is the configured vendor receiving the records: its base
	// URL, headers (the index's API key), timeout, rate and breaker apply.
	Vendor string `json:"vendor"`
	// Preset fills the request shapes of a known engine: meilisearch,
	// typesense, algolia or elasticsearch (also OpenSearch). Needs Index.
	Preset string `json:"preset,omitempty"`
	// Index is the preset's index (collection) name.
	Index string `json:"index,omitempty"`
	// Method is the upsert method: PUT (default), POST or PATCH.
	Method string `json:"method,omitempty"`
	// Path is the upsert path under the vendor's base URL, with {id} where
	// the engine wants the record id.
	Path string `json:"path,omitempty"`
	// DeleteMethod is the delete method. Default DELETE.
	DeleteMethod string `json:"delete_method,omitempty"`
	// DeletePath is the delete path, usually with {id}. Empty sends a
	// deletion as an upsert of the record marked deleted (for event
	// endpoints).
	DeletePath string `json:"delete_path,omitempty"`
	// Body is "document" (default: the fields and the id, flat) or
	// "record" (the normalized record as the read-model API shows it).
	Body string `json:"body,omitempty"`
	// IDField is the document's id field. Default "id".
	IDField string `json:"id_field,omitempty"`
	// Array sends the document as a one-element JSON array.
	Array bool `json:"array,omitempty"`
	// Fields, if set, are the only fields sent. Sensitive fields are never
	// sent unless named here.
	Fields []string `json:"fields,omitempty"`
}

// spec returns the vendors.PushSpec of p: the preset's, overridden.
func (p *VendorPush) spec() (vendors.PushSpec, error) {
	var s vendors.PushSpec
	if p.Preset != "" {
		var err error
		if s, err = vendors.PushPreset(p.Preset, p.Index); err != nil {
			return s, err
		}
	} else if p.Index != "" {
		return s, errors.New("index needs a preset (or write the path with the index name)")
	}
	over := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	over(&s.Method, p.Method)
	over(&s.Path, p.Path)
	over(&s.DeleteMethod, p.DeleteMethod)
	over(&s.DeletePath, p.DeletePath)
	over(&s.Body, p.Body)
	over(&s.IDField, p.IDField)
	s.Array = s.Array || p.Array
	s.Fields = p.Fields
	if err := s.Validate(); err != nil {
		return s, err
	}
	return s.WithDefaults(), nil
}

// pushTarget is one provisioned push target of a resource.
type pushTarget struct {
	vendor string // the target vendor
	spec   vendors.PushSpec
	client *vendors.Client
	// drop are the source resource's sensitive fields not named in
	// spec.Fields: never sent.
	drop []string
}

// pushState is a config's push targets and the per-record locks shared by
// push jobs and rebuilds.
type pushState struct {
	// targets by source vendor, resource, then target vendor.
	targets map[string]map[string]map[string]*pushTarget
	locks   *[pushLockStripes]sync.Mutex
}

// pushLockStripes is the number of per-record locks (striped by hash).
const pushLockStripes = 64

// pushLocks are shared across reloads: a push job of the old config and
// a rebuild of the new one hold the same lock for one record.
var pushLocks [pushLockStripes]sync.Mutex

// lock locks the record's stripe: reading the record and pushing it is
// one step, so two pushes of a record never overtake each other.
func (s *pushState) lock(entity string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(entity))
	mu := &s.locks[h.Sum32()%pushLockStripes]
	mu.Lock()
	return mu.Unlock
}

// provisionPush checks every resource's push targets (called after the
// vendor clients exist).
func (a *App) provisionPush() error {
	st := &pushState{targets: map[string]map[string]map[string]*pushTarget{}, locks: &pushLocks}
	n := 0
	for _, vn := range sortedKeys(a.Vendors) {
		for _, rn := range sortedKeys(a.Vendors[vn].Resources) {
			r := a.Vendors[vn].Resources[rn]
			if r == nil || len(r.Push) == 0 {
				continue
			}
			for i, p := range r.Push {
				where := fmt.Sprintf("vendor %q: resource %q: push[%d]", vn, rn, i)
				if p == nil || p.Vendor == "" {
					return fmt.Errorf("craftedge: %s: the target vendor is required", where)
				}
				where = fmt.Sprintf("vendor %q: resource %q: push %q", vn, rn, p.Vendor)
				client, ok := a.vendorClients[p.Vendor]
				if !ok {
					return fmt.Errorf("craftedge: %s: no vendor %q is configured (define it with its base_url, rate and header)", where, p.Vendor)
				}
				if st.targets[vn][rn][p.Vendor] != nil {
					return fmt.Errorf("craftedge: %s: the resource pushes to this vendor twice", where)
				}
				spec, err := p.spec()
				if err != nil {
					return fmt.Errorf("craftedge: %s: %w", where, err)
				}
				t := &pushTarget{vendor: p.Vendor, spec: spec, client: client}
				for _, f := range r.Sensitive {
					if !slices.Contains(spec.Fields, f) {
						t.drop = append(t.drop, f)
					}
				}
				if st.targets[vn] == nil {
					st.targets[vn] = map[string]map[string]*pushTarget{}
				}
				if st.targets[vn][rn] == nil {
					st.targets[vn][rn] = map[string]*pushTarget{}
				}
				st.targets[vn][rn][p.Vendor] = t
				n++
			}
		}
	}
	if n == 0 {
		return nil
	}
	a.push = st
	st.initSeries()
	if err := registerCollectors(a.ctx.GetMetricsRegistry(), pushCollectors()...); err != nil {
		return fmt.Errorf("craftedge: registering push metrics: %w", err)
	}
	return nil
}

// target returns a provisioned push target.
func (a *App) pushTarget(vendor, resource, target string) (*pushTarget, bool) {
	if a.push == nil {
		return nil, false
	}
	t, ok := a.push.targets[vendor][resource][target]
	return t, ok
}

// recordsChanged is what follows a record change (sync, webhook refetch,
// outbox answer, delete): the downloads of its media files and the pushes
// to its resource's targets.
func (a *App) recordsChanged(ctx context.Context, recs []vendors.Record) error {
	if err := a.mediaChanged(ctx, recs); err != nil {
		return err
	}
	return a.pushChanged(ctx, recs)
}

// pushPayload is the payload of a vendor.push job: the record and the
// state it had when the job was enqueued (never its fields).
type pushPayload struct {
	Vendor    string    `json:"vendor"`
	Resource  string    `json:"resource"`
	ID        string    `json:"id"`
	Target    string    `json:"target"`
	Version   string    `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
	Deleted   bool      `json:"deleted,omitempty"`
}

// pushEntity orders the pushes of one record to one target.
func pushEntity(target, vendor, resource, id string) string {
	return boundedKey(target + ":" + vendor + ":" + resource + ":" + id)
}

// boundedKey keeps a job key or entity within the queue's 1024 bytes: a
// long one (a long record id) is replaced by its hash.
func boundedKey(s string) string {
	if len(s) <= 512 {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// pushRequest is the enqueue request pushing rec's current state to
// target. Its key names the state (version, updated time, deletion), so
// the same state listed again joins the job already enqueued. A live
// record seen again after a deletion may be in the very state it had
// before it (same version and updated time: the vendor undid the
// deletion, or a lagging replica answered 404 for a while), so a live
// state's key also names the latest deletion in its lineage (deleted, the
// Seq of that change; 0 if none): it must not join the done job of its
// first upsert, which would leave the index without the record.
func pushRequest(rec vendors.Record, target string, deleted uint64) jobs.EnqueueRequest {
	p := pushPayload{Vendor: rec.Vendor, Resource: rec.Resource, ID: rec.ID, Target: target,
		Version: rec.Version, UpdatedAt: rec.UpdatedAt.UTC(), Deleted: rec.Deleted}
	payload, _ := json.Marshal(p)
	state := recordState(rec)
	if !rec.Deleted && deleted > 0 {
		state += ":after-delete-" + strconv.FormatUint(deleted, 10)
	}
	entity := pushEntity(target, rec.Vendor, rec.Resource, rec.ID)
	return jobs.EnqueueRequest{Kind: jobKindPush, Key: "push:" + boundedKey(entity+":"+state), Entity: entity, Payload: payload}
}

// recordState names a record's state in push keys: its version, updated
// time and deletion. The version is the vendor's string: its ":" and "%"
// are escaped, so a key read from the right (fixed suffixes, the time, the
// version) names one record and one state (id "a:1" with version "2" and id
// "a" with version "1:2" do not share a key); other keys are unchanged.
func recordState(rec vendors.Record) string {
	state := pushKeyVersion.Replace(rec.Version) + ":" + strconv.FormatInt(rec.UpdatedAt.UTC().UnixNano(), 10)
	if rec.Deleted {
		state += ":deleted"
	}
	return state
}

// pushKeyVersion escapes a version for recordState.
var pushKeyVersion = strings.NewReplacer("%", "%25", ":", "%3A")

// pushChanged enqueues a vendor.push job per record and target.
func (a *App) pushChanged(ctx context.Context, recs []vendors.Record) error {
	if a.push == nil {
		return nil
	}
	var pushed []vendors.Record
	for _, rec := range recs {
		if len(a.push.targets[rec.Vendor][rec.Resource]) > 0 {
			pushed = append(pushed, rec)
		}
	}
	if len(pushed) == 0 {
		return nil
	}
	deletions, err := a.records.LastDeletions(pushed)
	if err != nil {
		return fmt.Errorf("push: reading the records' lineage: %w", err)
	}
	var reqs []jobs.EnqueueRequest
	for i, rec := range pushed {
		for _, tn := range sortedKeys(a.push.targets[rec.Vendor][rec.Resource]) {
			reqs = append(reqs, pushRequest(rec, tn, deletions[i]))
		}
	}
	if _, err := a.jobs.EnqueueBatch(ctx, reqs); err != nil {
		return fmt.Errorf("push: enqueueing: %w", err)
	}
	return nil
}

// Push outcomes (craftedge_push_total's outcome label).
const (
	pushOK           = "ok"           // upserted
	pushDeleted      = "deleted"      // pushed as a delete
	pushSuperseded   = "superseded"   // the record changed again; a later job pushes it
	pushError        = "error"        // transport, timeout, 5xx, 429 (retried)
	pushBreakerOpen  = "breaker_open" // the target's breaker is open (retried)
	pushRejected     = "rejected"     // a 4xx or a bad request (dead-lettered)
	pushUnconfigured = "unconfigured" // the target is gone from the config (dead-lettered)
)

var pushOutcomes = []string{pushOK, pushDeleted, pushSuperseded, pushError, pushBreakerOpen, pushRejected, pushUnconfigured}

// pushOutcome classifies a Push error.
func pushOutcome(err error, deleted bool) string {
	switch {
	case err == nil && deleted:
		return pushDeleted
	case err == nil:
		return pushOK
	case errors.Is(err, vendors.ErrBreakerOpen):
		return pushBreakerOpen
	case vendors.IsPermanent(err):
		return pushRejected
	}
	return pushError
}

// runPush pushes one record to one target, if it is still in the state
// the job was enqueued for.
func (a *App) runPush(ctx context.Context, t *jobs.Task) error {
	var p pushPayload
	if err := json.Unmarshal(t.Job.Payload, &p); err != nil {
		return jobs.Permanent(fmt.Errorf("vendor.push: bad payload: %w", err))
	}
	if t.Job.Attempts <= 1 {
		observePushQueueAge(p.Target, nowFunc().Sub(t.Job.CreatedAt))
	}
	target, ok := a.pushTarget(p.Vendor, p.Resource, p.Target)
	if !ok {
		observePush(p.Target, pushUnconfigured)
		return jobs.Permanent(fmt.Errorf("vendor.push: %s/%s no longer pushes to %q", p.Vendor, p.Resource, p.Target))
	}
	unlock := a.push.lock(pushEntity(p.Target, p.Vendor, p.Resource, p.ID))
	defer unlock()
	rec, err := a.records.Get(p.Vendor, p.Resource, p.ID)
	if errors.Is(err, vendors.ErrNotFound) {
		observePush(p.Target, pushSuperseded)
		return nil
	}
	if err != nil {
		return fmt.Errorf("vendor.push: reading the record: %w", err)
	}
	if rec.Version != p.Version || rec.Deleted != p.Deleted || !rec.UpdatedAt.Equal(p.UpdatedAt) {
		observePush(p.Target, pushSuperseded)
		return nil
	}
	err = a.pushRecord(ctx, target, rec, t.IdempotencyKey())
	if err != nil {
		a.logger.Info("push failed", zap.String("vendor", p.Vendor), zap.String("resource", p.Resource),
			zap.String("id", p.ID), zap.String("target", p.Target), zap.String("job", t.Job.ID), zap.Error(err))
	}
	return vendorJobError(err)
}

// pushRecord sends rec (its sensitive fields dropped) to target and counts
// the outcome.
func (a *App) pushRecord(ctx context.Context, target *pushTarget, rec vendors.Record, key string) error {
	if len(target.drop) > 0 && len(rec.Fields) > 0 {
		fields := make(map[string]any, len(rec.Fields))
		for k, v := range rec.Fields {
			if !slices.Contains(target.drop, k) {
				fields[k] = v
			}
		}
		rec.Fields = fields
	}
	err := target.client.Push(ctx, target.spec, rec.Resource, rec, key)
	observePush(target.vendor, pushOutcome(err, rec.Deleted))
	return err
}
