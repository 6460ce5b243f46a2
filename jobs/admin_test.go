package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestDeadLetterReplayAndFlush(t *testing.T) {
	clock := newClock()
	q := openQueue(t, nil, testOptions(t, clock))
	var healthy atomic.Bool
	if err := q.Register("push", KindConfig{MaxAttempts: 2}, Single(func(ctx context.Context, task *Task) error {
		if healthy.Load() {
			return nil
		}
		return Permanent(fmt.Errorf("400 for %s", task.Job.Key))
	})); err != nil {
		t.Fatal(err)
	}
	if err := q.Register("other", KindConfig{}, Single(func(context.Context, *Task) error { return Permanent(errors.New("no")) })); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 7 {
		j, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "push", Key: fmt.Sprint("k", i), Payload: []byte(fmt.Sprint("p", i))})
		ids = append(ids, j.ID)
	}
	other, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "other", Key: "o"})
	stop := startRun(t, q)
	waitFor(t, "dead letters", func() bool { st, _ := q.Stats(); return st.Totals.Dead == 8 })
	stop()

	// Dead letters keep payload, errors and timestamps, and their key.
	d := mustGet(t, q, ids[3])
	if string(d.Payload) != "p3" || len(d.History) != 1 || d.History[0].Error != "permanent: 400 for k3" || d.History[0].At.IsZero() {
		t.Fatalf("dead letter: %+v", d)
	}
	if j, created := mustEnqueue(t, q, EnqueueRequest{Kind: "push", Key: "k3"}); created || j.ID != ids[3] || j.State != StateDead {
		t.Fatalf("enqueue on a dead key: created=%v %+v", created, j)
	}

	// Replay all dead letters of one kind; they succeed this time.
	healthy.Store(true)
	clock.Add(time.Minute)
	n, err := q.ReplayDead("push")
	if err != nil || n != 7 {
		t.Fatalf("ReplayDead: %d %v", n, err)
	}
	r := mustGet(t, q, ids[0])
	if r.State != StateReady || r.Attempts != 0 || len(r.History) != 1 || !r.RunAt.Equal(clock.Now()) {
		t.Fatalf("replayed: %+v", r)
	}
	stop = startRun(t, q)
	waitFor(t, "replayed done", func() bool { st, _ := q.Stats(); return st.Kinds["push"].Done == 7 })
	stop()
	if j := mustGet(t, q, ids[0]); len(j.History) != 2 || j.History[1].Error != "" || j.LastError != "" {
		t.Fatalf("history across replay: %+v", j.History)
	}
	if j := mustGet(t, q, other.ID); j.State != StateDead {
		t.Fatalf("replaying push touched other: %s", j.State)
	}

	// Flush: deletes the dead letters of one kind and releases their keys.
	n, err = q.FlushDead("other")
	if err != nil || n != 1 {
		t.Fatalf("FlushDead: %d %v", n, err)
	}
	if _, err := q.Get(other.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("flushed job: %v", err)
	}
	if _, created := mustEnqueue(t, q, EnqueueRequest{Kind: "other", Key: "o"}); !created {
		t.Fatal("flush did not release the key")
	}
	if n, err := q.FlushDead("push"); err != nil || n != 0 {
		t.Fatalf("FlushDead with nothing dead: %d %v", n, err)
	}
	if _, err := q.FlushDead(""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("FlushDead(\"\"): %v", err)
	}
}

