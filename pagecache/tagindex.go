package pagecache

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
)

// tagIndex maps tags to the keys carrying them, and keys back to their
// tags, so a purge finds its entries directly and an eviction or overwrite
// leaves no dangling members. It lives beside the store, never inside it,
// under its own lock, which cache hits never take.
//
// Keys and tags are interned to numeric ids (slots in two slices), so a
// tag's members are a flat slice of (key id, generation) postings rather
// than a map of strings. Every store of a key gets a new generation from
// one counter that never restarts; the current generation of every key id
// is in gens, readable without the lock. A posting, or an eviction
// reported by the store, whose generation is not the key's current one is
// stale and ignored; stale postings are compacted away once they outnumber
// the live ones.
//
// The generation is also stored in front of the entry in the store (see
// Cache.Set), which makes purges cheap: a purge detaches the tag's list
// and gives each member a dead generation (one atomic store per key), and
// from that instant Cache.Get rejects those entries. Unlinking them from
// their other tags, forgetting their names and deleting them from the
// store is left to a cleanup goroutine, in chunks (hits take no lock a
// delete takes). The store's eviction callback, which runs under a lock
// of the store, only queues (id, generation) under a small mutex of its
// own; the queue is applied at the next index operation.
type tagIndex struct {
	mu       sync.Mutex
	keyIDs   map[string]uint32
	keys     []keySlot
	freeKeys []uint32
	tagIDs   map[string]uint32
	tags     []tagSlot
	freeTags []uint32
	lastGen  uint32
	gens     genTable
	// retiredKeys and retiredTags count slots whose names are still in
	// keyIDs and tagIDs though nothing is stored under them: the purge
	// cleanup and re-stores retire slots instead of deleting map entries
	// one by one (random memory accesses, the cost of a large purge); a
	// retired name looked up again is revived, and rebuildLocked drops
	// them all at once when they outnumber the live ones.
	retiredKeys, retiredTags int
	// liveBytes is the sum of the sizes of the keys that may be served
	// (see keySlot.size).
	liveBytes int64
	// indexBytes is what the index holds for the stored keys (see
	// indexCharge); when it passes indexBudget (if not 0) the oldest
	// stored keys are evicted (see trimLocked). order lists the stores,
	// oldest first from orderHead; entries whose generation is no longer
	// current are skipped.
	indexBytes  int64
	indexBudget int64
	order       []posting
	orderHead   int
	// onTrim deletes a key evicted by trimLocked, or purged and reached
	// by the cleanup, from the store, under the index lock.
	onTrim  func(key string)
	trimmed uint64
	scratch []byte   // tag name being looked up
	tagBuf  []uint32 // tag ids of the key being added

	// doomed are purged keys (id and the dead generation they were given)
	// still to be unlinked by the cleanup goroutine, which runs while
	// cleaning is true; doomedKeys counts the slots still marked doomed.
	doomed     []posting
	doomedKeys int
	cleaning   bool
	closed     bool
	held       bool       // tests hold the cleanup back (holdCleanup)
	idle       *sync.Cond // signalled when cleanup finishes

	evMu    sync.Mutex
	evicted []posting // reported by the store, not applied yet
	spare   []posting // the previous evicted slice, reused
}

// posting is one key in a tag's member list, valid while the key's
// generation is still gen.
type posting struct{ id, gen uint32 }

// keySlot is an interned key; a free or retired slot has gens 0. doomed
// marks a key purged and not cleaned up yet.
type keySlot struct {
	key  string
	tags []uint32
	// size is what the key's entry weighs in the store (entryWeight)
	// while the key may be served, counted in liveBytes;
	// 0 once it is purged, evicted or removed.
	size int64
	// charge is what the key counts in indexBytes while it is indexed.
	charge  int64
	doomed  bool
	retired bool
}

// indexCharge is what one stored key costs the tag index: its slot, its
// name in the key map, its postings (with room for the stale ones
// compaction allows), its place in the store order, its generation and a
// share of its tags' slots (a tag carried by one key only, like
// "entry:42", costs the key its whole name). It errs on the high side of
// BenchmarkMemoryPerEntry's index-B/entry (about 400-500 bytes for
// handler-shaped keys with five tags). The store's own per-entry
// structures are in the entry's weight (entryWeight).
func indexCharge(key string, tags []string) int64 {
	n := int64(384 + 2*len(key) + 32*(len(tags)+2))
	for _, t := range tags {
		n += int64(len(t))
	}
	return n
}

