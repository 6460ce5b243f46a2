package cachehandler

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/craftedge/craftedge/caddymodule"
)

// serveBypass passes a request Craft must see live (control panel, actions,
// previews, logged-in visitors, non-GET...) to the next handler untouched,
// only labelling the response and applying Cache-Purge-Tag instructions.
func (h *Handler) serveBypass(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, reason string) error {
	h.app.CountBypassed()
	h.metrics.count(outcomeBypass)
	if h.BlockBypassWhenSnapshotOnly && h.app.KillSwitchOn(h.Upstream, h.SnapshotOnly) {
		hdr := w.Header()
		hdr.Set("Content-Type", "text/plain; charset=utf-8")
		hdr.Set("Cache-Control", "no-store")
		hdr.Set("Retry-After", strconv.Itoa(int(time.Duration(h.Breaker.Cooldown)/time.Second)))
		hdr.Set("Cache-Status", cacheStatusName+"; fwd=bypass; detail=snapshot-only")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("Service temporarily unavailable: snapshot-only mode.\n"))
		return nil
	}
	bw := &bypassWriter{ResponseWriter: w, h: h, req: r, status: cacheStatusName + "; fwd=bypass; detail=" + reason}
	err := next.ServeHTTP(bw, r)
	code := bw.code
	if err != nil {
		code = http.StatusBadGateway
		var he caddyhttp.HandlerError
		if errors.As(err, &he) && he.StatusCode != 0 {
			code = he.StatusCode
		}
	}
	area := "site"
	if reason == "cp" || reason == "action" || h.bypass.ControlPanel(lookupRequest(r)) {
		area = "cp"
	}
	method := "other"
	if r.Method == http.MethodGet || r.Method == http.MethodPost {
		method = r.Method
	}
	caddymodule.CountBypassResponse(h.Upstream, area, method, code)
	return err
}

// bypassWriter labels a bypassed response and handles the upstream's
// purge instruction and tag headers when its headers are written; for an
// unsafe request it invalidates the stored copies (RFC 9111 §4.4).
type bypassWriter struct {
	http.ResponseWriter
	h           *Handler
	req         *http.Request
	status      string
	wroteHeader bool
	code        int
}

func (bw *bypassWriter) WriteHeader(code int) {
	if !bw.wroteHeader && code >= 200 {
		bw.wroteHeader = true
		bw.code = code
		hdr := bw.ResponseWriter.Header()
		bw.h.invalidateAfterUnsafe(bw.req, code, hdr)
		bw.h.processUpstreamHeaders(hdr)
		hdr.Set("Cache-Status", bw.status)
	}
	bw.ResponseWriter.WriteHeader(code)
}

func (bw *bypassWriter) Write(p []byte) (int, error) {
	if !bw.wroteHeader {
		bw.WriteHeader(http.StatusOK)
	}
	return bw.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController (flush, hijack for websockets) reach
// the underlying writer.
func (bw *bypassWriter) Unwrap() http.ResponseWriter { return bw.ResponseWriter }
