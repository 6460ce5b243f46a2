package caddymodule

import (
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendors"
)

// The App's API for the records API (caddymodule/records, the
// craftedge_records handler): the stored vendor records it reads and the
// outbox it writes to. The records, their sealing and the outbox jobs stay
// the core's; the leaf holds the HTTP API and its authentication.

// Record returns the stored record of a vendor's resource, its sensitive
// fields opened. Errors: vendors.ErrNotFound, vendors.ErrInvalidRequest,
// and the sealed package's errors for a value that cannot be opened (see
// WriteRecordsReadError).
func (a *App) Record(vendor, resource, id string) (vendors.Record, error) {
	return a.records.Get(vendor, resource, id)
}

// ListRecords returns one page (from 1) of a resource's stored records
// updated at or after since (zero: all), perPage at most vendors.MaxPerPage.
// Errors as Record's.
func (a *App) ListRecords(vendor, resource string, since time.Time, page, perPage int) (vendors.Page, error) {
	return a.records.List(vendor, resource, since, page, perPage)
}

// KeepPrivate marks a read-model answer of a resource with sensitive fields
// "Cache-Control: private, no-store": it holds their opened values, so no
// shared cache (a craftedge handler in front, a CDN) may keep it.
func (a *App) KeepPrivate(hdr http.Header, vendor, resource string) {
	a.sealing.keepPrivate(hdr, vendor, resource)
}

// WriteRecordsReadError answers a failed read of Record or ListRecords: a
// value that cannot be opened is a 500 saying so (record, field and key
// go to logger, not to the reader, who may be anonymous); anything else a
// plain 500.
func WriteRecordsReadError(w http.ResponseWriter, logger *zap.Logger, err error) error {
	return recordsReadError(w, logger, err)
}

// OutboxWrite returns the request that enqueues an outbox job writing body
// (JSON) to a vendor's resource, to the record id ("" when the resource's
// upsert needs none): its kind, entity and payload, the body sealed at rest
// when the resource has a sensitive field. The caller sets Key and
// Correlation, and enqueues it on OutboxBackend.
func (a *App) OutboxWrite(vendor, resource, id string, body []byte) (jobs.EnqueueRequest, error) {
	payload, err := a.encodeOutboxPayload(vendor, resource, id, body)
	if err != nil {
		return jobs.EnqueueRequest{}, err
	}
	req := jobs.EnqueueRequest{Kind: jobKindOutbox, Payload: payload}
	if id != "" {
		req.Entity = vendor + ":" + resource + ":" + id
	}
	return req, nil
}

// OutboxBackend is where outbox writes are enqueued: the local job queue,
// or the cluster's outbox in cluster mode (writes are then refused with
// jobs.ErrUnavailable while NATS is unreachable; RefuseDurableWrite
// answers both).
func (a *App) OutboxBackend() jobs.OutboxBackend { return a.outboxBackend() }

// OutboxJob returns the outbox job id without its persisted context (which
// is the job handler's). A job of another kind is jobs.ErrNotFound, so the
// records API shows outbox jobs only; jobs.ErrInvalidID for a malformed id.
func (a *App) OutboxJob(id string) (jobs.Job, error) {
	job, err := a.outboxBackend().Get(id)
	if err != nil {
		return jobs.Job{}, err
	}
	if job.Kind != jobKindOutbox {
		return jobs.Job{}, jobs.ErrNotFound
	}
	job.Context = nil
	return job, nil
}

// RefuseDurableWrite answers a durable write ("outbox write") that the job
// queue refused with jobs.ErrUnavailable because the storage file is
// damaged: 503 with a body saying so, and an error log line.
func (a *App) RefuseDurableWrite(w http.ResponseWriter, what string, err error) error {
	return a.refuseDurableWrite(w, what, err)
}

// OutboxAccepted is the body of the 202 answer to an outbox write.
type OutboxAccepted struct {
	// Job is the outbox job's id.
	Job string `json:"job"`
	// State is the job's state when the answer was written.
	State jobs.State `json:"state"`
	// Location is where the job's state can be read.
	Location string `json:"location"`
}

// CollectionTag is the cache tag of a resource's list answers, purged
// whenever a sync, refetch or outbox write changes one of its records.
func CollectionTag(vendor, resource string) string { return collectionTag(vendor, resource) }

// RequestID returns Caddy's unique id of r ({http.request.uuid}), which a
// handler that enqueues a job sets as its Correlation, or "".
func RequestID(r *http.Request) string { return requestID(r) }

// WriteJSON answers with status and v as indented JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) error { return writeJSON(w, status, v) }
