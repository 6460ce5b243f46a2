package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestPermanentErrorDeadLettersAtOnce(t *testing.T) {
	q := openQueue(t, nil, testOptions(t, newClock()))
	var calls atomic.Int32
	if err := q.Register("push", KindConfig{MaxAttempts: 10}, Single(func(context.Context, *Task) error {
		calls.Add(1)
		return fmt.Errorf("crm said: %w", Permanent(errors.New("422 unprocessable")))
	})); err != nil {
		t.Fatal(err)
	}
	j, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "push", Key: "crm:contact:9:v1", Payload: []byte("body")})
	startRun(t, q)
	dead := waitState(t, q, j.ID, StateDead)
	if calls.Load() != 1 || dead.Attempts != 1 || len(dead.History) != 1 {
		t.Fatalf("calls %d attempts %d history %d", calls.Load(), dead.Attempts, len(dead.History))
	}
	if !strings.Contains(dead.LastError, "422") || string(dead.Payload) != "body" {
		t.Fatalf("dead letter: %+v", dead)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	clock := newClock()
	q := openQueue(t, nil, testOptions(t, clock))
	var calls atomic.Int32
	if err := q.Register("sync", KindConfig{BaseBackoff: time.Hour, MaxBackoff: time.Hour}, Single(func(context.Context, *Task) error {
		if calls.Add(1) == 1 {
			return RetryAfter(errors.New("429 too many requests"), 42*time.Second)
		}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	j, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "sync"})
	startRun(t, q)
	var got Job
	waitFor(t, "first attempt", func() bool { got = mustGet(t, q, j.ID); return got.Attempts == 1 && got.State == StateReady })
	if want := clock.Now().Add(42 * time.Second); !got.RunAt.Equal(want) {
		t.Fatalf("run at %v, want exactly %v (Retry-After, not the 1h backoff)", got.RunAt, want)
	}
	clock.Add(42 * time.Second)
	done := waitState(t, q, j.ID, StateDone)
	if calls.Load() != 2 || len(done.History) != 2 || !strings.Contains(done.History[0].Error, "429") || done.History[1].Error != "" {
		t.Fatalf("calls %d history %+v", calls.Load(), done.History)
	}
}

func TestSaveContextResumes(t *testing.T) {
	clock := newClock()
	q := openQueue(t, nil, testOptions(t, clock))
	q.jitter = func(int64) int64 { return 0 }
	var seen []string
	var mu sync.Mutex
	if err := q.Register("backfill", KindConfig{}, Single(func(ctx context.Context, task *Task) error {
		mu.Lock()
		seen = append(seen, string(task.Job.Context))
		mu.Unlock()
		if len(task.Job.Context) == 0 {
			if err := task.SaveContext([]byte("page=7")); err != nil {
				return err
			}
			return errors.New("vendor timeout on page 8")
		}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	j, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "backfill"})
	startRun(t, q)
	done := waitState(t, q, j.ID, StateDone)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != "" || seen[1] != "page=7" || string(done.Context) != "page=7" {
		t.Fatalf("contexts seen %q, stored %q", seen, done.Context)
	}
}

func TestBatching(t *testing.T) {
	q := openQueue(t, nil, testOptions(t, newClock()))
	var mu sync.Mutex
	var sizes []int
	if err := q.Register("index", KindConfig{BatchSize: 50, MaxAttempts: 1}, func(ctx context.Context, tasks []*Task) []error {
		mu.Lock()
		sizes = append(sizes, len(tasks))
		mu.Unlock()
		errs := make([]error, len(tasks))
		for i, task := range tasks {
			if string(task.Job.Payload) == "bad" {
				errs[i] = Permanent(errors.New("rejected by the batch API"))
			}
		}
		return errs
	}); err != nil {
		t.Fatal(err)
	}
	reqs := make([]EnqueueRequest, 120)
	for i := range reqs {
		reqs[i] = EnqueueRequest{Kind: "index", Key: fmt.Sprint("doc:", i)}
	}
	reqs[77].Payload = []byte("bad")
	res, err := q.EnqueueBatch(context.Background(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, q)
	waitFor(t, "all handled", func() bool {
		st, _ := q.Stats()
		return st.Kinds["index"].Done == 119 && st.Kinds["index"].Dead == 1
	})
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(sizes) != "[50 50 20]" {
		t.Fatalf("batch sizes %v, want [50 50 20]", sizes)
	}
	if j := mustGet(t, q, res[77].Job.ID); j.State != StateDead {
		t.Fatalf("the failed task of a batch: %s", j.State)
	}
}

func TestHandlerPanicAndBadResults(t *testing.T) {
	q := openQueue(t, nil, testOptions(t, newClock()))
	if err := q.Register("panics", KindConfig{MaxAttempts: 1}, func(context.Context, []*Task) []error { panic("boom") }); err != nil {
		t.Fatal(err)
	}
	if err := q.Register("short", KindConfig{MaxAttempts: 1}, func(context.Context, []*Task) []error { return []error{nil, nil} }); err != nil {
		t.Fatal(err)
	}
	a, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "panics"})
	b, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "short"})
	startRun(t, q)
	if j := waitState(t, q, a.ID, StateDead); !strings.Contains(j.LastError, "panicked: boom") {
		t.Errorf("panic: %q", j.LastError)
	}
	if j := waitState(t, q, b.ID, StateDead); !strings.Contains(j.LastError, "2 results for 1 tasks") {
		t.Errorf("short results: %q", j.LastError)
	}
}

