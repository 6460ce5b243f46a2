package pagecache

import (
	"fmt"
	"math/rand"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Purge benchmarks: one tag covering 100,000 entries, alone and under
// concurrent hits. Run them with a fixed count; each iteration refills the
// cache (untimed):
//
//	go test -run '^$' -bench 'PurgeTag' -benchtime 5x ./pagecache

const purgeEntries = 100_000

// benchPage is HTML of exactly size bytes whose text varies like a real
// page (seeded): it compresses about 4x, as Craft pages do, not 50x like a
// repeated paragraph.
func benchPage(size int) []byte {
	words := strings.Fields("craft entry section field matrix asset category global user element " +
		"template twig query cache tag purge edge page blog product price cart order shipping " +
		"customer review image gallery author date summary body link title heading navigation")
	rnd := rand.New(rand.NewSource(int64(size)))
	var b strings.Builder
	b.WriteString(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Bench</title></head><body>` + "\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, `<article id="e%d"><h2><a href="/blog/%s-%d">%s</a></h2><p>`, i,
			words[rnd.Intn(len(words))], rnd.Intn(99999), words[rnd.Intn(len(words))])
		for j, n := 0, 8+rnd.Intn(16); j < n; j++ {
			b.WriteString(words[rnd.Intn(len(words))])
			b.WriteByte(' ')
		}
		b.WriteString("</p></article>\n")
	}
	return []byte(b.String()[:size])
}

// benchEncoded is a real stored entry, as the handler builds it: replayed
// headers, a derived ETag, the origin's tags, the identity body and (when
// compress) its gzip and zstd variants.
func benchEncoded(tb testing.TB, body []byte, tags []string, compress bool) []byte {
	tb.Helper()
	e := Entry{
		Status:       200,
		StoredAt:     time.Now(),
		FreshFor:     time.Hour,
		StaleIfError: 24 * time.Hour,
		ETag:         `"ce-5f0e2a7c9b13d4e8"`,
		Tags:         tags,
		Header: []HeaderField{
			{Name: "Content-Type", Value: "text/html; charset=utf-8"},
			{Name: "X-Powered-By", Value: "Craft CMS"},
			{Name: "Vary", Value: "Accept-Encoding"},
		},
		Body: body,
	}
	if compress {
		if err := CompressVariants(&e); err != nil {
			tb.Fatal(err)
		}
	}
	return e.Encode()
}

// benchKey is a cache key shaped like the handler's (scheme://host/path?query).
func benchKey(prefix string, i int) string {
	return fmt.Sprintf("https://www.example.com/%s/entry-%d?page=1", prefix, i)
}

// newBenchCache is a memory tier with the handler's default max entry size.
func newBenchCache(tb testing.TB, maxBytes int64) *Cache {
	tb.Helper()
	c, err := New(Options{MaxBytes: maxBytes, MaxEntryBytes: 4 << 20})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// fillBulk stores n small entries, each with its own entry tag and the
// shared tag "section:bulk".
func fillBulk(tb testing.TB, c *Cache, n int) {
	tb.Helper()
	enc := benchEncoded(tb, benchPage(512), []string{"section:bulk"}, false)
	tags := []string{"section:bulk", ""}
	for i := 0; i < n; i++ {
		tags[1] = "entry:" + fmt.Sprint(i)
		if err := c.Set(benchKey("bulk", i), enc, tags, c.Epoch()); err != nil {
			tb.Fatal(err)
		}
	}
	if got := c.Stats().Entries; got < n {
		tb.Fatalf("filled %d entries, cache holds %d: raise MaxBytes", n, got)
	}
}

// BenchmarkPurgeTag100k times PurgeTags of one tag covering 100,000
// entries (512-byte bodies; a 512 MiB bound, whose index share holds them all, so nothing is evicted):
// purge-ms until it returns (from then on no purged entry is served),
// cleanup-ms until the background cleanup has also unlinked them from
// their other tags and deleted them from the store.
func BenchmarkPurgeTag100k(b *testing.B) {
	c := newBenchCache(b, 512<<20)
	var total, worst, cleanTotal time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		fillBulk(b, c, purgeEntries)
		runtime.GC()
		b.StartTimer()
		t0 := time.Now()
		n := c.PurgeTags([]string{"section:bulk"})
		d := time.Since(t0)
		if _, ok := c.Get(benchKey("bulk", 7)); ok {
			b.Fatal("a purged entry is still served")
		}
		c.index.waitCleanup()
		cleanTotal += time.Since(t0)
		b.StopTimer()
		if n != purgeEntries {
			b.Fatalf("purged %d entries, want %d", n, purgeEntries)
		}
		if st := c.Stats(); st.Entries != 0 || st.PurgePending != 0 {
			b.Fatalf("after the cleanup: %d entries, %d pending", st.Entries, st.PurgePending)
		}
		total += d
		worst = max(worst, d)
		b.StartTimer()
	}
	b.ReportMetric(ms(total)/float64(b.N), "purge-ms")
	b.ReportMetric(ms(worst), "purge-max-ms")
	b.ReportMetric(ms(cleanTotal)/float64(b.N), "cleanup-ms")
}

// BenchmarkPurgeTagConcurrentHits measures the latency of hits (Get and
// Decode of 10 KiB pages with their compressed variants, what the handler
// does before writing) while idle, then while PurgeTags removes 100,000
// other entries and the background cleanup deletes them from the store
// (the window covers both). Hitters run on GOMAXPROCS-1 goroutines (at least one) so
// the purge has a CPU of its own, as on a server whose admin request is
// one goroutine among many: the figure isolates lock and GC interference,
// not CPU sharing.
func BenchmarkPurgeTagConcurrentHits(b *testing.B) {
	const hot = 1000
	c := newBenchCache(b, 512<<20)
	page := benchEncoded(b, benchPage(10<<10), []string{"section:hot"}, true)
	hitters := max(1, runtime.GOMAXPROCS(0)-1)
	var idleAll, duringAll []time.Duration
	var purgeTotal, cleanTotal time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		fillBulk(b, c, purgeEntries)
		// Store the hot pages after the bulk ones (they are stored again
		// each round, as the bulk ones are).
		for h := 0; h < hot; h++ {
			if err := c.Set(benchKey("hot", h), page, []string{"section:hot", "entry:h" + fmt.Sprint(h)}, c.Epoch()); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		b.StartTimer()

		idle, _ := measureHits(b, c, hot, hitters, func() { time.Sleep(200 * time.Millisecond) })
		var d, dc time.Duration
		during, window := measureHits(b, c, hot, hitters, func() {
			time.Sleep(20 * time.Millisecond) // hitters running
			t0 := time.Now()
			if n := c.PurgeTags([]string{"section:bulk"}); n != purgeEntries {
				b.Errorf("purged %d entries, want %d", n, purgeEntries)
			}
			d = time.Since(t0)
			c.index.waitCleanup()
			dc = time.Since(t0)
		})
		purgeTotal += d
		cleanTotal += dc
		idleAll = append(idleAll, idle...)
		duringAll = append(duringAll, during...)
		if len(during) < 100 {
			b.Logf("only %d hits during a %v purge window %v", len(during), d, window)
		}
	}
	if len(duringAll) == 0 || len(idleAll) == 0 {
		b.Fatal("no hit samples")
	}
	idleP99, duringP99 := pct(idleAll, 0.99), pct(duringAll, 0.99)
	b.ReportMetric(ms(purgeTotal)/float64(b.N), "purge-ms")
	b.ReportMetric(ms(cleanTotal)/float64(b.N), "cleanup-ms")
	b.ReportMetric(us(pct(idleAll, 0.50)), "idle-p50-us")
	b.ReportMetric(us(idleP99), "idle-p99-us")
	b.ReportMetric(us(pct(duringAll, 0.50)), "during-p50-us")
	b.ReportMetric(us(duringP99), "during-p99-us")
	b.ReportMetric(us(slices.Max(duringAll)), "during-max-us")
	b.ReportMetric(float64(duringP99)/float64(idleP99), "p99-ratio")
	b.ReportMetric(float64(len(duringAll))/float64(b.N), "hits-during")
}

// measureHits runs hitters goroutines doing hits until act returns, and
// returns the latencies of the hits that overlapped the time act ran
// (after its first 20 ms warm-up, when act sleeps first) and the window. A
// hit that started before the window and was stalled into it counts: a
// stall caused by the purge must not be attributed to the warm-up.
func measureHits(b *testing.B, c *Cache, hot, hitters int, act func()) ([]time.Duration, time.Duration) {
	var stop atomic.Bool
	var wg sync.WaitGroup
	type sample struct {
		start time.Time
		d     time.Duration
	}
	out := make([][]sample, hitters)
	for g := 0; g < hitters; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			buf := make([]sample, 0, 1<<20)
			var e Entry
			rnd := rand.New(rand.NewSource(int64(g)))
			for !stop.Load() && len(buf) < cap(buf) {
				key := benchKey("hot", rnd.Intn(hot))
				t0 := time.Now()
				raw, ok := c.Get(key)
				if !ok || e.Decode(raw) != nil || !e.Fresh(t0) || len(e.Zstd) == 0 {
					b.Error("hot entry missing")
					return
				}
				buf = append(buf, sample{t0, time.Since(t0)})
			}
			out[g] = buf
		}(g)
	}
	begin := time.Now()
	act()
	end := time.Now()
	stop.Store(true)
	wg.Wait()
	from := begin
	if end.Sub(begin) > 40*time.Millisecond {
		from = begin.Add(20 * time.Millisecond)
	}
	var lat []time.Duration
	for _, buf := range out {
		for _, s := range buf {
			if s.start.Before(end) && s.start.Add(s.d).After(from) {
				lat = append(lat, s.d)
			}
		}
	}
	return lat, end.Sub(from)
}

func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
func us(d time.Duration) float64 { return float64(d) / 1e3 }
