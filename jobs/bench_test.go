package jobs

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

// benchQueue opens a queue on a real file (fsync on) with a no-op handler.
func benchQueue(b *testing.B, cfg KindConfig) *Queue {
	q := openQueue(b, nil, Options{Logger: zap.NewNop(), PollInterval: 10 * time.Millisecond})
	if err := q.Register("bench", cfg, func(context.Context, []*Task) []error { return nil }); err != nil {
		b.Fatal(err)
	}
	return q
}

// commitCounters is a snapshot of a committer's counters.
type commitCounters struct{ commits, ops, nanos uint64 }

// counters snapshots q's commit counters.
func counters(q *Queue) commitCounters {
	return commitCounters{q.commit.commits.Load(), q.commit.ops.Load(), q.commit.nanos.Load()}
}

// reportCommits reports throughput, fsyncs per job (each bbolt commit is two
// fdatasyncs: pages, then meta; strace -c confirms), operations per commit
// and the mean commit time.
func reportCommits(b *testing.B, q *Queue, jobs int, before commitCounters) {
	now := counters(q)
	commits := now.commits - before.commits
	b.ReportMetric(float64(now.ops-before.ops)/float64(commits), "ops/commit")
	b.ReportMetric(float64(now.nanos-before.nanos)/float64(commits)/1e3, "µs/commit")
	b.ReportMetric(float64(jobs)/b.Elapsed().Seconds(), "jobs/s")
	b.ReportMetric(float64(2*commits)/float64(jobs), "fsyncs/job")
}

// BenchmarkEnqueue measures accepting jobs one Enqueue call at a time: from
// one caller (each call waits for its own commit), from 32 concurrent
// callers (calls share commits), and 100 per EnqueueBatch call.
func BenchmarkEnqueue(b *testing.B) {
	payload := make([]byte, 256)
	b.Run("serial", func(b *testing.B) {
		q := benchQueue(b, KindConfig{})
		before := counters(q)
		for i := 0; b.Loop(); i++ {
			if _, _, err := q.Enqueue(context.Background(), EnqueueRequest{Kind: "bench", Key: fmt.Sprint("k", i), Payload: payload}); err != nil {
				b.Fatal(err)
			}
		}
		reportCommits(b, q, b.N, before)
	})
	b.Run("parallel32", func(b *testing.B) {
		q := benchQueue(b, KindConfig{})
		before := counters(q)
		var n atomic.Int64
		b.SetParallelism(32 / max(1, testingProcs()))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := n.Add(1)
				if _, _, err := q.Enqueue(context.Background(), EnqueueRequest{Kind: "bench", Key: fmt.Sprint("k", i), Payload: payload}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportCommits(b, q, b.N, before)
	})
	b.Run("batch100", func(b *testing.B) {
		q := benchQueue(b, KindConfig{})
		before := counters(q)
		reqs := make([]EnqueueRequest, 0, 100)
		i := 0
		for b.Loop() {
			reqs = append(reqs, EnqueueRequest{Kind: "bench", Key: fmt.Sprint("k", i), Payload: payload})
			i++
			if len(reqs) == cap(reqs) {
				if _, err := q.EnqueueBatch(context.Background(), reqs); err != nil {
					b.Fatal(err)
				}
				reqs = reqs[:0]
			}
		}
		if _, err := q.EnqueueBatch(context.Background(), reqs); err != nil {
			b.Fatal(err)
		}
		reportCommits(b, q, b.N, before)
	})
}

// BenchmarkComplete measures working off a backlog of b.N ready jobs with a
// no-op handler: claim, run, complete. jobs/s and fsyncs/job cover the
// worker side only (the backlog is enqueued before the timer starts).
func BenchmarkComplete(b *testing.B) {
	for _, cfg := range []KindConfig{
		{Concurrency: 1, BatchSize: 1},
		{Concurrency: 16, BatchSize: 1},
		{Concurrency: 4, BatchSize: 100},
	} {
		b.Run(fmt.Sprintf("conc%d_batch%d", cfg.Concurrency, cfg.BatchSize), func(b *testing.B) {
			q := benchQueue(b, cfg)
			reqs := make([]EnqueueRequest, b.N)
			for i := range reqs {
				reqs[i] = EnqueueRequest{Kind: "bench", Key: fmt.Sprint("k", i), Payload: make([]byte, 256)}
			}
			for start := 0; start < len(reqs); start += 1000 {
				if _, err := q.EnqueueBatch(context.Background(), reqs[start:min(start+1000, len(reqs))]); err != nil {
					b.Fatal(err)
				}
			}
			before := counters(q)
			b.ResetTimer()
			stop := startRun(b, q)
			for {
				st, err := q.Stats()
				if err != nil {
					b.Fatal(err)
				}
				if st.Kinds["bench"].Done == b.N {
					break
				}
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			stop()
			reportCommits(b, q, b.N, before)
		})
	}
}

// BenchmarkEnqueueAndComplete measures the whole life of a job under load:
// 32 producers enqueue one job per call while 16 workers complete them.
func BenchmarkEnqueueAndComplete(b *testing.B) {
	q := benchQueue(b, KindConfig{Concurrency: 16})
	before := counters(q)
	stop := startRun(b, q)
	var n atomic.Int64
	b.SetParallelism(32 / max(1, testingProcs()))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, _, err := q.Enqueue(context.Background(), EnqueueRequest{Kind: "bench", Key: fmt.Sprint("k", i), Payload: make([]byte, 256)}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	for {
		st, err := q.Stats()
		if err != nil {
			b.Fatal(err)
		}
		if st.Kinds["bench"].Done == b.N {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	stop()
	reportCommits(b, q, b.N, before)
}