// TestShutdownReleasesJob checks that a handler interrupted by Run's context
// gives its attempt back and that the next Run (a reload) runs it at once.
func TestShutdownReleasesJob(t *testing.T) {
	db := openDB(t)
	q := openQueue(t, db, testOptions(t, newClock()))
	started := make(chan struct{})
	if err := q.Register("slow", KindConfig{MaxAttempts: 1}, Single(func(ctx context.Context, _ *Task) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})); err != nil {
		t.Fatal(err)
	}
	j, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "slow"})
	stop := startRun(t, q)
	<-started
	stop()
	got := mustGet(t, q, j.ID)
	if got.State != StateReady || got.Attempts != 0 || len(got.History) != 1 ||
		!strings.Contains(got.History[0].Error, "interrupted by shutdown") {
		t.Fatalf("after shutdown: %+v", got)
	}
	q2 := openQueue(t, db, testOptions(t, newClock()))
	if err := q2.Register("slow", KindConfig{MaxAttempts: 1}, ok); err != nil {
		t.Fatal(err)
	}
	startRun(t, q2)
	waitState(t, q2, j.ID, StateDone)
}

// TestTwoRunsNeverDoubleRun runs two Queues on one database (as during caddy
// reload) plus a second Run on one of them, and checks that no job runs
// twice, at once or at all.
func TestTwoRunsNeverDoubleRun(t *testing.T) {
	db := openDB(t)
	const n = 600
	var mu sync.Mutex
	running := map[string]bool{}
	runs := map[string]int{}
	var overlap atomic.Int32
	handler := Single(func(ctx context.Context, task *Task) error {
		mu.Lock()
		if running[task.Job.ID] {
			overlap.Add(1)
		}
		running[task.Job.ID] = true
		runs[task.Job.ID]++
		mu.Unlock()
		time.Sleep(50 * time.Microsecond) // widen the window a double claim would need
		mu.Lock()
		delete(running, task.Job.ID)
		mu.Unlock()
		return nil
	})
	var queues []*Queue
	for range 2 {
		q := openQueue(t, db, testOptions(t, nil))
		if err := q.Register("k", KindConfig{Concurrency: 4, BatchSize: 3}, handler); err != nil {
			t.Fatal(err)
		}
		queues = append(queues, q)
	}
	startRun(t, queues[0])
	startRun(t, queues[1])
	startRun(t, queues[1])
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				mustEnqueue(t, queues[i%2], EnqueueRequest{Kind: "k", Key: fmt.Sprint(i)})
			}
		})
	}
	wg.Wait()
	waitFor(t, "all done", func() bool { st, _ := queues[0].Stats(); return st.Kinds["k"].Done == n })
	mu.Lock()
	defer mu.Unlock()
	if overlap.Load() != 0 || len(runs) != n {
		t.Fatalf("overlapping runs %d, distinct jobs run %d", overlap.Load(), len(runs))
	}
	for id, c := range runs {
		if c != 1 {
			t.Fatalf("job %s ran %d times", id, c)
		}
	}
}

