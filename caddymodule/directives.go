package caddymodule

import "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

// The order of craftedge's HTTP directives in a site, set in this one
// place (not in each module's init, whose order follows file names: a
// rename would reorder the middleware). Plugins may only be ordered
// relative to Caddy's standard directives, and each call inserts right
// next to the standard one, so the calls below run in the reverse of the
// intended order within each anchor. The intended order is:
//
//	... basic_auth, forward_auth,
//	craftedge_webhook   webhook deliveries: never reach Craft, answered while its breaker is open
//	craftedge_status    the status page: answers while the upstream is down; never cached
//	craftedge_purge     remote purge: before the cache, never reaching Craft
//	... (request_header, rewrites, ...)
//	craftedge           the cache
//	craftedge_records   the records API, behind the cache (reads cached, writes bypassed)
//	encode, ..., reverse_proxy, php_fastcgi
//
// The golden adapt tests (testdata/caddyfile_adapt) show any change.
func init() {
	// After the authentication directives (basic_auth, forward_auth),
	// before the cache: these answer while the upstream is down or its
	// breaker open, and their requests are never classified, coalesced
	// or cached. Inserted right after forward_auth, last call first.
	httpcaddyfile.RegisterDirectiveOrder("craftedge_purge", httpcaddyfile.After, "forward_auth")
	httpcaddyfile.RegisterDirectiveOrder("craftedge_status", httpcaddyfile.After, "forward_auth")
	httpcaddyfile.RegisterDirectiveOrder("craftedge_webhook", httpcaddyfile.After, "forward_auth")

	// Before encode: the cache stores bodies compressed once and serves
	// them as they are; encode only sees bypassed and uncacheable
	// responses. Keys use the URL the client asked for, whatever rewrites
	// run earlier.
	httpcaddyfile.RegisterDirectiveOrder("craftedge", httpcaddyfile.Before, "encode")
	// Right after craftedge: a craftedge handler in the same route caches
	// the read-model responses (tagged by their Cache-Tag header, purged
	// when a sync changes a record), while writes, which craftedge
	// bypasses, reach this handler untouched. Before encode, like
	// craftedge, and so before reverse_proxy and php_fastcgi: /vendors/v1/
	// never reaches Craft.
	httpcaddyfile.RegisterDirectiveOrder("craftedge_records", httpcaddyfile.Before, "encode")
}
