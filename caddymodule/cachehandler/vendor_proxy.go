package cachehandler

import (
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/httpcache"
	"github.com/craftedge/craftedge/vendors"
)

// vendorProxy is the upstream of a craftedge handler configured with
// `vendor <name>`: instead of the next handler, cacheable requests go to
// the vendor through its client (credentials injected, breaker, token
// bucket, retries, hedging, coalescing, canary split). The handler's cache,
// stale copies, snapshots and kill switch apply to it as to Craft.
type vendorProxy struct {
	client *vendors.Client
	// paths are the vendor paths this route may read.
	paths httpcache.PathRules
	// tagHeaders are the handler's tag headers. A vendor's own tag and
	// purge headers are dropped (only Craft's are instructions); every
	// live response is tagged vendor:<name> in the first, so one purge
	// drops a vendor's cached live reads.
	tagHeaders []string
	// sensitiveKeys are the JSON keys of the vendor's sensitive fields: a
	// live answer holding one is cached in memory but never snapshotted
	// (snapshotAllowed).
	sensitiveKeys map[string]bool
}

// snapshotAllowed reports whether a response body may be written to the
// bbolt snapshots. A live vendor answer that holds (or may hold: it is not
// JSON) a sensitive field is not: it lives in memory only, and its route
// falls back to a stale memory copy or the fallback, never to a snapshot.
// Checked on the store path only (after a miss), never on a hit.
func (h *Handler) snapshotAllowed(body []byte) bool {
	p, ok := h.vendorProxy.(*vendorProxy)
	return !ok || !vendors.ContainsSensitive(body, p.sensitiveKeys)
}

// forwardedVendorHeaders are the only request headers a live vendor read
// sends on. The request it is given is already built from the cache key
// alone (upstream_request.go): it holds none of the visitor's headers, so
// nothing that may select a visitor's data (tokens, customer ids,
// addresses) or an unkeyed representation (Accept) reaches the vendor;
// keyed headers (key_header) and the cache's own revalidation do.
var forwardedVendorHeaders = []string{"Accept", "If-None-Match", "If-Modified-Since"}

// defaultVendorPaths are the paths of a vendor's resources: each get path
// up to its first placeholder as a prefix ("/products/{id}" ->
// "/products/*"), each list path without its query as an exact path.
func defaultVendorPaths(vc *caddymodule.VendorConfig) []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(vc.Resources)) {
		res := vc.Resources[name]
		if res == nil {
			continue
		}
		if res.Get != nil {
			p, _, _ := strings.Cut(res.Get.Path, "{")
			p, _, _ = strings.Cut(p, "?")
			if i := strings.LastIndexByte(p, '/'); i >= 0 {
				out = append(out, p[:i+1]+"*")
			}
		}
		if res.List != nil {
			p, _, _ := strings.Cut(res.List.Path, "?")
			if !strings.Contains(p, "{") {
				out = append(out, p)
			}
		}
	}
	return out
}

// ServeHTTP implements caddyhttp.Handler: one live read of the request's
// path (after any rewrite or handle_path strip) and query under the
// vendor's versioned base URL. Failures come back as errors carrying the
// status the cache reports (502, 503 or 504), so the handler falls back.
func (p *vendorProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	if !p.paths.Match(r.URL.Path) {
		hdr := w.Header()
		hdr.Set("Cache-Control", "no-store")
		http.Error(w, "Not found: this route does not read that vendor path.", http.StatusNotFound)
		return nil
	}
	fwd := make(http.Header, len(forwardedVendorHeaders))
	for _, name := range forwardedVendorHeaders {
		if vs := r.Header.Values(name); len(vs) > 0 {
			fwd[name] = vs
		}
	}
	resp, err := p.client.Do(r.Context(), vendors.Request{
		Method:   r.Method,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Header:   fwd,
	})
	if errors.Is(err, vendors.ErrInvalidRequest) {
		// The visitor's fault (a path with dot segments, a malformed
		// query): answered, not counted against the vendor.
		http.Error(w, "Bad request: "+err.Error(), http.StatusBadRequest)
		return nil
	}
	if err != nil {
		// The client's errors name the vendor, the method and the path.
		return caddyhttp.Error(vendorErrorStatus(err), err)
	}
	hdr := w.Header()
	for k, vs := range resp.Header {
		hdr[k] = vs
	}
	// The client decoded any transfer compression: the body is identity.
	hdr.Del("Content-Encoding")
	hdr.Del("Cache-Purge-Tag")
	hdr.Del("Cache-Purge-Tag-Hard")
	for _, name := range p.tagHeaders {
		hdr.Del(name)
	}
	hdr.Set(p.tagHeaders[0], caddymodule.VendorTag(p.client.Name()))
	hdr.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(resp.StatusCode)
	if r.Method != http.MethodHead {
		_, err = w.Write(resp.Body)
	}
	return err
}

// vendorErrorStatus maps a vendor client error to the status a client
// would see without a cached copy.
func vendorErrorStatus(err error) int {
	switch {
	case errors.Is(err, vendors.ErrTimeout):
		return http.StatusGatewayTimeout
	case errors.Is(err, vendors.ErrBreakerOpen), errors.Is(err, vendors.ErrDisabled):
		return http.StatusServiceUnavailable
	default:
		return http.StatusBadGateway
	}
}

// serveVendorMethodNotAllowed answers a write to a live vendor route:
// writes go through craftedge_records and the outbox, never straight to
// the vendor from a visitor's request.
func serveVendorMethodNotAllowed(w http.ResponseWriter) {
	hdr := w.Header()
	hdr.Set("Allow", "GET, HEAD")
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusMethodNotAllowed)
	_, _ = w.Write([]byte("Only GET and HEAD reach a vendor through this route; writes go through /vendors/v1/ (the outbox).\n"))
}
