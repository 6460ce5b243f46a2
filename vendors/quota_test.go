package vendors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// windowQuota is a shared budget of limit requests per second of clk,
// as cluster.Quota keeps it for several nodes.
type windowQuota struct {
	clk   *fakeClock
	limit int

	mu     sync.Mutex
	window int64
	used   int
}

func (q *windowQuota) Reserve(ctx context.Context) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := q.clk.Now()
	w := now.UnixNano() / int64(time.Second)
	q.mu.Lock()
	defer q.mu.Unlock()
	if w != q.window {
		q.window, q.used = w, 0
	}
	if q.used < q.limit {
		q.used++
		return 0, nil
	}
	return time.Unix(0, (w+1)*int64(time.Second)).Sub(now), nil
}

// TestQuotaHoldsAcrossClients: two clients of one vendor (two nodes)
// share a quota of 10 requests a second: the vendor sees 10 per second
// of the clock in all, whatever each local bucket allows.
func TestQuotaHoldsAcrossClients(t *testing.T) {
	cat := newCatalog(t, 30)
	clk := newFakeClock(false)
	q := &windowQuota{clk: clk, limit: 10}
	var clients []*Client
	for range 2 {
		c, err := NewClient(testConfig(cat.URL()), ClientOptions{Now: clk.Now, Sleep: clk.Sleep})
		if err != nil {
			t.Fatal(err)
		}
		c.SetQuota(q)
		clients = append(clients, c)
	}
	done := make(chan error, 30)
	for i := 1; i <= 30; i++ {
		go func() {
			_, err := clients[i%2].Get(context.Background(), "products", fmt.Sprint(i))
			done <- err
		}()
	}
	drain := func(k int) {
		for range k {
			if err := recv(t, done, "a call"); err != nil {
				t.Fatal(err)
			}
		}
	}
	clk.waitSleepers(t, 20)
	drain(10)
	if got := cat.requests.Load(); got != 10 {
		t.Fatalf("first second: vendor saw %d requests, want 10", got)
	}
	clk.Advance(time.Second)
	clk.waitSleepers(t, 10) // the 10 beyond this second's budget wait again
	drain(10)
	if got := cat.requests.Load(); got != 20 {
		t.Fatalf("second second: vendor saw %d requests, want 20", got)
	}
	clk.Advance(time.Second)
	drain(10)
	if got := cat.requests.Load(); got != 30 {
		t.Fatalf("vendor saw %d requests, want 30", got)
	}

	// This second's budget is spent: a caller whose deadline comes before
	// the next second fails at once, without sending.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	q.mu.Lock()
	q.used = q.limit
	q.mu.Unlock()
	if _, err := clients[0].Get(ctx, "products", "1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("quota wait past the deadline: %v", err)
	}
	clients[0].SetQuota(nil)
	if _, err := clients[0].Get(context.Background(), "products", "1"); err != nil {
		t.Fatalf("without a quota: %v", err)
	}
	if got := cat.requests.Load(); got != 31 {
		t.Fatalf("vendor saw %d requests, want 31", got)
	}
}
