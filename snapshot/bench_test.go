package snapshot

import (
	"fmt"
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
