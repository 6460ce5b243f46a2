package cachehandler

import (
	"sync"
	"time"

	"github.com/craftedge/craftedge/esi"
	"github.com/craftedge/craftedge/pagecache"
)

// A page whose fragments were all fresh memory copies assembles to the
// same bytes for every visitor until one of them changes, so the handler
// keeps the assembled page (identity, gzip and zstd, compressed once) and
// serves the next hits from it, as fast as a plain hit. A memo is used
// only while everything it was made from still stands:
//
//   - the page entry is the same (stored at the same instant, same entity
//     tag and lengths);
//   - no purge ran since (the memory tier's purge epoch: tag, URL, prefix,
//     host and full purges, and the invalidations after unsafe requests,
//     which purge by URL);
//   - every fragment it holds is still fresh (the earliest freshness end).
//
// Pages with a private fragment, a stale, alt, placeholder or failed one,
// or a fragment stored as a Vary variant are never memoized. Memos are
// bounded in bytes per handler (maxMemoBytes); one that does not fit
// evicts others.

// maxMemoBytes bounds the memos of one handler.
const maxMemoBytes = 16 << 20

// memoTrack collects, during one assembly, what decides whether it may be
// memoized: the earliest freshness end of the fragments it used, and
// whether one was a Vary variant.
type memoTrack struct {
	mu      sync.Mutex
	until   time.Time
	variant bool
}

func (t *memoTrack) note(e *pagecache.Entry, variant bool) {
	if t == nil {
		return
	}
	end := freshUntil(e)
	t.mu.Lock()
	if t.until.IsZero() || end.Before(t.until) {
		t.until = end
	}
	t.variant = t.variant || variant
	t.mu.Unlock()
}

// assembledMemo is one memoized page.
type assembledMemo struct {
	stored  time.Time
	etag    string
	bodyLen int
	tmplLen int
	epoch   uint64
	until   time.Time

	identity, gzip, zstd []byte
	cacheStatus          string   // the fragments' Cache-Status members, ", "-joined
	hitStatus            []string // statusHit followed by them
	reports              []esi.Report
	logFields            []string
}

func (m *assembledMemo) size() int { return len(m.identity) + len(m.gzip) + len(m.zstd) + 256 }

// memos is a handler's memo table.
type memos struct {
	mu    sync.RWMutex
	byKey map[string]*assembledMemo
	bytes int
}

// get returns the memo of page entry e stored under key, if still valid.
func (ms *memos) get(key string, e *pagecache.Entry, epoch uint64, now time.Time) *assembledMemo {
	ms.mu.RLock()
	m := ms.byKey[key]
	ms.mu.RUnlock()
	if m == nil || m.epoch != epoch || !now.Before(m.until) ||
		!m.stored.Equal(e.StoredAt) || m.etag != e.ETag || m.bodyLen != len(e.Body) || m.tmplLen != len(e.ESI) {
		return nil
	}
	return m
}

