package pagecache

import (
	"errors"
	"fmt"
	"math/rand"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Correctness of the tag index beside the store: purges remove exactly the
// entries carrying a tag, evictions and overwrites leave no dangling
// members, and concurrent hits, stores and purges keep both in step (run
// with -race). No timing is asserted here; see bench_purge_test.go.

func testEntry(t testing.TB, tags ...string) []byte {
	t.Helper()
	return benchEncoded(t, benchPage(600), tags, false)
}

// newTestCache is a memory tier whose bound may be small (64 KiB entries).
func newTestCache(t testing.TB, maxBytes int64) *Cache {
	t.Helper()
	c, err := New(Options{MaxBytes: maxBytes, MaxEntryBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func mustSet(t testing.TB, c *Cache, key string, tags ...string) {
	t.Helper()
	if err := c.Set(key, testEntry(t, tags...), tags, c.Epoch()); err != nil {
		t.Fatal(err)
	}
}

func present(c *Cache, key string) bool {
	raw, ok := c.Get(key)
	if !ok {
		return false
	}
	var e Entry
	return e.Decode(raw) == nil
}

// checkConsistent asserts that the index holds exactly the keys the store
// holds, and that every held key is still reachable through its URL tag.
func checkConsistent(t *testing.T, c *Cache, keys []string) {
	t.Helper()
	c.index.waitCleanup()
	if n := c.Stats().PurgePending; n != 0 {
		t.Fatalf("%d purged entries still pending after the cleanup finished", n)
	}
	held := 0
	for _, k := range keys {
		if present(c, k) {
			held++
		}
	}
	if got := c.Stats().Entries; got != held {
		t.Fatalf("Stats reports %d entries, %d of the keys are present", got, held)
	}
	c.store.CleanUp()
	if stored := c.store.EstimatedSize(); stored != held {
		t.Fatalf("the store holds %d entries, %d of the keys are served", stored, held)
	}
	if got := c.index.keyCount(); got != held {
		t.Fatalf("tag index holds %d keys, the store %d entries", got, held)
	}
}

func TestPurgeTagRemovesExactlyItsEntries(t *testing.T) {
	c := newTestCache(t, 16<<20)
	var all []string
	for i := 0; i < 300; i++ {
		k := benchKey("blog", i)
		all = append(all, k)
		tags := []string{"entry:" + fmt.Sprint(i), "section:s" + fmt.Sprint(i%3)}
		if i%10 == 0 {
			tags = append(tags, "featured", "featured") // duplicate tags count once
		}
		mustSet(t, c, k, tags...)
	}
	if n := c.PurgeTags([]string{"section:s1"}); n != 100 {
		t.Fatalf("purged %d entries for section:s1, want 100", n)
	}
	for i, k := range all {
		if got, want := present(c, k), i%3 != 1; got != want {
			t.Fatalf("%s present=%v after purging section:s1, want %v", k, got, want)
		}
	}
	// featured or section:s0, each entry counted once, among those left.
	want := 0
	for i := 0; i < 300; i++ {
		if i%3 != 1 && (i%10 == 0 || i%3 == 0) {
			want++
		}
	}
	if n := c.PurgeTags([]string{"featured", "section:s0"}); n != want {
		t.Fatalf("purged %d entries for featured+section:s0, want %d", n, want)
	}
	if n := c.PurgeTags([]string{"featured"}); n != 0 {
		t.Fatalf("a purged tag removed %d entries again", n)
	}
	if n := c.PurgeTags([]string{"no-such-tag"}); n != 0 {
		t.Fatalf("an unknown tag removed %d entries", n)
	}
	checkConsistent(t, c, all)
	// Tags whose last key went are forgotten (once the cleanup ran): only
	// section:s2, its entries' own tags and their URL and host tags remain.
	left := c.Stats().Entries
	if got, want := c.Stats().Tags, 1+left*2+1; got != want {
		t.Fatalf("index holds %d tags with %d entries left, want %d", got, left, want)
	}
	if n := c.PurgeHost("WWW.example.com"); n != left {
		t.Fatalf("host purge removed %d entries, want %d", n, left)
	}
	for _, k := range all {
		if present(c, k) {
			t.Fatalf("%s served after its host was purged", k)
		}
	}
	checkConsistent(t, c, all)
	if got := c.Stats().Tags; got != 0 {
		t.Fatalf("index holds %d tags in an empty cache", got)
	}
}

func TestPurgeURLPrefixAndAll(t *testing.T) {
	c := newTestCache(t, 16<<20)
	keys := []string{
		"https://www.example.com/blog/a?page=1",
		"https://www.example.com/blog/a?page=2",
		"https://www.example.com/blog/a?page=1\x00accept-language=de",
		"https://www.example.com/blog/b",
		"https://www.example.com/shop/c",
		"https://other.example/blog/a",
	}
	for _, k := range keys {
		mustSet(t, c, k, "page")
	}
	if n := c.PurgeURL("https://www.example.com/blog/a", "https://www.example.com/blog/a?page=1"); n != 2 {
		t.Fatalf("purging one query of a URL removed %d entries, want its 2 variants", n)
	}
	if !present(c, keys[1]) || present(c, keys[0]) || present(c, keys[2]) {
		t.Fatal("URL purge with a query removed the wrong entries")
	}
	if n := c.PurgeURL("https://www.example.com/blog/a", "https://www.example.com/blog/a"); n != 1 {
		t.Fatalf("purging a URL without query removed %d entries, want 1", n)
	}
	if n := c.PurgePrefix("https://www.example.com/blog/"); n != 1 || present(c, keys[3]) {
		t.Fatalf("prefix purge removed %d entries, want /blog/b only", n)
	}
	checkConsistent(t, c, keys)
	if n := c.PurgeAll(); n != 2 {
		t.Fatalf("purge all removed %d entries, want 2", n)
	}
	checkConsistent(t, c, keys)
	// The index works after a reset.
	mustSet(t, c, keys[0], "page")
	if n := c.PurgeTags([]string{"page"}); n != 1 {
		t.Fatalf("purge after reset removed %d entries, want 1", n)
	}
}

func TestOverwriteMovesTags(t *testing.T) {
	c := newTestCache(t, 16<<20)
	k := benchKey("blog", 1)
	mustSet(t, c, k, "old", "both")
	mustSet(t, c, k, "new", "both")
	if n := c.PurgeTags([]string{"old"}); n != 0 || !present(c, k) {
		t.Fatalf("purging a tag the entry no longer carries removed %d entries", n)
	}
	if n := c.PurgeTags([]string{"both"}); n != 1 || present(c, k) {
		t.Fatalf("purging a tag the entry carries removed %d entries, want 1", n)
	}
	// Re-storing many times leaves one live posting per tag (stale ones are
	// compacted), and the tag goes with the key.
	for i := 0; i < 1000; i++ {
		mustSet(t, c, k, "hot")
	}
	c.index.mu.Lock()
	tid := c.index.tagIDs["hot"]
	postings := len(c.index.tags[tid].postings)
	c.index.mu.Unlock()
	if postings > 200 {
		t.Fatalf("tag of one key re-stored 1000 times keeps %d postings", postings)
	}
	c.Delete(k)
	c.index.waitCleanup()
	if present(c, k) || c.Stats().Tags != 0 || c.index.keyCount() != 0 {
		t.Fatalf("Delete left the entry or its tags: %+v", c.Stats())
	}
}

// TestEvictionKeepsIndexConsistent stores a working set many times the
// bound: every eviction must leave the index, so purges count exactly the
// entries that are present, and an evicted key stored again is indexed.
func TestEvictionKeepsIndexConsistent(t *testing.T) {
	c := newTestCache(t, 1<<20)
	var keys []string
	for i := 0; i < 4000; i++ {
		k := benchKey("ws", i)
		keys = append(keys, k)
		mustSet(t, c, k, "page", "section:s"+fmt.Sprint(i%7))
	}
	if c.Stats().Evicted == 0 {
		t.Fatal("a working set 4x the bound evicted nothing")
	}
	checkConsistent(t, c, keys)
	// Store the first keys again: they were evicted, and must be indexed.
	for _, k := range keys[:50] {
		mustSet(t, c, k, "again")
	}
	checkConsistent(t, c, keys)
	held := 0
	for _, k := range keys[:50] {
		if present(c, k) {
			held++
		}
	}
	if n := c.PurgeTags([]string{"again"}); n != held {
		t.Fatalf("purged %d re-stored entries, %d are present", n, held)
	}
	checkConsistent(t, c, keys)
	left := c.Stats().Entries
	if n := c.PurgeTags([]string{"page"}); n != left {
		t.Fatalf("purged %d entries of tag page, %d are present", n, left)
	}
	checkConsistent(t, c, keys)
	if got := c.Stats().Tags; got != 0 {
		t.Fatalf("index holds %d tags in an empty cache", got)
	}
}

// TestPurgedKeyStoredAgainBeforeCleanup stores a purged key again before
// the cleanup reaches it: the cleanup must leave the new entry alone.
func TestPurgedKeyStoredAgainBeforeCleanup(t *testing.T) {
	c := newTestCache(t, 32<<20)
	var keys []string
	for i := 0; i < 5000; i++ {
		keys = append(keys, benchKey("r", i))
		mustSet(t, c, keys[i], "bulk")
	}
	c.index.holdCleanup(true)
	if n := c.PurgeTags([]string{"bulk"}); n != len(keys) {
		t.Fatalf("purged %d entries, want %d", n, len(keys))
	}
	for _, k := range keys {
		if present(c, k) {
			t.Fatalf("%s served after the purge returned", k)
		}
	}
	if got := c.Stats().PurgePending; got != len(keys) {
		t.Fatalf("%d purged entries pending with the cleanup held, want %d", got, len(keys))
	}
	for _, k := range keys[:2000] {
		mustSet(t, c, k, "again")
	}
	c.index.holdCleanup(false)
	checkConsistent(t, c, keys)
	for i, k := range keys {
		if got, want := present(c, k), i < 2000; got != want {
			t.Fatalf("%s present=%v after the cleanup, want %v", k, got, want)
		}
	}
	if n := c.PurgeTags([]string{"bulk"}); n != 0 {
		t.Fatalf("re-stored entries kept the purged tag: %d purged", n)
	}
	if n := c.PurgeTags([]string{"again"}); n != 2000 {
		t.Fatalf("purged %d re-stored entries, want 2000", n)
	}
	checkConsistent(t, c, keys)
}

// TestConcurrentHitsStoresPurges runs hits, stores (evicting) and purges
// at once; afterwards the index and the store agree, and an entry stored
// after a purge returned is never missing from the next purge.
func TestConcurrentHitsStoresPurges(t *testing.T) {
	c := newTestCache(t, 1<<20)
	const nkeys = 6000
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = benchKey("c", i)
	}
	enc := testEntry(t, "page")
	var stop atomic.Bool
	var wg sync.WaitGroup
	var hits, stores atomic.Int64
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rnd := rand.New(rand.NewSource(int64(g)))
			var e Entry
			for !stop.Load() {
				if raw, ok := c.Get(keys[rnd.Intn(nkeys)]); ok {
					if err := e.Decode(raw); err != nil {
						t.Errorf("hit returned a malformed entry: %v", err)
						return
					}
					hits.Add(1)
				}
			}
		}(g)
	}
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rnd := rand.New(rand.NewSource(int64(100 + g)))
			for !stop.Load() {
				i := rnd.Intn(nkeys)
				tags := []string{"page", "section:s" + fmt.Sprint(i%5)}
				// A hard purge of the key's section between the epoch's
				// read and the store keeps it out (ErrPurgedWhileFetched).
				if err := c.Set(keys[i], slices.Clone(enc), tags, c.Epoch()); err != nil && !errors.Is(err, ErrPurgedWhileFetched) {
					t.Errorf("store: %v", err)
					return
				}
				stores.Add(1)
			}
		}(g)
	}
	// Bounded load loop: until the stores went round the keys
	// once (evicting), or 10 s.
	deadline := time.Now().Add(10 * time.Second)
	purges := 0
	for time.Now().Before(deadline) && (stores.Load() < nkeys || hits.Load() < 1000) {
		// One purge per 500 stores, so the cache fills and evicts too.
		for next := stores.Load() + 500; stores.Load() < next && time.Now().Before(deadline); {
			runtime.Gosched()
		}
		switch purges % 4 {
		case 0, 1:
			c.PurgeTags([]string{"section:s" + fmt.Sprint(purges%5)})
		case 2:
			c.PurgePrefix(benchKey("c", purges%10)[:30])
		case 3:
			c.PurgeURL(PathKeyOf(keys[purges%nkeys]), keys[purges%nkeys])
		}
		purges++
	}
	stop.Store(true)
	wg.Wait()
	checkConsistent(t, c, keys)
	left := c.Stats().Entries
	if n := c.PurgeTags([]string{"page"}); n != left {
		t.Fatalf("final purge removed %d entries, %d were present", n, left)
	}
	checkConsistent(t, c, keys)
	if c.Stats().Evicted == 0 || purges == 0 {
		t.Fatalf("the run evicted %d entries in %d purges: no overlap was exercised", c.Stats().Evicted, purges)
	}
	t.Logf("%d purges, %d stores, %d hits, %d evicted", purges, stores.Load(), hits.Load(), c.Stats().Evicted)
}

