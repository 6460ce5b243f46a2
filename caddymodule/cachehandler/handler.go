// Package cachehandler holds the craftedge handler (http.handlers.craftedge,
// the craftedge directive): it classifies requests (bypass rules), keys
// them, builds the upstream request from the key alone, calls the upstream
// once per key under its breaker and timeout, stores cacheable responses
// and serves hits, stale copies, snapshots and the fallback. The state it
// shares with every handler of a config (memory tier, snapshot store,
// breakers, kill switch, vendor clients, metrics) is the core's
// (caddymodule), reached through its App API (leaf_api_cache.go); the
// policies are the Caddy-free httpcache and pagecache.
package cachehandler

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/caddymodule/internal/clock"
	"github.com/craftedge/craftedge/circuit"
	"github.com/craftedge/craftedge/httpcache"
	"github.com/craftedge/craftedge/pagecache"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// nowFunc is the handler's clock: see package clock (tests move it).
func nowFunc() time.Time { return clock.Now() }

// Handler defaults.
const (
	defaultTTL          = 5 * time.Minute
	defaultStale        = 24 * time.Hour
	defaultTimeout      = 10 * time.Second
	defaultStaleAfter   = 300 * time.Millisecond
	defaultMaxEntrySize = 4 << 20
	maxGraphQLBody      = 64 << 10
)

