package cachehandler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/circuit"
	"github.com/craftedge/craftedge/pagecache"
)

// errNoUpstreamHandler: the route has no handler after craftedge.
var errNoUpstreamHandler = errors.New("no upstream handler after craftedge in the route")

// errUpstreamTimeout is the cause when Timeout expires.
var errUpstreamTimeout = errors.New("upstream timeout")

// inFlight counts requests inside a coalesced upstream call (leader and
// waiters), so tests can tell when concurrent misses have joined one call.
var inFlight atomic.Int64

// fetchResult is the outcome of one upstream call for a cache key, shared
// with the requests that waited on it.
type fetchResult struct {
	// raw is the encoded entry to serve (a stored or revalidated copy);
	// nil when the response was not cacheable or the call failed.
	raw []byte
	// storeKey is the key raw was stored under (the variant key for Vary).
	storeKey string
	// stored reports whether raw went into the memory tier.
	stored bool
	// revalidated: the upstream answered 304 to our conditional request.
	revalidated bool
	// streamed: the leader already sent a non-cacheable response to its
	// client; waiters must call the upstream themselves.
	streamed bool
	// failed: error, 5xx or timeout. failStatus is the status to report.
	failed     bool
	failStatus int
	failErr    error
	// errStatus/errHeader/errBody: the upstream's own 5xx response.
	errStatus int
	errHeader http.Header
	errBody   []byte
	// notStoredReason explains a cacheable-looking response not stored.
	notStoredReason string
	// hadStale: a stale copy existed, so the call was a refresh.
	hadStale bool
	// fragment: the response is an ESI fragment's (stored with a
	// template, static when it did not opt in).
	fragment bool
	// assembleOnly: an opted-in page that may not be stored, buffered to
	// be assembled for the client whose request fetched it (with its own
	// Set-Cookie), never shared with waiters.
	assembleOnly bool
}

// fetchAndServe calls the upstream once per key (concurrent misses wait for
// the same call), stores a cacheable response, and answers the client from
// the result or the fallback chain.
func (h *Handler) fetchAndServe(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, key, variantKey string, stale []byte) error {
	leaderServed := false
	inFlight.Add(1)
	v, _, _ := h.flights.Do(key, func() (any, error) {
		leaderServed = true
		return h.fetch(w, r, next, key, stale), nil
	})
	inFlight.Add(-1)
	res := v.(*fetchResult)
	if leaderServed && res.streamed {
		return h.streamedResult(res)
	}
	if leaderServed && res.stored && res.raw != nil && !h.sameVariant(r, key, res) {
		// The response names Vary fields this first call did not send
		// (only keyed fields are sent): it was stored as the variant for
		// their absence. Ask again for this client's variant, whose
		// fields the stored marker now lets through.
		res = h.fetch(w, r, next, key, stale)
		if res.streamed {
			return h.streamedResult(res)
		}
	}
	collapsed := false
	if !leaderServed {
		collapsed = true
		// A waiter: use the shared result only if it is a stored, shareable
		// copy of the same variant; otherwise make our own call. One a
		// hard purge (a takedown) kept out of the memory tier ("purged")
		// went to the request that made the call only: this one may have
		// come after the purge.
		if res.streamed || res.assembleOnly || res.notStoredReason == "content-encoding" || res.notStoredReason == "purged" || (res.raw != nil && !h.sameVariant(r, key, res)) {
			collapsed = false
			res = h.fetch(w, r, next, key, stale)
			if res.streamed {
				return h.streamedResult(res)
			}
		}
	}
	now := nowFunc()
	if res.failed {
		return h.serveFallback(w, r, key, variantKey, stale, now, fallbackCause{upstream: res})
	}
	status := statusMiss(res)
	if collapsed {
		// RFC 9211: this request waited on another's upstream call.
		status += "; collapsed"
	}
	return h.writeFetched(w, r, res, now, status)
}

