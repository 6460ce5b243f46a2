package jobs

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// Once the file's owner says it is damaged, every operation fails loudly
// with ErrUnavailable: an enqueue is never reported as stored.
func TestUnavailableStorageRefusesOperations(t *testing.T) {
	damaged := errors.New("storage file /x.db is damaged")
	var down atomic.Bool
	opts := testOptions(t, nil)
	opts.Available = func() error {
		if down.Load() {
			return damaged
		}
		return nil
	}
	q := openQueue(t, nil, opts)
	if err := q.Register("outbox", KindConfig{}, ok); err != nil {
		t.Fatal(err)
	}
	mustEnqueue(t, q, EnqueueRequest{Kind: "outbox", Payload: []byte(`{}`)})
	down.Store(true)
	_, _, err := q.Enqueue(context.Background(), EnqueueRequest{Kind: "outbox", Payload: []byte(`{}`)})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, damaged) {
		t.Fatalf("Enqueue = %v, want ErrUnavailable wrapping the damage", err)
	}
	if _, err := q.Stats(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Stats = %v", err)
	}
	down.Store(false)
	if st, err := q.Stats(); err != nil || st.Totals.Ready != 1 {
		t.Fatalf("Stats = %+v, %v: the refused enqueue must not be stored", st, err)
	}
}

// A panic of bbolt inside a queue transaction is an error and reported to
// OnPanic; the committer stays usable.
func TestStoragePanicIsAnError(t *testing.T) {
	var reported atomic.Value
	opts := testOptions(t, nil)
	opts.OnPanic = func(err error) { reported.Store(err) }
	q := openQueue(t, nil, opts)
	err := q.commit.do(func(*bolt.Tx) error { panic("page 7 already freed") })
	if err == nil || !strings.Contains(err.Error(), "page 7 already freed") {
		t.Fatalf("do = %v", err)
	}
	err = q.guard.run(func() error { panic("invalid freelist page") })
	if !errors.Is(err, ErrUnavailable) || reported.Load() == nil {
		t.Fatalf("run = %v, reported %v", err, reported.Load())
	}
	if err := q.commit.do(func(*bolt.Tx) error { return nil }); err != nil {
		t.Fatalf("committer after a panic: %v", err)
	}
}
