package pagecache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
)

// Options configure the memory tier.
type Options struct {
	// MaxBytes bounds the memory the tier holds (at least 1 MiB): the
	// entries get MaxBytes minus an eighth, rounded down to whole MiB (at
	// least 1 MiB), counted as the store weighs them (see entryWeight: key,
	// the allocation holding the encoded entry, the store's node); the tag
	// index gets the rest (at least an eighth, see IndexBudget). The
	// entries least likely to be used again are evicted to make room in
	// either.
	MaxBytes int64
	// MaxEntryBytes is the largest encoded entry that will be stored.
	MaxEntryBytes int
	// LifeWindow is how long an entry may stay at most, whatever its
	// freshness; default 24h.
	LifeWindow time.Duration
	// SetMemoryLimit makes the tier hold the process's Go soft memory
	// limit (runtime/debug.SetMemoryLimit) at MemoryLimitFor(the bounds of
	// all such open tiers) until it is closed, so the garbage collector
	// keeps the process's memory near the bound instead of letting the
	// heap grow to twice what is live (GOGC). It does nothing when the
	// GOMEMLIMIT environment variable is set: the operator's limit wins.
	SetMemoryLimit bool
}

// Cache is the memory tier: encoded entries held in an otter cache
// (W-TinyLFU eviction bounded by weight), each an immutable byte slice
// that a hit reads in place, without a copy or an allocation. Reads take
// no lock (otter's hash table is read lock-free); the tag index has its
// own lock, which hits never take, so purges and stores do not stall hits.
type Cache struct {
	store *otter.Cache[string, []byte]
	index *tagIndex
	opts  Options

	releaseMemoryLimit func()
	closeOnce          sync.Once

	// epoch counts purges' beginnings and ends (see purging); a response
	// fetched while a purge that may select it ran is stored stale, or not
	// at all after a hard one (see Set and purgescope.go).
	epoch atomic.Uint64
	// purges logs what the recent purges selected (purgescope.go); the
	// epoch moves under its lock.
	purges purgeLog

	hits, misses, stores, purged, evicted, storeErrors atomic.Uint64
	// storedStale and notStored count the stores a purge since their epoch
	// made stale (or could have: the log could not tell), and the ones a
	// hard purge kept out of the tier (ErrPurgedWhileFetched).
	storedStale, notStored atomic.Uint64
}

// ErrTooLarge is returned by Set for entries above MaxEntryBytes.
var ErrTooLarge = errors.New("pagecache: entry larger than max entry size")

// New creates a memory tier.
func New(opts Options) (*Cache, error) {
	if opts.MaxBytes < 1<<20 {
		opts.MaxBytes = 1 << 20
	}
	if opts.MaxEntryBytes <= 0 {
		opts.MaxEntryBytes = 8 << 20
	}
	if opts.LifeWindow <= 0 {
		opts.LifeWindow = 24 * time.Hour
	}
	mib, indexBudget := SplitBound(opts.MaxBytes)
	entryBytes := int64(mib) << 20
	if int64(opts.MaxEntryBytes) > entryBytes || opts.MaxEntryBytes > maxWeight-entryOverhead-(1<<16) {
		return nil, fmt.Errorf("pagecache: memory bound %d MiB cannot hold an entry of max entry size %d bytes", mib, opts.MaxEntryBytes)
	}
	c := &Cache{index: newTagIndex(), opts: opts}
	c.index.indexBudget = indexBudget
	store, err := otter.New(&otter.Options[string, []byte]{
		MaximumWeight:    uint64(entryBytes),
		Weigher:          entryWeight,
		ExpiryCalculator: otter.ExpiryWriting[string, []byte](opts.LifeWindow),
		OnAtomicDeletion: c.onRemove,
		// Maintenance (applying writes, evicting) runs on the goroutine
		// that wrote, or on a reader that finds the read buffer full and
		// the policy's lock free (it never waits for it): an eviction is
		// done before Set returns, so the bound holds at every store, and
		// no goroutine is started per write.
		Executor: func(fn func()) { fn() },
	})
	if err != nil {
		return nil, fmt.Errorf("pagecache: creating memory tier: %w", err)
	}
	c.store = store
	c.index.onTrim = c.deleteEntry
	c.releaseMemoryLimit = func() {}
	if opts.SetMemoryLimit {
		c.releaseMemoryLimit = holdMemoryLimit(entryBytes + indexBudget)
	}
	return c, nil
}

