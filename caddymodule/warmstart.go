package caddymodule

import (
	"bytes"
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

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

// The refill is paced so that it does not compete with the requests it is
// for: it works in batches of about warmBatchWork and after each one
// pauses a multiple of what the batch took: warmPauseFactor for the pages
// served most (at most a quarter of one CPU), warmTailPauseFactor for the
// rest, newest first (at most an eighth: each of those saves a rare miss).
// When the machine is busy a batch takes longer and the pause grows with
// it. warmStartPause, when set (tests), is called at each pause instead
// of waiting.
var (
	warmBatchWork       = 2 * time.Millisecond
	warmStartPause      func(refilled int64)
	warmPauseFactor     = 3
	warmTailPauseFactor = 7
)

// The refill's start is not paced: the pages that took warmBurstShare of
// the sampled hits before the restart (the few served most) are refilled
// at once, for at most warmBurstWork. Each saves more work than it costs:
// until it is back, every request for it is a miss, which fetches,
// renders and compresses the page.
const (
	warmBurstShare = 0.8
	warmBurstWork  = 100 * time.Millisecond
)

// WarmStartHealth is the warm start's progress in GET /craftedge/health.
type WarmStartHealth struct {
	// State is "off" (warm_start off, or the memory tier was kept from
	// the previous config), "running" or "done".
	State string `json:"state"`
	// Refilled counts the entries put in the memory tier; Bytes their
	// encoded size. ServedFirst counts those refilled first because they
	// were among the pages served most before the restart (the rest
	// follow most recently stored first).
	Refilled    int64 `json:"refilled"`
	Bytes       int64 `json:"bytes"`
	ServedFirst int64 `json:"served_first"`
	// OnRequest counts the entries put in the memory tier for a request
	// that missed while the refill ran, before it reached their page (not
	// in Refilled: the refill later skips them as present).
	OnRequest int64 `json:"on_request"`
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
	// ElapsedMS is how long the refill has run (took, once done), and
	// PausedMS how much of it it paused to leave the CPU to requests.
	ElapsedMS int64 `json:"elapsed_ms"`
	PausedMS  int64 `json:"paused_ms"`
}

// warmStart is the refill's progress; one per memory tier created.
type warmStart struct {
	state                           atomic.Value // string
	running                         atomic.Bool  // state is "running"
	refilled, bytes, servedFirst    atomic.Int64
	onRequest                       atomic.Int64
	purged, present, damaged, other atomic.Int64
	full                            atomic.Bool
	began                           time.Time
	took, paused                    atomic.Int64 // nanoseconds; took once done
	onMiss                          singleflight.Group
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
	elapsed := time.Duration(w.took.Load())
	if st == "running" {
		elapsed = time.Since(w.began)
	}
	return WarmStartHealth{
		State: st, Refilled: w.refilled.Load(), Bytes: w.bytes.Load(), ServedFirst: w.servedFirst.Load(),
		OnRequest:     w.onRequest.Load(),
		SkippedPurged: w.purged.Load(), SkippedPresent: w.present.Load(),
		SkippedDamaged: w.damaged.Load(), SkippedOther: w.other.Load(), Full: w.full.Load(),
		ElapsedMS: elapsed.Milliseconds(), PausedMS: time.Duration(w.paused.Load()).Milliseconds(),
	}
}

// warmStartOn reports whether the warm start is configured (the default).
func (a *App) warmStartOn() bool { return a.WarmStart == nil || *a.WarmStart }

// startWarmStart starts folding the sampled hits into the served pages'
// scores and, for a memory tier this config created, refills it from the
// snapshots in the background: Start does not wait for it.
func (a *App) startWarmStart() {
	if validatingOnly || a.store == nil {
		return
	}
	if a.warmStartOn() {
		servedByHash.load(a.store, a.logger)
		ctx := a.ctx.Context
		go a.runServedScores(ctx)
	}
	if !a.memoryCreated {
		return // a kept tier keeps its progress report
	}
	if !a.warmStartOn() || a.store.Damaged() != nil {
		currentWarmStart.Store(nil)
		return
	}
	w := &warmStart{began: time.Now()}
	w.state.Store("running")
	w.running.Store(true)
	currentWarmStart.Store(w)
	ctx := a.ctx.Context
	go func() {
		a.refill(ctx, w)
		w.took.Store(int64(time.Since(w.began)))
		w.running.Store(false)
		w.state.Store("done")
		a.logger.Info("warm start: memory tier refilled from snapshots",
			zap.Int64("entries", w.refilled.Load()), zap.Int64("bytes", w.bytes.Load()),
			zap.Int64("served_first", w.servedFirst.Load()), zap.Int64("on_request", w.onRequest.Load()),
			zap.Int64("skipped_purged", w.purged.Load()), zap.Int64("skipped_present", w.present.Load()),
			zap.Int64("skipped_damaged", w.damaged.Load()), zap.Int64("skipped_other", w.other.Load()),
			zap.Bool("memory_full", w.full.Load()), zap.Duration("took", time.Since(w.began)),
			zap.Duration("paused", time.Duration(w.paused.Load())))
	}()
}

// refiller is one refill's state.
type refiller struct {
	a          *App
	w          *warmStart
	ctx        context.Context
	mem        *pagecache.Cache
	entryShare int64
	evicted0   uint64
	batchStart time.Time
	burst      bool // not paced (see warmBurstShare)
	tail       bool // paced by warmTailPauseFactor
	bufs       refillBuffers
	// done holds the keys refilled first (served most), which the walk
	// newest first skips.
	done map[string]struct{}
}

// refill puts snapshots in the memory tier until the tier is full: first
// the pages served most before the restart (sampled hits, see
// NoteServed), most served first, then the rest most recently stored
// first. Entries go in exactly as they were stored, StoredAt and
// freshness included: one past its freshness is stale, as it would have
// been without the restart. Snapshots marked stale by a purge, keys the
// tier already holds, Vary variants (their marker is not in the snapshots)
// and records that do not decode are skipped. It is paced (see
// warmBatchWork).
func (a *App) refill(ctx context.Context, w *warmStart) {
	mem := a.memory
	entryMiB, _ := pagecache.SplitBound(mem.Stats().MaxBytes)
	r := &refiller{a: a, w: w, ctx: ctx, mem: mem, entryShare: int64(entryMiB) << 20,
		evicted0: mem.Stats().Evicted, batchStart: time.Now()}
	bad := func(key string, err error) {
		w.damaged.Add(1)
		a.logger.Warn("warm start: skipping a damaged snapshot record", zap.String("key", key), zap.Error(err))
	}
	if !r.servedFirst(bad) {
		return
	}
	r.tail = true
	err := a.store.Newest(func(rec snapshot.Record) bool {
		if _, done := r.done[rec.Key]; done {
			return true
		}
		return r.put(rec)
	}, bad)
	if err != nil && ctx.Err() == nil {
		a.logger.Error("warm start: reading snapshots", zap.Error(err))
	}
}

// servedFirst refills the snapshots of the pages served most, most served
// first, and reports whether the refill goes on. It finds their keys in
// the snapshots' time index (keys only, no record read) and reads each
// record by key.
func (r *refiller) servedFirst(bad func(string, error)) bool {
	scores := servedByHash.top()
	if len(scores) == 0 {
		return true
	}
	type hot struct {
		key   string
		score float64
	}
	var list []hot
	err := r.a.store.NewestKeys(func(key string) bool {
		if v, ok := scores[servedHash(key)]; ok {
			list = append(list, hot{key, v})
		}
		return r.ctx.Err() == nil && len(list) < len(scores)
	})
	if err != nil {
		if r.ctx.Err() == nil {
			r.a.logger.Error("warm start: reading snapshot keys", zap.Error(err))
		}
		return r.ctx.Err() == nil
	}
	// Most served first; among equals, most recently stored first (the
	// order NewestKeys gave).
	slices.SortStableFunc(list, func(x, y hot) int { return cmp.Compare(y.score, x.score) })
	r.done = make(map[string]struct{}, len(list))
	var total, sum float64
	for _, h := range list {
		total += h.score
	}
	burstEnd := time.Now().Add(warmBurstWork)
	defer func() { r.burst = false }()
	for _, h := range list {
		r.burst = sum < warmBurstShare*total && time.Now().Before(burstEnd)
		sum += h.score
		rec, found, err := r.a.store.Get(h.key)
		switch {
		case err != nil && found:
			bad(h.key, err)
			r.done[h.key] = struct{}{}
			continue
		case err != nil:
			if r.ctx.Err() == nil {
				r.a.logger.Error("warm start: reading a snapshot", zap.String("key", h.key), zap.Error(err))
			}
			return r.ctx.Err() == nil
		case !found:
			continue // deleted since: the walk newest first will not see it either
		}
		r.done[h.key] = struct{}{}
		before := r.w.refilled.Load()
		if !r.put(rec) {
			return false
		}
		if r.w.refilled.Load() > before {
			r.w.servedFirst.Add(1)
		}
	}
	return true
}

// put refills one snapshot and reports whether the refill goes on (false
// when the memory tier is full or the config is unloaded).
func (r *refiller) put(rec snapshot.Record) bool {
	if r.ctx.Err() != nil {
		return false
	}
	defer r.pace()
	if h := warmStartHook; h != nil {
		h(rec.Key)
	}
	raw, tags, ok := r.w.encodeForMemory(r.a, rec, &r.bufs)
	if !ok {
		return true
	}
	st := r.mem.Stats()
	if st.Evicted != r.evicted0 || int64(st.EntryBytes)+int64(len(rec.Key)+len(raw)) > r.entryShare-r.entryShare/8 ||
		int64(st.IndexBytes) > st.IndexMaxBytes-st.IndexMaxBytes/8 {
		r.w.full.Store(true)
		return false
	}
	r.w.insert(r.a, rec, raw, tags, &r.w.refilled)
	return true
}

// refillBuffers are reused from one entry to the next (the memory tier
// copies what it stores): the identity body, the gzip variant, the
// encoded entry.
type refillBuffers struct {
	body, raw []byte
	gzip      bytes.Buffer
}

// encodeForMemory decodes a snapshot record and encodes it as the memory
// tier keeps it, into b's buffers (raw aliases them until their next
// use). It reports false, counting and logging why, for what is not
// refilled: Vary variants (their marker is not in the snapshots), pages
// with an ESI template (today's include policy, which only the cache
// handler knows, must pass first: they come back on their first request)
// and records that do not decode.
func (w *warmStart) encodeForMemory(a *App, rec snapshot.Record, b *refillBuffers) (raw []byte, tags []string, ok bool) {
	if strings.IndexByte(rec.Key, 0) >= 0 {
		w.other.Add(1)
		return nil, nil, false
	}
	var e pagecache.Entry
	if err := e.Decode(rec.Value); err != nil {
		w.damaged.Add(1)
		a.logger.Warn("warm start: skipping a snapshot that does not decode", zap.String("key", rec.Key), zap.Error(err))
		return nil, nil, false
	}
	if e.Flags&pagecache.FlagVaryMarker != 0 || len(e.ESI) > 0 {
		w.other.Add(1)
		return nil, nil, false
	}
	if e.Flags&pagecache.FlagBodyInZstd != 0 {
		// Snapshots keep the zstd body only; the memory tier keeps
		// every variant, as the store path does: the identity body is
		// decompressed and the gzip one compressed again (the zstd one
		// is the snapshot's).
		var err error
		if b.body, err = pagecache.RestoreBodyInto(&e, b.body); err != nil {
			w.damaged.Add(1)
			a.logger.Warn("warm start: skipping a snapshot whose body does not decompress", zap.String("key", rec.Key), zap.Error(err))
			return nil, nil, false
		}
		e.Flags &^= pagecache.FlagBodyInZstd
		if err := pagecache.CompressGzip(&e, &b.gzip); err != nil {
			a.logger.Warn("warm start: compressing a snapshot's gzip variant", zap.String("key", rec.Key), zap.Error(err))
		}
	}
	b.raw = e.AppendEncode(b.raw[:0])
	return b.raw, e.Tags, true
}

// insert puts an encoded snapshot in the memory tier unless a purge or
// invalidation marked the snapshot stale or the tier already holds its
// key, counting the entry in stored when it was put in. It holds
// purgeRefillMu, so no purge runs between the check and the insert.
func (w *warmStart) insert(a *App, rec snapshot.Record, raw []byte, tags []string, stored *atomic.Int64) bool {
	purgeRefillMu.Lock()
	defer purgeRefillMu.Unlock()
	if a.store.Stale(rec) {
		w.purged.Add(1)
		return false
	}
	mem := a.memory
	ok, err := mem.SetIfAbsent(rec.Key, raw, tags, mem.Epoch())
	switch {
	case err != nil:
		w.other.Add(1)
	case !ok:
		w.present.Add(1)
	default:
		stored.Add(1)
		w.bytes.Add(int64(len(raw)))
	}
	return ok && err == nil
}

// RefillOnMiss is the warm start answering a request that missed before
// the refill reached its page: while the refill runs, it puts key's
// snapshot in the memory tier at once, by the refill's rules (never a
// purged one; as it was stored, freshness included), and reports whether
// it did; the caller looks the key up again. Concurrent misses of one key
// share the work. Once the refill is done (or off) it is two atomic loads.
// A miss for a page with no snapshot costs one read of the bbolt file
// (its index, no fsync) while the refill runs.
func (a *App) RefillOnMiss(key string) bool {
	w := currentWarmStart.Load()
	if w == nil || !w.running.Load() || !a.MemoryServes() || a.store == nil || a.memory == nil ||
		strings.IndexByte(key, 0) >= 0 { // keyed extras: never refilled (encodeForMemory)
		return false
	}
	v, _, _ := w.onMiss.Do(key, func() (any, error) {
		rec, found, err := a.store.Get(key)
		if err != nil {
			if found {
				w.damaged.Add(1)
				a.logger.Warn("warm start: skipping a damaged snapshot record", zap.String("key", key), zap.Error(err))
			}
			return false, nil
		}
		if !found {
			return false, nil
		}
		var b refillBuffers
		raw, tags, ok := w.encodeForMemory(a, rec, &b)
		if !ok {
			return false, nil
		}
		return w.insert(a, rec, raw, tags, &w.onRequest), nil
	})
	return v.(bool)
}

// pace pauses the refill after about warmBatchWork of work, for
// warmPauseFactor (warmTailPauseFactor in the tail) times as long as the
// batch took, except in the burst.
func (r *refiller) pace() {
	if r.burst {
		r.batchStart = time.Now()
		return
	}
	took := time.Since(r.batchStart)
	if took < warmBatchWork {
		return
	}
	factor := warmPauseFactor
	if r.tail {
		factor = warmTailPauseFactor
	}
	pause := took * time.Duration(factor)
	if p := warmStartPause; p != nil {
		p(r.w.refilled.Load())
	} else {
		t := time.NewTimer(pause)
		select {
		case <-r.ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	r.w.paused.Add(int64(pause))
	r.batchStart = time.Now()
}
