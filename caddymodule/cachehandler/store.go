package cachehandler

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/cespare/xxhash/v2"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/httpcache"
	"github.com/craftedge/craftedge/pagecache"
)

// Response headers never stored nor replayed from the cache.
var unstoredHeaders = map[string]bool{
	"Connection":           true,
	"Keep-Alive":           true,
	"Proxy-Authenticate":   true,
	"Proxy-Authorization":  true,
	"Proxy-Connection":     true,
	"Te":                   true,
	"Trailer":              true,
	"Transfer-Encoding":    true,
	"Upgrade":              true,
	"Content-Length":       true,
	"Date":                 true,
	"Age":                  true,
	"Cache-Status":         true,
	"Set-Cookie":           true,
	"Cache-Purge-Tag":      true,
	"Cache-Purge-Tag-Hard": true,
	"Etag":                 true,
	"Content-Encoding":     true,
	// Targeted at craftedge alone (RFC 9213 §2.1): never passed on.
	httpcache.TargetedFieldOwn: true,
}

// storableReason decides, when the upstream's headers arrive, whether the
// response is buffered for the cache ("") or streamed through (a reason).
func (h *Handler) storableReason(r *http.Request, status int, hdr http.Header) string {
	d, _ := httpcache.ResponseDirectives(hdr)
	_, explicit := httpcache.FreshnessLifetime(hdr, d, nowFunc())
	// Authorization is part of the key on the GraphQL path, so a token's
	// response is only ever served to the same token.
	// A live vendor read never forwards the visitor's Authorization.
	hadAuth := r.Header.Get("Authorization") != "" && h.vendorProxy == nil &&
		!(h.GraphQL != "" && lookupRequest(r).URL.Path == h.GraphQL)
	if reason := httpcache.Storable(status, hdr, d, explicit, hadAuth); reason != "" {
		return reason
	}
	if cl := hdr.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n > h.MaxEntrySize {
			return "too-large"
		}
	}
	switch ce := hdr.Get("Content-Encoding"); ce {
	case "", "identity", "gzip", "x-gzip", "zstd":
	default:
		return "content-encoding"
	}
	return ""
}

// processUpstreamHeaders applies the Cache-Purge-Tag and
// Cache-Purge-Tag-Hard instructions and strips tag headers (unless
// exposed) from a response about to go to a client.
func (h *Handler) processUpstreamHeaders(hdr http.Header) {
	h.applyPurgeHeader(hdr, "Cache-Purge-Tag", false)
	h.applyPurgeHeader(hdr, "Cache-Purge-Tag-Hard", true)
	if !h.ExposeTags {
		for _, name := range h.TagHeaders {
			hdr.Del(name)
		}
	}
	delete(hdr, httpcache.TargetedFieldOwn)
	if h.esiOptedIn(hdr) {
		// The upstream's instruction to us: never passed on.
		delete(hdr, "Surrogate-Control")
	}
}

// applyPurgeHeader purges the tags listed in the upstream's header name
// (as Cache-Tag lists them), in the app's purge_mode, or hard, and strips
// it. Cache-Purge-Tag-Hard is how Craft takes content down (an entry
// disabled, deleted, expired, out of a site): no copy of its pages may
// answer a slow Craft afterwards.
func (h *Handler) applyPurgeHeader(hdr http.Header, name string, hard bool) {
	v := hdr.Values(name)
	if len(v) == 0 {
		return
	}
	var tags []string
	for _, line := range v {
		tags = append(tags, httpcache.SplitTags(line)...)
	}
	hdr.Del(name)
	if len(tags) > 0 {
		n := h.app.PurgeTags(tags, hard)
		h.logger.Info("purged by upstream "+name,
			zap.Strings("tags", tags), zap.Int("entries", n))
	}
}

// applyFreshness sets the entry's freshness lifetime, stale windows and
// flags from the directives d (httpcache.ResponseDirectives: a targeted
// field, else Cache-Control) and hdr's Expires and Date. Without explicit
// freshness the configured ttl applies (0: stale at once).
func (h *Handler) applyFreshness(e *pagecache.Entry, hdr http.Header, d httpcache.Directives, now time.Time) time.Duration {
	lifetime, explicit := httpcache.FreshnessLifetime(hdr, d, now)
	if !explicit {
		lifetime = h.ttl
	}
	e.FreshFor = lifetime
	e.Flags &^= pagecache.FlagNoCache | pagecache.FlagMustRevalidate
	if d.NoCache {
		e.Flags |= pagecache.FlagNoCache
	}
	p := httpcache.StaleAllowance(d, h.stale)
	if p.Prohibited {
		e.Flags |= pagecache.FlagMustRevalidate
	}
	e.StaleWhileRevalidate = p.WhileRevalidate
	e.StaleIfError = p.IfError
	return lifetime
}

