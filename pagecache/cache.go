package pagecache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/allegro/bigcache/v3"
)

// Options configure the memory tier.
type Options struct {
	// MaxBytes bounds the memory the tier holds (at least 1 MiB): the
	// entries' bytes in bigcache get MaxBytes minus an eighth, rounded
	// down to whole MiB (at least 1 MiB); the tag index and bigcache's
	// per-entry structures outside its queues get the rest (at least an
	// eighth, see IndexBudget). The oldest entries are evicted to make
	// room in either.
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

// Cache is the memory tier. Reads take only a bigcache shard lock; the tag
// index has its own lock, never held while bigcache is called, so purges and
// stores do not stall hits.
type Cache struct {
	big   *bigcache.BigCache
	index *tagIndex
	opts  Options

	releaseMemoryLimit func()
	closeOnce          sync.Once

	// epoch counts purges; a response fetched while a purge ran is stored
	// stale (see Set).
	epoch atomic.Uint64

	hits, misses, stores, purged, evicted, storeErrors atomic.Uint64
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
	// Each shard holds MaxBytes/shards; keep room for a few of the largest
	// entries per shard, and at most 256 shards (plenty for 2-64 cores).
	shards := 256
	for shards > 1 && int64(mib)<<20/int64(shards) < int64(opts.MaxEntryBytes)*4 {
		shards /= 2
	}
	if int64(mib)<<20/int64(shards) < int64(opts.MaxEntryBytes) {
		return nil, fmt.Errorf("pagecache: memory bound %d MiB cannot hold an entry of max entry size %d bytes", mib, opts.MaxEntryBytes)
	}
	c := &Cache{index: newTagIndex(), opts: opts}
	c.index.indexBudget = indexBudget
	// bigcache allocates MaxEntriesInWindow/Shards*MaxEntrySize bytes per
	// shard queue at New (capped at the shard's share of the bound) and
	// doubles a queue, copying it, whenever it fills below the cap. Size
	// the window so every queue starts at its cap: the bound is allocated
	// once (pages become resident only as entries are written) and no
	// queue is ever copied under its shard lock, nor left behind as
	// garbage the size of the bound.
	const sizingEntry = 16 << 10
	shardBytes := int64(mib) << 20 / int64(shards)
	cfg := bigcache.Config{
		Shards:             shards,
		LifeWindow:         opts.LifeWindow,
		CleanWindow:        time.Minute,
		MaxEntriesInWindow: shards * int((shardBytes+sizingEntry-1)/sizingEntry),
		MaxEntrySize:       sizingEntry,
		HardMaxCacheSize:   mib,
		Hasher:             seededHash{seed: maphash.MakeSeed()},
		OnRemoveWithReason: c.onRemove,
	}
	cfg = cfg.OnRemoveFilterSet(bigcache.Expired, bigcache.NoSpace)
	big, err := bigcache.NewBigCache(cfg)
	if err != nil {
		return nil, fmt.Errorf("pagecache: creating memory tier: %w", err)
	}
	c.big = big
	c.index.onTrim = c.deleteRecords
	c.releaseMemoryLimit = func() {}
	if opts.SetMemoryLimit {
		c.releaseMemoryLimit = holdMemoryLimit(int64(mib)<<20 + indexBudget)
	}
	return c, nil
}

// SplitBound divides a memory bound between bigcache's queues (whole MiB,
// at least 1) and the tag index with the per-entry structures outside the
// queues (the rest, at least bound/8). The two add up to the bound except
// for bounds under 2 MiB, where the index's eighth comes on top of 1 MiB.
func SplitBound(bound int64) (entryMiB int, indexBudget int64) {
	bound = max(bound, 1<<20)
	entryMiB = max(1, int((bound-bound/8)>>20))
	indexBudget = max(bound-int64(entryMiB)<<20, bound/8)
	return entryMiB, indexBudget
}

// Close stops the purge cleanup, releases bigcache's goroutine and this
// tier's share of the soft memory limit.
// Closing twice is harmless.
func (c *Cache) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.index.close()
		c.releaseMemoryLimit()
		err = c.big.Close()
	})
	return err
}

// MaxEntryBytes is the configured largest entry.
func (c *Cache) MaxEntryBytes() int { return c.opts.MaxEntryBytes }

// slotHeaderSize is the tag index slot (key id and generation, 4 bytes
// each) and the record's part (see partMain) stored in front of every
// record in bigcache, so an eviction names exactly the store it removes
// (see tagIndex) and a record is never taken for another part.
const slotHeaderSize = 9

