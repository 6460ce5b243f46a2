package pagecache

import (
	"runtime"
	"testing"
	"time"
)

// An epoch read while a purge runs (after it began, before its entries
// were removed or marked) is not current once the purge returns: what was
// read in that gap (a fresh copy about to be purged) and kept under that
// epoch (the ESI memos, cachehandler/esi_memo.go) is checked again. The
// purge is held inside its run by the test holding the tag index's lock.
func TestEpochReadDuringAPurgeIsNotCurrentAfterIt(t *testing.T) {
	purges := map[string]func(c *Cache){
		"tags":        func(c *Cache) { c.PurgeTags([]string{"t:1"}) },
		"url":         func(c *Cache) { c.PurgeURL("http://x/a", "http://x/a") },
		"prefix":      func(c *Cache) { c.PurgePrefix("http://x/") },
		"host":        func(c *Cache) { c.PurgeHost("x") },
		"all":         func(c *Cache) { c.PurgeAll() },
		"soft tags":   func(c *Cache) { c.SoftPurgeTags([]string{"t:1"}) },
		"soft url":    func(c *Cache) { c.SoftPurgeURL("http://x/a", "http://x/a") },
		"soft prefix": func(c *Cache) { c.SoftPurgePrefix("http://x/") },
		"soft host":   func(c *Cache) { c.SoftPurgeHost("x") },
	}
	for name, purge := range purges {
		t.Run(name, func(t *testing.T) {
			c := newTestCache(t, 8<<20)
			mustSet(t, c, "http://x/a", "t:1")
			before := c.Epoch()

			c.index.mu.Lock()
			done := make(chan struct{})
			go func() {
				defer close(done)
				purge(c)
			}()
			for c.Epoch() == before { // the purge began: it waits for the index
				runtime.Gosched()
			}
			gap := c.Epoch()
			e, ok := getEntry(t, c, "http://x/a")
			c.index.mu.Unlock()
			<-done
			if !ok || !e.Fresh(time.Now()) {
				t.Fatal("the entry was not readable fresh in the purge's gap: the test proves nothing")
			}
			if c.Epoch() == gap {
				t.Fatalf("the epoch read while the purge ran (%d) is still current after it: a copy read then and kept under it outlives the purge", gap)
			}
		})
	}
}

// An entry stored while a purge ran may hold what the purge was to remove:
// it is stored stale with no stale-while-revalidate window, so the next
// request waits for the origin instead of getting it at once while a
// background refresh runs (its stale-if-error window stays: a failing
// origin may still be answered with it).
func TestSetDuringAPurgeLeavesNoStaleWhileRevalidate(t *testing.T) {
	c := newTestCache(t, 8<<20)
	e := Entry{Status: 200, StoredAt: time.Now(), FreshFor: time.Hour,
		StaleWhileRevalidate: time.Hour, StaleIfError: 2 * time.Hour, ETag: `"x"`, Body: []byte("before the save")}
	epoch := c.Epoch()
	c.SoftPurgeTags([]string{"t:1"})
	if err := c.Set("http://x/a", e.Encode(), []string{"t:1"}, epoch); err != nil {
		t.Fatal(err)
	}
	got, ok := getEntry(t, c, "http://x/a")
	now := time.Now()
	if !ok || got.Fresh(now) || got.ServableWhileRevalidating(now) || got.StaleIfError != 2*time.Hour {
		t.Fatalf("stored during a purge: fresh %v, servable while revalidating %v (swr %s), stale-if-error %s",
			got.Fresh(now), got.ServableWhileRevalidating(now), got.StaleWhileRevalidate, got.StaleIfError)
	}
}