// writeFetched answers the client with the copy an upstream call stored
// or revalidated (res.raw), counted as a miss or a revalidation.
func (h *Handler) writeFetched(w http.ResponseWriter, r *http.Request, res *fetchResult, now time.Time, status string) error {
	var e pagecache.Entry
	if err := e.Decode(res.raw); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("craftedge: decoding fresh entry: %w", err))
	}
	if res.revalidated {
		h.metrics.count(outcomeRevalidated)
	} else {
		h.metrics.count(outcomeMiss)
	}
	h.writeEntry(w, r, &e, now, status)
	return nil
}

// streamedResult ends a request whose response was already streamed to
// the client by its own upstream call: counted as a pass-through, with the
// upstream's error returned when it was not a failure we handled.
func (h *Handler) streamedResult(res *fetchResult) error {
	h.metrics.count(outcomePassThrough)
	if res.failErr != nil && !res.failed {
		return res.failErr
	}
	return nil
}

// sameVariant reports whether a shared result was stored for the variant
// this request selects.
func (h *Handler) sameVariant(r *http.Request, key string, res *fetchResult) bool {
	var e pagecache.Entry
	if e.Decode(res.raw) != nil {
		return false
	}
	if res.storeKey == "" || res.storeKey == key {
		return true
	}
	// Re-derive this request's variant key from the marker's header list.
	var marker pagecache.Entry
	mraw, ok := h.app.MemoryTier().Get(key)
	if !ok || marker.Decode(mraw) != nil || marker.Flags&pagecache.FlagVaryMarker == 0 {
		return false
	}
	return h.varyKey(key, marker.Vary, r) == res.storeKey
}

// fetch makes one upstream call for key under the breaker and the timeout.
// Non-cacheable responses stream to w as they come (streamed=true).
func (h *Handler) fetch(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, key string, stale []byte) *fetchResult {
	res := &fetchResult{hadStale: stale != nil}
	var staleEntry *pagecache.Entry
	if stale != nil {
		staleEntry = new(pagecache.Entry)
		if staleEntry.Decode(stale) != nil {
			staleEntry = nil
		}
	}
	epoch := h.app.MemoryTier().Epoch()
	start := time.Now()
	status := 0
	path := lookupRequest(r).URL.Path
	err := h.breaker.RunOn(path, func() circuit.Outcome {
		status = h.callUpstream(w, r, next, key, staleEntry, epoch, res)
		return upstreamOutcome(path, res, status)
	})
	h.observeCall(err, res, status, start)
	if !errors.Is(err, circuit.ErrOpen) {
		h.noteCallTime(time.Since(start), res)
	}
	return res
}

// observeCall records the outcome of an upstream call run under the
// breaker (err is what breaker.Run returned) in res and the upstream
// metrics.
func (h *Handler) observeCall(err error, res *fetchResult, status int, start time.Time) {
	outcome := "success"
	switch {
	case errors.Is(err, circuit.ErrOpen):
		res.failed = true
		res.failStatus = http.StatusServiceUnavailable
		res.failErr = err
		outcome = "breaker_open"
	case res.failed && errors.Is(res.failErr, errUpstreamTimeout):
		outcome = "timeout"
	case res.failed:
		outcome = "failure"
	}
	caddymodule.ObserveUpstreamCall(h.Upstream, outcome, status, time.Since(start))
}

