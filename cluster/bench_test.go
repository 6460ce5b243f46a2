package cluster

import (
	"slices"
	"strconv"
	"testing"
	"time"
)

// BenchmarkPurgeFanout measures how long a purge published on node 1
// takes to reach both other nodes' Handlers.Purge, on 3 nodes each
// running an embedded NATS server, clustered through routes on loopback
// (replicas 3). It reports the latency's p50 and p99 per purge.
//
//	go test -run '^$' -bench PurgeFanout -benchtime 1000x ./cluster/
func BenchmarkPurgeFanout(b *testing.B) {
	got := []chan Purge{make(chan Purge, 16), make(chan Purge, 16)}
	hs := []Handlers{{}, {Purge: func(p Purge) error { got[0] <- p; return nil }}, {Purge: func(p Purge) error { got[1] <- p; return nil }}}
	nodes := startEmbeddedNodes(b, hs)
	// Steady state: a freshly formed NATS cluster may still move the
	// consumers' leaders for a few seconds; one untimed purge first.
	nodes[0].Publish(Purge{Tags: []string{"warm-up"}})
	for _, ch := range got {
		select {
		case <-ch:
		case <-time.After(60 * time.Second):
			b.Fatal("warm-up purge not delivered")
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tag := strconv.Itoa(i)
		start := time.Now()
		nodes[0].Publish(Purge{Tags: []string{tag}})
		for _, ch := range got {
			select {
			case p := <-ch:
				if p.Tags[0] != tag {
					b.Fatalf("got purge %v, want %s", p.Tags, tag)
				}
			case <-time.After(10 * time.Second):
				b.Fatalf("purge %s not delivered", tag)
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