// Parts of a stored entry. A large entry with compressed variants is
// stored as records under their own bigcache keys, so a hit copies out of
// bigcache only the body it sends (bigcache's Get copies the whole record):
// partMain under the entry's key holds the metadata and the identity body,
// partGzip and partZstd under partKey hold the metadata and one compressed
// body each. Every record of one store carries the same key id and
// generation, checked against the index on every read, so a reader never
// combines records of two stores: a record of an older store, or of a
// purged or evicted one, is not current. Evicting any record evicts the
// entry.
const (
	partMain uint8 = iota
	partGzip
	partZstd
)

// partSuffix separates an entry's key from its parts' keys. No cache key
// holds a NUL followed by 0xff (request header values cannot hold a NUL,
// header names not 0xff), and a part record names its part, so a record of
// another key is never read as a part.
const partSuffix = "\x00\xffpart="

// splitMinBytes: an entry is stored in parts when its compressed variants
// together reach this size; below it, copying them on every hit costs less
// than repeating the metadata in each record.
const splitMinBytes = 2 << 10

// partKey returns the bigcache key of part p of key (partGzip, partZstd).
func partKey(key string, p uint8) string {
	return key + partSuffix + string(rune('0'+p))
}

// appendPartKey appends the bigcache key of part p of key to b.
func appendPartKey(b []byte, key string, p uint8) []byte {
	return append(append(append(b, key...), partSuffix...), '0'+p)
}

// setBuffers hold header + record while bigcache copies them in; buffers
// of larger entries than maxPooledSetBuffer are left to the GC.
const maxPooledSetBuffer = 256 << 10

var setBuffers = sync.Pool{New: func() any { return new([]byte) }}

// keyBuffers hold a part's bigcache key while a hit looks it up.
var keyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// readRecord returns the record stored under bigKey if it is part p of a
// current store, with its id and generation.
func (c *Cache) readRecord(bigKey string, p uint8) (rec []byte, id, gen uint32, ok bool) {
	b, err := c.big.Get(bigKey)
	if err != nil || len(b) < slotHeaderSize || b[8] != p {
		return nil, 0, 0, false
	}
	id, gen = binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
	if !c.index.current(id, gen) {
		return nil, 0, 0, false
	}
	return b[slotHeaderSize:], id, gen, true
}

// Get returns a private copy of the encoded entry stored under key, with
// all its bodies (an entry stored in parts is read whole and encoded
// again: hits use GetBody). An entry purged but not yet deleted from
// bigcache (see tagIndex) is not returned.
func (c *Cache) Get(key string) ([]byte, bool) {
	b, id, gen, ok := c.readRecord(key, partMain)
	if !ok {
		return nil, false
	}
	apart := encodedApart(b)
	if apart == 0 {
		return b, true
	}
	var e Entry
	if e.Decode(b) != nil {
		return nil, false
	}
	for _, p := range [...]struct {
		bit  uint8
		part uint8
	}{{BodyGzip, partGzip}, {BodyZstd, partZstd}} {
		if apart&p.bit == 0 {
			continue
		}
		rb, pid, pgen, ok := c.readRecord(partKey(key, p.part), p.part)
		var pe Entry
		if !ok || pid != id || pgen != gen || pe.Decode(rb) != nil {
			return nil, false
		}
		if p.part == partGzip {
			e.Gzip = pe.Gzip
		} else {
			e.Zstd = pe.Zstd
		}
	}
	if (apart&BodyGzip != 0 && e.Gzip == nil) || (apart&BodyZstd != 0 && e.Zstd == nil) {
		return nil, false
	}
	e.Apart = 0
	return e.Encode(), true
}

// GetBody returns a private copy of the record of the entry stored under
// key that holds its body variant (BodyIdentity, BodyGzip or BodyZstd):
// the entry's metadata and that body; the entry's other bodies may be
// apart (Entry.Apart, after Decode). For BodyIdentity it is the entry's
// first record, found whenever the entry is: the whole entry when it is
// not stored in parts (small, not compressed, a Vary marker, an ESI
// template), else its identity body. For BodyGzip and BodyZstd it is
// found only when the entry is stored in parts and has that variant. A
// hit copies that record alone out of bigcache, and allocates nothing
// else here.
func (c *Cache) GetBody(key string, variant uint8) ([]byte, bool) {
	var p uint8
	switch variant {
	case BodyIdentity:
		b, _, _, ok := c.readRecord(key, partMain)
		return b, ok
	case BodyGzip:
		p = partGzip
	case BodyZstd:
		p = partZstd
	default:
		return nil, false
	}
	kb := keyBuffers.Get().(*[]byte)
	*kb = appendPartKey((*kb)[:0], key, p)
	// bigcache hashes and compares the key and keeps no reference to it.
	b, _, _, ok := c.readRecord(unsafe.String(unsafe.SliceData(*kb), len(*kb)), p)
	if cap(*kb) <= 4<<10 {
		keyBuffers.Put(kb)
	}
	return b, ok
}