// tagSlot is an interned tag. live counts the keys carrying it (including
// purged keys the cleanup has not reached yet); it is freed when that drops
// to zero. postings holds live and stale members.
type tagSlot struct {
	name     string
	live     int
	postings []posting
	retired  bool
}

// cleanupChunk is how many purged keys the cleanup handles per hold of the
// index lock, so stores (which take it) wait at most one chunk.
const cleanupChunk = 256

func newTagIndex() *tagIndex {
	ix := &tagIndex{
		keyIDs: make(map[string]uint32),
		tagIDs: make(map[string]uint32),
	}
	ix.idle = sync.NewCond(&ix.mu)
	return ix
}

// add records key under tags plus its implicit URL and host tags, replacing
// whatever it was indexed under before.
func (ix *tagIndex) add(key string, tags []string) {
	_ = ix.set(key, tags, 0, nil)
}

// set indexes key as add does and, under the same hold of the index lock,
// calls write with the key's id and new generation (to be stored with the
// entry and reported back on eviction): the index and the store change
// together, so a purge sees either both or neither. If write fails, the
// key is forgotten.
// size is the bytes the entry holds, counted in liveBytes while the key
// may be served.
func (ix *tagIndex) set(key string, tags []string, size int64, write func(id, gen uint32) error) error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.drainLocked()
	return ix.setLocked(key, tags, size, write)
}

// errPresent is setIfAbsent's answer for a key already indexed.
var errPresent = errors.New("pagecache: key already stored")

// setIfAbsent is set, unless key is indexed already (stored, or purged and
// not cleaned up yet): then it returns errPresent and changes nothing.
func (ix *tagIndex) setIfAbsent(key string, tags []string, size int64, write func(id, gen uint32) error) error {
	return ix.setChecked(key, tags, size, true, nil, write)
}

// setChecked is set (setIfAbsent when ifAbsent) that first calls check,
// when given, under the same hold of the index lock: if it fails, nothing
// changes (the key's current entry, if any, stays) and its error is
// returned.
func (ix *tagIndex) setChecked(key string, tags []string, size int64, ifAbsent bool, check func() error, write func(id, gen uint32) error) error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.drainLocked()
	if ifAbsent {
		if id, ok := ix.keyIDs[key]; ok && !ix.keys[id].retired && ix.gens.load(id) != 0 {
			return errPresent
		}
	}
	if check != nil {
		if err := check(); err != nil {
			return err
		}
	}
	return ix.setLocked(key, tags, size, write)
}

func (ix *tagIndex) setLocked(key string, tags []string, size int64, write func(id, gen uint32) error) error {
	id, gen := ix.addLocked(key, tags)
	if write != nil {
		if err := write(id, gen); err != nil {
			ix.unlinkKeyLocked(id, false)
			return err
		}
	}
	ix.keys[id].size = size
	ix.liveBytes += size
	ix.keys[id].charge = indexCharge(key, tags)
	ix.indexBytes += ix.keys[id].charge
	ix.order = append(ix.order, posting{id, gen})
	ix.trimLocked(id)
	if write == nil {
		return nil
	}
	ix.maybeRebuildLocked()
	return nil
}

// trimLocked evicts the oldest stored keys, other than keep, while
// indexBytes is over indexBudget, and compacts the store order when most
// of it is stale.
func (ix *tagIndex) trimLocked(keep uint32) {
	for ix.indexBudget > 0 && ix.indexBytes > ix.indexBudget && ix.orderHead < len(ix.order) {
		p := ix.order[ix.orderHead]
		ix.orderHead++
		if p.id == keep || !ix.validLocked(p) || ix.keys[p.id].doomed {
			continue
		}
		key := ix.keys[p.id].key
		ix.unlinkKeyLocked(p.id, false)
		ix.trimmed++
		if ix.onTrim != nil {
			ix.onTrim(key)
		}
	}
	if n := len(ix.order) - ix.orderHead; ix.orderHead > n || n > 2*len(ix.keyIDs)+1024 {
		live := ix.order[:0]
		for _, p := range ix.order[ix.orderHead:] {
			if ix.validLocked(p) {
				live = append(live, p)
			}
		}
		ix.order, ix.orderHead = live, 0
	}
}