// dateField is the Date a stored response is served with (RFC 9110
// §6.6.1): the origin's, when it sent one valid Date, else the time it was
// received. It is stored as a header field, so hits replay it as is.
func dateField(hdr http.Header, now time.Time) pagecache.HeaderField {
	v := now.UTC().Format(http.TimeFormat)
	if _, ok := httpcache.ResponseDate(hdr); ok {
		v = hdr["Date"][0]
	}
	return pagecache.HeaderField{Name: "Date", Value: v}
}

// storeResponse builds the entry of a buffered upstream response (r is
// the request sent upstream, whose headers select the variant), stores it
// in the memory tier and (write-behind) as a snapshot, and fills res.
func (h *Handler) storeResponse(r *http.Request, key string, status int, hdr http.Header, body []byte, notStored string, epoch uint64, res *fetchResult) {
	now := nowFunc()
	tags := httpcache.ParseTags(hdr, h.TagHeaders)
	d, _ := httpcache.ResponseDirectives(hdr)
	optedIn := h.esiOptedIn(hdr) && r.Method == http.MethodGet
	h.processUpstreamHeaders(hdr)

	e := pagecache.Entry{Status: status, StoredAt: now, Tags: tags}
	lifetime := h.applyFreshness(&e, hdr, d, now)
	e.InitialAge = httpcache.AgeValue(hdr)
	e.Header = append(e.Header, dateField(hdr, now))
	if lm, err := http.ParseTime(hdr.Get("Last-Modified")); err == nil {
		e.LastModified = lm
	}

	coding := hdr.Get("Content-Encoding")
	decoded, _, err := pagecache.Decode(coding, body, int(h.MaxEntrySize))
	if err != nil {
		// A body we cannot decode is relayed as it came, not stored.
		h.logger.Warn("upstream body not decodable; not cached",
			zap.String("key", key), zap.String("content_encoding", coding), zap.Error(err))
		decoded = body
		notStored = "content-encoding"
		e.Header = append(e.Header, pagecache.HeaderField{Name: "Content-Encoding", Value: coding})
	}
	e.Body = decoded
	// The origin's entity tag is kept as sent, weak or strong (RFC 9110
	// §8.8.3); a weak one is never used for If-Range.
	if etag := hdr.Get("Etag"); etag != "" && (coding == "" || coding == "identity") && isEntityTag(etag) {
		e.ETag, e.OriginETag = etag, true
	} else {
		e.ETag = fmt.Sprintf(`"ce-%016x"`, xxhash.Sum64(decoded))
	}
	for name, values := range hdr {
		if unstoredHeaders[name] {
			continue
		}
		for _, v := range values {
			e.Header = append(e.Header, pagecache.HeaderField{Name: name, Value: v})
		}
	}
	if (notStored == "" || res.assembleOnly) && err == nil {
		tmpl, reason := h.compileESI(key, status, optedIn, res.fragment, decoded)
		e.ESI = tmpl
		if notStored == "" {
			notStored = reason
		}
	}
	if res.assembleOnly {
		// Relayed to the one client that asked, not stored: its cookies
		// go with it.
		for _, v := range hdr["Set-Cookie"] {
			e.Header = append(e.Header, pagecache.HeaderField{Name: "Set-Cookie", Value: v})
		}
	}
	if notStored == "" && e.ESI == nil && pagecache.Compressible(hdr.Get("Content-Type"), "") {
		if err := pagecache.CompressVariants(&e); err != nil {
			h.logger.Error("compressing entry", zap.String("key", key), zap.Error(err))
		}
	}

	vary, _ := httpcache.VaryHeaders(hdr)
	storeKey := key
	if len(vary) > 0 {
		storeKey = h.varyKey(key, vary, r)
	}
	raw := e.Encode()
	res.raw = raw
	res.storeKey = storeKey
	if notStored != "" {
		res.notStoredReason = notStored
		return
	}
	if len(vary) > 0 {
		marker := pagecache.Entry{Flags: pagecache.FlagVaryMarker, StoredAt: now, FreshFor: lifetime, Vary: vary, Status: status}
		if err := h.app.MemoryTier().Set(key, marker.Encode(), nil, epoch); err != nil {
			res.notStoredReason = "memory"
			if errors.Is(err, pagecache.ErrPurgedWhileFetched) {
				res.notStoredReason = "purged"
			}
			return
		}
	}
	setErr := h.app.MemoryTier().Set(storeKey, raw, tags, epoch)
	h.forgetMemo(key) // an ESI page's memo is of the entry stored before
	h.forgetMemo(storeKey)
	switch {
	case errors.Is(setErr, pagecache.ErrPurgedWhileFetched):
		// A hard purge of it (a takedown) ran while it was fetched: it
		// may be the render taken down. Neither kept in memory nor as a
		// snapshot (one saved now would postdate the purge's marks); the
		// snapshot from before the purge, marked, stays.
		res.notStoredReason = "purged"
		return
	case setErr != nil:
		h.logger.Warn("memory tier refused entry", zap.String("key", storeKey), zap.Error(setErr))
		res.notStoredReason = "memory"
	default:
		res.stored = true
	}
	if h.snapshotAllowed(e.Body) {
		h.app.SaveSnapshot(storeKey, &e, now)
	}
}

