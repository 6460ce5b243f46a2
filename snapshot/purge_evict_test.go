package snapshot

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestStale(t *testing.T) {
	clk := newClock()
	s := openTest(t, Options{Now: clk.Now})
	t0 := clk.Now()
	rec := func(key string, at time.Time, tags ...string) Record {
		return Record{Key: key, StoredAt: at, Tags: tags}
	}

	before := rec("https://h/blog/post", t0, "url:https://h/blog/post", "host:h", "entry:7")
	if s.Stale(before) {
		t.Fatal("stale with no purges")
	}

	// By tag.
	if err := s.MarkPurged([]string{"entry:7", "entry:8"}, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if !s.Stale(before) {
		t.Fatal("not stale after purging one of its tags")
	}
	if s.Stale(rec("https://h/blog/other", t0, "entry:9")) {
		t.Fatal("stale although no tag of it was purged")
	}
	if s.Stale(rec("https://h/blog/post", t0.Add(2*time.Second), "entry:7")) {
		t.Fatal("stored after the purge but stale")
	}
	if s.Stale(rec("https://h/blog/post", t0.Add(time.Second), "entry:7")) {
		t.Fatal("stored at the purge instant but stale")
	}
	// An older purge does not move a mark back.
	if err := s.MarkPurged([]string{"entry:7"}, t0.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !s.Stale(before) {
		t.Fatal("older purge moved the mark back")
	}

	// By key prefix.
	if err := s.MarkPurgedPrefixes([]string{"https://h/shop/"}, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if !s.Stale(rec("https://h/shop/item/1", t0)) {
		t.Fatal("not stale after purging its prefix")
	}
	if s.Stale(rec("https://h/shopping", t0)) || s.Stale(rec("https://h/shop/item/1", t0.Add(time.Minute))) {
		t.Fatal("prefix purge too broad")
	}

	// Everything.
	other := rec("https://x/", t0, "host:x")
	if s.Stale(other) {
		t.Fatal("stale before purge-all")
	}
	if err := s.MarkPurgedAll(t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if !s.Stale(other) || s.Stale(rec("https://x/", t0.Add(2*time.Minute), "host:x")) {
		t.Fatal("purge-all not applied by StoredAt")
	}

	// Bad input is an error, not a silent no-op.
	if err := s.MarkPurged([]string{""}, t0); err == nil {
		t.Fatal("empty tag accepted")
	}
	if err := s.MarkPurgedPrefixes([]string{""}, t0); err == nil {
		t.Fatal("empty prefix accepted")
	}
	if err := s.MarkPurged(nil, t0); err != nil {
		t.Fatal(err)
	}
}

func TestEvictByAge(t *testing.T) {
	clk := newClock()
	s := openTest(t, Options{Now: clk.Now, MaxAge: time.Hour})
	t0 := clk.Now()
	for i, off := range []time.Duration{0, 30 * time.Minute, 50 * time.Minute} {
		s.Put(Record{Key: fmt.Sprintf("k%d", i), StoredAt: t0.Add(off), Value: []byte("value")})
	}
	if err := s.MarkPurged([]string{"old"}, t0.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkPurged([]string{"recent"}, t0.Add(45*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkPurgedPrefixes([]string{"k"}, t0.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkPurgedAll(t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Evict flushes pending records first.
	if n, err := s.Evict(); err != nil || n != 0 {
		t.Fatalf("Evict before anything expired = %d, %v", n, err)
	}
	if st := s.Stats(); st.Count != 3 || st.Pending != 0 {
		t.Fatalf("Stats = %+v", st)
	}

	clk.Add(time.Hour + 40*time.Minute) // cutoff: t0+40m
	n, err := s.Evict()
	if err != nil || n != 2 {
		t.Fatalf("Evict = %d, %v; want 2", n, err)
	}
	mustMissing(t, s, "k0")
	mustMissing(t, s, "k1")
	kept := mustGet(t, s, "k2")
	st := s.Stats()
	if st.Count != 1 || st.Bytes != encodedLen(kept) || st.Evicted != 2 {
		t.Fatalf("Stats = %+v", st)
	}
	// Marks older than the cutoff are pruned, newer ones kept.
	if st.PurgeMarks != 1 {
		t.Fatalf("PurgeMarks = %d, want 1", st.PurgeMarks)
	}
	if s.Stale(Record{Key: "zz", StoredAt: t0, Tags: []string{"old"}}) {
		t.Fatal("pruned tag or purge-all mark still applies")
	}
	if !s.Stale(Record{Key: "zz", StoredAt: t0.Add(41 * time.Minute), Tags: []string{"recent"}}) {
		t.Fatal("recent mark pruned")
	}
	if n, err := s.Evict(); err != nil || n != 0 {
		t.Fatalf("second Evict = %d, %v", n, err)
	}
	checkConsistent(t, s)
}

func TestEvictByBytes(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "snapshots.db")
	t0 := clk.Now()
	mk := func(i int) Record {
		// Newest first in key order, so eviction order is not key order.
		return Record{Key: fmt.Sprintf("k%d", 9-i), StoredAt: t0.Add(time.Duration(i) * time.Second), Tags: []string{"t"}, Value: []byte("0123456789")}
	}
	size := encodedLen(mk(0))

	s := openTest(t, Options{Path: path, Now: clk.Now, MaxBytes: 3 * size})
	for i := range 5 {
		if !s.Put(mk(i)) {
			t.Fatalf("Put %d refused", i)
		}
	}
	// The flush that goes over MaxBytes evicts the oldest in its own
	// transaction.
	mustFlush(t, s)
	st := s.Stats()
	if st.Count != 3 || st.Bytes != 3*size || st.Evicted != 2 {
		t.Fatalf("after flush: %+v", st)
	}
	mustMissing(t, s, mk(0).Key)
	mustMissing(t, s, mk(1).Key)
	for i := 2; i < 5; i++ {
		mustGet(t, s, mk(i).Key)
	}
	checkConsistent(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A smaller bound after a restart is enforced by Evict.
	s = openTest(t, Options{Path: path, Now: clk.Now, MaxBytes: 2*size - 1})
	n, err := s.Evict()
	if err != nil || n != 2 {
		t.Fatalf("Evict = %d, %v; want 2", n, err)
	}
	mustMissing(t, s, mk(3).Key)
	if got := mustGet(t, s, mk(4).Key); !equalRecords(got, mk(4)) {
		t.Fatalf("kept %+v", got)
	}
	if st := s.Stats(); st.Count != 1 || st.Bytes != size {
		t.Fatalf("after Evict: %+v", st)
	}
	checkConsistent(t, s)
}

// TestEvictManyBatches evicts more than one transaction's worth.
func TestEvictManyBatches(t *testing.T) {
	clk := newClock()
	const n = 2*maxEvictPerTx + 500
	s := openTest(t, Options{Now: clk.Now, MaxAge: time.Hour, QueueSize: n + 1})
	t0 := clk.Now()
	for i := range n {
		if !s.Put(Record{Key: fmt.Sprintf("k%05d", i), StoredAt: t0.Add(time.Duration(i) * time.Millisecond), Value: []byte("v")}) {
			t.Fatalf("Put %d refused", i)
		}
	}
	s.Put(Record{Key: "young", StoredAt: t0.Add(time.Hour), Value: []byte("v")})
	mustFlush(t, s)
	clk.Add(2 * time.Hour)
	got, err := s.Evict()
	if err != nil || got != n {
		t.Fatalf("Evict = %d, %v; want %d", got, err, n)
	}
	mustGet(t, s, "young")
	if st := s.Stats(); st.Count != 1 || st.Evicted != n {
		t.Fatalf("Stats = %+v", st)
	}
	checkConsistent(t, s)
}

// Concurrent marks share transactions (group commit), yet every MarkPurged
// returns only once its own mark applies (Stale) and is on disk (a reopen
// sees it); the newest time of one name wins within a batch.
func TestConcurrentMarksCoalesced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snapshots.db")
	opts := Options{Path: path}
	s := openTest(t, opts)
	base := time.Unix(1_800_000_000, 0)
	const callers = 64
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tag := fmt.Sprintf("url:https://h/form/%d", i%16)
			at := base.Add(time.Duration(i) * time.Second)
			if err := s.MarkPurged([]string{tag}, at); err != nil {
				errs <- err
				return
			}
			if !s.Stale(Record{Key: "https://h/x", StoredAt: at.Add(-time.Nanosecond), Tags: []string{tag}}) {
				errs <- fmt.Errorf("mark %d of %s not applied when MarkPurged returned", i, tag)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := s.markCommits.Load(); n == 0 || n > callers {
		t.Fatalf("%d commits for %d marks", n, callers)
	}
	t.Logf("%d marks in %d commits", callers, s.markCommits.Load())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openTest(t, opts)
	for j := range 16 {
		tag := fmt.Sprintf("url:https://h/form/%d", j)
		newest := base.Add(time.Duration(callers-16+j) * time.Second)
		rec := Record{Key: "https://h/x", Tags: []string{tag}}
		rec.StoredAt = newest.Add(-time.Nanosecond)
		if !s2.Stale(rec) {
			t.Fatalf("%s: newest mark lost after reopen", tag)
		}
		rec.StoredAt = newest
		if s2.Stale(rec) {
			t.Fatalf("%s: a mark newer than the newest after reopen", tag)
		}
	}
}