func (ix *tagIndex) addLocked(key string, tags []string) (id, gen uint32) {
	id, ok := ix.keyIDs[key]
	switch {
	case ok && ix.keys[id].retired:
		ix.keys[id].retired = false
		ix.retiredKeys--
	case ok:
		// Before interning: it may retire tags, which interning revives.
		ix.unlinkTagsLocked(id, true)
	default:
		if n := len(ix.freeKeys); n > 0 {
			id = ix.freeKeys[n-1]
			ix.freeKeys = ix.freeKeys[:n-1]
		} else {
			id = uint32(len(ix.keys))
			ix.keys = append(ix.keys, keySlot{})
		}
		ix.keyIDs[key] = id
		ix.keys[id].key = key
	}
	ix.indexBytes -= ix.keys[id].charge // the store before, if any, is replaced
	ix.keys[id].charge = 0
	ix.tagBuf = ix.tagBuf[:0]
	ix.scratch = append(append(ix.scratch[:0], "url:"...), PathKeyOf(key)...)
	ix.tagBuf = appendUnique(ix.tagBuf, ix.internScratchLocked())
	ix.scratch = appendLower(append(ix.scratch[:0], "host:"...), HostOf(key))
	ix.tagBuf = appendUnique(ix.tagBuf, ix.internScratchLocked())
	for _, t := range tags {
		ix.scratch = append(ix.scratch[:0], t...)
		ix.tagBuf = appendUnique(ix.tagBuf, ix.internScratchLocked())
	}
	gen = ix.nextGenLocked()
	ix.gens.store(id, gen)
	s := &ix.keys[id]
	ix.uncountLocked(s) // the entry stored before, if any, is replaced
	ix.undoomLocked(s)
	s.tags = append(s.tags[:0], ix.tagBuf...)
	for _, tid := range s.tags {
		t := &ix.tags[tid]
		t.live++
		t.postings = append(t.postings, posting{id, gen})
	}
	return id, gen
}

// nextGenLocked returns a new generation: 31 bits, never 0 (the top bit
// of a key's generation in the table is genSoftPurged).
func (ix *tagIndex) nextGenLocked() uint32 {
	ix.lastGen = (ix.lastGen + 1) &^ genSoftPurged
	if ix.lastGen == 0 {
		ix.lastGen = 1
	}
	return ix.lastGen
}

// internScratchLocked returns the id of the tag named ix.scratch, creating
// it if needed (the name is copied only then).
func (ix *tagIndex) internScratchLocked() uint32 {
	if tid, ok := ix.tagIDs[string(ix.scratch)]; ok {
		if t := &ix.tags[tid]; t.retired {
			t.retired = false
			ix.retiredTags--
		}
		return tid
	}
	name := string(ix.scratch)
	var tid uint32
	if n := len(ix.freeTags); n > 0 {
		tid = ix.freeTags[n-1]
		ix.freeTags = ix.freeTags[:n-1]
		ix.tags[tid] = tagSlot{name: name}
	} else {
		tid = uint32(len(ix.tags))
		ix.tags = append(ix.tags, tagSlot{name: name})
	}
	ix.tagIDs[name] = tid
	return tid
}

func appendUnique(ids []uint32, id uint32) []uint32 {
	for _, x := range ids {
		if x == id {
			return ids
		}
	}
	return append(ids, id)
}