// put stores m under key, evicting other memos past maxMemoBytes.
func (ms *memos) put(key string, m *assembledMemo) {
	if m.size() > maxMemoBytes/4 {
		return
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.byKey == nil {
		ms.byKey = make(map[string]*assembledMemo)
	}
	if old := ms.byKey[key]; old != nil {
		ms.bytes -= old.size()
		delete(ms.byKey, key)
	}
	for k, old := range ms.byKey { // map order: an arbitrary victim
		if ms.bytes+m.size() <= maxMemoBytes {
			break
		}
		ms.bytes -= old.size()
		delete(ms.byKey, k)
	}
	ms.byKey[key] = m
	ms.bytes += m.size()
}

// memoize keeps the assembled identity body of a page entry when its
// assembly qualifies (see the top of this file).
// memoizable reports whether an assembly qualifies for a memo.
func memoizable(head esi.Head, reports []esi.Report, track *memoTrack) bool {
	if head.Private || head.Pending || track.variant || len(reports) == 0 || track.until.IsZero() {
		return false
	}
	for _, r := range reports {
		if r.Outcome != esi.OutcomeHit || r.Private {
			return false
		}
	}
	return true
}

func (h *Handler) memoize(key string, e *pagecache.Entry, epoch uint64, reports []esi.Report, track *memoTrack, identity []byte, contentType string) {
	m := &assembledMemo{
		stored: e.StoredAt, etag: e.ETag, bodyLen: len(e.Body), tmplLen: len(e.ESI),
		epoch: epoch, until: track.until,
		identity: append([]byte(nil), identity...),
		reports:  reports,
	}
	if pagecache.Compressible(contentType, "") {
		v := pagecache.Entry{Body: m.identity}
		if err := pagecache.CompressVariants(&v); err == nil {
			m.gzip, m.zstd = v.Gzip, v.Zstd
		}
	}
	m.cacheStatus = string(esi.AppendCacheStatus(nil, esiCacheStatusName, reports))
	m.hitStatus = []string{statusHit + ", " + m.cacheStatus}
	m.logFields = make([]string, len(reports))
	for i, r := range reports {
		m.logFields[i] = r.String()
	}
	h.esi.memos.put(key, m)
}

// Fragments read from the memory tier are kept decoded too (fragmentMemos),
// under the same rule as assembled pages: a fragment memo is used while no
// purge has run since it was made (the purge epoch) and the fragment is
// still fresh. An assembly whose page cannot be memoized (a private
// fragment beside cached ones, the first hit after a change) then reads
// only its page from the memory tier. Vary variants are not kept (the
// variant depends on the request). Bounded in bytes per handler
// (maxFragmentMemoBytes); past it, it starts over.

// maxFragmentMemoBytes bounds the fragment memos of one handler.
const maxFragmentMemoBytes = 8 << 20

type fragmentMemo struct {
	frag  esi.Fragment // Outcome hit, shared read-only by assemblies
	until time.Time
	epoch uint64
	size  int
}

type fragmentMemos struct {
	mu    sync.RWMutex
	byKey map[string]*fragmentMemo
	bytes int
}

// get returns the memo of the fragment stored under key, if still valid.
func (fm *fragmentMemos) get(key string, epoch uint64, now time.Time) *fragmentMemo {
	fm.mu.RLock()
	m := fm.byKey[key]
	fm.mu.RUnlock()
	if m == nil || m.epoch != epoch || !now.Before(m.until) {
		return nil
	}
	return m
}

// put keeps f, the fresh fragment of entry e stored under key, read at
// purge epoch epoch.
func (fm *fragmentMemos) put(key string, e *pagecache.Entry, f esi.Fragment, epoch uint64) {
	m := &fragmentMemo{frag: f, until: freshUntil(e), epoch: epoch, size: len(f.Body) + len(key) + 256}
	if f.Template != nil {
		m.size += len(e.ESI)
	}
	if m.size > maxFragmentMemoBytes/16 {
		return
	}
	fm.mu.Lock()
	defer fm.mu.Unlock()
	if fm.byKey == nil || fm.bytes+m.size > maxFragmentMemoBytes {
		fm.byKey = make(map[string]*fragmentMemo)
		fm.bytes = 0
	}
	if old := fm.byKey[key]; old != nil {
		fm.bytes -= old.size
	}
	fm.byKey[key] = m
	fm.bytes += m.size
}

// freshUntil is when a stored entry stops being fresh.
func freshUntil(e *pagecache.Entry) time.Time {
	return e.StoredAt.Add(e.FreshFor - e.InitialAge)
}

// noteUntil is note for a fragment memo.
func (t *memoTrack) noteUntil(end time.Time) {
	if t == nil {
		return
	}
	t.mu.Lock()
	if t.until.IsZero() || end.Before(t.until) {
		t.until = end
	}
	t.mu.Unlock()
}
