package snapshot

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// testClock is an injectable clock tests move by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *testClock {
	return &testClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
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

// openTest opens a store in a temporary directory with background work
// effectively disabled (tests call Flush and Evict themselves).
func openTest(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Path == "" {
		opts.Path = filepath.Join(t.TempDir(), "snap", "snapshots.db")
	}
	if opts.FlushInterval == 0 {
		opts.FlushInterval = time.Hour
	}
	if opts.EvictInterval == 0 {
		opts.EvictInterval = time.Hour
	}
	if opts.OpenTimeout == 0 {
		opts.OpenTimeout = 100 * time.Millisecond
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func mustFlush(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func mustGet(t testing.TB, s *Store, key string) Record {
	t.Helper()
	rec, ok, err := s.Get(key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if !ok {
		t.Fatalf("Get(%q): not found", key)
	}
	return rec
}

func mustMissing(t testing.TB, s *Store, key string) {
	t.Helper()
	if _, ok, err := s.Get(key); err != nil || ok {
		t.Fatalf("Get(%q) = found %v, err %v; want missing", key, ok, err)
	}
}

func equalRecords(a, b Record) bool {
	return a.Key == b.Key && a.StoredAt.Equal(b.StoredAt) && slices.Equal(a.Tags, b.Tags) && bytes.Equal(a.Value, b.Value)
}

func encodedLen(rec Record) int64 {
	return int64(len(encodeRecord(rec.StoredAt.UnixNano(), rec.Tags, rec.Value)))
}

// checkConsistent verifies that the totals in memory and in meta match a
// full scan, and that every snapshot has exactly its time-index entry.
func checkConsistent(t testing.TB, s *Store) {
	t.Helper()
	var count, size int64
	var metaTotals totals
	var idxN int
	err := s.DB().View(func(tx *bolt.Tx) error {
		idx := tx.Bucket(bucketSnapshotsTime)
		err := tx.Bucket(bucketSnapshots).ForEach(func(k, v []byte) error {
			count++
			size += int64(len(v))
			at, err := decodeStoredAt(v)
			if err != nil {
				return err
			}
			if idx.Get(timeKey(at, k)) == nil {
				t.Errorf("snapshot %q has no time-index entry", k)
			}
			return nil
		})
		idxN = idx.Stats().KeyN
		metaTotals = readTotals(tx)
		return err
	})
	if err != nil {
		t.Fatalf("scanning: %v", err)
	}
	if int64(idxN) != count {
		t.Errorf("time index has %d entries, snapshots %d", idxN, count)
	}
	if metaTotals.count != count || metaTotals.bytes != size {
		t.Errorf("meta totals = %+v, scan = {count:%d bytes:%d}", metaTotals, count, size)
	}
	if st := s.Stats(); st.Count != count || st.Bytes != size {
		t.Errorf("Stats = {Count:%d Bytes:%d}, scan = {count:%d bytes:%d}", st.Count, st.Bytes, count, size)
	}
}

func TestPutGetFlush(t *testing.T) {
	clk := newClock()
	var flushes []int // OnFlush runs on the flushing goroutine (here the test's)
	s := openTest(t, Options{Now: clk.Now, OnFlush: func(n int, d time.Duration, err error) {
		if d <= 0 || err != nil {
			t.Errorf("OnFlush(%d, %v, %v)", n, d, err)
		}
		flushes = append(flushes, n)
	}})

	value := []byte("compressed response")
	rec := Record{Key: "https://h/p", StoredAt: clk.Now(), Tags: []string{"url:https://h/p", "host:h"}, Value: value}
	if !s.Put(rec) {
		t.Fatal("Put refused")
	}
	value[0] = 'X' // the caller may reuse its buffer
	want := rec
	want.Value = []byte("compressed response")

	if st := s.Stats(); st.Pending != 1 || st.Count != 0 {
		t.Fatalf("before flush: %+v", st)
	}
	if got := mustGet(t, s, rec.Key); !equalRecords(got, want) {
		t.Fatalf("pending Get = %+v, want %+v", got, want)
	}
	mustMissing(t, s, "https://h/other")
	mustMissing(t, s, "")

	mustFlush(t, s)
	st := s.Stats()
	if st.Pending != 0 || st.Written != 1 || st.Count != 1 || st.Bytes != encodedLen(want) || st.FileBytes == 0 {
		t.Fatalf("after flush: %+v", st)
	}
	got := mustGet(t, s, rec.Key)
	if !equalRecords(got, want) {
		t.Fatalf("stored Get = %+v, want %+v", got, want)
	}
	got.Value[0] = 'Y' // Get returns a copy
	if got := mustGet(t, s, rec.Key); !equalRecords(got, want) {
		t.Fatalf("Get after mutating a copy = %+v", got)
	}

	// A zero StoredAt means now; no tags and an empty value round-trip.
	if !s.Put(Record{Key: "bare"}) {
		t.Fatal("Put bare refused")
	}
	mustFlush(t, s)
	if got := mustGet(t, s, "bare"); !got.StoredAt.Equal(clk.Now()) || len(got.Tags) != 0 || len(got.Value) != 0 {
		t.Fatalf("bare = %+v", got)
	}
	mustFlush(t, s) // nothing pending: no-op
	checkConsistent(t, s)
	if !slices.Equal(flushes, []int{1, 1}) {
		t.Fatalf("OnFlush saw batches %v, want [1 1] (an empty flush writes nothing)", flushes)
	}
}

func TestPendingCoalescing(t *testing.T) {
	clk := newClock()
	s := openTest(t, Options{Now: clk.Now})

	s.Put(Record{Key: "k", Tags: []string{"a"}, Value: []byte("v1")})
	clk.Add(time.Second)
	s.Put(Record{Key: "k", Tags: []string{"b"}, Value: []byte("v2")})
	if st := s.Stats(); st.Pending != 1 {
		t.Fatalf("Pending = %d, want 1", st.Pending)
	}
	if got := mustGet(t, s, "k"); string(got.Value) != "v2" || got.Tags[0] != "b" {
		t.Fatalf("Get = %+v, want v2", got)
	}
	mustFlush(t, s)
	if st := s.Stats(); st.Written != 1 || st.Count != 1 {
		t.Fatalf("after flush: %+v", st)
	}

	// Overwriting a stored record (even with an older StoredAt) replaces
	// its time-index entry in the same transaction.
	s.Put(Record{Key: "k", StoredAt: clk.Now().Add(-time.Hour), Value: []byte("v3 longer")})
	if got := mustGet(t, s, "k"); string(got.Value) != "v3 longer" {
		t.Fatalf("pending overwrite not visible: %+v", got)
	}
	mustFlush(t, s)
	if got := mustGet(t, s, "k"); string(got.Value) != "v3 longer" {
		t.Fatalf("stored overwrite = %+v", got)
	}
	checkConsistent(t, s)
}

func TestDelete(t *testing.T) {
	s := openTest(t, Options{Now: newClock().Now})
	s.Put(Record{Key: "stored", Value: []byte("1")})
	mustFlush(t, s)
	s.Put(Record{Key: "pending", Value: []byte("2")})
	s.Put(Record{Key: "stored", Value: []byte("3")}) // pending over stored

	for _, k := range []string{"stored", "pending", "never"} {
		if err := s.Delete(k); err != nil {
			t.Fatalf("Delete(%q): %v", k, err)
		}
		mustMissing(t, s, k)
	}
	mustFlush(t, s)
	mustMissing(t, s, "stored")
	if st := s.Stats(); st.Count != 0 || st.Bytes != 0 || st.Pending != 0 {
		t.Fatalf("after deletes: %+v", st)
	}
	checkConsistent(t, s)
}

func TestDeleteTagged(t *testing.T) {
	s := openTest(t, Options{Now: newClock().Now})
	s.Put(Record{Key: "a", Tags: []string{"vendor:crm", "url:a"}, Value: []byte("1")})
	s.Put(Record{Key: "b", Tags: []string{"vendor:shop"}, Value: []byte("2")})
	s.Put(Record{Key: "c", Tags: []string{"x", "vendor:crm"}, Value: []byte("3")})
	mustFlush(t, s)
	s.Put(Record{Key: "d", Tags: []string{"vendor:crm"}, Value: []byte("4")}) // pending

	n, err := s.DeleteTagged("vendor:crm")
	if err != nil || n != 2 {
		t.Fatalf("DeleteTagged = %d, %v", n, err)
	}
	for _, k := range []string{"a", "c", "d"} {
		mustMissing(t, s, k)
	}
	mustGet(t, s, "b")
	mustFlush(t, s)
	mustMissing(t, s, "d")
	if st := s.Stats(); st.Count != 1 || st.Pending != 0 {
		t.Fatalf("after DeleteTagged: %+v", st)
	}
	checkConsistent(t, s)
}

func TestPutRejects(t *testing.T) {
	clk := newClock()
	s := openTest(t, Options{Now: clk.Now, MaxBytes: 100, MaxAge: time.Hour})
	cases := map[string]Record{
		"empty key":      {Value: []byte("v")},
		"huge key":       {Key: strings.Repeat("k", maxKeyLen+1)},
		"too large":      {Key: "big", Value: make([]byte, 101)},
		"older than age": {Key: "old", StoredAt: clk.Now().Add(-2 * time.Hour)},
		"before 1970":    {Key: "ancient", StoredAt: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for name, rec := range cases {
		if s.Put(rec) {
			t.Errorf("%s: Put accepted", name)
		}
	}
	if st := s.Stats(); st.Rejected != uint64(len(cases)) || st.Pending != 0 || st.Dropped != 0 {
		t.Fatalf("Stats = %+v", st)
	}
	if !s.Put(Record{Key: "fits", Value: make([]byte, 50)}) {
		t.Fatal("Put of a record within MaxBytes refused")
	}
}

func TestQueueFull(t *testing.T) {
	s := openTest(t, Options{Now: newClock().Now, QueueSize: 2})
	if !s.Put(Record{Key: "a", Value: []byte("a1")}) || !s.Put(Record{Key: "b", Value: []byte("b")}) {
		t.Fatal("Put refused below QueueSize")
	}
	if s.Put(Record{Key: "c", Value: []byte("c")}) {
		t.Fatal("Put accepted with a full queue")
	}
	// Replacing a queued key does not need room.
	if !s.Put(Record{Key: "a", Value: []byte("a2")}) {
		t.Fatal("coalescing Put refused with a full queue")
	}
	if st := s.Stats(); st.Dropped != 1 || st.Pending != 2 {
		t.Fatalf("Stats = %+v", st)
	}
	mustFlush(t, s)
	mustMissing(t, s, "c")
	if got := mustGet(t, s, "a"); string(got.Value) != "a2" {
		t.Fatalf("a = %q", got.Value)
	}
	mustGet(t, s, "b")
	if !s.Put(Record{Key: "c", Value: []byte("c")}) {
		t.Fatal("Put refused after the queue drained")
	}
	mustFlush(t, s)
	if st := s.Stats(); st.Count != 3 || st.Dropped != 1 || st.Written != 3 {
		t.Fatalf("Stats = %+v", st)
	}
	checkConsistent(t, s)
}

func TestQueueBytesBound(t *testing.T) {
	s := openTest(t, Options{Now: newClock().Now, QueueBytes: 10 << 10})
	big := bytes.Repeat([]byte("x"), 4<<10)
	if !s.Put(Record{Key: "a", Value: big}) || !s.Put(Record{Key: "b", Value: big}) {
		t.Fatal("Put refused below QueueBytes")
	}
	if s.Put(Record{Key: "c", Value: big}) {
		t.Fatal("Put accepted past QueueBytes")
	}
	// Replacing a queued record counts only the difference.
	if !s.Put(Record{Key: "a", Value: big[:3<<10]}) {
		t.Fatal("smaller replacement refused")
	}
	if st := s.Stats(); st.Dropped != 1 || st.Pending != 2 {
		t.Fatalf("Stats = %+v", st)
	}
	mustFlush(t, s)
	mustMissing(t, s, "c")
	// The committed bytes leave the queue; one record larger than the
	// bound is still accepted into an empty queue.
	if !s.Put(Record{Key: "c", Value: big}) || !s.Put(Record{Key: "d", Value: big}) {
		t.Fatal("Put refused after the queue drained")
	}
	mustFlush(t, s)
	if !s.Put(Record{Key: "huge", Value: bytes.Repeat(big, 4)}) {
		t.Fatal("a record larger than QueueBytes refused by an empty queue")
	}
	if err := s.Delete("huge"); err != nil {
		t.Fatal(err)
	}
	if !s.Put(Record{Key: "e", Value: big}) || !s.Put(Record{Key: "f", Value: big}) {
		t.Fatal("Delete of a queued record did not free its bytes")
	}
	mustFlush(t, s)
	if st := s.Stats(); st.Count != 6 || st.Dropped != 1 {
		t.Fatalf("Stats = %+v", st)
	}
	checkConsistent(t, s)
}

func TestReopenKeepsState(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "snapshots.db")
	opts := Options{Path: path, Now: clk.Now, OpenTimeout: 100 * time.Millisecond, FlushInterval: time.Hour, EvictInterval: time.Hour}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	stored := Record{Key: "https://h/a", StoredAt: clk.Now(), Tags: []string{"entry:1"}, Value: []byte("a")}
	s.Put(stored)
	mustFlush(t, s)
	queued := Record{Key: "https://h/b", StoredAt: clk.Now(), Tags: []string{"entry:2"}, Value: []byte("bb")}
	s.Put(queued) // left for Close to flush
	purgeAt := clk.Now().Add(time.Minute)
	if err := s.MarkPurged([]string{"entry:1"}, purgeAt); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkPurgedPrefixes([]string{"https://h/b"}, purgeAt); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSnapshotOnlyOverride("shop", true); err != nil {
		t.Fatal(err)
	}
	before := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if s.Put(Record{Key: "late"}) {
		t.Fatal("Put accepted after Close")
	}
	if _, _, err := s.Get("https://h/a"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}

	s2 := openTest(t, opts)
	for _, want := range []Record{stored, queued} {
		if got := mustGet(t, s2, want.Key); !equalRecords(got, want) {
			t.Fatalf("after reopen %+v, want %+v", got, want)
		}
		if !s2.Stale(want) {
			t.Fatalf("%s not stale after reopen", want.Key)
		}
	}
	after := s2.Stats()
	if after.Count != 2 || after.Bytes != encodedLen(stored)+encodedLen(queued) || after.PurgeMarks != 2 {
		t.Fatalf("after reopen: %+v (before close: %+v)", after, before)
	}
	if got := s2.SnapshotOnlyOverrides(); len(got) != 1 || !got["shop"] {
		t.Fatalf("overrides after reopen = %v", got)
	}
	checkConsistent(t, s2)
}

func TestOpenSamePathTwice(t *testing.T) {
	s := openTest(t, Options{})
	_, err := Open(Options{Path: s.Path(), OpenTimeout: 50 * time.Millisecond})
	if err == nil {
		t.Fatal("second Open succeeded")
	}
	t.Logf("second Open: %v", err)
	if !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), s.Path()) || !errors.Is(err, bolt.ErrTimeout) {
		t.Fatalf("error = %v", err)
	}
	// The first store is unaffected.
	s.Put(Record{Key: "k", Value: []byte("v")})
	mustFlush(t, s)
}

func TestOpenUnwritableDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	if f, err := os.Create(filepath.Join(dir, "probe")); err == nil {
		f.Close()
		t.Skip("directory mode 0500 is still writable (running as root?)")
	}
	for _, path := range []string{filepath.Join(dir, "snapshots.db"), filepath.Join(dir, "sub", "snapshots.db")} {
		_, err := Open(Options{Path: path})
		if err == nil {
			t.Fatalf("Open(%s) succeeded", path)
		}
		t.Logf("Open: %v", err)
		if !strings.Contains(err.Error(), path) || !errors.Is(err, os.ErrPermission) {
			t.Fatalf("Open(%s) error = %v", path, err)
		}
	}
}

func TestOpenParentIsAFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(file, "snapshots.db")
	_, err := Open(Options{Path: path})
	t.Logf("Open: %v", err)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open error = %v", err)
	}
}