// TestPurgeCleanupDropsNames checks that a large purge leaves no key or tag
// names behind once its cleanup ran (they are retired, then dropped in one
// rebuild), and that retired names stored again are usable.
func TestPurgeCleanupDropsNames(t *testing.T) {
	c := newTestCache(t, 32<<20)
	var keys []string
	for i := 0; i < 5000; i++ {
		keys = append(keys, benchKey("n", i))
		mustSet(t, c, keys[i], "bulk", "entry:"+fmt.Sprint(i))
	}
	if n := c.PurgeTags([]string{"bulk"}); n != len(keys) {
		t.Fatalf("purged %d entries, want %d", n, len(keys))
	}
	checkConsistent(t, c, keys)
	c.index.mu.Lock()
	names, tagNames := len(c.index.keyIDs), len(c.index.tagIDs)
	c.index.mu.Unlock()
	if names != 0 || tagNames != 0 {
		t.Fatalf("after purging every entry the index keeps %d key names and %d tag names", names, tagNames)
	}
	// A small purge retires names without a rebuild; storing them again
	// revives them.
	for _, k := range keys[:10] {
		mustSet(t, c, k, "small")
	}
	if n := c.PurgeTags([]string{"small"}); n != 10 {
		t.Fatalf("purged %d entries, want 10", n)
	}
	checkConsistent(t, c, keys)
	for _, k := range keys[:10] {
		mustSet(t, c, k, "small", "other")
	}
	checkConsistent(t, c, keys)
	if n := c.PurgeTags([]string{"other"}); n != 10 {
		t.Fatalf("purged %d revived entries by a new tag, want 10", n)
	}
	checkConsistent(t, c, keys)
	if got := c.Stats().Tags; got != 0 {
		t.Fatalf("index holds %d live tags in an empty cache", got)
	}
}

