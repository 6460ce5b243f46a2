package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/craftedge/craftedge/vendors"
)

// vendorProxy is the upstream of a craftedge handler configured with
// `vendor <name>`: instead of the next handler, cacheable requests go to
// the vendor through its client (credentials injected, breaker, token
// bucket, retries, hedging, coalescing, canary split). The handler's cache,
// stale copies, snapshots and kill switch apply to it as to Craft.
type vendorProxy struct {
	client *vendors.Client
	// tagHeader is the first of the handler's tag headers: every live
	// response is tagged vendor:<name> there, so one purge drops a
	// vendor's cached live reads.
	tagHeader string
}

// ServeHTTP implements caddyhttp.Handler: one live read of the request's
// path (after any rewrite or handle_path strip) and query under the
// vendor's versioned base URL. Failures come back as errors carrying the
// status the cache reports (502, 503 or 504), so the handler falls back.
func (p vendorProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	resp, err := p.client.Do(r.Context(), vendors.Request{
		Method:   r.Method,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Header:   r.Header,
	})
	if errors.Is(err, vendors.ErrInvalidRequest) {
		// The visitor's fault (a path with dot segments, a malformed
		// query): answered, not counted against the vendor.
		http.Error(w, "Bad request: "+err.Error(), http.StatusBadRequest)
		return nil
	}
	if err != nil {
		return caddyhttp.Error(vendorErrorStatus(err), fmt.Errorf("vendor %q: %w", p.client.Name(), err))
	}
	hdr := w.Header()
	for k, vs := range resp.Header {
		hdr[k] = vs
	}
	// The client decoded any transfer compression: the body is identity.
	hdr.Del("Content-Encoding")
	hdr.Add(p.tagHeader, vendorTag(p.client.Name()))
	hdr.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(resp.StatusCode)
	if r.Method != http.MethodHead {
		_, err = w.Write(resp.Body)
	}
	return err
}

// vendorTag is the cache tag of every live read of a vendor.
func vendorTag(vendor string) string { return "vendor:" + vendor }

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