// CountHit and CountMiss record the outcome of a lookup for Stats.
func (c *Cache) CountHit()  { c.hits.Add(1) }
func (c *Cache) CountMiss() { c.misses.Add(1) }

// Epoch returns the purge counter; pass it to Set to detect a purge that
// ran while the response was being fetched.
func (c *Cache) Epoch() uint64 { return c.epoch.Load() }

// Set stores an encoded entry under key with its tags (explicit tags; the
// URL and host tags are derived from key). If a purge ran since epoch was
// read, the entry is stored stale so the next request revalidates it.
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

// errPartial is Set's answer for an entry missing bodies (Entry.Apart).
var errPartial = errors.New("entry without all its bodies (read with GetBody, not Get)")

// record is one bigcache record of a store: its key and its bytes,
// slot header first.
type record struct {
	key string
	buf *[]byte
}

func (c *Cache) set(key string, encoded []byte, tags []string, epoch uint64, ifAbsent bool) (bool, error) {
	if len(encoded) > c.opts.MaxEntryBytes {
		return false, ErrTooLarge
	}
	if encodedApart(encoded) != 0 {
		return false, fmt.Errorf("pagecache: storing %q: %w", key, errPartial)
	}
	recs := c.records(key, encoded)
	size := int64(0)
	for _, r := range recs {
		size += int64(len(r.key) + len(*r.buf))
	}
	set := c.index.set
	if ifAbsent {
		set = c.index.setIfAbsent
	}
	err := set(key, tags, size, len(recs), func(id, gen uint32) error {
		// Under the index lock. If a purge began since epoch was read, the
		// entry is stored stale: either that purge already detached its
		// members (this key is indexed anew) or it will remove this key.
		stale := c.epoch.Load() != epoch
		for _, r := range recs {
			b := *r.buf
			if stale {
				MarkEncodedStale(b[slotHeaderSize:])
			}
			putSlotHeader(b, id, gen)
			if err := c.big.Set(r.key, b); err != nil {
				return err
			}
		}
		return nil
	})
	for _, r := range recs {
		if cap(*r.buf) <= maxPooledSetBuffer {
			setBuffers.Put(r.buf)
		}
	}
	if errors.Is(err, errPresent) {
		return false, nil
	}
	if err != nil {
		c.storeErrors.Add(1)
		return false, fmt.Errorf("pagecache: storing %q: %w", key, err)
	}
	c.stores.Add(1)
	return true, nil
}

// records lays out the bigcache records of an entry (see partMain): the
// entry whole, or its parts when its compressed variants are worth
// reading apart. Each buffer has room for the slot header, part set.
func (c *Cache) records(key string, encoded []byte) []record {
	var e Entry
	if e.Decode(encoded) == nil && e.ESI == nil && e.Flags&(FlagVaryMarker|FlagBodyInZstd) == 0 &&
		e.Body != nil && len(e.Gzip)+len(e.Zstd) >= splitMinBytes {
		recs := make([]record, 0, 3)
		var apart uint8
		if e.Gzip != nil {
			apart |= BodyGzip
		}
		if e.Zstd != nil {
			apart |= BodyZstd
		}
		add := func(k string, p uint8, r Entry) {
			bp := setBuffers.Get().(*[]byte)
			b := append((*bp)[:0], make([]byte, slotHeaderSize)...)
			b[8] = p
			*bp = r.AppendEncode(b)
			recs = append(recs, record{key: k, buf: bp})
		}
		main := e
		main.Gzip, main.Zstd, main.Apart = nil, nil, apart
		add(key, partMain, main)
		if e.Gzip != nil {
			g := e
			g.Body, g.Zstd, g.Apart = nil, nil, apart&^BodyGzip|BodyIdentity
			add(partKey(key, partGzip), partGzip, g)
		}
		if e.Zstd != nil {
			z := e
			z.Body, z.Gzip, z.Apart = nil, nil, apart&^BodyZstd|BodyIdentity
			add(partKey(key, partZstd), partZstd, z)
		}
		return recs
	}
	bp := setBuffers.Get().(*[]byte)
	b := append((*bp)[:0], make([]byte, slotHeaderSize)...)
	b[8] = partMain
	*bp = append(b, encoded...)
	return []record{{key: key, buf: bp}}
}

func putSlotHeader(b []byte, id, gen uint32) {
	binary.LittleEndian.PutUint32(b, id)
	binary.LittleEndian.PutUint32(b[4:], gen)
}

// onRemove keeps the tag index consistent when bigcache evicts an entry for
// space or age. It runs under a bigcache shard lock (which hits need), so it
// only queues the eviction under the index's small eviction mutex; the
// index applies it at its next operation.
//
// Purged entries stay in bigcache until evicted like this; they are not
// counted as evictions (they were counted as purged).
func (c *Cache) onRemove(_ string, entry []byte, _ bigcache.RemoveReason) {
	if len(entry) < slotHeaderSize {
		return
	}
	id, gen := binary.LittleEndian.Uint32(entry), binary.LittleEndian.Uint32(entry[4:])
	if c.index.current(id, gen) {
		c.evicted.Add(1)
		c.index.evict(id, gen)
	}
}