// Stats.EntryBytes counts the entries that may be served: a store again
// of a key replaces its bytes, a delete, a purge or an eviction takes them
// out. Stats.Bytes adds the tag index's share, which stays within its
// budget, so Bytes stays within the bound.
func TestStatsBytesInUse(t *testing.T) {
	c := newTestCache(t, 1<<20)
	key := "https://a.test/x"
	entry := testEntry(t, "t:1")
	size := int(entryWeight(key, storedValue(entry)))
	charge := int(indexCharge(key, []string{"t:1"}))
	mustSet(t, c, key, "t:1")
	mustSet(t, c, key, "t:1")
	if s := c.Stats(); s.EntryBytes != size || s.IndexBytes != charge || s.Bytes != size+charge || s.Entries != 1 {
		t.Fatalf("one key stored twice: bytes %d (entries %d, index %d), entries %d; want %d+%d, 1", s.Bytes, s.EntryBytes, s.IndexBytes, s.Entries, size, charge)
	}
	c.Delete(key)
	if s := c.Stats(); s.Bytes != 0 {
		t.Fatalf("after delete: bytes %d, want 0", s.Bytes)
	}
	// Fill well past the bound: evictions keep Bytes within it.
	for i := range 4000 {
		mustSet(t, c, fmt.Sprintf("https://a.test/%d", i), "t:1")
	}
	s := c.Stats()
	// Keys are 0 to 3 bytes longer than key.
	if s.Evicted == 0 || s.Bytes > int(s.MaxBytes) || s.EntryBytes < s.Entries*size || s.EntryBytes > s.Entries*(size+3) {
		t.Fatalf("after evictions: bytes %d (entries %d), entries %d, evicted %d, bound %d", s.Bytes, s.EntryBytes, s.Entries, s.Evicted, s.MaxBytes)
	}
	if s.IndexBytes > int(s.IndexMaxBytes) || s.IndexBytes < s.Entries*charge {
		t.Fatalf("after evictions: index bytes %d for %d entries, budget %d", s.IndexBytes, s.Entries, s.IndexMaxBytes)
	}
	if s.AllocatedBytes < s.EntryBytes {
		t.Fatalf("allocated %d below bytes in use %d", s.AllocatedBytes, s.EntryBytes)
	}
	c.PurgeTags([]string{"t:1"})
	if s := c.Stats(); s.Bytes != 0 || s.Entries != 0 {
		t.Fatalf("after purge: bytes %d (index %d), entries %d; want 0, 0", s.Bytes, s.IndexBytes, s.Entries)
	}
}

