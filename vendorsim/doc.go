// Package vendorsim simulates the two vendor APIs a craftedge site depends
// on — an e-commerce product API and a CRM — over real HTTP, for tests,
// for `craftedge demo` and for the chaos suite. It needs nothing but the
// standard library and our webhook package.
//
// # APIs
//
// The e-commerce API (APICommerce) is pinned to version v2:
//
//	GET  /v2/products/{id}
//	GET  /v2/products?updated_since=<RFC3339>&page=<n>&per_page=<n>
//	PUT  /v2/products/{id}   upsert: 200 if it existed, 201 if created
//	POST /v2/products        create: 201, id assigned by the sim
//
// A product is
//
//	{"id":"3","sku":"SKU-3","title":{"en":"..."},"price":{"amount":1299,"currency":"EUR"},
//	 "stock":12,"version":7,"updated_at":"<RFC3339Nano>"}
//
// and a list page is {"data":[...],"page":n,"per_page":n,"has_more":bool,"total":N}.
//
// The CRM API (APICRM) is pinned to version v1 and shaped differently on
// purpose:
//
//	GET  /v1/contacts/{id}
//	GET  /v1/contacts?updated_since=<RFC3339>&page=<n>&per_page=<n>
//	PUT  /v1/contacts/{id}
//	POST /v1/contacts
//
// A contact is {"id":"c-1","email":"...","firstname":"...","lastname":"...",
// "version":3,"updatedAt":"<RFC3339Nano>"} and a list page is
// {"results":[...],"paging":{"next":{"page":n}}}; on the last page "paging"
// is {} (no "next").
//
// Lists hold only records whose updated timestamp is strictly greater than
// updated_since (all records when it is absent), ordered by (updated
// timestamp, id) ascending, ids compared as byte strings. Pages are 1-based;
// per_page defaults to 25 and must be 1..100. Paging is by offset, so a
// record updated during a sync moves to the end of the list, as with real
// vendors. Because the comparison is strict, records sharing the cursor's
// exact timestamp are skipped by a client that resumes from the last
// updated_at it saw: a correct client overlaps its cursor. With an injected
// clock that does not move, every update has the same timestamp.
//
// Errors are JSON in each vendor's own shape: commerce answers
// {"error":{"code":"not_found","message":"..."}}, the CRM
// {"status":"error","category":"OBJECT_NOT_FOUND","message":"..."}.
// Every API request needs "Authorization: Bearer <token>" with the API's
// token (Options.CommerceToken, Options.CRMToken), else 401. A request with
// an Accept-Version header other than the API's version ("v2", "v1") is
// refused with 400; responses carry API-Version.
//
// # Search index
//
// Every endpoint also serves a search index API in Meilisearch's document
// shapes (index.go: PUT/POST/DELETE/GET under /indexes/{index}/documents,
// GET /indexes/{index}/search), with its own bearer token
// (Options.IndexToken), idempotency keys and an effect log
// (Sim.IndexWrites), under the same chaos knobs: craftedge's tests push
// normalized records to it, since no search engine with an HTTP document
// API installs from the package registries the project uses.
//
// # Writes and idempotency
//
// PUT replaces a record's fields (id, version and the updated timestamp are
// managed by the sim and ignored in bodies; a body id that differs from the
// path is a 400) and bumps its version; POST creates. A write carrying an
// Idempotency-Key is performed once per (API, key): a repeat with the same
// method, path and body gets the first response again, byte for byte, with
// "Idempotent-Replayed: true" and no second effect; a repeat with a
// different request is refused with 422. Every effect is appended to a log
// (Sim.Writes) with its entity, key and raw body, in arrival order.
//
// # Chaos
//
// Each Endpoint (one network face of the Sim, see Sim.NewEndpoint) has its
// own Chaos knobs and request counters over the Sim's shared data, so a test
// can run two "regions" with different latency. Knobs: latency with jitter,
// an error rate (500/502/503), throttling (429 with Retry-After, for the
// next N requests or a fraction), a schema change that renames fields in
// responses, outages (close the connection, or hang until the client gives
// up) and lost write responses (the effect happens, the client sees 502).
// They are set from Go (Endpoint.Chaos) or over HTTP on every endpoint:
//
//	GET    /__sim/chaos      current knobs and the (Sim-wide) webhook drop rate
//	POST   /__sim/chaos      merge a JSON object into them (absent fields keep their value)
//	DELETE /__sim/chaos      all knobs off, drop rate 0
//	GET    /__sim/requests   request counters (Stats)
//	DELETE /__sim/requests   reset them
//
// A POST body names any of these fields (durations are Go duration strings
// or integer nanoseconds):
//
//	{"latency":"250ms","jitter":"50ms","error_rate":0.1,"throttle_next":3,
//	 "throttle_rate":0,"retry_after":"2s","schema_change":true,"outage":"close",
//	 "fail_after_write":0.2,"only":["/v1/"],"webhook_drop_rate":0.5}
//
// "outage" is "", "close" or "hang". The /__sim/ routes need no token, are never subject to chaos and are not
// counted.
//
// # Webhooks
//
// Sim.SendWebhook posts a signed event ({"type":"product.updated","id":"3",
// "version":8}) to a URL. Targets registered with AddWebhookTarget receive
// one for every change: synchronously, before Update returns, for changes
// made with Sim.Update, and in the background (see WaitWebhooks) for
// changes made through the API. SetWebhookDropRate makes a fraction of
// those automatic deliveries vanish; Webhooks lists what was sent and what
// was dropped.
//
// # Determinism
//
// Seed data, jitter, error and throttle rolls, drop rolls and delivery ids
// come from generators seeded with Options.Seed; time comes from
// Options.Now and latency waits go through Options.Sleep, so tests can run
// without real clocks. Concurrent requests still draw from the generators
// in arrival order.
package vendorsim