// TestOrphanedClaimsReclaimed checks both ways a claim dies: the owner is not
// alive (a previous process), or the lease of a live owner expired (a stall).
func TestOrphanedClaimsReclaimed(t *testing.T) {
	clock := newClock()
	opts := testOptions(t, clock)
	opts.Lease = time.Minute
	q := openQueue(t, nil, opts)
	if err := q.Register("k", KindConfig{MaxAttempts: 2}, ok); err != nil {
		t.Fatal(err)
	}
	a, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "k", Key: "a"})
	k := q.kind("k")

	// A claim by an owner that is not alive in this process: reclaimed at
	// once, no need to wait for the lease.
	if tasks, _, err := q.claim(k, 1, 12345); err != nil || len(tasks) != 1 {
		t.Fatalf("claim: %v %v", tasks, err)
	}
	if n, err := q.reclaim(); err != nil || n != 1 {
		t.Fatalf("reclaim of a dead owner: %d %v", n, err)
	}
	got := mustGet(t, q, a.ID)
	if got.State != StateReady || got.Attempts != 1 || !strings.Contains(got.LastError, "lease expired") {
		t.Fatalf("after reclaim: %+v", got)
	}

	// A live owner's claim is trusted until its lease expires.
	owner := q.hub.newOwner()
	defer q.hub.dropOwner(owner)
	tasks, _, err := q.claim(k, 1, owner)
	if err != nil || len(tasks) != 1 {
		t.Fatalf("claim: %v %v", tasks, err)
	}
	if n, _ := q.reclaim(); n != 0 {
		t.Fatalf("reclaimed a live lease")
	}
	clock.Add(time.Minute)
	if n, _ := q.reclaim(); n != 1 {
		t.Fatalf("expired lease not reclaimed")
	}
	// Attempts are counted at claim time, so a job that kills its worker
	// every time ends up dead.
	if got := mustGet(t, q, a.ID); got.State != StateDead || got.Attempts != 2 {
		t.Fatalf("after MaxAttempts crashed attempts: %s, %d", got.State, got.Attempts)
	}
	// The stale claim can no longer complete the job or save context.
	if err := tasks[0].SaveContext([]byte("x")); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("SaveContext on a lost claim: %v", err)
	}
	if _, err := q.finish(k, tasks, []error{nil}, 0, false, 0, 0); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, q, a.ID); got.State != StateDead {
		t.Fatalf("a stale completion changed the job: %s", got.State)
	}
}

// TestCorruptRecord checks that an unreadable record is reported for that job
// and does not stop the others or panic.
func TestCorruptRecord(t *testing.T) {
	db := openDB(t)
	q := openQueue(t, db, testOptions(t, newClock()))
	if err := q.Register("k", KindConfig{}, ok); err != nil {
		t.Fatal(err)
	}
	bad, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "k", Key: "bad"})
	good, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "k", Key: "good"})
	if err := db.Update(func(tx *bolt.Tx) error {
		pub, _ := randomID(bad.ID)
		return tx.Bucket(bucketRecords).Put(tx.Bucket(bucketIDs).Get(pub), []byte("{not json"))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Get(bad.ID); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get corrupt: %v", err)
	}
	if _, _, err := q.Enqueue(context.Background(), EnqueueRequest{Kind: "k", Key: "bad"}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Enqueue on a key held by a corrupt job: %v", err)
	}
	startRun(t, q)
	waitState(t, q, good.ID, StateDone)
	jobs, err := q.List(ListFilter{Kind: "k"})
	if err != nil || len(jobs) != 1 || jobs[0].ID != good.ID {
		t.Fatalf("List skips corrupt: %v %v", jobs, err)
	}
}