// revalidated refreshes a stored copy after the upstream answered 304 to
// our conditional request (RFC 9111 §4.3.4): the 304's header fields
// replace the stored ones of the same name (§3.2), Cache-Control and Date
// included, and freshness, stale windows and flags are derived again from
// the result, so the origin's new policy applies. Fields the cache does not
// store (hop-by-hop, Content-Length, Set-Cookie...), the validators the
// stored body depends on (ETag, Content-Encoding) and the tag headers are
// not taken from the 304; tags it carries replace the stored tags.
func (h *Handler) revalidated(r *http.Request, key string, stale *pagecache.Entry, hdr http.Header, epoch uint64, res *fetchResult) {
	now := nowFunc()
	e := *stale
	e.Flags &^= pagecache.FlagFromSnapshot | pagecache.FlagPurgedSnapshot | pagecache.FlagSoftPurged
	e.StoredAt = now
	if tags := httpcache.ParseTags(hdr, h.TagHeaders); len(tags) > 0 {
		e.Tags = tags
	}
	d304 := hdr.Clone()
	h.processUpstreamHeaders(d304)

	merged := stale.HTTPHeader()
	for name, values := range d304 {
		if unstoredHeaders[name] || len(values) == 0 {
			continue
		}
		merged[name] = values
	}
	// The freshened response is as old as the 304 (its Age restarts).
	merged["Date"] = []string{dateField(hdr, now).Value}
	fields := make([]pagecache.HeaderField, 0, len(e.Header)+len(d304))
	for name, values := range merged {
		for _, v := range values {
			fields = append(fields, pagecache.HeaderField{Name: name, Value: v})
		}
	}
	e.Header = fields
	d, _ := httpcache.ResponseDirectives(merged)
	h.applyFreshness(&e, merged, d, now)
	e.InitialAge = httpcache.AgeValue(hdr)
	if lm, err := http.ParseTime(merged.Get("Last-Modified")); err == nil {
		e.LastModified = lm
	}
	storeKey := key
	if vary, _ := httpcache.VaryHeaders(merged); len(vary) > 0 {
		storeKey = h.varyKey(key, vary, r)
	}
	raw := e.Encode()
	res.raw, res.storeKey, res.revalidated = raw, storeKey, true
	err := h.app.MemoryTier().Set(storeKey, raw, e.Tags, epoch)
	h.forgetMemo(key) // an ESI page's memo is of the entry stored before
	h.forgetMemo(storeKey)
	if errors.Is(err, pagecache.ErrPurgedWhileFetched) {
		return // taken down while revalidated: kept nowhere (see storeResponse)
	}
	if err == nil {
		res.stored = true
	}
	if h.snapshotAllowed(e.Body) {
		h.app.SaveSnapshot(storeKey, &e, now)
	}
}

// isEntityTag reports whether etag is a quoted entity tag, strong ("x")
// or weak (W/"x").
func isEntityTag(etag string) bool {
	if len(etag) > 2 && etag[0] == 'W' && etag[1] == '/' {
		etag = etag[2:]
	}
	return len(etag) >= 2 && etag[0] == '"' && etag[len(etag)-1] == '"'
}
