// Package cdn holds craftedge's CDN providers: Caddy modules in the
// craftedge.cdn namespace that translate a craftedge purge into a CDN's
// purge API requests.
//
//   - craftedge.cdn.cloudflare: Cloudflare's purge_cache (tags, hosts,
//     prefixes, files, purge_everything), 100 entries per request.
//   - craftedge.cdn.fastly: Fastly's surrogate-key batch purge (256 keys
//     per request), URL purge and purge_all; soft purges on request.
//   - craftedge.cdn.generic: one POST of craftedge's own purge JSON to a
//     URL of yours, with the headers you configure.
//
// Each module has its own config fields, Caddyfile syntax and checks. The
// core (package caddymodule) loads the one the cdn block names, as
// reverse_proxy loads its transport, and does everything else: the
// durable cdn.purge job, batching into calls, retries, Retry-After, dead
// letters, metrics (see caddymodule.CDNProvider). This package imports the
// core; the core never imports it. A third party adds a provider the same
// way, in its own package: register craftedge.cdn.<name> implementing
// caddymodule.CDNProvider, caddy.Provisioner, caddy.Validator and
// caddyfile.Unmarshaler, and build with it (xcaddy build --with …).
package cdn
