package jobs

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/craftedge/craftedge/snapshot"
	bolt "go.etcd.io/bbolt"
)

func TestEnqueueDedupeByKey(t *testing.T) {
	clock := newClock()
	opts := testOptions(t, clock)
	opts.Retention = time.Hour
	q := openQueue(t, nil, opts)
	if err := q.Register("refetch", KindConfig{}, ok); err != nil {
		t.Fatal(err)
	}
	if err := q.Register("push", KindConfig{}, ok); err != nil {
		t.Fatal(err)
	}
	req := EnqueueRequest{Kind: "refetch", Key: "shop:product:123:v42", Payload: []byte(`{"id":123}`)}

	first, created := mustEnqueue(t, q, req)
	if !created || first.State != StateReady || first.Key != req.Key || string(first.Payload) != `{"id":123}` {
		t.Fatalf("first enqueue: created=%v job=%+v", created, first)
	}
	again, created := mustEnqueue(t, q, EnqueueRequest{Kind: "refetch", Key: req.Key, Payload: []byte("other")})
	if created || again.ID != first.ID || string(again.Payload) != `{"id":123}` {
		t.Fatalf("pending duplicate: created=%v id=%s want %s (first payload wins)", created, again.ID, first.ID)
	}
	// Keys are scoped per kind.
	if other, created := mustEnqueue(t, q, EnqueueRequest{Kind: "push", Key: req.Key}); !created || other.ID == first.ID {
		t.Fatalf("same key, other kind: created=%v", created)
	}
	// Within one batch, a repeated key yields one job.
	res, err := q.EnqueueBatch(context.Background(), []EnqueueRequest{
		{Kind: "refetch", Key: "k2"}, {Kind: "refetch", Key: "k2"}, {Kind: "refetch"}, {Kind: "refetch"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Created || res[1].Created || res[1].Job.ID != res[0].Job.ID || !res[2].Created || !res[3].Created ||
		res[2].Job.ID == res[3].Job.ID {
		t.Fatalf("batch results: %+v", res)
	}
	// IDs are 128 random bits (unguessable from one another); List keeps
	// acceptance order.
	for _, r := range res {
		if len(r.Job.ID) != 32 || strings.Trim(r.Job.ID, "0123456789abcdef") != "" {
			t.Fatalf("job ID %q: want 32 lower-case hex digits", r.Job.ID)
		}
	}
	if listed, err := q.List(ListFilter{Kind: "refetch"}); err != nil || len(listed) < 3 ||
		listed[len(listed)-3].ID != res[0].Job.ID || listed[len(listed)-2].ID != res[2].Job.ID || listed[len(listed)-1].ID != res[3].Job.ID {
		t.Fatalf("List not in acceptance order: %+v, %v", listed, err)
	}

	// Running and recently done jobs dedupe too.
	stop := startRun(t, q)
	waitState(t, q, first.ID, StateDone)
	stop()
	if j, created := mustEnqueue(t, q, req); created || j.ID != first.ID || j.State != StateDone {
		t.Fatalf("recently done duplicate: created=%v job=%+v", created, j)
	}
	// Past the retention window the key is free again, purged or not.
	clock.Add(time.Hour)
	renewed, created := mustEnqueue(t, q, req)
	if !created || renewed.ID == first.ID {
		t.Fatalf("after retention: created=%v id=%s", created, renewed.ID)
	}
	if _, err := q.Get(first.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired done job still stored: %v", err)
	}
}

func TestPurgeDoneAfterRetention(t *testing.T) {
	clock := newClock()
	opts := testOptions(t, clock)
	opts.Retention = time.Hour
	q := openQueue(t, nil, opts)
	if err := q.Register("k", KindConfig{Concurrency: 4}, ok); err != nil {
		t.Fatal(err)
	}
	var reqs []EnqueueRequest
	for i := range 30 {
		reqs = append(reqs, EnqueueRequest{Kind: "k", Key: "key" + string(rune('a'+i))})
	}
	if _, err := q.EnqueueBatch(context.Background(), reqs); err != nil {
		t.Fatal(err)
	}
	stop := startRun(t, q)
	waitFor(t, "all done", func() bool { st, _ := q.Stats(); return st.Kinds["k"].Done == 30 })
	stop()
	if n, err := q.purgeDone(); err != nil || n != 0 {
		t.Fatalf("purge before retention: %d, %v", n, err)
	}
	clock.Add(time.Hour)
	if n, err := q.purgeDone(); err != nil || n != 30 {
		t.Fatalf("purge after retention: %d, %v", n, err)
	}
	st, _ := q.Stats()
	if st.Totals.Done != 0 {
		t.Fatalf("done count after purge: %+v", st.Totals)
	}
	if _, created := mustEnqueue(t, q, reqs[0]); !created {
		t.Fatal("key not released by purge")
	}
}

func TestEnqueueValidation(t *testing.T) {
	q := openQueue(t, nil, testOptions(t, nil))
	if err := q.Register("k", KindConfig{}, ok); err != nil {
		t.Fatal(err)
	}
	for _, req := range []EnqueueRequest{
		{},
		{Kind: "nope"},
		{Kind: "k", Key: "a\x00b"},
		{Kind: "k", Entity: strings.Repeat("e", 2000)},
	} {
		if _, _, err := q.Enqueue(context.Background(), req); err == nil {
			t.Errorf("Enqueue(%q) succeeded", req.Kind)
		}
	}
	if _, _, err := q.Enqueue(context.Background(), EnqueueRequest{Kind: "nope"}); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("unknown kind: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := q.Enqueue(ctx, EnqueueRequest{Kind: "k"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v", err)
	}
	if err := q.Register("k", KindConfig{}, ok); !errors.Is(err, ErrInvalid) {
		t.Errorf("duplicate Register: %v", err)
	}
	if err := q.Register("x", KindConfig{BaseBackoff: time.Minute, MaxBackoff: time.Second}, ok); !errors.Is(err, ErrInvalid) {
		t.Errorf("MaxBackoff < BaseBackoff: %v", err)
	}
}

// TestDurableAcrossReopen checks that an acknowledged enqueue is in the file:
// closing and reopening the database finds it.
func TestDurableAcrossReopen(t *testing.T) {
	path := t.TempDir() + "/jobs.db"
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	q := openQueue(t, db, testOptions(t, nil))
	if err := q.Register("k", KindConfig{}, ok); err != nil {
		t.Fatal(err)
	}
	j, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "k", Key: "durable", Payload: []byte("p"), Context: []byte("c")})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q = openQueue(t, db, testOptions(t, nil))
	got := mustGet(t, q, j.ID)
	if got.Key != "durable" || string(got.Payload) != "p" || string(got.Context) != "c" || got.State != StateReady {
		t.Fatalf("after reopen: %+v", got)
	}
}