// appendLower appends s lowercased (ASCII, as HostTag does for hosts).
func appendLower(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// unlinkTagsLocked removes key id from the live counts of its tags (its
// postings become stale when its generation changes), freeing (or, when
// retire, retiring) tags no key carries any more and compacting lists that
// are mostly stale.
func (ix *tagIndex) unlinkTagsLocked(id uint32, retire bool) {
	s := &ix.keys[id]
	for _, tid := range s.tags {
		t := &ix.tags[tid]
		t.live--
		if t.live == 0 {
			if retire {
				t.postings, t.retired = nil, true
				ix.retiredTags++
			} else {
				delete(ix.tagIDs, t.name)
				*t = tagSlot{}
				ix.freeTags = append(ix.freeTags, tid)
			}
			continue
		}
		if stale := len(t.postings) - t.live; stale > 2*t.live+64 {
			ix.compactLocked(t)
		}
	}
	s.tags = s.tags[:0]
}

// compactLocked drops the stale postings of t.
func (ix *tagIndex) compactLocked(t *tagSlot) {
	live := make([]posting, 0, t.live+t.live/4)
	for _, p := range t.postings {
		if ix.validLocked(p) {
			live = append(live, p)
		}
	}
	t.postings = live
}

func (ix *tagIndex) validLocked(p posting) bool {
	return int(p.id) < len(ix.keys) && ix.gens.load(p.id)&^genSoftPurged == p.gen
}

// unlinkKeyLocked forgets key id, freeing its slot or, when retire,
// retiring it (see retiredKeys).
func (ix *tagIndex) unlinkKeyLocked(id uint32, retire bool) {
	ix.unlinkTagsLocked(id, retire)
	s := &ix.keys[id]
	ix.indexBytes -= s.charge
	s.charge = 0
	ix.uncountLocked(s)
	ix.undoomLocked(s)
	if cap(s.tags) > 16 {
		s.tags = nil
	}
	ix.gens.store(id, 0)
	if retire {
		s.retired = true
		ix.retiredKeys++
		return
	}
	delete(ix.keyIDs, s.key)
	s.key = ""
	ix.freeKeys = append(ix.freeKeys, id)
}

// maybeRebuildLocked drops retired names from the maps, by building them
// anew from the live slots, once retired slots outnumber live ones: the
// cost is proportional to what stays, paid once per as many retirements.
// Slot ids do not change (stored entries carry them).
func (ix *tagIndex) maybeRebuildLocked() {
	if ix.retiredKeys > len(ix.keyIDs)-ix.retiredKeys+1024 {
		m := make(map[string]uint32, len(ix.keyIDs)-ix.retiredKeys)
		for id := range ix.keys {
			s := &ix.keys[id]
			switch {
			case s.retired:
				s.key, s.retired = "", false
				ix.freeKeys = append(ix.freeKeys, uint32(id))
			case s.key != "":
				m[s.key] = uint32(id)
			}
		}
		ix.keyIDs, ix.retiredKeys = m, 0
	}
	if ix.retiredTags > len(ix.tagIDs)-ix.retiredTags+1024 {
		m := make(map[string]uint32, len(ix.tagIDs)-ix.retiredTags)
		for tid := range ix.tags {
			t := &ix.tags[tid]
			switch {
			case t.retired:
				*t = tagSlot{}
				ix.freeTags = append(ix.freeTags, uint32(tid))
			case t.name != "":
				m[t.name] = uint32(tid)
			}
		}
		ix.tagIDs, ix.retiredTags = m, 0
	}
}

// current reports whether gen is key id's current generation (whether an
// entry stored with it may be served) and, if so, whether a soft purge
// marked it since (see markSoft). It takes no lock.
func (ix *tagIndex) current(id, gen uint32) (current, softPurged bool) {
	g := ix.gens.load(id)
	return gen != 0 && g&^genSoftPurged == gen, g&genSoftPurged != 0
}

// evict queues the removal of key id at generation gen, reported by
// the store under a lock of its own: it never waits for the index lock.
func (ix *tagIndex) evict(id, gen uint32) {
	ix.evMu.Lock()
	ix.evicted = append(ix.evicted, posting{id, gen})
	ix.evMu.Unlock()
}

// drainLocked applies the queued evictions.
func (ix *tagIndex) drainLocked() {
	ix.evMu.Lock()
	ev := ix.evicted
	ix.evicted = ix.spare[:0]
	ix.evMu.Unlock()
	for _, p := range ev {
		if ix.validLocked(p) {
			ix.unlinkKeyLocked(p.id, false)
		}
	}
	if cap(ev) > 4096 {
		ev = nil // do not keep a burst's worth of memory
	}
	ix.evMu.Lock()
	ix.spare = ev[:0]
	ix.evMu.Unlock()
}

// remove forgets key, calling del(key) under the index lock so a store of
// the same key cannot interleave.
func (ix *tagIndex) remove(key string, del func(string)) {
	ix.mu.Lock()
	ix.drainLocked()
	if id, ok := ix.keyIDs[key]; ok && !ix.keys[id].retired {
		ix.unlinkKeyLocked(id, false)
	}
	del(key)
	ix.mu.Unlock()
}

// purgeTag purges every key carrying tag (and accepted by filter, when
// given) and returns how many. When it returns, none of them is served
// (Cache.Get checks generations); the cleanup goroutine unlinks them and
// deletes them from the store afterwards. Stores that add the tag from now on start a new
// member list.
func (ix *tagIndex) purgeTag(tag string, filter func(string) bool) int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.drainLocked()
	tid, ok := ix.tagIDs[tag]
	if !ok {
		return 0
	}
	t := &ix.tags[tid]
	list := t.postings
	if filter == nil {
		t.postings = nil
	}
	dead := ix.nextGenLocked()
	n := 0
	for _, p := range list {
		if !ix.validLocked(p) || (filter != nil && !filter(ix.keys[p.id].key)) {
			continue
		}
		ix.doomLocked(p.id, dead)
		n++
	}
	ix.startCleanupLocked()
	return n
}

