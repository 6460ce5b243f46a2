package cachehandler

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/pagecache"
)

// statusStaleAfter and statusStaleAfterSnapshot are the Cache-Status of a
// stale memory copy, and of a snapshot promoted into memory, served
// because the upstream had not answered within stale_after (the call goes
// on).
// statusStaleAfterPurged is the Cache-Status of a copy a soft purge had
// marked stale, served the same way.
const (
	statusStaleAfter         = "craftedge; fwd=stale; detail=stale-after"
	statusStaleAfterSnapshot = "craftedge; fwd=stale; detail=stale-after-snapshot"
	statusStaleAfterPurged   = "craftedge; fwd=stale; detail=stale-after-purged"
)

// staleAfterApplies reports whether a request whose memory copy e is not
// fresh may be answered with it when the upstream is slow (StaleAfter): the
// copy may be served stale at now (its stale window: Stale or the
// response's stale-if-error), its origin did not forbid stale serving, and
// it is a response, not a Vary marker, nor a snapshot promoted into memory
// that a purge had marked stale (served only when the upstream fails). A
// copy a soft purge marked stale (pagecache.FlagSoftPurged) qualifies
// under the same rules; a hard purge removed its copy, so there is none.
// The stale window counts from when the copy was stored, as for any copy:
// a soft purge never lengthens it.
func (h *Handler) staleAfterApplies(e *pagecache.Entry, now time.Time) bool {
	return h.staleAfter > 0 &&
		e.Flags&(pagecache.FlagVaryMarker|pagecache.FlagPurgedSnapshot) == 0 &&
		!e.StaleProhibited() && e.ServableOnError(now)
}

// fetchOrStaleAfter is fetchAndServe for a request holding a stale copy
// (see staleAfterApplies): the upstream call for key runs in the
// background, joined by every request for key meanwhile (one call per key,
// bounded by Timeout, under the breaker, which records its outcome however
// late), and the request waits for it at most StaleAfter, or not at all
// while the upstream is known slow (upstreamSlow: set when a wait runs
// out, cleared by the next call answering within StaleAfter, see
// noteCallTime). If the call answers in time the request is answered as a
// miss would be; otherwise it gets the stale copy as it is then, labelled
// by its state then (soft-purged meanwhile: "stale-after-purged"), unless
// it was purged, replaced or became unservable (see staleAfterApplies)
// meanwhile, and the call's response refreshes the memory tier when it
// comes.
func (h *Handler) fetchOrStaleAfter(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, key, variantKey string, stale []byte, e *pagecache.Entry) error {
	bg := detachedRequest(r)
	ch := h.flights.DoChan(key, func() (v any, err error) {
		defer func() {
			if p := recover(); p != nil {
				h.logger.Error("upstream call panicked", zap.String("key", key), zap.Any("panic", p))
				v = &fetchResult{failed: true, failStatus: http.StatusBadGateway, failErr: fmt.Errorf("panic: %v", p)}
			}
		}()
		return h.fetch(discardWriter{header: make(http.Header)}, bg, next, key, stale), nil
	})
	if h.upstreamSlow.Load() {
		// Known slow: no request waits for it.
		select {
		case out := <-ch:
			return h.serveSharedResult(w, r, next, key, variantKey, stale, out.Val.(*fetchResult))
		default:
		}
	} else {
		timer := time.NewTimer(h.staleAfter)
		defer timer.Stop()
		select {
		case out := <-ch:
			return h.serveSharedResult(w, r, next, key, variantKey, stale, out.Val.(*fetchResult))
		case <-r.Context().Done():
			return r.Context().Err()
		case <-timer.C:
			h.upstreamSlow.Store(true)
		}
	}
	storeKey := key
	if variantKey != "" {
		storeKey = variantKey
	}
	if hook := staleAfterServeHook.Load(); hook != nil {
		(*hook)(storeKey)
	}
	// The copy as it is now, not as it was before the wait: a soft purge
	// meanwhile marked it (its label says so); a purge that made a
	// promoted snapshot a purged one keeps it from serving here.
	now := nowFunc()
	cur, ok := h.stillStored(storeKey, e)
	if !ok || !h.staleAfterApplies(&cur, now) {
		// Purged (or stored anew) while we waited, or past its stale
		// window by now: never serve it. The call's answer is what the
		// client gets.
		select {
		case out := <-ch:
			return h.serveSharedResult(w, r, next, key, variantKey, nil, out.Val.(*fetchResult))
		case <-r.Context().Done():
			return r.Context().Err()
		}
	}
	h.metrics.count(outcomeStaleAfter)
	if cur.Flags&pagecache.FlagFromSnapshot != 0 {
		h.app.CountSnapshotServed()
		h.writeEntry(w, r, &cur, now, statusStaleAfterSnapshot)
		return nil
	}
	h.app.CountStaleServed()
	status := statusStaleAfter
	if cur.Flags&pagecache.FlagSoftPurged != 0 {
		status = statusStaleAfterPurged
	}
	h.writeEntry(w, r, &cur, now, status)
	return nil
}

// staleAfterServeHook, when set (tests), is called with the stored key of
// a request whose wait for the upstream ended without an answer, before
// its copy is read again and served.
var staleAfterServeHook atomic.Pointer[func(key string)]

// noteCallTime keeps upstreamSlow up to date with an upstream call that
// took d: a success within StaleAfter clears it, any call longer sets it.
func (h *Handler) noteCallTime(d time.Duration, res *fetchResult) {
	if h.staleAfter <= 0 || h.upstreamSlow == nil {
		return
	}
	switch {
	case d >= h.staleAfter:
		h.upstreamSlow.Store(true)
	case !res.failed:
		h.upstreamSlow.Store(false)
	}
}

// stillStored returns the memory tier's current copy under key and
// reports whether it is still the store e was read from (not purged,
// evicted or replaced). The copy is decoded again: a soft purge since
// keeps the store but rewrites its flags and freshness, so e's are out of
// date.
func (h *Handler) stillStored(key string, e *pagecache.Entry) (pagecache.Entry, bool) {
	var cur pagecache.Entry
	raw, ok := h.app.MemoryTier().Get(key)
	if !ok || cur.Decode(raw) != nil {
		return cur, false
	}
	return cur, cur.StoredAt.Equal(e.StoredAt) && cur.ETag == e.ETag
}

// serveSharedResult answers a request from the result of an upstream call
// made for its key in the background (it did not write to this client): a
// stored or shareable copy of the client's variant is served as a miss; a
// failure goes down the fallback chain; anything else (streamed through,
// not shareable, another variant) gets the request its own call.
func (h *Handler) serveSharedResult(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, key, variantKey string, stale []byte, res *fetchResult) error {
	now := nowFunc()
	if res.failed {
		return h.serveFallback(w, r, key, variantKey, stale, now, fallbackCause{upstream: res})
	}
	if res.raw == nil || res.streamed || res.assembleOnly || res.notStoredReason == "content-encoding" || res.notStoredReason == "purged" || !h.sameVariant(r, key, res) {
		return h.fetchAndServe(w, r, next, key, variantKey, stale)
	}
	return h.writeFetched(w, r, res, now, statusMiss(res))
}