// SplitBound divides a memory bound between the entries (whole MiB, at
// least 1) and the tag index (the rest, at least bound/8). The two add up
// to the bound except for bounds under 2 MiB, where the index's eighth
// comes on top of 1 MiB.
func SplitBound(bound int64) (entryMiB int, indexBudget int64) {
	bound = max(bound, 1<<20)
	entryMiB = max(1, int((bound-bound/8)>>20))
	indexBudget = max(bound-int64(entryMiB)<<20, bound/8)
	return entryMiB, indexBudget
}

// Close stops the purge cleanup and the store's expiry goroutine, and
// releases this tier's share of the soft memory limit.
// Closing twice is harmless.
func (c *Cache) Close() error {
	c.closeOnce.Do(func() {
		c.index.close()
		c.releaseMemoryLimit()
		c.store.StopAllGoroutines()
		c.store.InvalidateAll()
	})
	return nil
}

// MaxEntryBytes is the configured largest entry.
func (c *Cache) MaxEntryBytes() int { return c.opts.MaxEntryBytes }

// slotHeaderSize is the tag index slot (key id and generation, 4 bytes
// each) stored in front of every entry, so an eviction names exactly the
// store it removes (see tagIndex).
const slotHeaderSize = 8

// entryOverhead is what the store holds per entry beside the key and the
// entry's allocation: its node (links, expiry, the key and slice headers,
// about 100 bytes), its slot in the hash table and its share of the
// frequency sketch. BenchmarkMemoryPerEntry measures it
// (outside-store-B/entry, which also holds the tag index).
const entryOverhead = 160

// maxWeight is the largest weight otter records (uint32).
const maxWeight = 1<<32 - 1

// entryWeight is what an entry costs the store's bound: its key, the
// allocation holding its slot header and encoded entry (the capacity Set
// allocated, rounded up to Go's size class), and entryOverhead.
func entryWeight(key string, v []byte) uint32 {
	return uint32(min(len(key)+cap(v)+entryOverhead, maxWeight))
}

// storedValue is what the store holds for encoded: room for the slot
// header, then a copy of encoded. It is a new allocation for every store,
// never reused nor modified once stored (readers hold the store's bytes
// without a lock); its capacity is the allocation's size (slices.Grow
// rounds it up to Go's size class), which entryWeight counts.
func storedValue(encoded []byte) []byte {
	b := slices.Grow([]byte(nil), slotHeaderSize+len(encoded))[:slotHeaderSize]
	return append(b, encoded...)
}

// Get returns the encoded entry stored under key: the store's own bytes,
// shared by every reader, neither copied nor allocated. They must never
// be modified (Entry.Decode aliases them; appending to them copies, as
// the slice is capped). An entry purged but not yet forgotten by the
// store (see tagIndex) is not returned. An entry a soft purge marked is
// returned marked (see softPurgedEntry): copied once, at its first hit.
func (c *Cache) Get(key string) ([]byte, bool) {
	b, ok := c.store.GetIfPresent(key)
	if !ok || len(b) < slotHeaderSize {
		return nil, false
	}
	current, softPurged := c.index.current(binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:]))
	if !current {
		return nil, false
	}
	if softPurged {
		return c.softPurgedEntry(key, b)
	}
	return b[slotHeaderSize:len(b):len(b)], true
}

// CountHit and CountMiss record the outcome of a lookup for Stats.
func (c *Cache) CountHit()  { c.hits.Add(1) }
func (c *Cache) CountMiss() { c.misses.Add(1) }