// callUpstream runs the next handler with a recorder and fills res.
// It returns the upstream's status (0 when it wrote none).
func (h *Handler) callUpstream(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, key string, staleEntry *pagecache.Entry, epoch uint64, res *fetchResult) int {
	// The call is detached from the client's cancellation while buffering,
	// so waiters are not failed by the leader's client leaving; the timeout
	// bounds it instead. Once streaming, the client's cancellation applies.
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(r.Context()))
	defer cancel(nil)
	timer := time.AfterFunc(time.Duration(h.Timeout), func() { cancel(errUpstreamTimeout) })
	defer timer.Stop()

	// The upstream request is built from the cache key's parts alone
	// (upstream_request.go); the client's conditionals and ranges are
	// answered from the stored copy, so only our own validators are sent.
	up := h.upstreamRequest(ctx, r, h.specFor(r, key), h.storedVary(key))
	if staleEntry != nil && staleEntry.Status == http.StatusOK {
		if staleEntry.OriginETag {
			up.Header.Set("If-None-Match", staleEntry.ETag)
		} else if !staleEntry.LastModified.IsZero() {
			up.Header.Set("If-Modified-Since", staleEntry.LastModified.UTC().Format(http.TimeFormat))
		}
	}

	var notStored string
	decide := func(status int, hdr http.Header) bool {
		reason := h.storableReason(up, status, hdr)
		notStored = reason
		if reason != "" && status == http.StatusOK && up.Method == http.MethodGet && h.esiOptedIn(hdr) {
			// An opted-in page that may not be stored (private,
			// Set-Cookie...) is still assembled for this client, never
			// relayed with its ESI markup: buffered, not stored.
			res.assembleOnly = true
			return true
		}
		return reason == ""
	}
	rec := newUpstreamRecorder(w, h.MaxEntrySize, decide, nil)
	rec.onPassthrough = func() {
		// Streaming from here: the timeout no longer applies, the
		// client's cancellation does; purge instructions and tag headers
		// are handled before the headers go out.
		timer.Stop()
		context.AfterFunc(r.Context(), func() { cancel(context.Canceled) })
		h.processUpstreamHeaders(rec.header)
		reason := notStored
		if reason == "" {
			reason = "too-large"
		}
		rec.header.Set("Cache-Status", cacheStatusName+"; fwd=miss; detail="+reason)
	}
	err := next.ServeHTTP(rec, up)
	timedOut := errors.Is(context.Cause(ctx), errUpstreamTimeout)
	if err == nil && rec.mode == modeUndecided {
		if unhandled, _ := caddyhttp.GetVar(up.Context(), "unhandled").(bool); unhandled {
			// Caddy's end of the route: nothing after craftedge answers.
			// A configuration error, not an empty page to store or serve.
			err = caddyhttp.Error(http.StatusBadGateway, errNoUpstreamHandler)
			h.logger.Error("no handler after craftedge answers cacheable requests: put reverse_proxy or php_fastcgi after it in the route",
				zap.String("upstream", h.Upstream))
		}
	}

	if rec.mode == modePassthrough {
		res.streamed = true
		res.failErr = err
		res.notStoredReason = notStored
		return rec.status
	}
	if err != nil || timedOut || rec.mode == modeFailed {
		res.failed = true
		res.failErr = err
		switch {
		case timedOut:
			res.failStatus = http.StatusGatewayTimeout
			res.failErr = errUpstreamTimeout
		case rec.mode == modeFailed:
			res.failStatus = rec.status
			res.errStatus = rec.status
			res.errHeader = rec.header
			res.errBody = rec.body.Bytes()
		default:
			res.failStatus = http.StatusBadGateway
			var he caddyhttp.HandlerError
			if errors.As(err, &he) && he.StatusCode >= 500 {
				res.failStatus = he.StatusCode
			}
		}
		h.logger.Warn("upstream failed",
			zap.String("upstream", h.Upstream),
			zap.String("key", key),
			zap.Int("status", res.failStatus),
			zap.Error(res.failErr))
		return rec.status
	}
	if rec.mode == modeUndecided {
		// The upstream wrote nothing: an empty 200, not worth storing.
		rec.status = http.StatusOK
		rec.mode = modeBuffer
		notStored = "empty"
	}
	if rec.mode == modeNotModified {
		if staleEntry == nil {
			// A 304 we did not ask for: relay it, do not store.
			res.streamed = true
			rec.startPassthrough()
			return rec.status
		}
		h.revalidated(up, key, staleEntry, rec.header, epoch, res)
		return rec.status
	}
	h.storeResponse(up, key, rec.status, rec.header, rec.body.Bytes(), notStored, epoch, res)
	return rec.status
}
