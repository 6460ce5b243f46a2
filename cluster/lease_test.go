package cluster

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestLeaseAcquireRenewRelease(t *testing.T) {
	s := startServer(t, "solo", "", nil)
	cfg := func(name string) Config {
		return Config{NodeName: name, URLs: []string{s.url()}, LeaseTTL: 3 * time.Second} // long enough not to expire between steps
	}
	a := startNode(t, cfg("a"), &recorder{})
	b := startNode(t, cfg("b"), &recorder{})
	waitState(t, a, StateReady)
	waitState(t, b, StateReady)
	ctx := context.Background()

	la, err := a.AcquireLease(ctx, "sync:shop")
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.AcquireLease(ctx, "sync:shop")
	var held *HeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrLeaseHeld) || held.Holder != "a" {
		t.Fatalf("b acquiring a held lease: %v", err)
	}
	if h, _ := b.LeaseHolder(ctx, "sync:shop"); h != "a" {
		t.Fatalf("holder %q", h)
	}
	if _, err := b.AcquireLease(ctx, "sync:crm"); err != nil {
		t.Fatalf("another name is independent: %v", err)
	}
	if err := la.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := la.Renew(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("renewing a released lease: %v", err)
	}
	lb, err := b.AcquireLease(ctx, "sync:shop")
	if err != nil {
		t.Fatalf("b after release: %v", err)
	}
	// a's stale handle cannot release b's lease.
	if err := la.Release(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("releasing with a stale revision: %v", err)
	}
	if h, _ := a.LeaseHolder(ctx, "sync:shop"); h != "b" {
		t.Fatalf("holder %q after a's stale release", h)
	}
	// Not renewed: it expires, and a takes it.
	waitFor(t, "b's lease expires and a acquires", func() bool {
		_, err := a.AcquireLease(ctx, "sync:shop")
		return err == nil
	})
	if err := lb.Renew(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("renewing an expired, retaken lease: %v", err)
	}
}

func TestLeaseTakenOverByTheSameNodeAfterRestart(t *testing.T) {
	s := startServer(t, "solo", "", nil)
	cfg := Config{NodeName: "a", URLs: []string{s.url()}, LeaseTTL: time.Minute}
	a := startNode(t, cfg, &recorder{})
	waitState(t, a, StateReady)
	if _, err := a.AcquireLease(context.Background(), "sync:shop"); err != nil {
		t.Fatal(err)
	}
	a.Close() // dies holding it
	a2 := startNode(t, cfg, &recorder{})
	waitState(t, a2, StateReady)
	if _, err := a2.AcquireLease(context.Background(), "sync:shop"); err != nil {
		t.Fatalf("a restarted should take its own lease over at once: %v", err)
	}
}

// TestLeaseHandoverWhenHolderServerDies: a leads on s1; s1 is killed; b
// (on s2) leads within the TTL plus its polling, and a's work is
// cancelled before a's lease could have been taken.
func TestLeaseHandoverWhenHolderServerDies(t *testing.T) {
	servers := startCluster(t)
	const ttl = 2 * time.Second
	cfg := func(name string, s *testServer) Config {
		return Config{NodeName: name, URLs: []string{s.url()}, Replicas: 3, LeaseTTL: ttl}
	}
	a := startNode(t, cfg("a", servers[0]), &recorder{})
	b := startNode(t, cfg("b", servers[1]), &recorder{})
	waitState(t, a, StateReady)
	waitState(t, b, StateReady)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var running atomic.Value // who runs the work
	var aStopped, bStarted atomic.Int64
	lead := func(n *Node, started, stopped *atomic.Int64) {
		_ = n.Lead(ctx, "sync:shop", func(ctx context.Context) {
			started.Store(time.Now().UnixNano())
			running.Store(n.Name())
			<-ctx.Done()
			stopped.Store(time.Now().UnixNano())
		})
	}
	go lead(a, new(atomic.Int64), &aStopped)
	waitFor(t, "a leads", func() bool { return running.Load() == "a" })
	go lead(b, &bStarted, new(atomic.Int64))

	servers[0].stop()
	killed := time.Now()
	waitFor(t, "b leads", func() bool { return running.Load() == "b" })
	took := time.Since(killed)
	t.Logf("handover after the holder's server died: %s (lease TTL %s)", took.Round(time.Millisecond), ttl)
	// Safety, not speed: a stopped its work before b started it.
	if stopped := aStopped.Load(); stopped == 0 || stopped > bStarted.Load() {
		t.Fatal("a's work was not cancelled before b's started (a could not renew its lease)")
	}
}

// TestLeadReleasesOnCancel: cancelling the holder's Lead releases the
// lease, so another node leads without waiting for the TTL.
func TestLeadReleasesOnCancel(t *testing.T) {
	s := startServer(t, "solo", "", nil)
	cfg := func(name string) Config {
		return Config{NodeName: name, URLs: []string{s.url()}, LeaseTTL: time.Minute}
	}
	a := startNode(t, cfg("a"), &recorder{})
	b := startNode(t, cfg("b"), &recorder{})
	waitState(t, a, StateReady)
	waitState(t, b, StateReady)
	actx, acancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	aDone := make(chan error)
	go func() {
		aDone <- a.Lead(actx, "sync:shop", func(ctx context.Context) { close(started); <-ctx.Done() })
	}()
	<-started
	acancel()
	if err := <-aDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("Lead returned %v", err)
	}
	// A minute-long TTL: only a release lets b in.
	if _, err := b.AcquireLease(context.Background(), "sync:shop"); err != nil {
		t.Fatalf("b after a's Lead ended: %v", err)
	}
	// fn returning by itself ends Lead with nil and releases.
	if err := b.Lead(context.Background(), "other", func(context.Context) {}); err != nil {
		t.Fatal(err)
	}
	if h, _ := a.LeaseHolder(context.Background(), "other"); h != "" {
		t.Fatalf("other still held by %q", h)
	}
}

// TestLeaseMovesWhenHolderConnectionCloses: a holds a lease and its
// process goes away without releasing it (connection closed); b holds it
// once the TTL has run out.
func TestLeaseMovesWhenHolderConnectionCloses(t *testing.T) {
	s := startServer(t, "solo", "", nil)
	cfg := func(name string) Config {
		return Config{NodeName: name, URLs: []string{s.url()}, LeaseTTL: time.Second}
	}
	a := startNode(t, cfg("a"), &recorder{})
	b := startNode(t, cfg("b"), &recorder{})
	waitState(t, a, StateReady)
	waitState(t, b, StateReady)
	ctx := context.Background()
	if _, err := a.AcquireLease(ctx, "sync:shop"); err != nil {
		t.Fatal(err)
	}
	a.Close()
	waitFor(t, "b acquires after a's TTL", func() bool {
		_, err := b.AcquireLease(ctx, "sync:shop")
		return err == nil
	})
}
