package cachehandler

import (
	"bytes"
	"net/http"
	"strings"
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
//   - every fragment it holds is the same entry it was made from (its
//     generation: stored at the same instant, same entity tag and
//     lengths), still fresh (the earliest freshness end), under the same
//     key, not a Vary marker.
//
// The fragments are checked only when a purge ran since the memo was made
// or last checked (the memory tier's purge epoch: tag, URL, prefix, host
// and full purges, and the invalidations after unsafe requests, which
// purge by URL): a purge deletes what it purges, and a fragment stored
// again is another generation, so a memo whose fragments all still stand
// is kept, stamped with the new epoch, and the next hits use it without
// checking. A purge anywhere on the site (every entry saved in Craft)
// thus costs each memoized page one read of its fragments' entries, not
// an assembly.
//
// Pages with a private fragment, a stale, alt, placeholder or failed one,
// or a fragment stored as a Vary variant are never memoized. Memos are
// bounded in bytes per handler (maxMemoBytes); one that does not fit
// evicts others. A memo's compressed bodies are the assembly's own
// (gzip and zstd written from the stored segments): nothing is compressed
// to make one, and a memo hit sends the bytes an assembly would.

// maxMemoBytes bounds the memos of one handler.
const maxMemoBytes = 16 << 20

// memoTrack collects, during one assembly, what decides whether it may be
// memoized: the earliest freshness end of the fragments it used, their
// generations, and whether one was a Vary variant.
type memoTrack struct {
	mu      sync.Mutex
	until   time.Time
	variant bool
	frags   []fragmentGen
}

// entryGen identifies one stored generation of an entry: a store, a
// revalidation or a promotion stores another.
type entryGen struct {
	stored           time.Time
	etag             string
	bodyLen, tmplLen int
}

func genOf(e *pagecache.Entry) entryGen {
	return entryGen{stored: e.StoredAt, etag: e.ETag, bodyLen: len(e.Body), tmplLen: len(e.ESI)}
}

// same reports whether e is the generation g.
func (g *entryGen) same(e *pagecache.Entry) bool {
	return g.stored.Equal(e.StoredAt) && g.etag == e.ETag && g.bodyLen == len(e.Body) && g.tmplLen == len(e.ESI)
}

// fragmentGen is a fragment a memo holds: its cache key and generation.
type fragmentGen struct {
	key string
	gen entryGen
}

// note records a fresh fragment entry e read under key.
func (t *memoTrack) note(key string, e *pagecache.Entry, variant bool) {
	if t == nil {
		return
	}
	t.add(key, genOf(e), freshUntil(e), variant)
}

func (t *memoTrack) add(key string, g entryGen, end time.Time, variant bool) {
	t.mu.Lock()
	if t.until.IsZero() || end.Before(t.until) {
		t.until = end
	}
	t.variant = t.variant || variant
	t.frags = append(t.frags, fragmentGen{key: key, gen: g})
	t.mu.Unlock()
}

// assembledMemo is one memoized page.
type assembledMemo struct {
	stored  time.Time
	etag    string
	bodyLen int
	tmplLen int
	epoch   uint64
	until   time.Time // the page's and every fragment's freshness end
	frags   []fragmentGen
	// page is what a memo hit replays of the page entry: its status,
	// header fields, StoredAt and InitialAge (for Age).
	page pagecache.Entry

	identity, gzip, zstd []byte
	cacheStatus          string   // the fragments' Cache-Status members, ", "-joined
	hitStatus            []string // statusHit followed by them
	reports              []esi.Report
	logFields            []string
}

func (m *assembledMemo) size() int {
	n := len(m.identity) + len(m.gzip) + len(m.zstd) + 256
	for _, f := range m.page.Header {
		n += len(f.Name) + len(f.Value) + 32
	}
	for _, f := range m.frags {
		n += len(f.key) + len(f.gen.etag) + 64
	}
	return n
}

// memos is a handler's memo table.
type memos struct {
	mu    sync.RWMutex
	byKey map[string]*assembledMemo
	bytes int
}

// get returns the memo of page entry e stored under key, if it was made
// from that entry and is within its fragments' freshness. current reports
// that no purge ran since it was made or last checked (epoch); otherwise
// its fragments must be checked (Handler.recheckMemo) before it is used.
func (ms *memos) get(key string, e *pagecache.Entry, epoch uint64, now time.Time) (m *assembledMemo, current bool) {
	ms.mu.RLock()
	m = ms.byKey[key]
	ms.mu.RUnlock()
	if m == nil || !now.Before(m.until) ||
		!m.stored.Equal(e.StoredAt) || m.etag != e.ETag || m.bodyLen != len(e.Body) || m.tmplLen != len(e.ESI) {
		return nil, false
	}
	return m, m.epoch == epoch
}

// direct returns the memo stored under key when it can answer a hit
// without the page's entry being read (Handler.serveMemo): current (no
// purge since it was made or checked) and within its freshness, the
// page's own included.
func (ms *memos) direct(key string, epoch uint64, now time.Time) *assembledMemo {
	ms.mu.RLock()
	m := ms.byKey[key]
	ms.mu.RUnlock()
	if m == nil || m.epoch != epoch || !now.Before(m.until) {
		return nil
	}
	return m
}

// drop forgets the memo stored under key, if any.
func (ms *memos) drop(key string) {
	ms.mu.Lock()
	if m := ms.byKey[key]; m != nil {
		ms.bytes -= m.size()
		delete(ms.byKey, key)
	}
	ms.mu.Unlock()
}

// restamp replaces old, if it is still the memo under key, by a copy made
// current at epoch, and returns the copy (old itself is shared with the
// hits reading it, and stays as it is).
func (ms *memos) restamp(key string, old *assembledMemo, epoch uint64) *assembledMemo {
	m := *old
	m.epoch = epoch
	ms.mu.Lock()
	if ms.byKey[key] == old {
		ms.byKey[key] = &m
	}
	ms.mu.Unlock()
	return &m
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

// memoize keeps assembly a of page entry e (settled, every fragment a
// fresh memory copy, see memoizable) under key: its identity body and,
// when the page's template has its compressed segments (compressed
// answers are then served from them), its gzip and zstd ones, written from
// the segments as a hit's would be. written is what a already wrote in
// coding for this request.
func (h *Handler) memoize(key string, e *pagecache.Entry, t *esi.Template, epoch uint64, a *esi.Assembly, reports []esi.Report, track *memoTrack, coding string, written []byte) {
	m := &assembledMemo{
		stored: e.StoredAt, etag: e.ETag, bodyLen: len(e.Body), tmplLen: len(e.ESI),
		epoch: epoch, until: track.until, frags: track.frags,
		reports: reports,
		page: pagecache.Entry{Status: e.Status, StoredAt: e.StoredAt, InitialAge: e.InitialAge,
			Header: make([]pagecache.HeaderField, len(e.Header))},
	}
	if end := freshUntil(e); end.Before(m.until) {
		m.until = end
	}
	for i, f := range e.Header { // not aliasing the record e was read from
		m.page.Header[i] = pagecache.HeaderField{Name: strings.Clone(f.Name), Value: strings.Clone(f.Value)}
	}
	codings := []string{esi.CodingIdentity}
	if t.Compressed {
		codings = append(codings, esi.CodingGzip, esi.CodingZstd)
	}
	for _, c := range codings {
		var body []byte
		if c == coding {
			body = bytes.Clone(written)
		} else {
			var buf bytes.Buffer
			buf.Grow(len(written))
			if _, err := a.Write(&buf, c); err != nil {
				return
			}
			body = buf.Bytes()
		}
		switch c {
		case esi.CodingIdentity:
			m.identity = body
		case esi.CodingGzip:
			m.gzip = body
		case esi.CodingZstd:
			m.zstd = body
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

// recheckMemo is m, made before the purge epoch moved to epoch, stamped
// current when every fragment it holds is still the generation it was
// made from (fresh, under the same key, not a Vary marker); nil when one
// is not. r is the page request (lookups need it for nothing but Vary,
// and a fragment now stored with Vary fails the check).
func (h *Handler) recheckMemo(r *http.Request, key string, m *assembledMemo, epoch uint64, now time.Time) *assembledMemo {
	for i := range m.frags {
		f := &m.frags[i]
		if fm := h.esi.fragMemos.get(f.key, epoch, now); fm != nil {
			if fm.gen != f.gen {
				return nil
			}
			continue
		}
		var e pagecache.Entry
		_, variantKey, found := h.lookup(r, f.key, &e)
		if !found || variantKey != "" || e.Status != http.StatusOK || !e.Fresh(now) || !f.gen.same(&e) {
			return nil
		}
	}
	return h.esi.memos.restamp(key, m, epoch)
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
	gen   entryGen
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
	m := &fragmentMemo{frag: f, gen: genOf(e), until: freshUntil(e), epoch: epoch, size: len(f.Body) + len(key) + 256}
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

// noteMemo is note for a fragment read from its memo, under key.
func (t *memoTrack) noteMemo(key string, m *fragmentMemo) {
	if t == nil {
		return
	}
	t.add(key, m.gen, m.until, false)
}
