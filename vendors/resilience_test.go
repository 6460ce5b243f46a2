package vendors

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/craftedge/craftedge/circuit"
)

func TestTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers; returns when the client gives up
	}))
	t.Cleanup(srv.Close)
	cfg := testConfig(srv.URL)
	cfg.Timeout = 50 * time.Millisecond
	c, _ := newTestClient(t, cfg, nil)
	_, err := c.Get(context.Background(), "products", "1")
	if !errors.Is(err, ErrTimeout) || IsPermanent(err) {
		t.Fatalf("want ErrTimeout, got %v", err)
	}
	if got := c.Stats().Requests[OutcomeTimeout]; got != 1 {
		t.Errorf("timeouts counted: %d", got)
	}
}

func TestBreakerOpensHalfOpensCloses(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	var hits atomic.Int64
	cat := newCatalog(t, 3)
	cat.hook = func(w http.ResponseWriter, r *http.Request) bool {
		hits.Add(1)
		if failing.Load() {
			http.Error(w, "boom", http.StatusInternalServerError)
			return true
		}
		return false
	}
	cfg := testConfig(cat.URL())
	cfg.Breaker = circuit.Config{Failures: 3, Successes: 2, Cooldown: circuit.Duration(30 * time.Millisecond)}
	var (
		changesMu sync.Mutex
		changes   []string
	)
	c, _ := newTestClient(t, cfg, func(o *ClientOptions) {
		o.OnBreakerChange = func(vendor, from, to string) {
			changesMu.Lock()
			changes = append(changes, vendor+":"+from+">"+to)
			changesMu.Unlock()
		}
	})
	ctx := context.Background()

	// One item failing, however often, is that item's problem: closed.
	for i := 0; i < 10; i++ {
		var se *StatusError
		if _, err := c.Get(ctx, "products", "1"); !errors.As(err, &se) || se.Code != 500 || IsPermanent(err) {
			t.Fatalf("call %d: want a 500, got %v", i, err)
		}
	}
	if c.BreakerState() != BreakerClosed {
		t.Fatalf("breaker %s after 10 failures of one item, want closed", c.BreakerState())
	}
	// Failures spread over three paths open it.
	for _, id := range []string{"2", "3"} {
		if _, err := c.Get(ctx, "products", id); err == nil {
			t.Fatalf("product %s: want a 500", id)
		}
	}
	if c.BreakerState() != BreakerOpen {
		t.Fatalf("breaker %s after failures over 3 paths", c.BreakerState())
	}
	if _, err := c.Get(ctx, "products", "1"); !errors.Is(err, ErrBreakerOpen) {
		t.Fatalf("open breaker: %v", err)
	} else if want := `vendor "commerce": GET /products/1 (resource products): vendors: circuit breaker open`; err.Error() != want {
		t.Fatalf("open breaker error %q, want %q (vendor once, method and path)", err, want)
	}
	if _, err := c.Do(ctx, Request{Path: "/products/2"}); err == nil || err.Error() != `vendor "commerce": GET /products/2: vendors: circuit breaker open` {
		t.Fatalf("open breaker, Do: %v", err)
	}
	if hits.Load() != 12 {
		t.Errorf("an open breaker let a request through (%d hits)", hits.Load())
	}

	// Half-open: failed trials reopen it by the same rule, once they span
	// three paths (one failing item alone stays that item's problem, and
	// is refused once its trial failed: TestHalfOpenRefusesAnItemWhoseTrialFailed).
	eventually(t, "half-open", func() bool { return c.BreakerState() == BreakerHalfOpen })
	for i, id := range []string{"1", "2", "3"} {
		if _, err := c.Get(ctx, "products", id); err == nil || errors.Is(err, ErrBreakerOpen) {
			t.Fatalf("trial request %d: %v", i, err)
		}
		want := BreakerHalfOpen
		if i == 2 {
			want = BreakerOpen
		}
		if c.BreakerState() != want {
			t.Fatalf("after failed trial %d (product %s): state %s, want %s", i, id, c.BreakerState(), want)
		}
	}

	// Half-open again, the vendor has recovered: two successes close it.
	failing.Store(false)
	eventually(t, "half-open", func() bool { return c.BreakerState() == BreakerHalfOpen })
	for i := 0; i < 2; i++ {
		if _, err := c.Get(ctx, "products", "1"); err != nil {
			t.Fatalf("trial %d: %v", i, err)
		}
	}
	st := c.Stats()
	if st.Breaker != BreakerClosed || st.BreakerTransitions[BreakerOpen] != 2 ||
		st.BreakerTransitions[BreakerHalfOpen] != 2 || st.BreakerTransitions[BreakerClosed] != 1 {
		t.Errorf("breaker stats: %s %v", st.Breaker, st.BreakerTransitions)
	}
	if st.Requests[OutcomeBreakerOpen] != 2 { // the Get and the Do refused
		t.Errorf("breaker_open count %d", st.Requests[OutcomeBreakerOpen])
	}
	changesMu.Lock()
	got := strings.Join(changes, " ")
	changesMu.Unlock()
	if want := "commerce:closed>open commerce:open>half-open commerce:half-open>open commerce:open>half-open commerce:half-open>closed"; got != want {
		t.Errorf("OnBreakerChange saw %q, want %q", got, want)
	}

	// 4xx answers do not count against the vendor.
	for i := 0; i < 5; i++ {
		c.Get(ctx, "products", "missing")
	}
	if c.BreakerState() != BreakerClosed {
		t.Errorf("404s opened the breaker")
	}
}

