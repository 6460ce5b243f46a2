// Package records is the craftedge_records handler
// (http.handlers.craftedge_records): the read-model API of the synced
// vendor records under /vendors/v1/ and the outbox that writes to the
// vendors, with its authentication (a user set by basic_auth or
// forward_auth, bearer tokens) and its Caddyfile directive.
//
// The records, their encryption at rest, the outbox jobs and the directive
// order are the core's (caddymodule); this package reaches them through the
// craftedge app (ctx.App("craftedge")) and its exported API. The root
// package blank-imports it.
package records
