package cluster

import (
	"context"
	"testing"
	"time"
)

// A delivery one node remembered is a replay on every node until its TTL
// ends; another source's delivery with the same id is not; without NATS
// the answer is an error (ErrNotConnected), left to the node's own store.
func TestDeliveriesSeenAcrossNodes(t *testing.T) {
	srv := startServer(t, "solo", "", nil)
	a := startNode(t, Config{NodeName: "a", URLs: []string{srv.url()}}, &recorder{})
	b := startNode(t, Config{NodeName: "b", URLs: []string{srv.url()}}, &recorder{})
	waitState(t, a, StateReady)
	waitState(t, b, StateReady)
	ctx := context.Background()
	now := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)

	if seen, err := b.DeliverySeen(ctx, "shop", "evt-1", now); seen || err != nil {
		t.Fatalf("before any node accepted it: %v %v", seen, err)
	}
	if err := a.RememberDelivery(ctx, "shop", "evt-1", now, time.Hour); err != nil {
		t.Fatal(err)
	}
	if seen, err := b.DeliverySeen(ctx, "shop", "evt-1", now.Add(59*time.Minute)); !seen || err != nil {
		t.Fatalf("b within the TTL: %v %v, want seen", seen, err)
	}
	if seen, _ := b.DeliverySeen(ctx, "crm", "evt-1", now); seen {
		t.Fatal("another source's delivery with the same id counted as seen")
	}
	if seen, _ := b.DeliverySeen(ctx, "shop", "evt-1", now.Add(time.Hour)); seen {
		t.Fatal("seen after its TTL")
	}

	srv.stop()
	waitFor(t, "b disconnected", func() bool { return b.State() != StateReady })
	if _, err := b.DeliverySeen(ctx, "shop", "evt-1", now); !ErrNotConnected(err) {
		t.Fatalf("without NATS: %v, want ErrNotConnected", err)
	}
}
