package pagecache

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// storeOutcome stores key (tags "t:1", "section:news") under epoch and
// says what became of it: "fresh", "stale" or "not stored".
func storeOutcome(t *testing.T, c *Cache, key string, epoch uint64) string {
	t.Helper()
	tags := []string{"t:1", "section:news"}
	err := c.Set(key, testEntry(t, tags...), tags, epoch)
	switch {
	case errors.Is(err, ErrPurgedWhileFetched):
		if _, ok := c.Get(key); ok {
			t.Fatalf("%s: not stored, yet served", key)
		}
		return "not stored"
	case err != nil:
		t.Fatal(err)
	}
	e, ok := getEntry(t, c, key)
	switch {
	case !ok:
		t.Fatalf("%s: stored, not served", key)
	case e.Fresh(time.Now()):
		return "fresh"
	case e.ServableWhileRevalidating(time.Now()):
		t.Fatalf("%s: stale with a stale-while-revalidate window", key)
	}
	return "stale"
}

// A store whose epoch a purge moved is stale (soft purge) or not stored
// (hard purge) only when that purge could select it: by an explicit tag,
// its URL, its exact query, its host, a prefix, or all. Any other purge
// leaves it fresh.
func TestSetAfterPurgeIsScopedToWhatThePurgeSelects(t *testing.T) {
	const key = "https://www.example.com/news/a?page=2"
	purges := []struct {
		name  string
		purge func(c *Cache)
		want  string
	}{
		{"other tag", func(c *Cache) { c.PurgeTags([]string{"t:2", "section:blog"}) }, "fresh"},
		{"other tag, soft", func(c *Cache) { c.SoftPurgeTags([]string{"t:2"}) }, "fresh"},
		{"other URL", func(c *Cache) { c.PurgeURL("https://www.example.com/news/b", "https://www.example.com/news/b") }, "fresh"},
		{"other query", func(c *Cache) {
			c.PurgeURL("https://www.example.com/news/a", "https://www.example.com/news/a?page=3")
		}, "fresh"},
		{"other host", func(c *Cache) { c.PurgeHost("example.org") }, "fresh"},
		{"other prefix", func(c *Cache) { c.PurgePrefix("https://www.example.com/blog/") }, "fresh"},
		{"tag, soft", func(c *Cache) { c.SoftPurgeTags([]string{"x", "section:news"}) }, "stale"},
		{"tag, hard", func(c *Cache) { c.PurgeTags([]string{"t:1"}) }, "not stored"},
		{"url tag, hard", func(c *Cache) { c.PurgeTags([]string{URLTag("https://www.example.com/news/a")}) }, "not stored"},
		{"URL, soft", func(c *Cache) {
			c.SoftPurgeURL("https://www.example.com/news/a", "https://www.example.com/news/a")
		}, "stale"},
		{"URL, hard", func(c *Cache) {
			c.PurgeURL("https://www.example.com/news/a", "https://www.example.com/news/a")
		}, "not stored"},
		{"exact query, hard", func(c *Cache) {
			c.PurgeURL("https://www.example.com/news/a", "https://www.example.com/news/a?page=2")
		}, "not stored"},
		{"host, soft", func(c *Cache) { c.SoftPurgeHost("WWW.example.com") }, "stale"},
		{"host, hard", func(c *Cache) { c.PurgeHost("www.example.com") }, "not stored"},
		{"prefix, soft", func(c *Cache) { c.SoftPurgePrefix("https://www.example.com/news/") }, "stale"},
		{"prefix, hard", func(c *Cache) { c.PurgePrefix("https://www.example.com/") }, "not stored"},
		{"all", func(c *Cache) { c.PurgeAll() }, "not stored"},
		{"soft then hard", func(c *Cache) { c.SoftPurgeTags([]string{"t:1"}); c.PurgeHost("www.example.com") }, "not stored"},
		{"hard then soft", func(c *Cache) { c.PurgeHost("www.example.com"); c.SoftPurgeTags([]string{"t:1"}) }, "not stored"},
	}
	for _, p := range purges {
		t.Run(p.name, func(t *testing.T) {
			c := newTestCache(t, 8<<20)
			mustSet(t, c, key, "t:1", "section:news") // the copy a purge finds
			epoch := c.Epoch()
			p.purge(c)
			if got := storeOutcome(t, c, key, epoch); got != p.want {
				t.Fatalf("stored across the purge: %s, want %s", got, p.want)
			}
			// A purge that ended before the epoch was read is no
			// concern of a store under it.
			if got := storeOutcome(t, c, key, c.Epoch()); got != "fresh" {
				t.Fatalf("stored after the purge: %s", got)
			}
			st := c.Stats()
			if (p.want == "stale") != (st.StoredStale == 1) || (p.want == "not stored") != (st.NotStoredPurged == 1) {
				t.Fatalf("stats: stored stale %d, not stored %d", st.StoredStale, st.NotStoredPurged)
			}
		})
	}
}

// A purge that was running when the epoch was read (begun before, ended
// after) counts as one since the epoch: the store may have been read
// before the purge reached it.
func TestSetAfterAPurgeRunningAtItsEpoch(t *testing.T) {
	const key = "https://www.example.com/news/a"
	for _, tag := range []string{"t:1", "unrelated"} {
		c := newTestCache(t, 8<<20)
		before := c.Epoch()
		c.index.mu.Lock()
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.PurgeTags([]string{tag})
		}()
		for c.Epoch() == before { // the purge began: it waits for the index
			runtime.Gosched()
		}
		epoch := c.Epoch()
		c.index.mu.Unlock()
		<-done
		want := "not stored"
		if tag == "unrelated" {
			want = "fresh"
		}
		if got := storeOutcome(t, c, key, epoch); got != want {
			t.Fatalf("purge of %s running at the epoch: %s, want %s", tag, got, want)
		}
	}
}

