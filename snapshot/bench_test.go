package snapshot

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPutFlush measures sustained write-behind throughput with a 10 KiB
// value on a real file: Puts are committed in batches of 256 records (one
// transaction, hence two fdatasyncs, per batch), over a working set of 4096
// keys so that the file stays bounded and most writes overwrite.
func BenchmarkPutFlush(b *testing.B) {
	const batch, keys = 256, 4096
	s := openTest(b, Options{QueueSize: batch})
	value := make([]byte, 10<<10)
	tags := []string{"url:https://example.com/p", "host:example.com", "entry:1"}
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("https://example.com/page/%d", i)
	}
	now := time.Now()
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !s.Put(Record{Key: names[i%keys], StoredAt: now, Tags: tags, Value: value}) {
			b.Fatal("Put refused")
		}
		if (i+1)%batch == 0 {
			mustFlush(b, s)
		}
	}
	mustFlush(b, s)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(s.Stats().LastWriteDuration.Microseconds()), "µs/last-batch")
}

// BenchmarkGet measures reading a committed 10 KiB snapshot (one bbolt read
// transaction, decode, copy).
func BenchmarkGet(b *testing.B) {
	const keys = 1024
	s := openTest(b, Options{QueueSize: keys})
	value := make([]byte, 10<<10)
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("https://example.com/page/%d", i)
		s.Put(Record{Key: names[i], Tags: []string{"host:example.com", "url:" + names[i]}, Value: value})
	}
	mustFlush(b, s)
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok, err := s.Get(names[i%keys]); err != nil || !ok {
			b.Fatalf("Get: %v %v", ok, err)
		}
	}
}

// BenchmarkMarkPurgedConcurrent measures RFC 9111 invalidations arriving
// at once (an unsafe request's URL mark, as many POSTs in flight), on a
// real file with fsync: 16 callers per CPU, each marking one of 512 URLs.
// page-writes/op is bbolt's page writes per mark; commits/op the
// transactions per mark (each commit is at least two fdatasyncs), shared
// by concurrent marks since they are coalesced (markQueue; 1 before).
func BenchmarkMarkPurgedConcurrent(b *testing.B) {
	s := openTest(b, Options{})
	writes := func() int64 { st := s.db.Stats(); return st.TxStats.GetWrite() }
	before, commits := writes(), s.markCommits.Load()
	var seq atomic.Int64
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tag := fmt.Sprintf("url:https://example.com/form/%d", seq.Add(1)%512)
			if err := s.MarkPurged([]string{tag}, time.Now()); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(writes()-before)/float64(b.N), "page-writes/op")
	b.ReportMetric(float64(s.markCommits.Load()-commits)/float64(b.N), "commits/op")
}