// Small entries fill the tag index's share before the store's: the oldest
// are evicted from both, the index stays consistent, and an evicted key is
// not served.
func TestIndexBudgetEvictsOldest(t *testing.T) {
	c := newTestCache(t, 1<<20)
	var keys []string
	for i := range 3000 {
		k := fmt.Sprintf("https://a.test/p/%d", i)
		keys = append(keys, k)
		mustSet(t, c, k, fmt.Sprintf("entry:%d", i), "section:s")
	}
	s := c.Stats()
	if s.IndexBytes > int(s.IndexMaxBytes) || s.Bytes > int(s.MaxBytes)+int(s.IndexMaxBytes) {
		t.Fatalf("index %d over its budget %d (bytes %d, bound %d)", s.IndexBytes, s.IndexMaxBytes, s.Bytes, s.MaxBytes)
	}
	if s.Evicted == 0 {
		t.Fatalf("3000 keys in a 128 KiB index budget evicted nothing")
	}
	if _, ok := c.Get(keys[0]); ok {
		t.Fatalf("the oldest key is still served after index evictions")
	}
	if _, ok := c.Get(keys[len(keys)-1]); !ok {
		t.Fatalf("the newest key is not served")
	}
	if got := c.index.keyCount(); got != s.Entries {
		t.Fatalf("index holds %d keys, %d servable", got, s.Entries)
	}
	// A purge of a tag some evicted keys carried finds only the live ones.
	if n := c.PurgeTags([]string{"section:s"}); n != s.Entries {
		t.Fatalf("purge removed %d, want the %d live entries", n, s.Entries)
	}
}