// doomLocked gives key id the dead generation (no entry carries it, so
// Get rejects the key's entry from now on) and queues it for cleanup.
func (ix *tagIndex) doomLocked(id, dead uint32) {
	ix.gens.store(id, dead)
	ix.uncountLocked(&ix.keys[id])
	// Its index memory is freed by the cleanup, soon; it stops counting
	// now, as its entry's bytes do, so what health reports after a purge
	// does not depend on the cleanup's progress.
	ix.indexBytes -= ix.keys[id].charge
	ix.keys[id].charge = 0
	ix.keys[id].doomed = true
	ix.doomedKeys++
	ix.doomed = append(ix.doomed, posting{id, dead})
}

// uncountLocked takes s's entry out of liveBytes: it is no longer served.
func (ix *tagIndex) uncountLocked(s *keySlot) {
	ix.liveBytes -= s.size
	s.size = 0
}

func (ix *tagIndex) undoomLocked(s *keySlot) {
	if s.doomed {
		s.doomed = false
		ix.doomedKeys--
	}
}

// purgePrefix purges every key whose URL starts with prefix, as purgeTag
// does, scanning the key slots in chunks.
func (ix *tagIndex) purgePrefix(prefix string) int {
	n := 0
	ix.mu.Lock()
	defer ix.mu.Unlock()
	dead := ix.nextGenLocked()
	ix.eachPrefixLocked(prefix, func(id, _ uint32) {
		ix.doomLocked(id, dead)
		n++
	})
	ix.startCleanupLocked()
	return n
}

// eachPrefixLocked calls fn with the id and generation of every stored,
// not doomed key whose URL starts with prefix. It scans the key slots in
// chunks, letting go of the lock (held on entry and on return) between
// them so stores and hits' index reads are not stalled by a long scan.
func (ix *tagIndex) eachPrefixLocked(prefix string, fn func(id, gen uint32)) {
	for from := 0; ; from += cleanupChunk {
		if from > 0 {
			ix.mu.Unlock()
			ix.mu.Lock()
		}
		ix.drainLocked()
		if from >= len(ix.keys) {
			return
		}
		for id := from; id < min(from+cleanupChunk, len(ix.keys)); id++ {
			s := &ix.keys[id]
			gen := ix.gens.load(uint32(id)) &^ genSoftPurged
			if gen == 0 || s.doomed || !strings.HasPrefix(BaseKey(s.key), prefix) {
				continue
			}
			fn(uint32(id), gen)
		}
	}
}

func (ix *tagIndex) startCleanupLocked() {
	if ix.cleaning || ix.closed || ix.held || len(ix.doomed) == 0 {
		return
	}
	ix.cleaning = true
	go ix.cleanup()
}

// cleanup unlinks purged keys, a chunk per hold of the lock, until none is
// left.
func (ix *tagIndex) cleanup() {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for len(ix.doomed) > 0 && !ix.closed {
		ix.drainLocked()
		chunk := ix.doomed[:min(cleanupChunk, len(ix.doomed))]
		for _, p := range chunk {
			if !ix.validLocked(p) {
				continue // stored again (or evicted) since the purge
			}
			if ix.onTrim != nil {
				ix.onTrim(ix.keys[p.id].key)
			}
			ix.unlinkKeyLocked(p.id, true)
		}
		ix.doomed = ix.doomed[len(chunk):]
		ix.mu.Unlock()
		runtime.Gosched() // the cleanup is not urgent: let stores run
		ix.mu.Lock()
	}
	if len(ix.doomed) == 0 {
		ix.doomed = nil
	}
	ix.maybeRebuildLocked()
	ix.cleaning = false
	ix.idle.Broadcast()
}

