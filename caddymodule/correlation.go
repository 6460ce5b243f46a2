package caddymodule

import (
	"context"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/jobs"
)

// Correlated logs: one grep for a request id follows a write or a webhook
// from the HTTP request to the job it enqueued, the job's attempts, and
// the purges the job caused.
//
//   - The request id is Caddy's {http.request.uuid} (requestID). Reading
//     it also adds it to the request's access log as "uuid".
//   - Handlers that enqueue a job from a request set
//     EnqueueRequest.Correlation to requestID(r) and log the job id with
//     it (craftedge_records' outbox writes do; a webhook handler should).
//   - Workers log every attempt with job_id, kind, attempt and request_id
//     (the job's correlation): "job started" (debug), "job done" (info),
//     "job attempt failed; will retry" (warn), "job dead-lettered" (error).
//   - A job's side effects log the same fields: purgeFor(ctx, …) logs the
//     "purged" line with the job's fields, taken from the handler's
//     context (jobs.RefFrom).

// requestID returns Caddy's unique id of r ({http.request.uuid}), or ""
// for a request that did not come through Caddy's HTTP server.
func requestID(r *http.Request) string {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return ""
	}
	id, _ := repl.GetString("http.request.uuid")
	return id
}

// jobLogFields returns the log fields of the job whose handler ctx
// belongs to (job_id, kind, attempt, request_id), or nil outside a job.
func jobLogFields(ctx context.Context) []zap.Field {
	if ref, ok := jobs.RefFrom(ctx); ok {
		return ref.LogFields()
	}
	return nil
}

// purgeFor is purge on behalf of the job running in ctx: its "purged" log
// line carries the job's fields, so a purge can be traced to the job (and
// the request) that caused it.
func (a *App) purgeFor(ctx context.Context, p *PurgeRequest, source string) (int, error) {
	if ref, ok := jobs.RefFrom(ctx); ok {
		return a.purgeLogged(p, source, &ref)
	}
	return a.purgeLogged(p, source, nil)
}