// Handler caches the responses of the handlers after it (php_fastcgi or
// reverse_proxy in front of Craft) by URL and tag, serves stale copies and
// snapshots when the upstream fails or its breaker is open, and obeys the
// kill switch. Requests Craft must see live (control panel, actions,
// previews, logged-in visitors...) pass through untouched.
type Handler struct {
	// Upstream names the upstream behind this handler; it names the
	// circuit breaker and the kill-switch override. Default "default", or
	// the vendor's name when Vendor is set.
	Upstream string `json:"upstream,omitempty"`

	// Vendor names a vendor of the global craftedge block. Cacheable
	// requests then go to the vendor through its client (credentials
	// injected, breaker, rate limit, retries, hedging) instead of the next
	// handler: the request's path (after handle_path or a rewrite) and
	// query are read under the vendor's versioned base URL. Visitors'
	// credentials and cookies are never forwarded, so responses are shared;
	// Craft's bypass rules do not apply, and methods other than GET and
	// HEAD are refused with 405 (writes go through craftedge_records).
	// No header of the visitor's is forwarded unless keyed (key_header).
	Vendor string `json:"vendor,omitempty"`

	// VendorPaths are the vendor paths (after handle_path or a rewrite)
	// this live route may read: exact, or a prefix when ending in "*".
	// Other paths get 404 without a vendor call. Default: the paths of
	// the vendor's resources (each get path up to its id as a prefix, each
	// list path without its query); "/*" opens the vendor's whole API.
	VendorPaths []string `json:"vendor_paths,omitempty"`

	// TTL is how long a response is fresh when the origin sends no
	// freshness (no s-maxage, max-age or Expires), as Craft usually does.
	// Absent: 5m. Zero ("ttl 0" or "ttl off") caches only what the origin
	// marks fresh: a response without explicit freshness is still stored,
	// but stale from the start, so every request for it goes to the origin
	// (conditionally when it has a validator) and the copy serves only when
	// the origin fails (see Stale) or as a snapshot.
	TTL *caddy.Duration `json:"ttl,omitempty"`

	// Stale is how long past freshness a memory copy may still be served
	// when the upstream fails, unless the response's own stale-if-error
	// says otherwise. Absent: 24h. Zero never serves a stale memory copy on
	// errors (snapshots, bounded by snapshot_max_age, still are). It never
	// applies to a response that forbids stale serving (no-cache,
	// must-revalidate, proxy-revalidate, s-maxage).
	Stale *caddy.Duration `json:"stale,omitempty"`

	// Timeout bounds the upstream call for cacheable requests (until the
	// whole response is buffered). Default 10s; zero has no meaning for a
	// timeout, so 0 (or absent) in JSON is the default and "timeout 0" in
	// a Caddyfile is an error.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// StaleAfter is how long a request waits for the upstream when the
	// memory copy of its page is past freshness but may still be served
	// stale (within Stale, or the response's own stale-if-error): then it
	// is answered with that copy, "Cache-Status: craftedge; fwd=stale;
	// detail=stale-after", while the upstream call goes on in the
	// background (one call per key, bounded by Timeout) and its response
	// refreshes the copy; the circuit breaker records the call's outcome
	// as usual. While the upstream is known slow (a call has not answered
	// within StaleAfter, and none has answered within it since), such
	// requests get the copy at once. Absent: 300ms (off when Timeout is
	// not longer). Zero
	// ("stale_after 0" or "stale_after off") never answers before the
	// upstream does. It never serves a copy whose origin forbade stale
	// serving, a copy a hard purge removed, or a snapshot promoted into
	// memory whose snapshot a purge had marked stale (other promoted
	// snapshots answer, "detail=stale-after-snapshot"); a copy a soft purge
	// marked stale (purge_mode, the default) answers,
	// "detail=stale-after-purged". Private responses are never stored,
	// so never served this way. It must be shorter than Timeout.
	StaleAfter *caddy.Duration `json:"stale_after,omitempty"`

	// Breaker sets the thresholds of the upstream's circuit breaker (see
	// package circuit: consecutive failures spread over distinct paths
	// open it; one failing page never does). Handlers naming the same
	// upstream must agree on it.
	Breaker circuit.Config `json:"breaker,omitzero"`

	// ServeStaleDespiteOrigin lets the fallback chain (stale memory copy,
	// snapshot) serve a copy whose origin forbade serving it stale
	// (no-cache, must-revalidate, proxy-revalidate, s-maxage; RFC 9111
	// §4.2.4) when the upstream fails, its breaker is open or the kill
	// switch is on. Off by default: such pages then get the fallback or an
	// error, as the RFC requires. Such serves are labelled
	// "detail=stale-prohibited-override" or
	// "detail=snapshot-prohibited-override" in Cache-Status.
	ServeStaleDespiteOrigin bool `json:"serve_stale_despite_origin,omitempty"`

	// SnapshotOnly is this handler's kill switch: cacheable requests never
	// reach the upstream; they are served from memory, snapshots or the
	// fallback.
	SnapshotOnly bool `json:"snapshot_only,omitempty"`

	// BlockBypassWhenSnapshotOnly makes bypassed requests (control panel,
	// logged-in editors...) fail with 503 while the kill switch is on,
	// instead of passing through to the upstream.
	BlockBypassWhenSnapshotOnly bool `json:"block_bypass_when_snapshot_only,omitempty"`

	// CPTrigger is Craft's control panel trigger (cpTrigger). Default "admin".
	CPTrigger string `json:"cp_trigger,omitempty"`

	// ActionTrigger is Craft's action trigger (the actionTrigger general
	// config setting), one path segment: requests under it (also after a
	// site's base path segment, or routed there by a "p" query parameter)
	// are controller actions and bypass the cache. Default "actions". An
	// "action" query parameter and Craft's login, logout, set-password and
	// verify-email paths bypass whatever it is.
	ActionTrigger string `json:"action_trigger,omitempty"`

	// BypassPaths are extra paths that are never cached: exact, or a
	// prefix when ending in "*".
	BypassPaths []string `json:"bypass_paths,omitempty"`

	// BypassCookies are extra cookie names whose presence bypasses the
	// cache: exact, or a prefix when ending in "*".
	BypassCookies []string `json:"bypass_cookies,omitempty"`

	// BypassQuery are extra query parameters whose presence bypasses the
	// cache.
	BypassQuery []string `json:"bypass_query,omitempty"`

	// BypassHeaders are extra request headers whose presence bypasses the
	// cache.
	BypassHeaders []string `json:"bypass_headers,omitempty"`

	// IgnoreQuery are query parameters dropped from cache keys, on top of
	// the built-in tracking parameters (utm_*, gclid, fbclid...): exact, or
	// a prefix when ending in "*".
	IgnoreQuery []string `json:"ignore_query,omitempty"`

	// KeyHeaders are request headers Craft renders by (for example a
	// header your templates read): their values, normalized, become part of
	// the cache key and only then are they sent upstream. No other visitor
	// header reaches the upstream on a cacheable request (README: What
	// reaches Craft). Cookie, Authorization and Host are refused here: use
	// KeyCookies for cookies.
	KeyHeaders []string `json:"key_headers,omitempty"`

	// KeyCookies are cookie names Craft renders by (a currency or region
	// cookie): their values become part of the cache key and those cookies
	// alone are sent upstream. Visitors' other cookies never reach the
	// upstream on a cacheable request. Names are matched as PHP reads them.
	KeyCookies []string `json:"key_cookies,omitempty"`

	// TagHeaders are the response headers cache tags are read from.
	// Default: Cache-Tag, Surrogate-Key, Xkey, Cache-Tags, Edge-Cache-Tag.
	TagHeaders []string `json:"tag_headers,omitempty"`

	// ExposeTags keeps the tag headers on responses to clients (they are
	// stripped by default).
	ExposeTags bool `json:"expose_tags,omitempty"`

	// Fallback is served when neither a stale copy nor a snapshot exists
	// and the upstream cannot answer.
	Fallback *Fallback `json:"fallback,omitempty"`

	// MaxEntrySize is the largest response body that is cached; larger
	// responses stream through uncached. Default 4 MiB.
	MaxEntrySize int64 `json:"max_entry_size,omitempty"`

	// GraphQL is the path of Craft's GraphQL endpoint. POSTed queries to it
	// are cached, keyed by the body and the Authorization token; mutations
	// pass through.
	GraphQL string `json:"graphql,omitempty"`

	// ESI turns on edge-side includes (see ESIConfig): pages whose
	// upstream opts in are stored as templates and assembled per request
	// from separately cached fragments. Absent: off (no body is parsed and
	// Surrogate-Capability is not sent).
	ESI *ESIConfig `json:"esi,omitempty"`

	// ttl and stale are TTL and Stale resolved (defaults applied);
	// staleAfter is StaleAfter resolved (0: off).
	ttl, stale, staleAfter time.Duration
	// upstreamSlow is set while the upstream is known slow: a call has
	// not answered within staleAfter and none has answered within it
	// since (see fetchOrStaleAfter).
	upstreamSlow *atomic.Bool

	app    *caddymodule.App
	logger *zap.Logger
	// breaker is the upstream's circuit breaker, shared by the handlers
	// naming the same upstream.
	breaker  *circuit.Breaker
	bypass   httpcache.BypassRules
	keys     httpcache.KeyRules
	flights  *singleflight.Group
	fallback []byte
	metrics  handlerMetrics
	// vendorProxy replaces the next handler when Vendor is set.
	vendorProxy caddyhttp.Handler
	// esi is the resolved ESI state (limits, learnt private fragments,
	// fragment flights); esiOn reports that ESI is configured. Entries
	// stored with a template are assembled even when it is not.
	esi   *esiState
	esiOn bool
}