// Half-open lets one trial call through at a time; concurrent calls are
// refused at once instead of all waiting on a struggling vendor.
func TestHalfOpenLetsOneTrialThrough(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	release := make(chan struct{})
	var releaseOnce sync.Once
	open := func() { releaseOnce.Do(func() { close(release) }) }
	var trials atomic.Int64
	cat := newCatalog(t, 1)
	t.Cleanup(open) // before the catalog's own cleanup: a failed test never hangs it
	cat.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if failing.Load() {
			http.Error(w, "boom", http.StatusInternalServerError)
			return true
		}
		trials.Add(1)
		if strings.HasSuffix(r.URL.Path, "/1") {
			<-release // the trial call hangs until released
		}
		return false
	}
	cfg := testConfig(cat.URL())
	cfg.Retry.Retries = 0
	// min_paths 1: this test is about the half-open gate, not the spread.
	cfg.Breaker = circuit.Config{Failures: 1, MinPaths: 1, Successes: 1, Cooldown: circuit.Duration(20 * time.Millisecond)}
	c, _ := newTestClient(t, cfg, nil)
	ctx := context.Background()
	if _, err := c.Get(ctx, "products", "1"); err == nil {
		t.Fatal("want the failure that opens the breaker")
	}
	failing.Store(false)
	eventually(t, "half-open", func() bool { return c.BreakerState() == BreakerHalfOpen })

	trialDone := make(chan error, 1)
	go func() { _, err := c.Get(ctx, "products", "1"); trialDone <- err }()
	eventually(t, "the trial call to reach the vendor", func() bool { return trials.Load() == 1 })
	for i := range 3 {
		// Other ids: the same id would join the trial (coalescing).
		if _, err := c.Get(ctx, "products", fmt.Sprint(i+2)); !errors.Is(err, ErrBreakerOpen) {
			t.Fatalf("concurrent call %d during the trial: %v, want ErrBreakerOpen", i, err)
		}
	}
	open()
	if err := <-trialDone; err != nil {
		t.Fatalf("trial call: %v", err)
	}
	if trials.Load() != 1 || c.BreakerState() != BreakerClosed {
		t.Fatalf("%d trials reached the vendor, breaker %s; want 1, closed", trials.Load(), c.BreakerState())
	}
}