// Epoch returns the purge counter; pass it to Set to detect a purge that
// ran while the response was being fetched. It moves when a purge begins
// and again when it has removed or marked its entries, so an epoch read
// before an entry was read is current only if no purge ran (even partly)
// since: what was read while a purge ran is never kept under an epoch
// that stays current after it. It is one global counter, whatever the
// purge selects: the ESI memos (cachehandler) use it as a "nothing purged
// since" stamp; Set asks the purge log which purges since could select
// the entry it stores (purgescope.go).
func (c *Cache) Epoch() uint64 { return c.epoch.Load() }

// purging moves the epoch as a purge of scope s begins, recording s in the
// purge log under the same hold of its lock, and returns what moves it
// again when the purge is done (deferred by every purge).
func (c *Cache) purging(s purgeScope) func() {
	c.purges.mu.Lock()
	c.epoch.Add(1)
	c.purges.beginLocked(&s)
	c.purges.mu.Unlock()
	return func() {
		c.purges.mu.Lock()
		c.purges.endLocked(&s, c.epoch.Add(1))
		c.purges.mu.Unlock()
	}
}

// Set stores an encoded entry under key with its tags (explicit tags; the
// URL and host tags are derived from key). If a purge that may select the
// entry ran since epoch was read, the entry is stored stale so the next
// request revalidates it (see markStoredDuringPurge); if a hard one did,
// it is not stored and Set returns ErrPurgedWhileFetched. Purges that
// cannot select it leave it as it is (see purgescope.go).
func (c *Cache) Set(key string, encoded []byte, tags []string, epoch uint64) error {
	_, err := c.set(key, encoded, tags, epoch, false)
	return err
}

// SetIfAbsent is Set, unless key is already stored (or purged and not
// forgotten yet): then it stores nothing and returns false. The check and
// the store are one step, so a concurrent Set of the key is never
// overwritten: a warm start refilling the tier from older copies uses it.
func (c *Cache) SetIfAbsent(key string, encoded []byte, tags []string, epoch uint64) (bool, error) {
	return c.set(key, encoded, tags, epoch, true)
}

func (c *Cache) set(key string, encoded []byte, tags []string, epoch uint64, ifAbsent bool) (bool, error) {
	if len(encoded) > c.opts.MaxEntryBytes {
		return false, ErrTooLarge
	}
	b := storedValue(encoded)
	size := int64(entryWeight(key, b))
	// Under the index lock, before the key is indexed anew. If a purge
	// that may select the entry began since epoch was read (or was
	// running then), either that purge already detached its members or
	// it will remove or mark this key: the entry is stored stale, or, for
	// a hard purge, not at all. A purge beginning after this check waits
	// for the index lock, and then finds the entry.
	check := func() error {
		if c.epoch.Load() == epoch {
			return nil
		}
		e := b[slotHeaderSize:]
		fromSnapshot := len(e) > flagsOffset && e[flagsOffset]&FlagFromSnapshot != 0
		switch c.purges.verdict(key, tags, fromSnapshot, epoch) {
		case verdictHard:
			c.notStored.Add(1)
			return ErrPurgedWhileFetched
		case verdictSoft:
			c.storedStale.Add(1)
			markStoredDuringPurge(e)
		}
		return nil
	}
	err := c.index.setChecked(key, tags, size, ifAbsent, check, func(id, gen uint32) error {
		binary.LittleEndian.PutUint32(b, id)
		binary.LittleEndian.PutUint32(b[4:], gen)
		c.store.Set(key, b)
		return nil
	})
	if errors.Is(err, errPresent) {
		return false, nil
	}
	if errors.Is(err, ErrPurgedWhileFetched) {
		return false, err
	}
	if err != nil {
		c.storeErrors.Add(1)
		return false, fmt.Errorf("pagecache: storing %q: %w", key, err)
	}
	c.stores.Add(1)
	return true, nil
}

