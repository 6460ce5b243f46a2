package cluster

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TryLead runs work under a lease that is free now and refuses, naming the
// holder, while another node's work holds it.
func TestTryLead(t *testing.T) {
	s := startServer(t, "solo", "", nil)
	cfg := func(name string) Config {
		return Config{NodeName: name, URLs: []string{s.url()}, LeaseTTL: 3 * time.Second}
	}
	a := startNode(t, cfg("a"), &recorder{})
	b := startNode(t, cfg("b"), &recorder{})
	waitState(t, a, StateReady)
	waitState(t, b, StateReady)
	ctx := context.Background()

	running, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- a.TryLead(ctx, "vendor.sync:shop:product", func(context.Context) {
			close(running)
			<-release
		})
	}()
	<-running
	ran := false
	err := b.TryLead(ctx, "vendor.sync:shop:product", func(context.Context) { ran = true })
	var held *HeldError
	if !errors.As(err, &held) || held.Holder != "a" || ran {
		t.Fatalf("b while a works: err %v, ran %v", err, ran)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("a's TryLead: %v", err)
	}
	// Released when the work returned: b gets it at once.
	if err := b.TryLead(ctx, "vendor.sync:shop:product", func(context.Context) { ran = true }); err != nil || !ran {
		t.Fatalf("b after a: err %v, ran %v", err, ran)
	}
	if h, _ := a.LeaseHolder(ctx, "vendor.sync:shop:product"); h != "" {
		t.Fatalf("holder %q after both finished", h)
	}
}

// Members lists the nodes following the purge stream, with their lag;
// a closed node's consumer stays, not following.
func TestMembers(t *testing.T) {
	s := startServer(t, "solo", "", nil)
	cfg := func(name string) Config { return Config{NodeName: name, URLs: []string{s.url()}} }
	a := startNode(t, cfg("a"), &recorder{})
	rb := &recorder{}
	b := startNode(t, cfg("b"), rb)
	waitState(t, a, StateReady)
	waitState(t, b, StateReady)
	a.Publish(Purge{Tags: []string{"t1"}})
	waitFor(t, "b applies a's purge", func() bool { return rb.hasPurge("t1") })
	ctx := context.Background()
	waitFor(t, "both members following, nothing pending", func() bool {
		m, err := a.Members(ctx)
		if err != nil || m.LastSeq != 1 || len(m.Members) != 2 {
			return false
		}
		for _, mm := range m.Members {
			if !mm.Following || mm.Lag != 0 || mm.Acked != 1 {
				return false
			}
		}
		return m.Members[0].Name == "a" && m.Members[1].Name == "b"
	})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	a.Publish(Purge{Tags: []string{"t2"}})
	waitFor(t, "b not following, one purge behind", func() bool {
		m, err := a.Members(ctx)
		return err == nil && len(m.Members) == 2 && !m.Members[1].Following && m.Members[1].Lag == 1
	})
	s.stop()
	waitFor(t, "a disconnected", func() bool { return !a.Stats().Connected })
	if _, err := a.Members(ctx); !ErrNotConnected(err) {
		t.Fatalf("Members without NATS: %v", err)
	}
}
