package caddymodule

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/craftedge/craftedge/pagecache"
	"github.com/craftedge/craftedge/snapshot"
)

// purgeRefillMu orders purges against the warm start's refill: every
// purge and invalidation holds it shared while it purges the memory tier
// and writes its purge marks; the refill holds it exclusively while it
// checks one snapshot's purge marks and inserts it. So a snapshot is
// either inserted before a purge starts (and the purge removes it) or
// checked after the purge's marks exist (and skipped): a purge arriving
// during the refill is never undone by it.
var purgeRefillMu sync.RWMutex

// warmStartHook, when set (tests), is called with each snapshot's key
// before the refill checks and inserts it.
var warmStartHook func(key string)

// WarmStartHealth is the warm start's progress in GET /craftedge/health.
type WarmStartHealth struct {
	// State is "off" (warm_start off, or the memory tier was kept from
	// the previous config), "running" or "done".
	State string `json:"state"`
	// Refilled counts the entries put in the memory tier; Bytes their
	// encoded size.
	Refilled int64 `json:"refilled"`
	Bytes    int64 `json:"bytes"`
	// SkippedPurged counts snapshots a purge or invalidation marked stale;
	// SkippedPresent those whose key the memory tier already held (stored
	// by a request since the start); SkippedDamaged those that did not
	// decode; SkippedOther Vary variants and entries too large.
	SkippedPurged  int64 `json:"skipped_purged"`
	SkippedPresent int64 `json:"skipped_present"`
	SkippedDamaged int64 `json:"skipped_damaged"`
	SkippedOther   int64 `json:"skipped_other"`
	// Full is true when the refill stopped because the memory tier was
	// full (the rest of the snapshots are older).
	Full bool `json:"full"`
}

// warmStart is the refill's progress; one per memory tier created.
type warmStart struct {
	state                           atomic.Value // string
	refilled, bytes                 atomic.Int64
	purged, present, damaged, other atomic.Int64
	full                            atomic.Bool
}

// currentWarmStart is the progress of the last refill started in this
// process (the memory tier it refills outlives config reloads).
var currentWarmStart atomic.Pointer[warmStart]

func warmStartHealth() WarmStartHealth {
	w := currentWarmStart.Load()
	if w == nil {
		return WarmStartHealth{State: "off"}
	}
	st, _ := w.state.Load().(string)
	return WarmStartHealth{
		State: st, Refilled: w.refilled.Load(), Bytes: w.bytes.Load(),
		SkippedPurged: w.purged.Load(), SkippedPresent: w.present.Load(),
		SkippedDamaged: w.damaged.Load(), SkippedOther: w.other.Load(), Full: w.full.Load(),
	}
}

// warmStartOn reports whether the warm start is configured (the default).
func (a *App) warmStartOn() bool { return a.WarmStart == nil || *a.WarmStart }

// startWarmStart refills a memory tier this config created from the
// snapshots, in the background: Start does not wait for it.
func (a *App) startWarmStart() {
	if !a.memoryCreated || validatingOnly {
		return // a kept tier keeps its progress report
	}
	if !a.warmStartOn() || a.store.Damaged() != nil {
		currentWarmStart.Store(nil)
		return
	}
	w := new(warmStart)
	w.state.Store("running")
	currentWarmStart.Store(w)
	ctx := a.ctx.Context
	go func() {
		began := time.Now()
		a.refill(ctx, w)
		w.state.Store("done")
		a.logger.Info("warm start: memory tier refilled from snapshots",
			zap.Int64("entries", w.refilled.Load()), zap.Int64("bytes", w.bytes.Load()),
			zap.Int64("skipped_purged", w.purged.Load()), zap.Int64("skipped_present", w.present.Load()),
			zap.Int64("skipped_damaged", w.damaged.Load()), zap.Int64("skipped_other", w.other.Load()),
			zap.Bool("memory_full", w.full.Load()), zap.Duration("took", time.Since(began)))
	}()
}

// refill puts snapshots in the memory tier, most recently stored first
// (the pages requested most recently), until the tier is full. Entries go
// in exactly as they were stored, StoredAt and freshness included: one
// past its freshness is stale, as it would have been without the restart.
// Snapshots marked stale by a purge, keys the tier already holds, Vary
// variants (their marker is not in the snapshots) and records that do not
// decode are skipped.
func (a *App) refill(ctx context.Context, w *warmStart) {
	mem := a.memory
	entryMiB, _ := pagecache.SplitBound(mem.Stats().MaxBytes)
	entryShare := int64(entryMiB) << 20
	evicted0 := mem.Stats().Evicted
	err := a.store.Newest(func(rec snapshot.Record) bool {
		if ctx.Err() != nil {
			return false
		}
		if h := warmStartHook; h != nil {
			h(rec.Key)
		}
		if strings.IndexByte(rec.Key, 0) >= 0 {
			w.other.Add(1)
			return true
		}
		var e pagecache.Entry
		if err := e.Decode(rec.Value); err != nil {
			w.damaged.Add(1)
			a.logger.Warn("warm start: skipping a snapshot that does not decode", zap.String("key", rec.Key), zap.Error(err))
			return true
		}
		if e.Flags&pagecache.FlagVaryMarker != 0 || len(e.ESI) > 0 {
			// Vary markers are not snapshotted with their variants; a page
			// with an ESI template must pass today's include policy, which
			// only the cache handler knows (it rechecks snapshots it
			// serves), so it comes back on its first request instead.
			w.other.Add(1)
			return true
		}
		if e.Flags&pagecache.FlagBodyInZstd != 0 {
			// Snapshots keep the zstd body only; the memory tier keeps
			// every variant, as the store path does.
			if err := e.RestoreBody(); err != nil {
				w.damaged.Add(1)
				a.logger.Warn("warm start: skipping a snapshot whose body does not decompress", zap.String("key", rec.Key), zap.Error(err))
				return true
			}
			e.Flags &^= pagecache.FlagBodyInZstd
			e.Zstd = nil
			if err := pagecache.CompressVariants(&e); err != nil {
				a.logger.Warn("warm start: compressing a snapshot's variants", zap.String("key", rec.Key), zap.Error(err))
			}
		}
		raw := e.Encode()
		st := mem.Stats()
		if st.Evicted != evicted0 || int64(st.EntryBytes)+int64(len(rec.Key)+len(raw)) > entryShare-entryShare/8 ||
			int64(st.IndexBytes) > st.IndexMaxBytes-st.IndexMaxBytes/8 {
			w.full.Store(true)
			return false
		}
		purgeRefillMu.Lock()
		defer purgeRefillMu.Unlock()
		if a.store.Stale(rec) {
			w.purged.Add(1)
			return true
		}
		stored, err := mem.SetIfAbsent(rec.Key, raw, e.Tags, mem.Epoch())
		switch {
		case err != nil:
			w.other.Add(1)
		case !stored:
			w.present.Add(1)
		default:
			w.refilled.Add(1)
			w.bytes.Add(int64(len(raw)))
		}
		return true
	}, func(key string, err error) {
		w.damaged.Add(1)
		a.logger.Warn("warm start: skipping a damaged snapshot record", zap.String("key", key), zap.Error(err))
	})
	if err != nil && ctx.Err() == nil {
		a.logger.Error("warm start: reading snapshots", zap.Error(err))
	}
}