// TestSharesSnapshotDB runs the queue in the snapshot store's file, as the
// craftedge app does.
func TestSharesSnapshotDB(t *testing.T) {
	s, err := snapshot.Open(snapshot.Options{Path: t.TempDir() + "/snap.db"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	q := openQueue(t, s.DB(), testOptions(t, nil))
	if err := q.Register("k", KindConfig{}, ok); err != nil {
		t.Fatal(err)
	}
	s.Put(snapshot.Record{Key: "https://example.com/", Value: []byte("page")})
	j, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "k", Key: "x"})
	stop := startRun(t, q)
	waitState(t, q, j.ID, StateDone)
	stop()
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if rec, found, err := s.Get("https://example.com/"); err != nil || !found || string(rec.Value) != "page" {
		t.Fatalf("snapshot lost: %v %v", found, err)
	}
}

// TestEnqueueWakesWorkers checks that an enqueue (on this Queue or another
// on the same database) wakes idle workers instead of waiting for a poll.
func TestEnqueueWakesWorkers(t *testing.T) {
	db := openDB(t)
	opts := testOptions(t, nil)
	opts.PollInterval = time.Hour
	worker := openQueue(t, db, opts)
	producer := openQueue(t, db, opts)
	for _, q := range []*Queue{worker, producer} {
		if err := q.Register("k", KindConfig{}, ok); err != nil {
			t.Fatal(err)
		}
	}
	startRun(t, worker)
	for i := range 3 {
		j, _ := mustEnqueue(t, []*Queue{worker, producer}[i%2], EnqueueRequest{Kind: "k"})
		waitState(t, worker, j.ID, StateDone)
	}
}