// SetIfAbsent stores only a key the tier does not hold, and not a key
// purged but not forgotten yet.
func TestSetIfAbsent(t *testing.T) {
	c := newTestCache(t, 1<<20)
	key := "https://a.test/x"
	if ok, err := c.SetIfAbsent(key, testEntry(t, "t:1"), []string{"t:1"}, c.Epoch()); !ok || err != nil {
		t.Fatalf("absent key: stored %v, err %v", ok, err)
	}
	if ok, err := c.SetIfAbsent(key, testEntry(t, "t:2"), []string{"t:2"}, c.Epoch()); ok || err != nil {
		t.Fatalf("present key: stored %v, err %v; want not stored", ok, err)
	}
	if c.PurgeTags([]string{"t:2"}) != 0 || c.PurgeTags([]string{"t:1"}) != 1 {
		t.Fatal("the second SetIfAbsent changed the key's tags")
	}
	c.index.waitCleanup() // the first purge's cleanup is done before holding the next
	c.index.holdCleanup(true)
	mustSet(t, c, key, "t:3")
	c.PurgeTags([]string{"t:3"})
	if ok, _ := c.SetIfAbsent(key, testEntry(t, "t:3"), []string{"t:3"}, c.Epoch()); ok {
		t.Fatal("a purged key not cleaned up yet was stored again by SetIfAbsent")
	}
	c.index.holdCleanup(false)
}