// Delete removes one key.
func (c *Cache) Delete(key string) {
	c.index.remove(key, c.deleteRecords)
}

// deleteRecords deletes a key's records from bigcache (its parts, if any:
// deleting an absent key is harmless).
func (c *Cache) deleteRecords(key string) {
	_ = c.big.Delete(key)
	_ = c.big.Delete(partKey(key, partGzip))
	_ = c.big.Delete(partKey(key, partZstd))
}

// PurgeTags removes every entry carrying any of tags and returns how many
// entries were removed. When it returns none of them is served any more;
// the index forgets them in the background, in chunks (see tagIndex), and
// Stats.PurgePending counts them until then; their bytes in bigcache are
// reused as its queues wrap. Hits never wait for a purge: they do not take
// the index lock, and the purge takes no bigcache lock.
func (c *Cache) PurgeTags(tags []string) int {
	c.epoch.Add(1)
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
	c.epoch.Add(1)
	var filter func(string) bool
	if fullKey != pathKey {
		filter = func(k string) bool { return BaseKey(k) == fullKey }
	}
	n := c.index.purgeTag(URLTag(pathKey), filter)
	c.purged.Add(uint64(n))
	return n
}

// PurgeHost removes every entry of a host.
func (c *Cache) PurgeHost(host string) int {
	return c.PurgeTags([]string{HostTag(host)})
}

// PurgePrefix removes every entry whose URL (scheme://host/path...) starts
// with prefix.
func (c *Cache) PurgePrefix(prefix string) int {
	c.epoch.Add(1)
	n := c.index.purgePrefix(prefix)
	c.purged.Add(uint64(n))
	return n
}

// PurgeAll empties the memory tier.
func (c *Cache) PurgeAll() int {
	c.epoch.Add(1)
	n := c.index.reset(func() { _ = c.big.Reset() })
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
	// EntryBytes is what the entries that may be served hold in bigcache:
	// their keys and encoded entries (bigcache's own per-entry header of
	// about 20 bytes is not counted). Purged entries stop counting when
	// purged, though bigcache reuses their space only as its queues wrap.
	EntryBytes int `json:"entry_bytes"`
	// IndexBytes is the estimated memory of the tag index and bigcache's
	// per-entry structures outside its queues for the stored keys; the
	// oldest entries are evicted when it passes IndexMaxBytes. Purged keys
	// stop counting when purged (the index forgets them in the background).
	IndexBytes    int   `json:"index_bytes"`
	IndexMaxBytes int64 `json:"index_max_bytes"`
	// AllocatedBytes is the capacity bigcache has allocated for its
	// queues (sized to the bound up front; pages become resident only as
	// entries are written).
	AllocatedBytes int    `json:"allocated_bytes"`
	MaxBytes       int64  `json:"max_bytes"`
	Hits           uint64 `json:"hits"`
	Misses         uint64 `json:"misses"`
	Stores         uint64 `json:"stores"`
	Purged         uint64 `json:"purged"`
	Evicted        uint64 `json:"evicted"`
	StoreErrs      uint64 `json:"store_errors"`
	Tags           int    `json:"tags"`
	// PurgePending counts purged entries (no longer served, not in
	// Entries) the background cleanup has not unlinked from the tag index
	// yet.
	PurgePending int `json:"purge_pending"`
}

// Stats returns counters and sizes.
func (c *Cache) Stats() Stats {
	entries, bytes, index, trimmed := c.index.sizes()
	return Stats{
		Entries:        entries,
		Bytes:          int(bytes + index),
		EntryBytes:     int(bytes),
		IndexBytes:     int(index),
		IndexMaxBytes:  c.index.indexBudget,
		AllocatedBytes: c.big.Capacity(),
		MaxBytes:       c.opts.MaxBytes,
		Hits:           c.hits.Load(),
		Misses:         c.misses.Load(),
		Stores:         c.stores.Load(),
		Purged:         c.purged.Load(),
		Evicted:        c.evicted.Load() + trimmed,
		StoreErrs:      c.storeErrors.Load(),
		Tags:           c.index.tagCount(),

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

// seededHash is the memory tier's key hash: maphash with a seed drawn at
// random per cache, allocation-free. bigcache keeps one entry per hash, so
// with a public hash (FNV-1a, its default) an attacker could compute a URL
// colliding with a victim page and evict it, or its Vary marker, at will.
type seededHash struct{ seed maphash.Seed }

func (h seededHash) Sum64(key string) uint64 { return maphash.String(h.seed, key) }
