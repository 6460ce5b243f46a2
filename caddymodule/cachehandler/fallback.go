package cachehandler

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/craftedge/craftedge/pagecache"
)

// fallbackCause says why the live path was not used.
type fallbackCause struct {
	killSwitch  bool
	breakerOpen bool
	upstream    *fetchResult // the failed call, when one was made
}

// forwarded reports whether an upstream call was attempted.
func (c fallbackCause) forwarded() bool { return c.upstream != nil }

// serveFallback answers when the upstream cannot be used: a stale memory
// copy (within its stale-if-error window; any age under the kill switch),
// then the last-good snapshot, then the configured fallback, then the
// upstream's own error or a 502/503/504 with Retry-After. A copy whose
// origin forbade stale serving (RFC 9111 §4.2.4) is only served beyond the
// windows it granted when the operator chose serve_stale_despite_origin,
// and such serves are labelled "prohibited-override".
func (h *Handler) serveFallback(w http.ResponseWriter, r *http.Request, key, variantKey string, stale []byte, now time.Time, cause fallbackCause) error {
	// Cache-Status: a forwarded request says how the upstream failed; one
	// that was not forwarded (kill switch, open breaker) is a hit when a
	// copy is served.
	prefix := cacheStatusName + "; "
	hitPrefix := prefix + "hit; "
	if cause.forwarded() {
		if stale != nil {
			prefix += "fwd=stale; "
		} else {
			prefix += "fwd=miss; "
		}
		prefix += "fwd-status=" + strconv.Itoa(cause.upstream.failStatus) + "; "
		hitPrefix = prefix
	}

	// 1. The stale memory copy; a snapshot promoted into memory by an
	// earlier fallback is served as the snapshot it is (step 2).
	if stale != nil {
		var e pagecache.Entry
		decoded := e.Decode(stale) == nil
		if decoded && e.Flags&pagecache.FlagFromSnapshot != 0 {
			if h.serveSnapshotEntry(w, r, &e, now, hitPrefix) {
				return nil
			}
		} else if decoded && e.Flags&pagecache.FlagVaryMarker == 0 {
			detail := "detail=stale"
			usable := e.ServableOnError(now) || (cause.killSwitch && !e.StaleProhibited())
			if !usable && e.StaleProhibited() && h.ServeStaleDespiteOrigin {
				usable, detail = true, "detail=stale-prohibited-override"
			}
			if usable {
				h.app.CountStaleServed()
				if cause.forwarded() {
					h.metrics.count(outcomeStaleOnError)
				} else {
					h.metrics.count(outcomeStale)
				}
				h.writeEntry(w, r, &e, now, hitPrefix+detail)
				return nil
			}
		}
	}

	// 2. The snapshot.
	snapKey := key
	if variantKey != "" {
		snapKey = variantKey
	}
	epoch := h.app.MemoryTier().Epoch()
	if rec, ok, err := h.app.Snapshot(snapKey); err != nil {
		h.logger.Error("reading snapshot", zap.String("key", snapKey), zap.Error(err))
	} else if ok {
		var e pagecache.Entry
		if err := e.Decode(rec.Value); err != nil {
			h.logger.Error("decoding snapshot", zap.String("key", snapKey), zap.Error(err))
		} else if h.serveSnapshotEntry(w, r, &e, now, hitPrefix) {
			purged := h.app.SnapshotStale(rec)
			if hook := promoteHook.Load(); hook != nil {
				(*hook)(snapKey)
			}
			h.promoteSnapshot(snapKey, &e, epoch, purged)
			return nil
		}
	}

	// 3. The configured fallback.
	hdr := w.Header()
	retryAfter := strconv.Itoa(int(time.Duration(h.Breaker.Cooldown) / time.Second))
	if h.Fallback != nil {
		h.app.CountFallbackServed()
		h.metrics.count(outcomeFallback)
		hdr.Set("Content-Type", h.Fallback.ContentType)
		hdr.Set("Content-Length", strconv.Itoa(len(h.fallback)))
		hdr.Set("Cache-Control", "no-store")
		hdr.Set("Retry-After", retryAfter)
		hdr.Set("Cache-Status", prefix+"detail=fallback")
		w.WriteHeader(h.Fallback.Status)
		if r.Method != http.MethodHead {
			_, _ = w.Write(h.fallback)
		}
		return nil
	}

	// 4. The upstream's own error response, or ours.
	h.metrics.count(outcomeError)
	if res := cause.upstream; res != nil && res.errStatus >= 500 {
		copyHeader(hdr, res.errHeader)
		h.processUpstreamHeaders(hdr)
		hdr.Del("Content-Length")
		hdr.Set("Cache-Status", prefix+"detail=upstream-error")
		w.WriteHeader(res.errStatus)
		if r.Method != http.MethodHead {
			_, _ = w.Write(res.errBody)
		}
		return nil
	}
	status := http.StatusServiceUnavailable
	msg := "Service temporarily unavailable: the upstream is in snapshot-only mode and no copy of this page exists.\n"
	switch {
	case cause.breakerOpen:
		msg = "Service temporarily unavailable: the upstream is failing and no copy of this page exists.\n"
	case cause.upstream != nil && cause.upstream.failStatus == http.StatusGatewayTimeout:
		status = http.StatusGatewayTimeout
		msg = "The upstream did not answer in time and no copy of this page exists.\n"
	case cause.upstream != nil && cause.upstream.failStatus != http.StatusServiceUnavailable:
		status = http.StatusBadGateway
		msg = "The upstream failed and no copy of this page exists.\n"
	}
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Retry-After", retryAfter)
	hdr.Set("Cache-Status", prefix+"detail=no-copy")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(msg))
	}
	return nil
}