// Fallback is the response of last resort.
type Fallback struct {
	// Status is the HTTP status of the fallback response. Default 503.
	Status int `json:"status,omitempty"`

	// Body is the fallback body.
	Body string `json:"body,omitempty"`

	// File is a file whose content is the fallback body (read at load).
	File string `json:"file,omitempty"`

	// ContentType of the body. Default text/html; charset=utf-8.
	ContentType string `json:"content_type,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.craftedge",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults and attaches to the craftedge app.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.flights = new(singleflight.Group)
	if h.Upstream == "" {
		h.Upstream = "default"
		if h.Vendor != "" {
			h.Upstream = h.Vendor
		}
	}
	h.ttl, h.stale = defaultTTL, defaultStale
	if h.TTL != nil {
		h.ttl = time.Duration(*h.TTL)
	}
	if h.Stale != nil {
		h.stale = time.Duration(*h.Stale)
	}
	if h.Timeout == 0 {
		h.Timeout = caddy.Duration(defaultTimeout)
	}
	if h.MaxEntrySize == 0 {
		h.MaxEntrySize = defaultMaxEntrySize
	}
	h.upstreamSlow = new(atomic.Bool)
	h.staleAfter = defaultStaleAfter
	if h.StaleAfter != nil {
		h.staleAfter = time.Duration(*h.StaleAfter)
		if h.staleAfter > 0 && h.staleAfter >= time.Duration(h.Timeout) {
			return fmt.Errorf("craftedge: stale_after (%s) must be shorter than timeout (%s): the timeout would always answer first", h.staleAfter, time.Duration(h.Timeout))
		}
	} else if h.staleAfter >= time.Duration(h.Timeout) {
		h.staleAfter = 0
	}
	if err := h.Breaker.Validate(); err != nil {
		return fmt.Errorf("craftedge: %w", err)
	}
	h.Breaker = h.Breaker.WithDefaults()
	if len(h.TagHeaders) == 0 {
		h.TagHeaders = httpcache.DefaultTagHeaders
	}
	for i, name := range h.TagHeaders {
		h.TagHeaders[i] = http.CanonicalHeaderKey(name)
	}
	h.bypass = httpcache.BypassRules{
		CPTrigger:     h.CPTrigger,
		ActionTrigger: h.ActionTrigger,
		Paths:         h.BypassPaths,
		Cookies:       h.BypassCookies,
		Query:         h.BypassQuery,
		Headers:       h.BypassHeaders,
		GraphQLPath:   h.GraphQL,
	}
	if err := h.bypass.Compile(); err != nil {
		return fmt.Errorf("craftedge: bypass rules: %w", err)
	}
	if err := h.compileKeyedFields(); err != nil {
		return err
	}
	h.keys = httpcache.KeyRules{IgnoreQuery: h.IgnoreQuery}
	if err := h.keys.Compile(); err != nil {
		return fmt.Errorf("craftedge: ignore_query: %w", err)
	}
	if h.Fallback != nil {
		if h.Fallback.Status == 0 {
			h.Fallback.Status = http.StatusServiceUnavailable
		}
		if h.Fallback.ContentType == "" {
			h.Fallback.ContentType = "text/html; charset=utf-8"
		}
		h.fallback = []byte(h.Fallback.Body)
		if h.Fallback.File != "" {
			b, err := os.ReadFile(h.Fallback.File)
			if err != nil {
				return fmt.Errorf("craftedge: fallback file: %w", err)
			}
			h.fallback = b
		}
	}

	appIface, err := ctx.App("craftedge")
	if err != nil {
		return fmt.Errorf("craftedge: loading app: %w", err)
	}
	h.app = appIface.(*caddymodule.App)
	h.MaxEntrySize = effectiveMaxEntrySize(h.app, h.MaxEntrySize, h.logger)
	if h.Vendor != "" {
		client, vc, ok := h.app.VendorClient(h.Vendor)
		if !ok {
			return fmt.Errorf("craftedge: vendor %q is not configured in the global craftedge block", h.Vendor)
		}
		if len(h.BypassPaths)+len(h.BypassCookies)+len(h.BypassQuery)+len(h.BypassHeaders) > 0 || h.CPTrigger != "" || h.ActionTrigger != "" || h.GraphQL != "" {
			return fmt.Errorf("craftedge: vendor %q: bypass_*, cp_trigger, action_trigger and graphql do not apply to a live vendor route (visitors' credentials are never forwarded; scope it with vendor paths)", h.Vendor)
		}
		paths := h.VendorPaths
		if len(paths) == 0 {
			paths = defaultVendorPaths(vc)
		}
		rules, err := httpcache.CompilePathRules(paths)
		if err != nil {
			return fmt.Errorf("craftedge: vendor %q paths: %w", h.Vendor, err)
		}
		h.vendorProxy = &vendorProxy{client: client, paths: rules, tagHeaders: h.TagHeaders,
			sensitiveKeys: client.Config().SensitiveKeys()}
	} else if len(h.VendorPaths) > 0 {
		return fmt.Errorf("craftedge: vendor paths need a vendor")
	}
	h.breaker, err = h.app.UpstreamBreaker(h.Upstream, h.Breaker, h.SnapshotOnly)
	if err != nil {
		return fmt.Errorf("craftedge: %w", err)
	}
	h.metrics = newHandlerMetrics(h.Upstream)
	if err := caddymodule.RegisterESIMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("craftedge: registering ESI metrics: %w", err)
	}
	if err := h.provisionESI(); err != nil {
		return err
	}
	if h.esiOn && h.Vendor != "" {
		return fmt.Errorf("craftedge: esi does not apply to a live vendor route")
	}
	return nil
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	if h.TTL != nil && *h.TTL < 0 {
		return fmt.Errorf("craftedge: ttl must not be negative, got %s", time.Duration(*h.TTL))
	}
	if h.Stale != nil && *h.Stale < 0 {
		return fmt.Errorf("craftedge: stale must not be negative, got %s", time.Duration(*h.Stale))
	}
	if h.Timeout < 0 {
		return fmt.Errorf("craftedge: timeout must not be negative, got %s", time.Duration(h.Timeout))
	}
	if h.StaleAfter != nil && *h.StaleAfter < 0 {
		return fmt.Errorf("craftedge: stale_after must not be negative, got %s", time.Duration(*h.StaleAfter))
	}
	if h.MaxEntrySize < 0 {
		return fmt.Errorf("craftedge: max_entry_size must not be negative")
	}
	if h.Fallback != nil && (h.Fallback.Status < 200 || h.Fallback.Status > 599) {
		return fmt.Errorf("craftedge: fallback status %d is not a valid HTTP status", h.Fallback.Status)
	}
	if h.GraphQL != "" && h.GraphQL[0] != '/' {
		return fmt.Errorf("craftedge: graphql path %q must start with /", h.GraphQL)
	}
	return nil
}

// lookupRequest is the view of the request the cache decides on: the URL
// the client asked for (before any rewrite), with the live headers.
func lookupRequest(r *http.Request) *http.Request {
	orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request)
	if !ok || orig.URL == nil {
		return r
	}
	if orig.URL.Path == r.URL.Path && orig.URL.RawQuery == r.URL.RawQuery && orig.Method == r.Method {
		return r
	}
	cp := *r
	cp.URL = orig.URL
	cp.Method = orig.Method
	return &cp
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	lr := lookupRequest(r)
	if h.vendorProxy != nil {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.metrics.count(outcomeBypass)
			serveVendorMethodNotAllowed(w)
			return nil
		}
		next = h.vendorProxy
	} else {
		if _, upgrade := r.Header["Upgrade"]; upgrade {
			return h.serveBypass(w, r, next, "upgrade")
		}
		if reason := h.bypass.Check(lr); reason != "" {
			return h.serveBypass(w, r, next, reason)
		}
		if lr != r {
			// A rewrite before this handler: Craft routes on the path it
			// is sent, so that one must pass the rules too.
			if reason := h.bypass.Check(r); reason != "" {
				return h.serveBypass(w, r, next, reason)
			}
		}
	}

	key, spec, reason := h.requestKey(r, lr)
	if reason != "" {
		return h.serveBypass(w, r, next, reason)
	}
	if h.GraphQL != "" && lr.URL.Path == h.GraphQL {
		extra, reason := h.graphQLKey(r, lr, &spec)
		if reason != "" {
			return h.serveBypass(w, r, next, reason)
		}
		key += extra
	}

	now := nowFunc()
	if h.esiOn && h.serveMemo(w, r, key, now) { // an ESI page's memo (esi.go)
		return nil
	}
	mem := h.app.MemoryTier()
	var epoch uint64
	if h.esiOn {
		// Read before the page's entry: a purge that runs from here on
		// makes the memo of this hit's assembly unusable (esi_memo.go).
		epoch = mem.Epoch()
	}
	var entry pagecache.Entry
	raw, variantKey, found := h.lookup(r, key, &entry)
	if !found && variantKey == "" && h.app.RefillOnMiss(key) {
		// Missed while the warm start refills the memory tier: its
		// snapshot was put in ahead of the refill (warmstart.go).
		raw, variantKey, found = h.lookup(r, key, &entry)
	}
	if found && entry.Fresh(now) {
		mem.CountHit()
		h.app.NoteServed(key) // sampled: the warm start refills the pages served most first
		h.metrics.hit.Inc()
		if entry.ESI != nil {
			memoKey := key
			if variantKey != "" {
				memoKey = variantKey
			}
			h.writeAssembled(w, r, next, &entry, now, statusHit, memoKey, epoch)
			return nil
		}
		h.writeEntry(w, r, &entry, now, statusHit)
		return nil
	}
	mem.CountMiss()
	miss := spec // only a miss's copy escapes to the heap, not every hit's
	r = withSpec(r, &miss)
	r = withNext(r, next)

	if h.app.KillSwitchOn(h.Upstream, h.SnapshotOnly) {
		return h.serveFallback(w, r, key, variantKey, raw, now, fallbackCause{killSwitch: true})
	}
	if !h.breaker.Allow() {
		return h.serveFallback(w, r, key, variantKey, raw, now, fallbackCause{breakerOpen: true})
	}
	if found && entry.ServableWhileRevalidating(now) {
		h.refreshInBackground(r, next, key, raw)
		h.metrics.count(outcomeStale)
		h.writeEntry(w, r, &entry, now, statusStaleWhileRevalidate)
		return nil
	}
	if found && h.staleAfterApplies(&entry, now) {
		return h.fetchOrStaleAfter(w, r, next, key, variantKey, raw, &entry)
	}
	return h.fetchAndServe(w, r, next, key, variantKey, raw)
}

// lookup finds the entry for the request, following a Vary marker to the
// variant selected by the request's headers. variantKey is the key the
// response is (or would be) stored under when the base entry is a marker.
// raw is the memory tier's own bytes, read in place (no copy, no
// allocation): e aliases them, and neither may be modified.
func (h *Handler) lookup(r *http.Request, key string, e *pagecache.Entry) (raw []byte, variantKey string, found bool) {
	if !h.app.MemoryServes() { // a cluster node catching up on missed purges
		return nil, "", false
	}
	mem := h.app.MemoryTier()
	raw, ok := mem.Get(key)
	if !ok || e.Decode(raw) != nil {
		return nil, "", false
	}
	if e.Flags&pagecache.FlagVaryMarker == 0 {
		return raw, "", true
	}
	variantKey = h.varyKey(key, e.Vary, r)
	raw, ok = mem.Get(variantKey)
	if !ok || e.Decode(raw) != nil {
		return nil, variantKey, false
	}
	return raw, variantKey, true
}

// varyKey is the key of the variant of key selected by the request's
// values of the fields named in vary: the values the upstream is sent for
// them (see varyValue), normalized, so equivalent requests share a variant.
func (h *Handler) varyKey(key string, vary []string, r *http.Request) string {
	var b bytes.Buffer
	b.WriteString(key)
	for _, name := range vary {
		b.WriteByte(0)
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(h.varyValue(r, name))
	}
	return b.String()
}

// graphQLKey reads a GraphQL POST body and returns the key suffix selecting
// this query, content type, token and schema, or a bypass reason for
// mutations (in the body or in a "query" parameter, which Craft lets
// supersede the body), bodies Craft would parse differently from us, and
// oversized or unreadable ones. The body and the keyed headers go into spec:
// they are what the upstream is sent.
func (h *Handler) graphQLKey(r, lr *http.Request, spec *upstreamSpec) (string, string) {
	for _, q := range httpcache.PHPQueryValues(lr.URL.RawQuery, "query") {
		if httpcache.IsGraphQLMutationQuery(q) {
			return "", "graphql-mutation"
		}
	}
	var body []byte
	contentType := ""
	if r.Method == http.MethodPost {
		var err error
		body, err = io.ReadAll(io.LimitReader(r.Body, maxGraphQLBody+1))
		if err != nil {
			return "", "graphql-body"
		}
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), r.Body))
		if len(body) > maxGraphQLBody {
			return "", "graphql-body"
		}
		contentType = httpcache.GraphQLPostType(r.Header.Get("Content-Type"), body)
		if contentType == "" {
			return "", "graphql-mutation"
		}
		spec.body = body
		spec.setHeader("Content-Type", contentType)
	}
	auth := r.Header.Get("Authorization")
	schema := r.Header.Get("X-Craft-Gql-Schema")
	if auth != "" {
		spec.setHeader("Authorization", auth)
	}
	if schema != "" {
		spec.setHeader("X-Craft-Gql-Schema", schema)
	}
	sum := sha256.New()
	sum.Write(body)
	sum.Write([]byte{0})
	sum.Write([]byte(contentType))
	sum.Write([]byte{0})
	sum.Write([]byte(auth))
	sum.Write([]byte{0})
	sum.Write([]byte(schema))
	return "\x00graphql=" + hex.EncodeToString(sum.Sum(nil)[:16]), ""
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
