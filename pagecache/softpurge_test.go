package pagecache

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Correctness of soft purges in the memory tier: the entries a soft purge
// selects stay, never fresh again; others are untouched; a store racing with the purge is never
// overwritten by the stale copy; an entry that cannot be rewritten is
// removed. The handler's rules for serving them are tested end to end in
// caddymodule/cachehandler/softpurge_e2e_test.go.

func getEntry(t *testing.T, c *Cache, key string) (Entry, bool) {
	t.Helper()
	raw, ok := c.Get(key)
	if !ok {
		return Entry{}, false
	}
	var e Entry
	if err := e.Decode(raw); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return e, true
}

func TestSoftPurgeKeepsEntriesStale(t *testing.T) {
	c := newTestCache(t, 8<<20)
	big := benchEncoded(t, benchPage(20<<10), []string{"entry:1"}, true)
	if err := c.Set("http://x/big", big, []string{"entry:1"}, c.Epoch()); err != nil {
		t.Fatal(err)
	}
	mustSet(t, c, "http://x/a", "entry:1")
	mustSet(t, c, "http://x/b", "entry:2")
	now := time.Now()

	if n := c.SoftPurgeTags([]string{"entry:1"}); n != 2 {
		t.Fatalf("soft purge marked %d entries, want 2", n)
	}
	for _, k := range []string{"http://x/a", "http://x/big"} {
		e, ok := getEntry(t, c, k)
		if !ok {
			t.Fatalf("%s gone after a soft purge", k)
		}
		if e.Fresh(now) || e.Flags&FlagSoftPurged == 0 || e.StaleWhileRevalidate != 0 || e.StaleIfError != 24*time.Hour {
			t.Fatalf("%s after a soft purge: fresh %v, flags %b, swr %s, stale-if-error %s",
				k, e.Fresh(now), e.Flags, e.StaleWhileRevalidate, e.StaleIfError)
		}
	}
	if e, _ := getEntry(t, c, "http://x/b"); !e.Fresh(now) || e.Flags&FlagSoftPurged != 0 {
		t.Fatal("an entry without the tag was marked")
	}
	// Again: nothing to rewrite, still counted.
	if n := c.SoftPurgeURL("http://x/a", "http://x/a"); n != 1 {
		t.Fatalf("second soft purge counted %d", n)
	}
	// The tags still lead to the entries: a hard purge removes them.
	if n := c.PurgeTags([]string{"entry:1"}); n != 2 {
		t.Fatalf("hard purge after soft removed %d, want 2", n)
	}
	if present(c, "http://x/a") || present(c, "http://x/big") {
		t.Fatal("hard purge left soft-purged entries")
	}
	if n := c.SoftPurgePrefix("http://x/"); n != 1 || !present(c, "http://x/b") {
		t.Fatalf("prefix soft purge marked %d", n)
	}
	checkConsistent(t, c, []string{"http://x/a", "http://x/b", "http://x/big"})
}

// An entry that is not one (a foreign byte string) cannot be marked: it is
// removed, never left fresh.
func TestSoftPurgeRemovesWhatItCannotMark(t *testing.T) {
	c := newTestCache(t, 8<<20)
	if err := c.Set("http://x/raw", []byte("not an entry"), []string{"t"}, c.Epoch()); err != nil {
		t.Fatal(err)
	}
	if n := c.SoftPurgeTags([]string{"t"}); n != 1 {
		t.Fatalf("soft purge counted %d", n)
	}
	if _, ok := c.Get("http://x/raw"); ok {
		t.Fatal("an entry the soft purge could not mark is still served")
	}
}

