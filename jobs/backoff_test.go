package jobs

import (
	"context"
	"errors"
	mrand "math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
)

func TestBackoffCeiling(t *testing.T) {
	cfg := KindConfig{BaseBackoff: time.Second, MaxBackoff: time.Minute}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60}
	for i, w := range want {
		if got := backoffCeiling(cfg, i+1); got != w*time.Second {
			t.Errorf("ceiling after attempt %d = %v, want %v", i+1, got, w*time.Second)
		}
	}
	// No overflow for huge attempt counts or bounds.
	big := KindConfig{BaseBackoff: time.Hour, MaxBackoff: 1<<63 - 1}
	if got := backoffCeiling(big, 1000); got != big.MaxBackoff {
		t.Errorf("huge: %v", got)
	}
	// Full jitter: the whole range [0, ceiling] is reachable, nothing outside.
	if got := backoff(cfg, 3, func(n int64) int64 { return n }); got != 4*time.Second {
		t.Errorf("max jitter = %v", got)
	}
	if got := backoff(cfg, 3, func(int64) int64 { return 0 }); got != 0 {
		t.Errorf("min jitter = %v", got)
	}
	r := mrand.New(mrand.NewPCG(1, 2))
	for i := range 10000 {
		attempt := 1 + i%10
		d := backoff(cfg, attempt, func(n int64) int64 { return r.Int64N(n + 1) })
		if d < 0 || d > backoffCeiling(cfg, attempt) {
			t.Fatalf("attempt %d: delay %v outside [0, %v]", attempt, d, backoffCeiling(cfg, attempt))
		}
	}
}

// TestBackoffTiming runs a job that always fails under a test clock and
// checks every retry's run-at time against the full-jitter bounds, then the
// dead letter with every attempt.
func TestBackoffTiming(t *testing.T) {
	clock := newClock()
	q := openQueue(t, nil, testOptions(t, clock))
	cfg := KindConfig{BaseBackoff: 10 * time.Second, MaxBackoff: 30 * time.Second, MaxAttempts: 5}
	var calls atomic.Int32
	if err := q.Register("flaky", cfg, Single(func(context.Context, *Task) error {
		calls.Add(1)
		return errors.New("vendor 503")
	})); err != nil {
		t.Fatal(err)
	}
	j, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "flaky", Key: "k", Payload: []byte("keep me")})
	startRun(t, q)

	ceilings := []time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second, 30 * time.Second}
	for attempt := 1; attempt <= 4; attempt++ {
		var got Job
		waitFor(t, "attempt to finish", func() bool {
			got = mustGet(t, q, j.ID)
			return got.Attempts == attempt && got.State == StateReady
		})
		failedAt := clock.Now()
		delay := got.RunAt.Sub(failedAt)
		if delay < 0 || delay > ceilings[attempt-1] {
			t.Fatalf("attempt %d: retry in %v, want within [0, %v]", attempt, delay, ceilings[attempt-1])
		}
		if got.LastError != "vendor 503" || len(got.History) != attempt {
			t.Fatalf("attempt %d: last error %q, history %d", attempt, got.LastError, len(got.History))
		}
		if int(calls.Load()) != attempt {
			t.Fatalf("retried before its run-at time: %d calls after %d attempts", calls.Load(), attempt)
		}
		clock.Add(delay)
	}
	dead := waitState(t, q, j.ID, StateDead)
	if dead.Attempts != 5 || len(dead.History) != 5 || calls.Load() != 5 {
		t.Fatalf("dead letter: attempts %d, history %d, calls %d", dead.Attempts, len(dead.History), calls.Load())
	}
	for i, a := range dead.History {
		if a.Error != "vendor 503" || a.At.IsZero() {
			t.Errorf("history[%d] = %+v", i, a)
		}
		if i > 0 && a.At.Before(dead.History[i-1].At) {
			t.Errorf("history not in order: %v", dead.History)
		}
	}
	if string(dead.Payload) != "keep me" || dead.FinishedAt.IsZero() {
		t.Errorf("dead letter fields: %+v", dead)
	}
}

// TestBackoffDeterministic pins the jitter to check the exact delays.
func TestBackoffDeterministic(t *testing.T) {
	clock := newClock()
	q := openQueue(t, nil, testOptions(t, clock))
	q.jitter = func(n int64) int64 { return n } // always the ceiling
	if err := q.Register("k", KindConfig{BaseBackoff: time.Second, MaxBackoff: time.Minute, MaxAttempts: 3},
		Single(func(context.Context, *Task) error { return errors.New("no") })); err != nil {
		t.Fatal(err)
	}
	j, _ := mustEnqueue(t, q, EnqueueRequest{Kind: "k"})
	startRun(t, q)
	for attempt, want := range []time.Duration{time.Second, 2 * time.Second} {
		var got Job
		waitFor(t, "retry scheduled", func() bool {
			got = mustGet(t, q, j.ID)
			return got.Attempts == attempt+1 && got.State == StateReady
		})
		if d := got.RunAt.Sub(clock.Now()); d != want {
			t.Fatalf("attempt %d: delay %v, want %v", attempt+1, d, want)
		}
		clock.Add(want)
	}
	waitState(t, q, j.ID, StateDead)
}
