package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// hammer runs workers goroutines per quota, each taking requests until
// the quota says wait, and returns the requests granted per quota.
func hammer(t *testing.T, qs []*Quota, workers int) []int64 {
	t.Helper()
	got := make([]atomic.Int64, len(qs))
	var wg sync.WaitGroup
	for i, q := range qs {
		for range workers {
			wg.Go(func() {
				for {
					wait, err := q.Reserve(context.Background())
					if err != nil {
						t.Error(err)
						return
					}
					if wait > 0 {
						return
					}
					got[i].Add(1)
				}
			})
		}
	}
	wg.Wait()
	out := make([]int64, len(qs))
	for i := range got {
		out[i] = got[i].Load()
	}
	return out
}

func sum(v []int64) (s int64) {
	for _, x := range v {
		s += x
	}
	return s
}

// TestQuotaHoldsForTheWholeCluster: three nodes hammer one vendor's
// quota; in each window they get exactly Limit requests together (counts,
// with an injected clock: no timing), a node whose clock lags joins the
// current window instead of opening an older one, and without NATS each
// node keeps to its share.
func TestQuotaHoldsForTheWholeCluster(t *testing.T) {
	srv := startServer(t, "solo", "", nil)
	start := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	// c's clock lags a whole window at first: it joins the window a and b
	// opened rather than opening an older one.
	clock, lagging := &testClock{t: start}, &testClock{t: start.Add(-time.Second)}
	var qs []*Quota
	var nodes []*Node
	for i, name := range []string{"a", "b", "c"} {
		n := startNode(t, Config{NodeName: name, URLs: []string{srv.url()}}, &recorder{})
		waitState(t, n, StateReady)
		now := clock.now
		if i == 2 {
			now = lagging.now
		}
		q, err := n.Quota("shop", QuotaConfig{Limit: 60, Window: time.Second, Block: 4, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		nodes, qs = append(nodes, n), append(qs, q)
	}
	// a opens the first window (had c opened it by its clock, its block
	// would count in the window before: skew moves window edges).
	reserveEach := func() {
		t.Helper()
		for i, q := range qs {
			if wait, err := q.Reserve(context.Background()); wait != 0 || err != nil {
				t.Fatalf("node %d's reservation: %v %v", i, wait, err)
			}
		}
	}
	if wait, err := qs[0].Reserve(context.Background()); wait != 0 || err != nil {
		t.Fatalf("first reservation: %v %v", wait, err)
	}
	if wait, err := qs[2].Reserve(context.Background()); wait != 0 || err != nil || qs[2].window != qs[0].window {
		t.Fatalf("lagging node's reservation: %v %v, window %d (a's %d)", wait, err, qs[2].window, qs[0].window)
	}
	for w := range 3 {
		got := hammer(t, qs, 4)
		if w == 0 {
			got[0]++
			got[2]++
		}
		if sum(got) != 60 {
			t.Fatalf("window %d: %v requests granted, %d in all (limit 60)", w, got, sum(got))
		}
		clock.advance(time.Second)
		lagging.mu.Lock()
		lagging.t = clock.now() // c's clock is set right
		lagging.mu.Unlock()
	}
	// Every node reserves in two windows running: each knows there are 3.
	reserveEach()
	clock.advance(time.Second)
	lagging.mu.Lock()
	lagging.t = clock.now()
	lagging.mu.Unlock()
	reserveEach()
	for i, q := range qs {
		if st := q.Stats(); st.Nodes != 3 || st.Reservations == 0 || st.Fallback != 0 {
			t.Fatalf("node %d's stats %+v", i, st)
		}
	}
	clock.advance(time.Second)
	lagging.mu.Lock()
	lagging.t = clock.now()
	lagging.mu.Unlock()

	// NATS goes away: each node grants its share, Limit/3, per window.
	srv.stop()
	for _, n := range nodes {
		waitState(t, n, StateDisconnected)
	}
	got := hammer(t, qs, 2)
	for i, g := range got {
		if g != 20 {
			t.Fatalf("without NATS node %d granted %d (share 20): %v", i, g, got)
		}
	}
}

func TestQuotaConfigErrors(t *testing.T) {
	srv := startServer(t, "solo", "", nil)
	n := startNode(t, Config{NodeName: "a", URLs: []string{srv.url()}}, &recorder{})
	for _, c := range []QuotaConfig{{}, {Limit: 1, Window: -time.Second}, {Limit: 1, Window: time.Microsecond}, {Limit: 1, Block: -1}} {
		if _, err := n.Quota("shop", c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if _, err := n.Quota("", QuotaConfig{Limit: 1}); err == nil {
		t.Error("empty name accepted")
	}
}
