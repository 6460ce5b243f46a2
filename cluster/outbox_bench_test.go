package cluster

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkOutboxAccept measures what an outbox write costs its client in
// cluster mode: Accept until JetStream acknowledged it on the stream's 3
// replicas (3 nodes, each with an embedded NATS server, routes on
// loopback), with an idempotency key (the key index and the status are
// written too). It reports p50 and p99 per write.
//
//	go test -run '^$' -bench OutboxAccept -benchtime 300x ./cluster/
func BenchmarkOutboxAccept(b *testing.B) {
	nodes := startEmbeddedNodes(b, []Handlers{{}, {}, {}})
	o, err := NewOutbox(nodes[0], OutboxConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	for deadline := time.Now().Add(60 * time.Second); !o.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("outbox not ready")
		}
	}
	ctx := context.Background()
	if _, _, err := o.Accept(ctx, OutboxRequest{Kind: "outbox", Key: "warm-up"}); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		_, created, err := o.Accept(ctx, OutboxRequest{Kind: "outbox", Key: fmt.Sprintf("k-%d", i),
			Entity: fmt.Sprintf("e-%d", i%10), Payload: []byte(`{"title":{"en":"x"}}`)})
		if err != nil || !created {
			b.Fatalf("accept %d: %v %v", i, created, err)
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