// A broken item does not hold a half-open breaker: once its trial failed
// (which does not reopen the breaker: one path) it is refused without
// reaching the vendor until the breaker closes or reopens, so the trials
// go to other items, which close it.
func TestHalfOpenRefusesAnItemWhoseTrialFailed(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	var brokenCalls atomic.Int64
	cat, _ := failingCatalog(t, func(r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/1") {
			brokenCalls.Add(1)
			return true
		}
		return down.Load()
	})
	cfg := testConfig(cat.URL())
	cfg.Retry.Retries = 0
	cfg.Breaker = halfOpenTestBreaker
	c, _ := newTestClient(t, cfg, nil)
	ctx := context.Background()
	failItemsToOpen(t, c)
	if c.BreakerState() != BreakerOpen {
		t.Fatalf("breaker %s after failures on 3 items, want open", c.BreakerState())
	}
	down.Store(false) // the vendor is back, item 1 stays broken
	eventually(t, "half-open", func() bool { return c.BreakerState() == BreakerHalfOpen })
	if _, err := c.Get(ctx, "products", "1"); err == nil || errors.Is(err, ErrBreakerOpen) {
		t.Fatalf("the broken item's trial: %v, want its failure", err)
	}
	if c.BreakerState() != BreakerHalfOpen || brokenCalls.Load() != 1 {
		t.Fatalf("after the broken item's trial: breaker %s, %d calls; want half-open, 1", c.BreakerState(), brokenCalls.Load())
	}
	for i := range 3 {
		if _, err := c.Get(ctx, "products", "1"); !errors.Is(err, ErrBreakerOpen) {
			t.Fatalf("broken item asked again (%d): %v, want ErrBreakerOpen", i, err)
		}
	}
	if brokenCalls.Load() != 1 {
		t.Fatalf("the broken item reached the vendor %d times while half-open, want 1", brokenCalls.Load())
	}
	if _, err := c.Get(ctx, "products", "2"); err != nil {
		t.Fatalf("another item's trial: %v", err)
	}
	if c.BreakerState() != BreakerClosed {
		t.Fatalf("breaker %s after another item's trial succeeded, want closed", c.BreakerState())
	}
}

// A half-open breaker whose only traffic is items whose trials failed
// is not stuck: a failed item rests one cooldown (as an open breaker
// would), then may be a trial again, so a vendor that came back closes
// the breaker though nothing else is asked of it. (Refusing such items
// until the breaker closes or reopens left it half-open for good.)
func TestHalfOpenRetriesAFailedItemAfterACooldown(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	cat, calls := failingCatalog(t, func(*http.Request) bool { return down.Load() })
	cfg := testConfig(cat.URL())
	cfg.Retry.Retries = 0
	cfg.Breaker = halfOpenTestBreaker
	c, clk := newTestClient(t, cfg, nil)
	ctx := context.Background()
	failItemsToOpen(t, c)
	eventually(t, "half-open", func() bool { return c.BreakerState() == BreakerHalfOpen })
	if _, err := c.Get(ctx, "products", "1"); err == nil || errors.Is(err, ErrBreakerOpen) {
		t.Fatalf("item 1's trial: %v, want its failure", err)
	}
	before := calls.Load()
	if _, err := c.Get(ctx, "products", "1"); !errors.Is(err, ErrBreakerOpen) {
		t.Fatalf("item 1 asked again at once: %v, want ErrBreakerOpen", err)
	}
	if calls.Load() != before {
		t.Fatal("item 1 reached the vendor again at once")
	}
	down.Store(false) // the vendor is back; only item 1 is asked for
	clk.Advance(19 * time.Millisecond)
	if _, err := c.Get(ctx, "products", "1"); !errors.Is(err, ErrBreakerOpen) {
		t.Fatalf("item 1 asked again within the cooldown: %v, want ErrBreakerOpen", err)
	}
	clk.Advance(time.Millisecond)
	if _, err := c.Get(ctx, "products", "1"); err != nil {
		t.Fatalf("item 1 asked again after a cooldown: %v, want its trial (the vendor is back)", err)
	}
	if c.BreakerState() != BreakerClosed {
		t.Fatalf("breaker %s after item 1's trial succeeded, want closed", c.BreakerState())
	}
}