// When more distinct selectors were purged since the epoch than the log
// holds, it cannot tell: the store is stale, as any purge used to make it
// (never dropped: what it forgot may have been soft). The log stays
// bounded.
func TestSetAfterThePurgeLogOverflowedIsStale(t *testing.T) {
	c := newTestCache(t, 8<<20)
	epoch := c.Epoch()
	for i := range maxPurgeSelectors + 10 {
		c.PurgeURL(fmt.Sprintf("https://www.example.com/form-%d", i), fmt.Sprintf("https://www.example.com/form-%d", i))
	}
	if n := len(c.purges.sels); n > maxPurgeSelectors {
		t.Fatalf("the purge log holds %d selectors, bound %d", n, maxPurgeSelectors)
	}
	// Long URLs (their queries are the visitor's) are bounded in bytes.
	long := "https://www.example.com/form?q=" + strings.Repeat("x", 64<<10)
	for i := range 100 {
		c.PurgeURL("https://www.example.com/form", fmt.Sprint(long, i))
	}
	if c.purges.bytes > maxPurgeLogBytes {
		t.Fatalf("the purge log holds %d bytes of selectors, bound %d", c.purges.bytes, maxPurgeLogBytes)
	}
	if got := storeOutcome(t, c, "https://www.example.com/news/a", epoch); got != "stale" {
		t.Fatalf("stored after the log overflowed: %s, want stale", got)
	}
	// A takedown among the purges it still holds keeps the store out.
	c.PurgeTags([]string{"t:1"})
	if got := storeOutcome(t, c, "https://www.example.com/news/c", epoch); got != "not stored" {
		t.Fatalf("stored after the log overflowed and a hard purge of its tag: %s, want not stored", got)
	}
	// Fetched after the forgotten purges: the log answers again.
	epoch = c.Epoch()
	c.PurgeURL("https://www.example.com/form-x", "https://www.example.com/form-x")
	if got := storeOutcome(t, c, "https://www.example.com/news/b", epoch); got != "fresh" {
		t.Fatalf("stored after one unrelated purge: %s, want fresh", got)
	}
	// The same URL purged over and over takes one selector.
	n := len(c.purges.sels)
	for range 1000 {
		c.PurgeURL("https://www.example.com/form-x", "https://www.example.com/form-x?sent=1")
	}
	if got := len(c.purges.sels); got > n+2 {
		t.Fatalf("one URL purged 1000 times grew the log from %d to %d selectors", n, got)
	}
}

// BenchmarkSetAfterPurges is the store path when purges ran while the
// response was fetched and none selects it: 1000 invalidations of other
// URLs (a visitor POSTing in a loop) and 20 editors' saves of 30 tags
// each, against a store under the current epoch (no purge since). The
// hit path (Get) does no new work: it never reads the purge log.
func BenchmarkSetAfterPurges(b *testing.B) {
	tags := []string{"craft", "section:news", "entry:1", "entry:2", "asset:9", "category:3"}
	enc := benchEncoded(b, benchPage(8<<10), tags, true)
	for _, tc := range []struct {
		name   string
		purges func(c *Cache)
	}{
		{"no-purge", func(c *Cache) {}},
		{"1000-url-purges", func(c *Cache) {
			for i := range 1000 {
				u := fmt.Sprintf("https://www.example.com/contact?attempt=%d", i)
				c.PurgeURL("https://www.example.com/contact", u)
			}
		}},
		{"20-saves-of-30-tags", func(c *Cache) {
			for i := range 20 {
				var ts []string
				for j := range 30 {
					ts = append(ts, fmt.Sprintf("entry:%d", 1000+30*i+j))
				}
				c.SoftPurgeTags(ts)
			}
		}},
		{"10-prefix-purges", func(c *Cache) {
			for i := range 10 {
				c.PurgePrefix(fmt.Sprintf("https://www.example.com/archive-%d/", i))
			}
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := newBenchCache(b, 256<<20)
			epoch := c.Epoch()
			tc.purges(c)
			keys := make([]string, 1024)
			for i := range keys {
				keys[i] = benchKey("news", i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := c.Set(keys[i%len(keys)], enc, tags, epoch); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if st := c.Stats(); st.StoredStale != 0 || st.NotStoredPurged != 0 {
				b.Fatalf("unrelated purges spoiled stores: %+v", st)
			}
		})
	}
}

// BenchmarkPurgeVerdict is the check alone that BenchmarkSetAfterPurges's
// stores make under the index lock: one lookup per selector of the entry
// (its tags, URL, exact query and host) and one comparison per prefix in
// the log, whatever the number of purges since its epoch.
func BenchmarkPurgeVerdict(b *testing.B) {
	c := newBenchCache(b, 64<<20)
	epoch := c.Epoch()
	for i := range 1000 {
		c.PurgeURL("https://www.example.com/contact", fmt.Sprintf("https://www.example.com/contact?attempt=%d", i))
	}
	for i := range 20 {
		var ts []string
		for j := range 30 {
			ts = append(ts, fmt.Sprintf("entry:%d", 1000+30*i+j))
		}
		c.SoftPurgeTags(ts)
	}
	for i := range 10 {
		c.PurgePrefix(fmt.Sprintf("https://www.example.com/archive-%d/", i))
	}
	tags := []string{"craft", "section:news", "entry:1", "entry:2", "asset:9", "category:3"}
	key := benchKey("news", 7)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if v := c.purges.verdict(key, tags, false, epoch); v != verdictNone {
			b.Fatal(v)
		}
	}
}
