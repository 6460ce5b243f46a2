// Package vendors is craftedge's edge towards the external vendor APIs a Craft
// site depends on (e-commerce, CRM, search). It knows nothing of Caddy: the
// caddymodule package converts its configuration into a Config and wires the
// Client, the Records store and Sync into handlers and durable jobs.
//
// # Contract
//
// Each vendor is described by a Config: its regional base URLs and pinned API
// version, the request headers that authenticate it, the limits every call
// obeys (timeout, token bucket, retries, hedge delay, circuit breaker), two
// feature flags (Enabled and Canary) and its resources. A Resource says how to
// get one item by id, how to list the items changed since a time page by
// page, how to upsert one, and how a vendor payload maps to a normalized
// Record (id, version, updated time, named fields, cache tags). Templates and
// the read-model API only ever see Records.
//
// # Client
//
// A Client is shared by every path that talks to one vendor: live reads
// (Get, Do), sync jobs (List through Sync), webhook refetches (Get) and outbox
// writes (Upsert). Every HTTP request it sends
//
//   - takes a token from the vendor's token bucket (one bucket per Client,
//     shared by all callers; waits are counted),
//   - runs under the vendor's circuit breaker (package circuit, shared with
//     the Craft upstreams: consecutive 5xx, 408 and timeouts open it only
//     when they span several paths, transport errors whatever the path; a
//     success, 4xx or 429 ends the run),
//   - has its own timeout (Config.Timeout, default 1s),
//   - carries the configured headers, which never appear in errors or logs.
//
// GETs are also coalesced (identical concurrent GETs share one upstream
// call), hedged across regions (if the first base URL has not answered after
// Config.HedgeDelay the same GET goes to the next one; the first good answer
// wins and the others are cancelled) and retried with exponential backoff and
// full jitter. A 429's Retry-After is honoured: the Client refuses further
// requests to the vendor until it has passed, a GET retry waits for it when it
// is within Retry.MaxRetryAfter, and otherwise the caller gets a
// *RateLimitedError carrying the delay so a job can reschedule. Writes
// (Upsert) are sent once, with an Idempotency-Key, and never retried here:
// retrying them is the durable job's business.
//
// # Records and Sync
//
// Records keeps normalized records in buckets named "records…" of the shared
// bbolt file, with an (updated time, id) index for the read-model API and the
// per-resource sync cursors. Sync runs one delta pass (or a backfill when no
// cursor exists) page by page, saving its progress after every page so an
// interrupted run resumes where it stopped.
//
// # Cluster mode
//
// Records.OnChange reports every committed record change, so cluster mode
// can publish it (MarshalReplica keeps sensitive fields sealed) and the
// other nodes apply it (ApplyReplica, with Put's rule and SourceCluster in
// the lineage). Client.SetQuota adds a budget shared with the other nodes
// (a cluster-wide rate limit), taken after the local token bucket's token.
//
// # Sensitive fields
//
// A resource's Sensitive fields are sealed at rest (Records.UseSealing, with
// a keyring of package sealed), re-sealed under a new key by Records.Reseal,
// and never quoted in errors: a vendor with a sensitive field has its error
// bodies withheld, and mapping errors on a sensitive field omit the value.
package vendors