func TestAdminErrorsAndRetryNow(t *testing.T) {
	clock := newClock()
	q := openQueue(t, nil, testOptions(t, clock))
	if err := q.Register("k", KindConfig{}, ok); err != nil {
		t.Fatal(err)
	}
	later, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "k", RunAt: clock.Now().Add(time.Hour)})

	for _, id := range []string{"", "xyz", "00000000000000zz", "0000000000000000", "00000000000000001"} {
		if _, err := q.Get(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Get(%q): %v", id, err)
		}
		if err := q.RetryNow(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("RetryNow(%q): %v", id, err)
		}
	}
	if _, err := q.Get("00000000000fffff"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get missing: %v", err)
	}
	if err := q.RetryNow("00000000000fffff"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RetryNow missing: %v", err)
	}
	if _, err := q.List(ListFilter{State: "pending"}); !errors.Is(err, ErrUnknownState) {
		t.Errorf("List bad state: %v", err)
	}
	if _, err := q.List(ListFilter{After: "nope"}); !errors.Is(err, ErrInvalidID) {
		t.Errorf("List bad cursor: %v", err)
	}

	// RetryNow on a scheduled ready job makes it due now.
	st, _ := q.Stats()
	if st.Kinds["k"].Ready != 1 || !st.Kinds["k"].OldestReadyAt.IsZero() {
		t.Fatalf("a future job counts as lag: %+v", st.Kinds["k"])
	}
	if err := q.RetryNow(later.ID); err != nil {
		t.Fatal(err)
	}
	if j := mustGet(t, q, later.ID); !j.RunAt.Equal(clock.Now()) {
		t.Fatalf("RetryNow run-at %v", j.RunAt)
	}
	stop := startRun(t, q)
	waitState(t, q, later.ID, StateDone)
	stop()
	if err := q.RetryNow(later.ID); !errors.Is(err, ErrBadState) {
		t.Errorf("RetryNow on done: %v", err)
	}
}

func TestListAndStats(t *testing.T) {
	clock := newClock()
	q := openQueue(t, nil, testOptions(t, clock))
	for _, k := range []string{"a", "b"} {
		if err := q.Register(k, KindConfig{}, ok); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for i := range 10 {
		kind := []string{"a", "b"}[i%2]
		j, _ := mustEnqueue(t, q, EnqueueRequest{Kind: kind, Key: fmt.Sprint(i)})
		ids = append(ids, j.ID)
		clock.Add(time.Second)
	}
	st, err := q.Stats()
	if err != nil {
		t.Fatal(err)
	}
	a := st.Kinds["a"]
	if a.Ready != 5 || !a.Registered || a.QueueAge != 10*time.Second || a.QueueAgeSeconds != 10 || st.Totals.Ready != 10 ||
		st.Totals.QueueAge != 10*time.Second {
		t.Fatalf("stats: %+v", st)
	}
	if a.PendingAge != 10*time.Second || a.PendingAgeSeconds != 10 || st.Kinds["b"].PendingAge != 9*time.Second ||
		st.Totals.PendingAge != 10*time.Second {
		t.Fatalf("pending ages: a %v, b %v, totals %v", a.PendingAge, st.Kinds["b"].PendingAge, st.Totals.PendingAge)
	}
	if _, err := json.Marshal(st); err != nil {
		t.Fatal(err)
	}

	// Pages in acceptance order, with and without filters.
	all, err := q.List(ListFilter{Limit: 4})
	if err != nil || len(all) != 4 || all[0].ID != ids[0] || all[3].ID != ids[3] {
		t.Fatalf("page 1: %v %v", all, err)
	}
	next, err := q.List(ListFilter{Limit: 4, After: all[3].ID})
	if err != nil || len(next) != 4 || next[0].ID != ids[4] {
		t.Fatalf("page 2: %v %v", next, err)
	}
	bs, err := q.List(ListFilter{Kind: "b"})
	if err != nil || len(bs) != 5 || bs[0].ID != ids[1] || bs[4].ID != ids[9] {
		t.Fatalf("kind b: %v %v", bs, err)
	}
	ready, err := q.List(ListFilter{State: StateReady, Limit: 3, After: ids[2]})
	if err != nil || len(ready) != 3 || ready[0].ID != ids[3] || ready[1].ID != ids[4] || ready[2].ID != ids[5] {
		t.Fatalf("ready after %s: %v %v", ids[2], ready, err)
	}
	if none, err := q.List(ListFilter{Kind: "a", State: StateDead}); err != nil || len(none) != 0 {
		t.Fatalf("dead a: %v %v", none, err)
	}
	b, _ := json.Marshal(all[0])
	for _, field := range []string{`"id":`, `"kind":"a"`, `"key":"0"`, `"state":"ready"`, `"run_at":`, `"created_at":`, `"attempts":0`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("JSON %s lacks %s", b, field)
		}
	}
}