// markStoredDuringPurge marks an entry stored under an epoch a purge has
// moved since: stale (MarkEncodedStale), and, for a snapshot promoted
// into memory (FlagFromSnapshot), a purged snapshot (FlagPurgedSnapshot):
// the purge may have marked its snapshot stale after it was read (a
// purge marks the snapshots before the memory tier), which nothing here
// can check, so it is served only in place of a failed upstream.
func markStoredDuringPurge(b []byte) {
	MarkEncodedStale(b)
	if len(b) > flagsOffset && b[0] == entryVersion && b[flagsOffset]&FlagFromSnapshot != 0 {
		b[flagsOffset] |= FlagPurgedSnapshot
	}
}

// onRemove keeps the tag index consistent when the store evicts an entry
// for space or age. It runs under a lock of the store's hash table (and
// sometimes its policy's), so it only queues the eviction under the
// index's small eviction mutex; the index applies it at its next
// operation. Deletions (Delete, a trim of the index, the purge cleanup)
// and replacements by a newer store are not evictions.
//
// A purged entry the cleanup has not deleted yet is not counted as
// evicted (it was counted as purged).
func (c *Cache) onRemove(e otter.DeletionEvent[string, []byte]) {
	if !e.WasEvicted() || len(e.Value) < slotHeaderSize {
		return
	}
	id, gen := binary.LittleEndian.Uint32(e.Value), binary.LittleEndian.Uint32(e.Value[4:])
	if current, _ := c.index.current(id, gen); current {
		c.evicted.Add(1)
		c.index.evict(id, gen)
	}
}

// Delete removes one key.
func (c *Cache) Delete(key string) {
	c.index.remove(key, c.deleteEntry)
}

// deleteEntry deletes a key's entry from the store (deleting an absent
// key is harmless). The index calls it under its lock, so a store of the
// same key cannot interleave.
func (c *Cache) deleteEntry(key string) {
	c.store.Invalidate(key)
}

// PurgeTags removes every entry carrying any of tags and returns how many
// entries were removed. When it returns none of them is served any more;
// the index forgets them and deletes them from the store in the
// background, in chunks (see tagIndex), and Stats.PurgePending counts them
// until then. Hits never wait for a purge: they do not take the index
// lock, and the store's reads take no lock.
func (c *Cache) PurgeTags(tags []string) int {
	defer c.purging(tagScope(tags, true))()
	n := 0
	for _, t := range tags {
		n += c.index.purgeTag(t, nil)
	}
	c.purged.Add(uint64(n))
	return n
}

// PurgeURL removes the entries of one URL. pathKey is scheme://host/path;
// fullKey, when it differs from pathKey, limits the purge to that exact
// normalized query (all its Vary variants).
func (c *Cache) PurgeURL(pathKey, fullKey string) int {
	defer c.purging(urlScope(pathKey, fullKey, true))()
	n := c.index.purgeTag(URLTag(pathKey), exactQuery(pathKey, fullKey))
	c.purged.Add(uint64(n))
	return n
}

// exactQuery selects, among the entries of pathKey's URL tag, those of
// fullKey's exact query (all its Vary variants); nil (all of them) when
// fullKey is the path alone.
func exactQuery(pathKey, fullKey string) func(string) bool {
	if fullKey == pathKey {
		return nil
	}
	return func(k string) bool { return BaseKey(k) == fullKey }
}

// PurgeHost removes every entry of a host.
func (c *Cache) PurgeHost(host string) int {
	return c.PurgeTags([]string{HostTag(host)})
}

// PurgePrefix removes every entry whose URL (scheme://host/path...) starts
// with prefix.
func (c *Cache) PurgePrefix(prefix string) int {
	defer c.purging(purgeScope{hard: true, sels: []selKey{{selPrefix, prefix}}})()
	n := c.index.purgePrefix(prefix)
	c.purged.Add(uint64(n))
	return n
}

// PurgeAll empties the memory tier.
func (c *Cache) PurgeAll() int {
	defer c.purging(purgeScope{all: true, hard: true})()
	n := c.index.reset(c.store.InvalidateAll)
	c.purged.Add(uint64(n))
	return n
}