// holdCleanup keeps the cleanup from starting (hold true) or lets it run.
// Tests use it to store purged keys again before the cleanup reaches them.
func (ix *tagIndex) holdCleanup(hold bool) {
	ix.mu.Lock()
	ix.held = hold
	ix.startCleanupLocked()
	ix.mu.Unlock()
}

// waitCleanup returns once no purged key is left to clean up.
func (ix *tagIndex) waitCleanup() {
	ix.mu.Lock()
	for ix.cleaning {
		ix.idle.Wait()
	}
	ix.mu.Unlock()
}

// pending is how many purged keys the cleanup has still to unlink.
func (ix *tagIndex) pending() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.doomedKeys
}

// close stops the cleanup (the store is going away) and waits for it.
func (ix *tagIndex) close() {
	ix.mu.Lock()
	ix.closed = true
	for ix.cleaning {
		ix.idle.Wait()
	}
	ix.mu.Unlock()
}

// reset forgets everything, calling clear under the index lock, and
// returns how many live keys it forgot. The generation counter carries on,
// so evictions reported for entries stored before the reset match nothing.
func (ix *tagIndex) reset(clear func()) int {
	ix.mu.Lock()
	ix.drainLocked()
	live := ix.liveLocked()
	ix.keyIDs = make(map[string]uint32)
	ix.keys, ix.freeKeys = nil, nil
	ix.tagIDs = make(map[string]uint32)
	ix.tags, ix.freeTags = nil, nil
	ix.retiredKeys, ix.retiredTags = 0, 0
	ix.doomed, ix.doomedKeys = nil, 0
	ix.liveBytes, ix.indexBytes = 0, 0
	ix.order, ix.orderHead = nil, 0
	ix.gens.clear()
	clear()
	ix.evMu.Lock()
	ix.evicted = nil
	ix.evMu.Unlock()
	ix.mu.Unlock()
	return live
}

// liveLocked is how many keys may be served: indexed, not purged.
func (ix *tagIndex) liveLocked() int {
	return len(ix.keyIDs) - ix.retiredKeys - ix.doomedKeys
}

// liveCount is liveLocked, after applying queued evictions.
func (ix *tagIndex) liveCount() int {
	n, _ := ix.liveStats()
	return n
}

// liveStats returns liveLocked and liveBytes, after applying queued
// evictions.
func (ix *tagIndex) liveStats() (keys int, bytes int64) {
	keys, bytes, _, _ = ix.sizes()
	return keys, bytes
}

// sizes returns liveLocked, liveBytes, indexBytes and how many keys
// trimLocked evicted, after applying queued evictions.
func (ix *tagIndex) sizes() (keys int, bytes, index int64, trimmed uint64) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.drainLocked()
	return ix.liveLocked(), ix.liveBytes, ix.indexBytes, ix.trimmed
}

func (ix *tagIndex) tagCount() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.drainLocked()
	return len(ix.tagIDs) - ix.retiredTags
}

func (ix *tagIndex) keyCount() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.drainLocked()
	return len(ix.keyIDs) - ix.retiredKeys
}

// genTable holds the current generation of every key id in fixed pages,
// so it grows without moving what readers load: Get reads it without the
// index lock. Writers hold the index lock.
type genTable struct {
	pages atomic.Pointer[[]*genPage]
}

const genPageBits = 14

type genPage [1 << genPageBits]atomic.Uint32

func (g *genTable) load(id uint32) uint32 {
	pages := g.pages.Load()
	if pages == nil || int(id>>genPageBits) >= len(*pages) {
		return 0
	}
	return (*pages)[id>>genPageBits][id&(1<<genPageBits-1)].Load()
}

func (g *genTable) store(id, gen uint32) {
	pages := g.pages.Load()
	if pages == nil || int(id>>genPageBits) >= len(*pages) {
		var grown []*genPage
		if pages != nil {
			grown = append(grown, *pages...)
		}
		for len(grown) <= int(id>>genPageBits) {
			grown = append(grown, new(genPage))
		}
		pages = &grown
		g.pages.Store(pages)
	}
	(*pages)[id>>genPageBits][id&(1<<genPageBits-1)].Store(gen)
}

// clear zeroes every generation (after a reset no id is in use).
func (g *genTable) clear() {
	if pages := g.pages.Load(); pages != nil {
		for _, p := range *pages {
			for i := range p {
				p[i].Store(0)
			}
		}
	}
}