// A GET whose half-open trial failed is not retried into the breaker's
// refusal of its path: the caller gets the vendor's failure (a 500 here:
// the vendor was called), not ErrBreakerOpen, which says no call was made
// (a 503 instead of a 502 at the vendor proxy, "breaker_open" in a push's
// outcome).
func TestHalfOpenFailedTrialIsNotRetriedIntoARefusal(t *testing.T) {
	cat, calls := failingCatalog(t, func(*http.Request) bool { return true })
	cfg := testConfig(cat.URL())
	cfg.Retry = RetryPolicy{Retries: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond} // within the cooldown
	cfg.Breaker = halfOpenTestBreaker
	c, _ := newTestClient(t, cfg, nil)
	ctx := context.Background()
	// Item 4's first try opens the breaker (3 paths): its retries are
	// refused, and it too gets the vendor's failure.
	failItemsToOpen(t, c)
	if c.BreakerState() != BreakerOpen {
		t.Fatalf("breaker %s, want open", c.BreakerState())
	}
	eventually(t, "half-open", func() bool { return c.BreakerState() == BreakerHalfOpen })
	before := calls.Load()
	_, err := c.Get(ctx, "products", "1")
	var se *StatusError
	if errors.Is(err, ErrBreakerOpen) || !errors.As(err, &se) || se.Code != http.StatusInternalServerError {
		t.Fatalf("item 1's failed trial, retries refused: %v, want the vendor's 500", err)
	}
	if n := calls.Load() - before; n != 1 {
		t.Fatalf("item 1 reached the vendor %d times, want 1 (its trial)", n)
	}
}

// failingCatalog is a catalog of 4 products whose vendor answers 500 to
// the requests fail selects; it counts every request.
func failingCatalog(t *testing.T, fail func(*http.Request) bool) (*catalog, *atomic.Int64) {
	t.Helper()
	calls := new(atomic.Int64)
	cat := newCatalog(t, 4)
	cat.hook = func(w http.ResponseWriter, r *http.Request) bool {
		calls.Add(1)
		if fail(r) {
			http.Error(w, "boom", http.StatusInternalServerError)
			return true
		}
		return false
	}
	return cat, calls
}

// halfOpenTestBreaker opens on failures spread over 3 items (see
// failItemsToOpen), rests 20 ms, and closes on one trial success.
var halfOpenTestBreaker = circuit.Config{Failures: 3, MinPaths: 3, Successes: 1, Cooldown: circuit.Duration(20 * time.Millisecond)}

// failItemsToOpen asks for items 2, 3 and 4, which the vendor must fail:
// with halfOpenTestBreaker that opens the breaker.
func failItemsToOpen(t *testing.T, c *Client) {
	t.Helper()
	for _, id := range []string{"2", "3", "4"} {
		if _, err := c.Get(context.Background(), "products", id); err == nil || errors.Is(err, ErrBreakerOpen) {
			t.Fatalf("item %s while the vendor is down: %v, want its failure", id, err)
		}
	}
}

