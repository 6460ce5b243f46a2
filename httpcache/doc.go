// Package httpcache holds craftedge's pure HTTP caching policy: which
// requests bypass the cache (RFC 9111 shared-cache rules plus Craft CMS
// awareness: control panel, actions, tokens, previews, sessions), how cache
// keys are built, how Cache-Control, freshness, Vary, cache tags,
// conditional requests and Accept-Encoding are interpreted.
//
// Everything here runs on the request hot path, so it scans strings by hand
// instead of using reflection, regular expressions or allocation-heavy
// helpers, and it knows nothing about Caddy. Rules types (BypassRules,
// KeyRules) are configured, compiled once, then safe for concurrent use.
package httpcache
