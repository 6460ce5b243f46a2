package caddymodule

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/craftedge/craftedge/pagecache"
	"github.com/craftedge/craftedge/snapshot"
)

// NoteServed is on the hit path: a random number for the 1-in-8 sample,
// and for a sampled hit a hash and an atomic store; no allocation.
func BenchmarkNoteServed(b *testing.B) {
	a := &App{}
	key := "https://www.example.com/blog/2026/a-fairly-long-entry-slug?page=2"
	defer func(m uint32) { servedSampleMask = m }(servedSampleMask)
	for _, c := range []struct {
		name string
		mask uint32
	}{{"sampled-1-in-8", 7}, {"every-hit", 0}} {
		servedSampleMask = c.mask
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					a.NoteServed(key)
				}
			})
		})
	}
}

// The refill's cost per entry, unpaced: 10 KiB pages of varied text
// (compressing about 4x, like Craft's), 1,000 snapshots read from bbolt,
// the identity body restored from zstd, the gzip variant compressed again
// and the entry stored. ns/entry is the CPU a paced refill spreads out;
// B/entry the garbage it leaves.
func BenchmarkWarmStartRefill(b *testing.B) {
	const n = 1000
	store, err := snapshot.Open(snapshot.Options{Path: filepath.Join(b.TempDir(), "bench.db")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	words := strings.Fields("craft entry field matrix asset image section structure category tag global user " +
		"template twig plugin element query revision draft site locale author date title slug uri body summary")
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Now()
	app := NewDetachedApp(store, nil)
	for i := range n {
		var body []byte
		body = append(body, "<!doctype html><html><body>"...)
		for len(body) < 10<<10 {
			body = append(body, words[rng.IntN(len(words))]...)
			body = append(body, ' ')
			if rng.IntN(12) == 0 {
				body = strconv.AppendInt(body, rng.Int64N(1e6), 10)
				body = append(body, "</p><p>"...)
			}
		}
		e := pagecache.Entry{Status: 200, StoredAt: now, FreshFor: time.Hour, Body: body[:10<<10],
			Header: []pagecache.HeaderField{{Name: "Content-Type", Value: "text/html; charset=utf-8"}},
			Tags:   []string{"el:" + strconv.Itoa(i)}}
		if err := pagecache.CompressVariants(&e); err != nil {
			b.Fatal(err)
		}
		app.SaveSnapshot("https://www.example.com/page/"+strconv.Itoa(i), &e, now.Add(time.Duration(i)))
		if i%500 == 499 {
			if err := store.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := store.Flush(); err != nil {
		b.Fatal(err)
	}
	defer func(d time.Duration) { warmBatchWork = d }(warmBatchWork)
	warmBatchWork = time.Hour // unpaced
	var ms0, ms1 runtime.MemStats
	var garbage uint64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		mem, err := pagecache.New(pagecache.Options{MaxBytes: 256 << 20, MaxEntryBytes: 4 << 20})
		if err != nil {
			b.Fatal(err)
		}
		app.memory = mem
		w := new(warmStart)
		runtime.ReadMemStats(&ms0)
		b.StartTimer()
		app.refill(context.Background(), w)
		b.StopTimer()
		runtime.ReadMemStats(&ms1)
		garbage += ms1.TotalAlloc - ms0.TotalAlloc
		if w.refilled.Load() != n {
			b.Fatalf("refilled %d of %d", w.refilled.Load(), n)
		}
		_ = mem.Close()
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
	b.ReportMetric(float64(garbage)/float64(b.N*n), "B/entry")
}
