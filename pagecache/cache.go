package pagecache

import (
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"sync/atomic"
	"time"

	"github.com/allegro/bigcache/v3"
)

// Options configure the memory tier.
type Options struct {
	// MaxBytes bounds the bytes held by entries (rounded down to whole
	// MiB, at least 1 MiB). The oldest entries are evicted to make room.
	MaxBytes int64
	// MaxEntryBytes is the largest encoded entry that will be stored.
	MaxEntryBytes int
	// LifeWindow is how long an entry may stay at most, whatever its
	// freshness; default 24h.
	LifeWindow time.Duration
}

// Cache is the memory tier. Reads take only a bigcache shard lock; the tag
// index has its own lock, never held while bigcache is called, so purges and
// stores do not stall hits.
type Cache struct {
	big   *bigcache.BigCache
	index *tagIndex
	opts  Options

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
	mib := int(opts.MaxBytes >> 20)
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
	cfg := bigcache.Config{
		Shards:             shards,
		LifeWindow:         opts.LifeWindow,
		CleanWindow:        time.Minute,
		MaxEntriesInWindow: 64 * shards,
		MaxEntrySize:       16 << 10,
		HardMaxCacheSize:   mib,
		Hasher:             fnv64a{},
		OnRemoveWithReason: c.onRemove,
	}
	cfg = cfg.OnRemoveFilterSet(bigcache.Expired, bigcache.NoSpace)
	// bigcache preallocates MaxEntriesInWindow*MaxEntrySize; keep that
	// below the bound.
	for int64(cfg.MaxEntriesInWindow)*int64(cfg.MaxEntrySize) > opts.MaxBytes/4 && cfg.MaxEntriesInWindow > shards {
		cfg.MaxEntriesInWindow /= 2
	}
	big, err := bigcache.NewBigCache(cfg)
	if err != nil {
		return nil, fmt.Errorf("pagecache: creating memory tier: %w", err)
	}
	c.big = big
	return c, nil
}

// Close releases the cache's background goroutine.
func (c *Cache) Close() error { return c.big.Close() }

// MaxEntryBytes is the configured largest entry.
func (c *Cache) MaxEntryBytes() int { return c.opts.MaxEntryBytes }

// Get returns a private copy of the encoded entry stored under key.
func (c *Cache) Get(key string) ([]byte, bool) {
	b, err := c.big.Get(key)
	if err != nil {
		return nil, false
	}
	return b, true
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
	if len(encoded) > c.opts.MaxEntryBytes {
		return ErrTooLarge
	}
	if c.epoch.Load() != epoch {
		MarkEncodedStale(encoded)
	}
	if err := c.big.Set(key, encoded); err != nil {
		c.storeErrors.Add(1)
		return fmt.Errorf("pagecache: storing %q: %w", key, err)
	}
	c.index.add(key, tags)
	if c.epoch.Load() != epoch {
		// A purge overlapped the store: it may have missed this key.
		MarkEncodedStale(encoded)
		_ = c.big.Set(key, encoded)
	}
	c.stores.Add(1)
	return nil
}

// onRemove keeps the tag index consistent when bigcache evicts an entry for
// space or age. It runs under a bigcache shard lock; it only takes the index
// lock, which is never held while calling bigcache.
func (c *Cache) onRemove(key string, _ []byte, _ bigcache.RemoveReason) {
	c.evicted.Add(1)
	c.index.remove(key)
}

// Delete removes one key.
func (c *Cache) Delete(key string) {
	c.index.remove(key)
	_ = c.big.Delete(key)
}

func (c *Cache) deleteKeys(keys []string) int {
	n := 0
	for _, k := range keys {
		if c.big.Delete(k) == nil {
			n++
		}
	}
	c.purged.Add(uint64(n))
	return n
}

// PurgeTags removes every entry carrying any of tags and returns how many
// entries were removed.
func (c *Cache) PurgeTags(tags []string) int {
	c.epoch.Add(1)
	keys := c.index.take(tags, nil)
	return c.deleteKeys(keys)
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
	keys := c.index.take([]string{URLTag(pathKey)}, filter)
	return c.deleteKeys(keys)
}

// PurgeHost removes every entry of a host.
func (c *Cache) PurgeHost(host string) int {
	return c.PurgeTags([]string{HostTag(host)})
}

// PurgePrefix removes every entry whose URL (scheme://host/path...) starts
// with prefix.
func (c *Cache) PurgePrefix(prefix string) int {
	c.epoch.Add(1)
	keys := c.index.takePrefix(prefix)
	return c.deleteKeys(keys)
}

// PurgeAll empties the memory tier.
func (c *Cache) PurgeAll() int {
	c.epoch.Add(1)
	n := c.big.Len()
	c.index.reset()
	_ = c.big.Reset()
	c.purged.Add(uint64(n))
	return n
}

// Stats is a point-in-time view of the memory tier.
type Stats struct {
	Entries   int    `json:"entries"`
	Bytes     int    `json:"bytes"`
	MaxBytes  int64  `json:"max_bytes"`
	Hits      uint64 `json:"hits"`
	Misses    uint64 `json:"misses"`
	Stores    uint64 `json:"stores"`
	Purged    uint64 `json:"purged"`
	Evicted   uint64 `json:"evicted"`
	StoreErrs uint64 `json:"store_errors"`
	Tags      int    `json:"tags"`
}

// Stats returns counters and sizes.
func (c *Cache) Stats() Stats {
	return Stats{
		Entries:   c.big.Len(),
		Bytes:     c.big.Capacity(),
		MaxBytes:  c.opts.MaxBytes,
		Hits:      c.hits.Load(),
		Misses:    c.misses.Load(),
		Stores:    c.stores.Load(),
		Purged:    c.purged.Load(),
		Evicted:   c.evicted.Load(),
		StoreErrs: c.storeErrors.Load(),
		Tags:      c.index.tagCount(),
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

// fnv64a is bigcache's default hash, allocation-free.
type fnv64a struct{}

func (fnv64a) Sum64(key string) uint64 {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	return h ^ bits.RotateLeft64(h, 29)
}