func TestOpenGarbageFile(t *testing.T) {
	big := make([]byte, 64<<10)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{
		"text":   []byte("this is not a bbolt file\n"),
		"random": big,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "snapshots.db")
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(Options{Path: path})
			if err == nil {
				t.Fatal("Open succeeded")
			}
			t.Logf("Open: %v", err)
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not a bbolt database") {
				t.Fatalf("error = %v", err)
			}
			// The file is left alone.
			if got, _ := os.ReadFile(path); !bytes.Equal(got, content) {
				t.Fatal("Open modified the garbage file")
			}
		})
	}
}

func TestOptionsValidation(t *testing.T) {
	if _, err := Open(Options{}); err == nil {
		t.Fatal("Open without Path succeeded")
	}
	if _, err := Open(Options{Path: filepath.Join(t.TempDir(), "x.db"), MaxBytes: -1}); err == nil {
		t.Fatal("Open with negative MaxBytes succeeded")
	}
}

func TestCorruptRecords(t *testing.T) {
	clk := newClock()
	s := openTest(t, Options{Now: clk.Now, MaxAge: time.Hour})
	good := encodeRecord(clk.Now().UnixNano(), []string{"t1", "t2"}, []byte("value"))
	bad := map[string][]byte{
		"garbage":      []byte("garbage!"),
		"empty":        {},
		"version":      append([]byte{9}, good[1:]...),
		"truncated":    good[:len(good)-2],
		"trailing":     append(slices.Clone(good), 0),
		"header-only":  good[:headerSize],
		"huge-tags":    append(slices.Clone(good[:headerSize]), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"huge-tag-len": append(slices.Clone(good[:headerSize]), 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 'x'),
		"bad-varint":   append(slices.Clone(good[:headerSize]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
	}
	// Overwrite a real, indexed record with garbage too.
	s.Put(Record{Key: "indexed", Value: []byte("ok")})
	mustFlush(t, s)
	bad["indexed"] = []byte("xx")

	err := s.DB().Update(func(tx *bolt.Tx) error {
		for k, v := range bad {
			if err := tx.Bucket(bucketSnapshots).Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k := range bad {
		_, found, err := s.Get(k)
		t.Logf("Get(%q): %v", k, err)
		if err == nil || !found || !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), k) {
			t.Errorf("Get(%q) = found %v, err %v; want a corrupt-record error naming the key", k, found, err)
		}
	}

	// Writing over a corrupt record, evicting and deleting do not crash.
	s.Put(Record{Key: "garbage", Value: []byte("fixed")})
	mustFlush(t, s)
	if got := mustGet(t, s, "garbage"); string(got.Value) != "fixed" {
		t.Fatalf("rewritten = %+v", got)
	}
	clk.Add(2 * time.Hour)
	if _, err := s.Evict(); err != nil {
		t.Fatalf("Evict: %v", err)
	}
	mustMissing(t, s, "indexed") // unreadable but indexed: evicted by age
	mustMissing(t, s, "garbage") // rewritten, then evicted by age
	for k := range bad {
		if err := s.Delete(k); err != nil {
			t.Fatalf("Delete(%q): %v", k, err)
		}
	}
	if st := s.Stats(); st.Count != 0 || st.Bytes != 0 {
		t.Fatalf("after cleanup: %+v", st)
	}
	checkConsistent(t, s)
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(1, nil, nil))
	f.Add(encodeRecord(1<<60, []string{"url:https://h/p", "host:h"}, []byte("value")))
	f.Add([]byte{recordVersion, 0, 0, 0, 0, 0, 0, 0, 0, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeRecord("k", b)
		if err != nil {
			return
		}
		again, err := decodeRecord("k", encodeRecord(rec.StoredAt.UnixNano(), rec.Tags, rec.Value))
		if err != nil || !equalRecords(rec, again) {
			t.Fatalf("round trip: %+v / %+v, %v", rec, again, err)
		}
	})
}

func TestOverrides(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snapshots.db")
	s := openTest(t, Options{Path: path})
	if len(s.SnapshotOnlyOverrides()) != 0 || s.SnapshotOnly("shop") {
		t.Fatal("overrides on in a new store")
	}
	for _, u := range []string{"", "shop"} {
		if err := s.SetSnapshotOnlyOverride(u, true); err != nil {
			t.Fatal(err)
		}
	}
	got := s.SnapshotOnlyOverrides()
	if len(got) != 2 || !got[""] || !got["shop"] {
		t.Fatalf("overrides = %v", got)
	}
	got["crm"] = true // a copy
	if !s.SnapshotOnly("crm") {
		t.Fatal(`"" override does not apply to every upstream`)
	}
	if err := s.SetSnapshotOnlyOverride("", false); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSnapshotOnlyOverride("never-set", false); err != nil {
		t.Fatal(err)
	}
	if s.SnapshotOnly("crm") || !s.SnapshotOnly("shop") || len(s.SnapshotOnlyOverrides()) != 1 {
		t.Fatalf("after clearing all: %v", s.SnapshotOnlyOverrides())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openTest(t, Options{Path: path})
	if got := s2.SnapshotOnlyOverrides(); len(got) != 1 || !got["shop"] {
		t.Fatalf("after reopen: %v", got)
	}
}

// TestBackgroundWriter checks that the writer goroutine commits without an
// explicit Flush. It spins (yielding) rather than sleeping.
func TestBackgroundWriter(t *testing.T) {
	s := openTest(t, Options{FlushInterval: time.Millisecond})
	s.Put(Record{Key: "k", Value: []byte("v")})
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Written == 0 {
		if time.Now().After(deadline) {
			t.Fatal("writer did not flush")
		}
		runtime.Gosched()
	}
	checkConsistent(t, s)
}

func TestConcurrentUse(t *testing.T) {
	clk := newClock()
	s := openTest(t, Options{Now: clk.Now, FlushInterval: time.Millisecond, MaxBytes: 64 << 10, MaxAge: time.Hour, QueueSize: 64})
	var wg sync.WaitGroup
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				k := keys[(i+w)%len(keys)]
				s.Put(Record{Key: k, Tags: []string{"t:" + k}, Value: bytes.Repeat([]byte{byte(i)}, 1000+i)})
				if rec, ok, err := s.Get(k); err != nil {
					t.Errorf("Get: %v", err)
					return
				} else if ok {
					s.Stale(rec)
				}
				if i%50 == 0 {
					if err := s.MarkPurged([]string{"t:" + k}, clk.Now()); err != nil {
						t.Error(err)
					}
					_ = s.Delete(keys[i%len(keys)])
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 20 {
			if err := s.Flush(); err != nil {
				t.Error(err)
			}
			if _, err := s.Evict(); err != nil {
				t.Error(err)
			}
			clk.Add(time.Minute)
			_ = s.Stats()
		}
	}()
	wg.Wait()
	mustFlush(t, s)
	checkConsistent(t, s)
	if st := s.Stats(); st.Bytes > 64<<10 {
		t.Fatalf("Bytes %d over MaxBytes", st.Bytes)
	}
}