// Stores racing with soft purges: every store made after a purge began
// (its epoch read before) is stale or newer; the index stays consistent
// and no store is lost to a soft purge's rewrite (run with -race).
func TestSoftPurgeConcurrentStores(t *testing.T) {
	c := newTestCache(t, 16<<20)
	keys := make([]string, 50)
	for i := range keys {
		keys[i] = fmt.Sprintf("http://x/p%d", i)
		mustSet(t, c, keys[i], "all")
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var storeErr error
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := c.Set(keys[i%len(keys)], testEntry(t, "all"), []string{"all"}, c.Epoch()); err != nil {
				storeErr = err
				return
			}
		}
	})
	for range 50 {
		c.SoftPurgeTags([]string{"all"})
	}
	close(stop)
	wg.Wait()
	if storeErr != nil {
		t.Fatal(storeErr)
	}
	// One last soft purge with no store racing: every entry is stale.
	c.SoftPurgeTags([]string{"all"})
	now := time.Now()
	for _, k := range keys {
		e, ok := getEntry(t, c, k)
		if !ok || e.Fresh(now) {
			t.Fatalf("%s: present %v, fresh after the last soft purge", k, ok)
		}
	}
	checkConsistent(t, c, keys)
}

// BenchmarkSoftPurgeTag100k is BenchmarkPurgeTag100k for a soft purge:
// every entry is read, rewritten and stored again (about the cost of a
// store per entry), so a site-wide tag purged softly costs what storing
// every page again does; purge-ms is until it returns.
//
//	go test -run '^$' -bench 'SoftPurgeTag' -benchtime 3x ./pagecache
func BenchmarkSoftPurgeTag100k(b *testing.B) {
	c := newBenchCache(b, 1<<30) // the index's eighth holds 100,000 entries
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c.PurgeAll()
		fillBulk(b, c, purgeEntries)
		runtime.GC()
		b.StartTimer()
		t0 := time.Now()
		n := c.SoftPurgeTags([]string{"section:bulk"})
		total += time.Since(t0)
		b.StopTimer()
		if n != purgeEntries {
			b.Fatalf("soft purge marked %d entries, want %d", n, purgeEntries)
		}
		b.StartTimer()
	}
	b.ReportMetric(ms(total)/float64(b.N), "purge-ms")
}

// A snapshot promoted into memory (FlagFromSnapshot) becomes a purged
// snapshot (FlagPurgedSnapshot) when a soft purge marks it, or when it is
// stored under an epoch a purge that selects it moved (one that does not
// leaves it as it is); an ordinary entry does not.
func TestPurgedPromotedSnapshotsAreMarked(t *testing.T) {
	c := newTestCache(t, 8<<20)
	promoted := func(tag string) []byte {
		var e Entry
		if err := e.Decode(testEntry(t, tag)); err != nil {
			t.Fatal(err)
		}
		e.Flags |= FlagFromSnapshot
		e.FreshFor = 0
		return e.Encode()
	}
	if err := c.Set("http://x/soft", promoted("s"), []string{"s"}, c.Epoch()); err != nil {
		t.Fatal(err)
	}
	mustSet(t, c, "http://x/plain", "s")
	epoch := c.Epoch()
	c.PurgeTags([]string{"other"})
	c.SoftPurgeTags([]string{"d"})
	for key, enc := range map[string][]byte{"http://x/during": promoted("d"), "http://x/plain-during": testEntry(t, "d"), "http://x/unrelated": promoted("u")} {
		tag := "d"
		if key == "http://x/unrelated" {
			tag = "u"
		}
		if err := c.Set(key, enc, []string{tag}, epoch); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.SoftPurgeTags([]string{"s"}); n != 2 {
		t.Fatalf("soft purge marked %d, want 2", n)
	}
	for key, want := range map[string]uint8{
		"http://x/soft":         FlagFromSnapshot | FlagSoftPurged | FlagPurgedSnapshot,
		"http://x/plain":        FlagSoftPurged,
		"http://x/during":       FlagFromSnapshot | FlagPurgedSnapshot,
		"http://x/plain-during": 0,
		"http://x/unrelated":    FlagFromSnapshot,
	} {
		e, ok := getEntry(t, c, key)
		if !ok {
			t.Fatalf("%s gone", key)
		}
		if e.Flags != want || e.FreshFor != 0 {
			t.Fatalf("%s: flags %b, want %b; fresh for %s", key, e.Flags, want, e.FreshFor)
		}
	}
	// Marked already: a second soft purge counts it, rewrites nothing.
	if n := c.SoftPurgeTags([]string{"s"}); n != 2 {
		t.Fatalf("second soft purge counted %d", n)
	}
}