// Stats is a point-in-time view of the memory tier.
type Stats struct {
	// Entries counts the entries that may be served (stored, not purged).
	Entries int `json:"entries"`
	// Bytes is the memory in use under MaxBytes: EntryBytes plus
	// IndexBytes.
	Bytes int `json:"bytes"`
	// EntryBytes is what the entries that may be served weigh in the
	// store: their keys, the allocations holding them and the store's
	// per-entry structures (see entryWeight). Purged entries stop
	// counting when purged (the cleanup deletes them soon after).
	EntryBytes int `json:"entry_bytes"`
	// IndexBytes is the estimated memory of the tag index for the stored
	// keys; the oldest entries are evicted when it passes IndexMaxBytes.
	// Purged keys stop counting when purged (the index forgets them in the
	// background).
	IndexBytes    int   `json:"index_bytes"`
	IndexMaxBytes int64 `json:"index_max_bytes"`
	// AllocatedBytes is what the store holds, as it weighs its entries
	// (EntryBytes plus purged entries the cleanup has not deleted yet); the
	// store evicts to keep it within the entries' share of MaxBytes.
	AllocatedBytes int    `json:"allocated_bytes"`
	MaxBytes       int64  `json:"max_bytes"`
	Hits           uint64 `json:"hits"`
	Misses         uint64 `json:"misses"`
	Stores         uint64 `json:"stores"`
	Purged         uint64 `json:"purged"`
	Evicted        uint64 `json:"evicted"`
	StoreErrs      uint64 `json:"store_errors"`
	// StoredStale counts the entries stored stale because a purge that
	// could select them (or one the purge log could no longer tell
	// about) ran while they were fetched; NotStoredPurged the responses
	// not stored because a hard purge selecting them did
	// (ErrPurgedWhileFetched).
	StoredStale     uint64 `json:"stored_stale_after_purge"`
	NotStoredPurged uint64 `json:"not_stored_after_hard_purge"`
	Tags            int    `json:"tags"`
	// PurgePending counts purged entries (no longer served, not in
	// Entries) the background cleanup has not unlinked from the tag index
	// yet.
	PurgePending int `json:"purge_pending"`
}

// Stats returns counters and sizes.
func (c *Cache) Stats() Stats {
	entries, bytes, index, trimmed := c.index.sizes()
	return Stats{
		Entries:         entries,
		Bytes:           int(bytes + index),
		EntryBytes:      int(bytes),
		IndexBytes:      int(index),
		IndexMaxBytes:   c.index.indexBudget,
		AllocatedBytes:  int(c.store.WeightedSize()),
		MaxBytes:        c.opts.MaxBytes,
		Hits:            c.hits.Load(),
		Misses:          c.misses.Load(),
		Stores:          c.stores.Load(),
		Purged:          c.purged.Load(),
		Evicted:         c.evicted.Load() + trimmed,
		StoreErrs:       c.storeErrors.Load(),
		StoredStale:     c.storedStale.Load(),
		NotStoredPurged: c.notStored.Load(),
		Tags:            c.index.tagCount(),

		PurgePending: c.index.pending(),
	}
}

// BaseKey strips the Vary suffix from a key.
func BaseKey(key string) string {
	if i := strings.IndexByte(key, 0); i >= 0 {
		return key[:i]
	}
	return key
}

// PathKeyOf returns scheme://host/path of a key (no query, no Vary suffix).
func PathKeyOf(key string) string {
	key = BaseKey(key)
	if i := strings.IndexByte(key, '?'); i >= 0 {
		return key[:i]
	}
	return key
}

// HostOf returns the host of a key.
func HostOf(key string) string {
	rest := key
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	if i := strings.IndexAny(rest, "/?\x00"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// URLTag and HostTag are the implicit tags every entry is indexed under.
func URLTag(pathKey string) string { return "url:" + pathKey }

// HostTag is the implicit tag of every entry of a host.
func HostTag(host string) string { return "host:" + strings.ToLower(host) }