// promoteHook, when set (tests), is called with the key of a snapshot
// just served, after its purge marks were read and before it is promoted.
var promoteHook atomic.Pointer[func(key string)]

// serveSnapshotEntry serves a snapshot (read from the snapshot store, or
// promoted into memory) and reports whether it could: not a Vary marker,
// and not a copy whose origin forbade stale serving beyond the windows it
// granted, unless the operator chose serve_stale_despite_origin.
func (h *Handler) serveSnapshotEntry(w http.ResponseWriter, r *http.Request, e *pagecache.Entry, now time.Time, hitPrefix string) bool {
	if e.Flags&pagecache.FlagVaryMarker != 0 || (e.StaleProhibited() && !e.ServableOnError(now) && !h.ServeStaleDespiteOrigin) {
		return false
	}
	detail := "detail=snapshot"
	if e.StaleProhibited() && !e.ServableOnError(now) {
		detail = "detail=snapshot-prohibited-override"
	}
	h.app.CountSnapshotServed()
	h.metrics.count(outcomeSnapshot)
	e.Flags |= pagecache.FlagFromSnapshot // an ESI template in it is checked again
	h.writeEntry(w, r, e, now, hitPrefix+detail)
	return true
}

// promoteSnapshot puts a snapshot just served into the memory tier, so the
// next fallback for its key serves it from there without reading the
// snapshot store: with its identity body restored, marked FlagFromSnapshot
// and never fresh (no freshness, no stale-while-revalidate window), so a
// request while the upstream is healthy fetches the page again. It is
// stored under the epoch read before the snapshot was: a purge meanwhile
// leaves it stale as well. It replaces the memory copy that could not be
// served (past its stale window). A snapshot a purge had marked stale is
// marked FlagPurgedSnapshot: never served in place of a slow upstream
// (stale_after). A purge that marks it after it was read is not missed: a
// purge marks the snapshots before it purges the memory tier, so its
// memory purge either finds the promoted copy (removes it, or marks it a
// purged snapshot when soft) or moves the epoch first (the memory tier
// then stores it as a purged snapshot).
func (h *Handler) promoteSnapshot(key string, e *pagecache.Entry, epoch uint64, purged bool) {
	p := *e
	if err := p.RestoreBody(); err != nil {
		return
	}
	p.Flags = (p.Flags | pagecache.FlagFromSnapshot) &^ (pagecache.FlagBodyInZstd | pagecache.FlagPurgedSnapshot)
	if purged {
		p.Flags |= pagecache.FlagPurgedSnapshot
	}
	p.FreshFor, p.StaleWhileRevalidate = 0, 0
	err := h.app.MemoryTier().Set(key, p.Encode(), p.Tags, epoch)
	h.forgetMemo(key) // an ESI page's memo is of the entry stored before
	if err != nil {
		h.logger.Debug("snapshot not promoted into memory", zap.String("key", key), zap.Error(err))
	}
}