// A job accepted before IDs were random (its ID is its sequence number, no
// jobs_ids entry) is still found by that ID, listed and retried; its
// sequence number finds no random-ID job.
func TestLegacySequenceIDs(t *testing.T) {
	clock := newClock()
	db := openDB(t)
	q := openQueue(t, db, testOptions(t, clock))
	if err := q.Register("k", KindConfig{}, ok); err != nil {
		t.Fatal(err)
	}
	legacy, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "k", RunAt: clock.Now().Add(time.Hour)})
	fresh, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "k", RunAt: clock.Now().Add(time.Hour)})
	var oldID string
	if err := db.Update(func(tx *bolt.Tx) error {
		pub, _ := randomID(legacy.ID)
		seq := tx.Bucket(bucketIDs).Get(pub)
		var r record
		if err := json.Unmarshal(tx.Bucket(bucketRecords).Get(seq), &r); err != nil {
			return err
		}
		oldID = formatID(uint64FromBytes(seq))
		r.ID = oldID
		v, err := json.Marshal(&r)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketIDs).Delete(pub); err != nil {
			return err
		}
		return tx.Bucket(bucketRecords).Put(seq, v)
	}); err != nil {
		t.Fatal(err)
	}
	if j := mustGet(t, q, oldID); j.ID != oldID {
		t.Fatalf("legacy job = %+v", j)
	}
	if _, err := q.Get(legacy.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get by a random id without an index entry: %v", err)
	}
	freshSeq := ""
	_ = db.View(func(tx *bolt.Tx) error {
		pub, _ := randomID(fresh.ID)
		freshSeq = formatID(uint64FromBytes(tx.Bucket(bucketIDs).Get(pub)))
		return nil
	})
	if _, err := q.Get(freshSeq); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a random-id job found by its sequence number: %v", err)
	}
	if err := q.RetryNow(oldID); err != nil {
		t.Fatal(err)
	}
	page, err := q.List(ListFilter{Kind: "k", After: oldID})
	if err != nil || len(page) != 1 || page[0].ID != fresh.ID {
		t.Fatalf("List after the legacy job: %+v, %v", page, err)
	}
}

func TestRewritePayloads(t *testing.T) {
	clock := newClock()
	q := openQueue(t, nil, testOptions(t, clock))
	if err := q.Register("push", KindConfig{}, Single(func(context.Context, *Task) error { return nil })); err != nil {
		t.Fatal(err)
	}
	if err := q.Register("other", KindConfig{}, Single(func(context.Context, *Task) error { return nil })); err != nil {
		t.Fatal(err)
	}
	done, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "push", Key: "d", Payload: []byte("old-d")})
	stop := startRun(t, q)
	waitFor(t, "a done job", func() bool { return mustGet(t, q, done.ID).State == StateDone })
	stop()
	ready, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "push", Key: "r", Payload: []byte("old-r")})
	keep, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "push", Key: "k", Payload: []byte("new-k")})
	other, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "other", Key: "o", Payload: []byte("old-o")})

	n, err := q.RewritePayloads("push", func(p []byte) ([]byte, bool, error) {
		if s, ok := strings.CutPrefix(string(p), "old-"); ok {
			return []byte("new-" + s), true, nil
		}
		return nil, false, nil
	})
	if err != nil || n != 2 {
		t.Fatalf("RewritePayloads = %d, %v", n, err)
	}
	for id, want := range map[string]string{done.ID: "new-d", ready.ID: "new-r", keep.ID: "new-k", other.ID: "old-o"} {
		if j := mustGet(t, q, id); string(j.Payload) != want {
			t.Errorf("job %s payload %q, want %q", id, j.Payload, want)
		}
	}
	if j := mustGet(t, q, ready.ID); j.State != StateReady || j.Key != "r" {
		t.Fatalf("rewritten ready job: %+v", j)
	}
	// The rewritten ready job still runs.
	stop = startRun(t, q)
	waitFor(t, "the rewritten job done", func() bool { return mustGet(t, q, ready.ID).State == StateDone })
	stop()
	if _, err := q.RewritePayloads("push", func([]byte) ([]byte, bool, error) { return nil, false, errors.New("boom") }); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("fn error: %v", err)
	}
}
