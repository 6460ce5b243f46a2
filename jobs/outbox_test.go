package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestOutboxPerEntityOrder enqueues interleaved writes to several CRM
// contacts and checks that each contact's writes are sent one at a time, in
// acceptance order, with the job's idempotency key — including while the
// first write of one contact is being retried, and after the first write of
// another is dead-lettered (which must not block the rest).
func TestOutboxPerEntityOrder(t *testing.T) {
	clock := newClock()
	q := openQueue(t, nil, testOptions(t, clock))
	var mu sync.Mutex
	sent := map[string][]string{} // entity → idempotency keys in send order
	inflight := map[string]int{}
	overlap := 0
	failedOnce := false
	handler := Single(func(ctx context.Context, task *Task) error {
		e := task.Job.Entity
		mu.Lock()
		inflight[e]++
		if inflight[e] > 1 {
			overlap++
		}
		mu.Unlock()
		time.Sleep(100 * time.Microsecond)
		mu.Lock()
		defer mu.Unlock()
		inflight[e]--
		switch {
		case task.IdempotencyKey() == "crm:contact:slow:1" && !failedOnce:
			failedOnce = true
			return RetryAfter(errors.New("503"), time.Minute)
		case task.IdempotencyKey() == "crm:contact:bad:1":
			return Permanent(errors.New("400 invalid email"))
		}
		sent[e] = append(sent[e], task.IdempotencyKey())
		return nil
	})
	if err := q.Register("crm.push", KindConfig{Concurrency: 8}, handler); err != nil {
		t.Fatal(err)
	}
	entities := []string{"a", "b", "c", "slow", "bad"}
	const perEntity = 5
	var ids []string
	for i := 1; i <= perEntity; i++ {
		for _, e := range entities {
			j, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "crm.push", Entity: e, Key: fmt.Sprintf("crm:contact:%s:%d", e, i)})
			ids = append(ids, j.ID)
			if i > 1 && !j.Blocked {
				t.Fatalf("write %d of %s not blocked behind write 1", i, e)
			}
		}
	}
	startRun(t, q)
	want := func(e string, from int) []string {
		var keys []string
		for i := from; i <= perEntity; i++ {
			keys = append(keys, fmt.Sprintf("crm:contact:%s:%d", e, i))
		}
		return keys
	}
	waitFor(t, "unblocked entities sent", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(sent["a"])+len(sent["b"])+len(sent["c"])+len(sent["bad"]) == 4*perEntity-1
	})
	// The retrying first write of "slow" holds back the rest of "slow".
	st, err := q.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Kinds["crm.push"].Ready != perEntity {
		t.Fatalf("ready jobs of the slow entity: %+v", st.Kinds["crm.push"])
	}
	blocked, err := q.List(ListFilter{Kind: "crm.push", State: StateReady})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range blocked {
		if j.Entity != "slow" || (j.Key == "crm:contact:slow:1") == j.Blocked {
			t.Fatalf("ready job %s of %s blocked=%v", j.Key, j.Entity, j.Blocked)
		}
	}
	mu.Lock()
	if len(sent["slow"]) != 0 {
		t.Fatalf("later writes of slow sent before its first: %v", sent["slow"])
	}
	mu.Unlock()
	clock.Add(time.Minute)
	waitFor(t, "slow entity sent", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(sent["slow"]) == perEntity
	})
	mu.Lock()
	defer mu.Unlock()
	for _, e := range []string{"a", "b", "c", "slow"} {
		if !slices.Equal(sent[e], want(e, 1)) {
			t.Errorf("entity %s sent %v, want %v", e, sent[e], want(e, 1))
		}
	}
	if !slices.Equal(sent["bad"], want("bad", 2)) {
		t.Errorf("after a dead letter, entity bad sent %v, want %v", sent["bad"], want("bad", 2))
	}
	if overlap != 0 {
		t.Errorf("%d writes overlapped another write of the same entity", overlap)
	}
}

// TestReplayRejoinsEntityQueueAtBack checks the documented rule: a replayed
// dead letter goes to the back of its entity queue.
func TestReplayRejoinsEntityQueueAtBack(t *testing.T) {
	q := openQueue(t, nil, testOptions(t, newClock()))
	var mu sync.Mutex
	var order []string
	fail := true
	if err := q.Register("push", KindConfig{}, Single(func(ctx context.Context, task *Task) error {
		mu.Lock()
		defer mu.Unlock()
		if task.Job.Key == "v1" && fail {
			return Permanent(errors.New("400"))
		}
		order = append(order, task.Job.Key)
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	v1, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "push", Entity: "e", Key: "v1"})
	stop := startRun(t, q)
	waitState(t, q, v1.ID, StateDead)
	stop()
	v2, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "push", Entity: "e", Key: "v2"})
	if v2.Blocked {
		t.Fatal("a dead letter blocks its entity")
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	if err := q.RetryNow(v1.ID); err != nil {
		t.Fatal(err)
	}
	if j := mustGet(t, q, v1.ID); !j.Blocked || j.State != StateReady || j.Attempts != 0 {
		t.Fatalf("replayed v1: %+v", j)
	}
	startRun(t, q)
	waitState(t, q, v1.ID, StateDone)
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(order, []string{"v2", "v1"}) {
		t.Fatalf("order %v", order)
	}
}
