package pagecache

import (
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
)

// Memory benchmarks: what one entry costs beside its encoded bytes, and
// whether the bound holds under a working set four times larger.
//
//	go test -run '^$' -bench 'Memory' -benchtime 1x ./pagecache
//
// Entries are real: a seeded HTML page of the given size with its gzip and
// zstd variants, three explicit tags (one shared, one per entry, one per
// section) plus the implicit URL and host tags, keys shaped like the
// handler's.

var memoryBodySizes = []struct {
	name string
	size int
}{{"1KiB", 1 << 10}, {"10KiB", 10 << 10}, {"100KiB", 100 << 10}}

func entryTags(i int) []string {
	return []string{"page", "entry:" + strconv.Itoa(i), "section:s" + strconv.Itoa(i%50)}
}

// heapAfterGC is the live heap, after two collections.
func heapAfterGC() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// BenchmarkMemoryPerEntry fills a 256 MiB memory tier to about half with
// entries of each body size and reports, per entry: the encoded bytes
// (identity + gzip + zstd bodies, headers, tags), the live heap it adds
// (heap-B/entry), the overhead beyond the encoded bytes (the allocation's
// rounding to Go's size class, the slot header, the store's node and hash
// table, the tag index), what the entry weighs in the store's bound
// (weight-B/entry, see entryWeight) and the tag index alone (index-B/entry,
// counted in the index's share of the bound, see indexCharge).
// store-overhead-B/entry is the overhead outside the tag index and the
// encoded bytes: entryWeight's entryOverhead must cover it.
func BenchmarkMemoryPerEntry(b *testing.B) {
	const bound = 256 << 20
	for _, bs := range memoryBodySizes {
		b.Run("body="+bs.name, func(b *testing.B) {
			enc := benchEncoded(b, benchPage(bs.size), entryTags(0), true)
			n := min(50_000, bound/2/len(enc))
			var heapPer, indexPer, weightPer, newMiB float64
			for it := 0; it < b.N; it++ {
				h0 := heapAfterGC()
				c, err := New(Options{MaxBytes: bound, MaxEntryBytes: 4 << 20})
				if err != nil {
					b.Fatal(err)
				}
				h1 := heapAfterGC()
				for i := 0; i < n; i++ {
					if err := c.Set(benchKey("blog", i), enc, entryTags(i), c.Epoch()); err != nil {
						b.Fatal(err)
					}
				}
				h2 := heapAfterGC()
				if got := c.Stats().Entries; got != n {
					b.Fatalf("cache holds %d entries, want %d (evictions in a half-full cache)", got, n)
				}
				// The tag index alone, as Set builds it.
				ix := newTagIndex()
				for i := 0; i < n; i++ {
					ix.add(benchKey("blog", i), entryTags(i))
				}
				h3 := heapAfterGC()
				runtime.KeepAlive(ix)
				runtime.KeepAlive(c)
				newMiB = float64(h1-h0) / (1 << 20)
				heapPer = float64(h2-h1) / float64(n)
				indexPer = float64(h3-h2) / float64(n)
				weightPer = float64(c.Stats().EntryBytes) / float64(n)
				_ = c.Close()
			}
			b.ReportMetric(float64(len(enc)), "enc-B/entry")
			b.ReportMetric(heapPer, "heap-B/entry")
			b.ReportMetric(heapPer-float64(len(enc)), "overhead-B/entry")
			b.ReportMetric(weightPer, "weight-B/entry")
			b.ReportMetric(indexPer, "index-B/entry")
			b.ReportMetric(heapPer-indexPer-float64(len(enc)+len(benchKey("blog", n/2))), "store-overhead-B/entry")
			b.ReportMetric(newMiB, "alloc-MiB")
			b.ReportMetric(float64(n), "entries")
		})
	}
}