func TestRateLimitUnderBurst(t *testing.T) {
	cat := newCatalog(t, 100)
	cfg := testConfig(cat.URL())
	cfg.Rate = RateLimit{PerSecond: 20, Burst: 40}
	clk := newFakeClock(false) // sleeps block until the test advances the clock
	var waited atomic.Int64
	c, err := NewClient(cfg, ClientOptions{Now: clk.Now, Sleep: clk.Sleep, OnRequest: func(i RequestInfo) {
		if i.TokenWait > 0 {
			waited.Add(1)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	done := make(chan error, n)
	for i := 1; i <= n; i++ {
		go func() {
			_, err := c.Get(context.Background(), "products", fmt.Sprint(i))
			done <- err
		}()
	}
	drain := func(k int) {
		for i := 0; i < k; i++ {
			if err := recv(t, done, "a call"); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The burst: 40 go at once, 60 wait for tokens (frozen clock).
	clk.waitSleepers(t, 60)
	drain(40)
	if got := cat.requests.Load(); got != 40 {
		t.Fatalf("burst: vendor saw %d requests, want 40", got)
	}
	// One second later 20 more tokens are due, and no more.
	clk.Advance(time.Second)
	drain(20)
	if got := cat.requests.Load(); got != 60 {
		t.Fatalf("after 1s: vendor saw %d requests, want 60", got)
	}
	clk.Advance(2 * time.Second)
	drain(40)
	st := c.Stats()
	if cat.requests.Load() != 100 || st.TokenWaits != 60 || st.TokenWaitTime <= 0 {
		t.Errorf("requests %d, token waits %d (%v)", cat.requests.Load(), st.TokenWaits, st.TokenWaitTime)
	}
	if waited.Load() != 60 {
		t.Errorf("RequestInfo.TokenWait set on %d requests, want 60", waited.Load())
	}
}

func TestRateLimitTokenWaitRespectsDeadline(t *testing.T) {
	cat := newCatalog(t, 2)
	cfg := testConfig(cat.URL())
	cfg.Rate = RateLimit{PerSecond: 1, Burst: 1}
	clk := newFakeClock(false)
	c, _ := NewClient(cfg, ClientOptions{Now: clk.Now, Sleep: clk.Sleep})
	if _, err := c.Get(context.Background(), "products", "1"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Get(ctx, "products", "2"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a token due after the deadline: %v", err)
	}
	if cat.requests.Load() != 1 {
		t.Errorf("vendor saw %d requests", cat.requests.Load())
	}
	// The token was given back: one second later one call goes at once.
	clk.Advance(time.Second)
	if _, err := c.Get(context.Background(), "products", "2"); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.TokenWaits != 0 {
		t.Errorf("token waits %d, want 0", st.TokenWaits)
	}
}

func TestRetryAfter(t *testing.T) {
	var throttle atomic.Int64 // requests left to throttle
	var retryAfter atomic.Value
	cat := newCatalog(t, 1)
	cat.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if throttle.Add(-1) >= 0 {
			w.Header().Set("Retry-After", retryAfter.Load().(string))
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		}
		return false
	}
	t.Run("typed error carries the delay", func(t *testing.T) {
		cat.requests.Store(0)
		throttle.Store(1)
		retryAfter.Store("7")
		c, clk := newTestClient(t, testConfig(cat.URL()), nil)
		_, err := c.Get(context.Background(), "products", "1")
		var rl *RateLimitedError
		if !errors.As(err, &rl) || rl.RetryAfter != 7*time.Second || rl.Local || IsPermanent(err) {
			t.Fatalf("want RateLimitedError{7s}, got %v", err)
		}
		if d, ok := RetryAfter(err); !ok || d != 7*time.Second {
			t.Errorf("RetryAfter(err) = %v, %v", d, ok)
		}
		// Until the delay has passed the vendor is not called again.
		_, err = c.Get(context.Background(), "products", "1")
		if !errors.As(err, &rl) || !rl.Local || rl.RetryAfter != 7*time.Second || cat.requests.Load() != 1 {
			t.Fatalf("inside the Retry-After window: %v (vendor saw %d)", err, cat.requests.Load())
		}
		clk.Advance(7 * time.Second)
		if _, err := c.Get(context.Background(), "products", "1"); err != nil {
			t.Fatalf("after the window: %v", err)
		}
		st := c.Stats()
		if st.RateLimited != 1 || st.Throttled != 1 || st.Requests[OutcomeRateLimited] != 1 {
			t.Errorf("stats: rate limited %d, throttled %d", st.RateLimited, st.Throttled)
		}
	})
	t.Run("HTTP date", func(t *testing.T) {
		throttle.Store(1)
		retryAfter.Store(t0.Add(90 * time.Second).Format(http.TimeFormat))
		c, _ := newTestClient(t, testConfig(cat.URL()), nil)
		_, err := c.Get(context.Background(), "products", "1")
		if d, ok := RetryAfter(err); !ok || d != 90*time.Second {
			t.Fatalf("want 90s, got %v (%v)", d, err)
		}
	})
	t.Run("GET retry waits within the bound", func(t *testing.T) {
		cat.requests.Store(0)
		throttle.Store(1)
		retryAfter.Store("1")
		cfg := testConfig(cat.URL())
		cfg.Retry = RetryPolicy{Retries: 2, MaxRetryAfter: 2 * time.Second}
		c, clk := newTestClient(t, cfg, nil)
		if _, err := c.Get(context.Background(), "products", "1"); err != nil {
			t.Fatal(err)
		}
		if s := clk.Sleeps(); len(s) != 1 || s[0] != time.Second || cat.requests.Load() != 2 {
			t.Errorf("sleeps %v, requests %d", s, cat.requests.Load())
		}
	})
	t.Run("beyond the bound it is returned", func(t *testing.T) {
		cat.requests.Store(0)
		throttle.Store(1)
		retryAfter.Store("30")
		cfg := testConfig(cat.URL())
		cfg.Retry = RetryPolicy{Retries: 2, MaxRetryAfter: 2 * time.Second}
		c, clk := newTestClient(t, cfg, nil)
		if d, ok := RetryAfter(getErr(c)); !ok || d != 30*time.Second {
			t.Fatalf("want 30s, got %v", d)
		}
		if len(clk.Sleeps()) != 0 || cat.requests.Load() != 1 {
			t.Errorf("waited %v, requests %d", clk.Sleeps(), cat.requests.Load())
		}
	})
}

func getErr(c *Client) error {
	_, err := c.Get(context.Background(), "products", "1")
	return err
}

func TestHedgingPicksFastRegion(t *testing.T) {
	slowStarted, slowCancelled := make(chan struct{}), make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(slowStarted)
		<-r.Context().Done() // blocks until the client cancels
		close(slowCancelled)
	}))
	t.Cleanup(slow.Close)
	fast := newCatalog(t, 1)
	// The fast region answers once the slow one has the request: a
	// request cancelled before it reached the slow handler (a loaded
	// machine) would never show the cancellation this test looks for.
	fast.hook = func(http.ResponseWriter, *http.Request) bool {
		<-slowStarted
		return false
	}
	cfg := testConfig(slow.URL, fast.URL())
	cfg.HedgeDelay = 10 * time.Millisecond
	var infos []RequestInfo
	var mu sync.Mutex
	// Real clock: the hedge timer must fire by itself.
	c, err := NewClient(cfg, ClientOptions{OnRequest: func(i RequestInfo) { mu.Lock(); infos = append(infos, i); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := c.Get(context.Background(), "products", "1")
	if err != nil || rec.ID != "1" {
		t.Fatalf("hedged get: %v %+v", err, rec)
	}
	recv(t, slowCancelled, "the slow region to see its request cancelled")
	st := c.Stats()
	if st.Hedges != 1 || st.HedgeWins != 1 {
		t.Errorf("hedges %d wins %d", st.Hedges, st.HedgeWins)
	}
	if st.Breaker != BreakerClosed || st.Requests[OutcomeTimeout] != 0 {
		t.Errorf("the lost hedge counted as a failure: %+v", st)
	}
}

func TestFailoverWithoutWaitingForHedgeDelay(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)
	up := newCatalog(t, 1)
	cfg := testConfig(down.URL, up.URL())
	cfg.HedgeDelay = time.Hour
	c, err := NewClient(cfg, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(context.Background(), "products", "1"); err != nil {
		t.Fatalf("failover: %v", err)
	}
	if st := c.Stats(); st.Requests[OutcomeServerError] != 1 || st.Requests[OutcomeOK] != 1 {
		t.Errorf("stats %v", st.Requests)
	}
}

func TestRetriesOnlyForGET(t *testing.T) {
	var failGets atomic.Int64
	var puts atomic.Int64
	cat := newCatalog(t, 1)
	cat.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut {
			puts.Add(1)
			http.Error(w, "boom", http.StatusBadGateway)
			return true
		}
		if failGets.Add(-1) >= 0 {
			http.Error(w, "boom", http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	cfg := testConfig(cat.URL())
	cfg.Retry = RetryPolicy{Retries: 3, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}
	c, clk := newTestClient(t, cfg, nil) // jitter fixed at 0.5

	failGets.Store(2)
	if _, err := c.Get(context.Background(), "products", "1"); err != nil {
		t.Fatalf("GET with two failures and three retries: %v", err)
	}
	if s := clk.Sleeps(); len(s) != 2 || s[0] != 50*time.Millisecond || s[1] != 100*time.Millisecond {
		t.Errorf("backoff sleeps %v, want [50ms 100ms] (full jitter 0.5 of 100ms, 200ms)", s)
	}
	if st := c.Stats(); st.Retries != 2 {
		t.Errorf("retries %d", st.Retries)
	}

	_, err := c.Upsert(context.Background(), "products", "1", []byte(`{"title":"x","price":1}`), "key-1")
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 502 {
		t.Fatalf("PUT: %v", err)
	}
	if puts.Load() != 1 {
		t.Errorf("a failing PUT was sent %d times", puts.Load())
	}

	// A permanent 4xx is not retried either.
	cat.requests.Store(0)
	if _, err := c.Get(context.Background(), "products", "nope"); !errors.Is(err, ErrNotFound) || cat.requests.Load() != 1 {
		t.Errorf("404 retried: %v, %d requests", err, cat.requests.Load())
	}
}

func TestBackoffFullJitter(t *testing.T) {
	p := RetryPolicy{BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}
	one := func() float64 { return 0.999999 }
	for n, want := range map[int]time.Duration{1: 100, 2: 200, 4: 800, 5: 1000, 60: 1000} {
		if got := backoff(p, n, one).Round(time.Millisecond); got != want*time.Millisecond {
			t.Errorf("cap of retry %d: %v, want %vms", n, got, want)
		}
	}
	if got := backoff(p, 3, func() float64 { return 0 }); got != 0 {
		t.Errorf("full jitter lower bound %v", got)
	}
}

func TestCoalescing(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 10)
	cat := newCatalog(t, 1)
	cat.hook = func(w http.ResponseWriter, r *http.Request) bool {
		arrived <- struct{}{}
		<-release
		return false
	}
	c, _ := newTestClient(t, testConfig(cat.URL()), nil)

	const n = 8
	type result struct {
		rec Record
		err error
	}
	results := make(chan result, n)
	quitter, quit := context.WithCancel(context.Background())
	for i := 0; i < n; i++ {
		ctx := context.Background()
		if i == 0 {
			ctx = quitter // the first caller (maybe the leader) gives up
		}
		go func() {
			rec, err := c.Get(ctx, "products", "1")
			results <- result{rec, err}
		}()
	}
	recv(t, arrived, "the shared request")
	eventually(t, "all callers to join", func() bool { return c.flights.waiters() == n })
	quit()
	if r := recv(t, results, "the quitter"); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("quitter: %v", r.err)
	}
	close(release)
	for i := 1; i < n; i++ {
		r := recv(t, results, "a coalesced caller")
		if r.err != nil || r.rec.ID != "1" {
			t.Fatalf("caller: %v", r.err)
		}
	}
	if got := cat.requests.Load(); got != 1 {
		t.Errorf("vendor saw %d requests, want 1", got)
	}
	if got := c.Stats().Coalesced; got != n-1 {
		t.Errorf("coalesced %d, want %d", got, n-1)
	}

	// When every caller leaves, the shared request is cancelled.
	cancelled := make(chan struct{})
	cat.hook = func(w http.ResponseWriter, r *http.Request) bool {
		<-r.Context().Done()
		close(cancelled)
		return true
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { c.Get(ctx, "products", "1") }()
	eventually(t, "the caller to wait", func() bool { return c.flights.waiters() == 1 })
	cancel()
	recv(t, cancelled, "the abandoned request to be cancelled")
}

func TestWithFreshDoesNotJoinAnInflightGET(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 10)
	var n atomic.Int64
	cat := newCatalog(t, 1)
	cat.hook = func(w http.ResponseWriter, r *http.Request) bool {
		arrived <- struct{}{}
		if n.Add(1) == 1 {
			<-release // the first GET hangs until the fresh one has been served
		}
		return false
	}
	c, _ := newTestClient(t, testConfig(cat.URL()), nil)
	first := make(chan error, 1)
	go func() {
		_, err := c.Get(context.Background(), "products", "1") // in flight before the vendor's change
		first <- err
	}()
	recv(t, arrived, "the first GET")
	// Joining the first GET would block here until release.
	if _, err := c.Get(WithFresh(context.Background()), "products", "1"); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := recv(t, first, "the first GET to finish"); err != nil {
		t.Fatal(err)
	}
	if got, coalesced := cat.requests.Load(), c.Stats().Coalesced; got != 2 || coalesced != 0 {
		t.Errorf("requests %d coalesced %d, want 2 and 0", got, coalesced)
	}
}

// The vendor breaker follows the Craft upstream's rules (package circuit):
// a vendor that cannot be reached opens it whatever the path; one item
// timing out never does; sporadic failures among successes never add up.
func TestBreakerSpreadRules(t *testing.T) {
	ctx := context.Background()
	t.Run("unreachable opens on one path", func(t *testing.T) {
		cat := newCatalog(t, 1)
		url := cat.URL()
		cat.srv.Close() // connection refused from now on
		core, logs := observer.New(zap.InfoLevel)
		cfg := testConfig(url)
		cfg.Breaker = circuit.Config{Failures: 3}
		c, _ := newTestClient(t, cfg, func(o *ClientOptions) { o.Logger = zap.New(core) })
		for i := 0; i < 3; i++ {
			if _, err := c.Get(ctx, "products", "1"); err == nil || errors.Is(err, ErrBreakerOpen) {
				t.Fatalf("call %d: want a transport error, got %v", i, err)
			}
		}
		if c.BreakerState() != BreakerOpen {
			t.Fatalf("breaker %s after 3 refused connections, want open", c.BreakerState())
		}
		opened := logs.FilterMessage("circuit breaker open").All()
		if len(opened) != 1 {
			t.Fatalf("%d open transitions logged, want 1", len(opened))
		}
		f := opened[0].ContextMap()
		if f["vendor"] != "commerce" || f["state"] != "open" ||
			!strings.Contains(f["reason"].(string), "3 consecutive failures all connection failures, last: ") ||
			!strings.Contains(f["reason"].(string), "connection refused") {
			t.Fatalf("open transition logged with %v", f)
		}
	})
	t.Run("one item timing out never opens", func(t *testing.T) {
		cat := newCatalog(t, 2)
		cat.hook = func(w http.ResponseWriter, r *http.Request) bool {
			if strings.HasSuffix(r.URL.Path, "/1") {
				<-r.Context().Done() // never answers
				return true
			}
			return false
		}
		cfg := testConfig(cat.URL())
		cfg.Timeout = 20 * time.Millisecond
		cfg.Breaker = circuit.Config{Failures: 3}
		c, _ := newTestClient(t, cfg, nil)
		for i := 0; i < 6; i++ {
			if _, err := c.Get(ctx, "products", "1"); !errors.Is(err, ErrTimeout) {
				t.Fatalf("call %d: want a timeout, got %v", i, err)
			}
		}
		if c.BreakerState() != BreakerClosed {
			t.Fatalf("breaker %s after one item timed out 6 times, want closed", c.BreakerState())
		}
		if _, err := c.Get(ctx, "products", "2"); err != nil {
			t.Fatalf("another item: %v", err)
		}
	})
	t.Run("sporadic failures among successes stay closed", func(t *testing.T) {
		cat := newCatalog(t, 9)
		var n atomic.Int64
		cat.hook = func(w http.ResponseWriter, r *http.Request) bool {
			if n.Add(1)%2 == 0 { // every other call fails, on ever-changing items
				http.Error(w, "boom", http.StatusServiceUnavailable)
				return true
			}
			return false
		}
		cfg := testConfig(cat.URL())
		cfg.Breaker = circuit.Config{Failures: 2, MinPaths: 1}
		c, _ := newTestClient(t, cfg, nil)
		failures := 0
		for i := 0; i < 40; i++ {
			if _, err := c.Get(ctx, "products", fmt.Sprint(i%9+1)); err != nil {
				failures++
			}
		}
		if failures != 20 || c.BreakerState() != BreakerClosed {
			t.Fatalf("%d failures, breaker %s; want 20, closed", failures, c.BreakerState())
		}
	})
}
