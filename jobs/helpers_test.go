package jobs

import (
	"context"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap/zaptest"
)

// testClock is an injectable clock that tests move by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *testClock {
	return &testClock{t: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// openDB opens a real bbolt file in a temporary directory, closed at cleanup.
func openDB(t testing.TB) *bolt.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "craftedge.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("bolt.Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// testOptions returns options for tests: the given clock, a fast poll, and a
// lease long enough that moving the clock by hours never expires it.
func testOptions(t testing.TB, clock *testClock) Options {
	opts := Options{PollInterval: 5 * time.Millisecond, Lease: 1000 * time.Hour}
	if clock != nil {
		opts.Now = clock.Now
	}
	if tt, ok := t.(*testing.T); ok {
		opts.Logger = zaptest.NewLogger(tt)
	}
	return opts
}

// openQueue opens a Queue on db (a fresh file if nil).
func openQueue(t testing.TB, db *bolt.DB, opts Options) *Queue {
	t.Helper()
	if db == nil {
		db = openDB(t)
	}
	q, err := Open(db, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return q
}

// startRun runs q until the returned stop function (also called at
// cleanup) cancels it and waits for Run to return.
func startRun(t testing.TB, q *Queue) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// mustEnqueue enqueues req and fails the test on error.
func mustEnqueue(t testing.TB, q *Queue, req EnqueueRequest) (Job, bool) {
	t.Helper()
	j, created, err := q.Enqueue(context.Background(), req)
	if err != nil {
		t.Fatalf("Enqueue(%+v): %v", req, err)
	}
	return j, created
}

// mustGet returns a job and fails the test on error.
func mustGet(t testing.TB, q *Queue, id string) Job {
	t.Helper()
	j, err := q.Get(id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return j
}

// waitState waits until the job is in state st and returns it.
func waitState(t testing.TB, q *Queue, id string, st State) Job {
	t.Helper()
	var j Job
	waitFor(t, "job "+id+" to be "+string(st), func() bool {
		j = mustGet(t, q, id)
		return j.State == st
	})
	return j
}

// ok is a handler that succeeds.
var ok = Single(func(context.Context, *Task) error { return nil })

// testingProcs returns GOMAXPROCS, for sizing RunParallel.
func testingProcs() int { return runtime.GOMAXPROCS(0) }