// BenchmarkMemoryBound4x stores a working set four times the 32 MiB bound,
// twice over (so the second pass runs in steady eviction), and checks that
// what the tier holds (Stats.Bytes: the entries as the store weighs them
// plus the tag index) never exceeds MaxBytes, that the tag index follows
// evictions (no dangling keys), and how far memory goes past the bound:
// live heap after GC, and the peak of the memory the Go
// runtime holds from the OS (Sys - HeapReleased, sampled: what becomes
// anonymous RSS), once without a memory limit (GOGC alone) and once with
// the tier's SetMemoryLimit (skipped when GOMEMLIMIT is set).
func BenchmarkMemoryBound4x(b *testing.B) {
	const bound = 32 << 20
	for _, limit := range []bool{false, true} {
		for _, bs := range memoryBodySizes {
			name := "limit=off/body=" + bs.name
			if limit {
				name = "limit=on/body=" + bs.name
			}
			b.Run(name, func(b *testing.B) {
				if limit && userMemoryLimit() {
					b.Skip("GOMEMLIMIT is set: the tier leaves the limit alone")
				}
				benchBound4x(b, bound, bs.size, limit)
			})
		}
	}
}

func benchBound4x(b *testing.B, bound int64, bodySize int, limit bool) {
	enc := benchEncoded(b, benchPage(bodySize), entryTags(0), true)
	keys := int(4 * bound / int64(len(enc)))
	var live, peak, peakOS, base, maxBytes int64
	var st Stats
	for it := 0; it < b.N; it++ {
		debug.FreeOSMemory() // start from what is live, whatever ran before
		h0 := heapAfterGC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base = int64(ms.Sys - ms.HeapReleased)
		c, err := New(Options{MaxBytes: bound, MaxEntryBytes: 4 << 20, SetMemoryLimit: limit})
		if err != nil {
			b.Fatal(err)
		}
		peak, peakOS, maxBytes = 0, 0, 0
		for pass := 0; pass < 2; pass++ {
			for i := 0; i < keys; i++ {
				if err := c.Set(benchKey("ws", i), enc, entryTags(i), c.Epoch()); err != nil {
					b.Fatal(err)
				}
				if i%512 == 0 {
					if by := int64(c.Stats().Bytes); by > maxBytes {
						maxBytes = by
					}
					runtime.ReadMemStats(&ms)
					peak = max(peak, int64(ms.HeapInuse))
					peakOS = max(peakOS, int64(ms.Sys-ms.HeapReleased))
				}
			}
		}
		live = heapAfterGC() - h0
		st = c.Stats()
		maxBytes = max(maxBytes, int64(st.Bytes))
		c.store.CleanUp()
		if indexed, stored := c.index.keyCount(), c.store.EstimatedSize(); indexed != stored || st.Entries != stored {
			b.Errorf("tag index holds %d keys (%d live), the store %d entries: eviction left the index inconsistent", indexed, st.Entries, stored)
		}
		if maxBytes > bound {
			b.Errorf("the tier held %d bytes, over the %d bound", maxBytes, bound)
		}
		if st.Evicted == 0 {
			b.Errorf("a working set 4x the bound evicted nothing")
		}
		_ = c.Close()
		debug.FreeOSMemory() // the next run starts from the same place
	}
	mib := func(v int64) float64 { return float64(v) / (1 << 20) }
	b.ReportMetric(mib(bound), "bound-MiB")
	b.ReportMetric(mib(maxBytes), "cache-max-MiB")
	b.ReportMetric(mib(live), "live-heap-MiB")
	b.ReportMetric(mib(live-bound), "over-bound-MiB")
	b.ReportMetric(mib(peak), "peak-heap-inuse-MiB")
	b.ReportMetric(mib(peakOS), "peak-os-MiB")
	b.ReportMetric(mib(peakOS-base-bound), "peak-os-over-bound-MiB")
	b.ReportMetric(float64(st.Entries), "entries")
	b.ReportMetric(float64(keys), "working-set-keys")
	b.ReportMetric(float64(st.Evicted), "evicted")
	if st.Entries > 0 {
		b.ReportMetric(float64(live-bound)/float64(st.Entries), "over-bound-B/entry")
	}
}
