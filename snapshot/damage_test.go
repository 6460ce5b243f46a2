package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// fillFile writes n snapshots of about 600 bytes to a new file and closes it.
func fillFile(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "snapshots.db")
	s, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	for i := range n {
		if !s.Put(Record{Key: fmt.Sprintf("https://h/p/%04d", i), StoredAt: at, Tags: []string{"t"},
			Value: []byte(strings.Repeat(fmt.Sprint(i), 600/len(fmt.Sprint(i))))}) {
			t.Fatal("Put refused")
		}
		if i%500 == 0 {
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// scribbleSnapshotPages writes random bytes over the pages below the root
// of the snapshots bucket.
func scribbleSnapshotPages(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	pageSize := db.Info().PageSize
	var root int64
	_ = db.View(func(tx *bolt.Tx) error { root = int64(tx.Bucket(bucketSnapshots).Root()); return nil })
	_ = db.Close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	page := make([]byte, pageSize)
	if _, err := f.ReadAt(page, root*int64(pageSize)); err != nil {
		t.Fatal(err)
	}
	if page[8]&0x01 == 0 {
		t.Fatal("snapshots root is not a branch page")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range int(binary.LittleEndian.Uint16(page[10:12])) {
		child := int64(binary.LittleEndian.Uint64(page[16+i*16+8:]))
		junk := make([]byte, pageSize)
		for j := range junk {
			junk[j] = byte(rng.Uint32())
		}
		if _, err := f.WriteAt(junk, child*int64(pageSize)); err != nil {
			t.Fatal(err)
		}
	}
}

func movedAside(t *testing.T, path string) []string {
	t.Helper()
	m, _ := filepath.Glob(path + ".damaged-*")
	return m
}

// checkDegraded checks what a damaged store does: no snapshots, purges and
// overrides in memory, a usable scratch DB, and a quiet Close.
func checkDegraded(t *testing.T, s *Store) {
	t.Helper()
	if s.Put(Record{Key: "k", Value: []byte("v")}) {
		t.Fatal("Put accepted on a damaged store")
	}
	if _, found, err := s.Get("https://h/p/0001"); found || err != nil {
		t.Fatalf("Get = %v, %v", found, err)
	}
	if err := s.MarkPurged([]string{"t"}, time.Now()); err != nil {
		t.Fatalf("MarkPurged: %v", err)
	}
	if !s.Stale(Record{Key: "x", Tags: []string{"t"}, StoredAt: time.Now().Add(-time.Hour)}) {
		t.Fatal("purge mark not kept in memory")
	}
	if err := s.SetSnapshotOnlyOverride("", true); err != nil || !s.SnapshotOnly("craft") {
		t.Fatalf("override: %v", err)
	}
	if _, err := s.Evict(); err != nil {
		t.Fatalf("Evict: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestOpenTruncatedFileMovesItAside(t *testing.T) {
	path := fillFile(t, 2000)
	fi, _ := os.Stat(path)
	if err := os.Truncate(path, fi.Size()/2/4096*4096); err != nil {
		t.Fatal(err)
	}
	var called atomic.Int32
	s, err := Open(Options{Path: path, OnDamaged: func(*DamagedError) { called.Add(1) }})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	d := s.Damaged()
	if d == nil || !strings.Contains(d.Error(), "truncated") || !strings.Contains(d.Error(), path) || called.Load() != 1 {
		t.Fatalf("Damaged = %v (OnDamaged called %d times)", d, called.Load())
	}
	if m := movedAside(t, path); len(m) != 1 || m[0] != d.MovedTo {
		t.Fatalf("moved aside: %v, error says %q", m, d.MovedTo)
	}
	// The scratch DB lets the file's other stores open.
	if err := s.DB().Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists([]byte("x")); return err }); err != nil {
		t.Fatalf("scratch DB: %v", err)
	}
	checkDegraded(t, s)
	// The next Open creates a fresh file.
	s2, err := Open(Options{Path: path})
	if err != nil || s2.Damaged() != nil {
		t.Fatalf("reopen: %v, %v", err, s2.Damaged())
	}
	_ = s2.Close()
}

func TestOpenCheckFindsScribbledPages(t *testing.T) {
	path := fillFile(t, 2000)
	scribbleSnapshotPages(t, path)
	s, err := Open(Options{Path: path})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if s.Damaged() == nil || len(movedAside(t, path)) != 1 {
		t.Fatalf("damage not found on open: %v", s.Damaged())
	}
	checkDegraded(t, s)
}

func TestScribbledPagesFoundByWriteBehind(t *testing.T) {
	path := fillFile(t, 2000)
	scribbleSnapshotPages(t, path)
	var called atomic.Int32
	s, err := Open(Options{Path: path, CheckMaxBytes: -1, OnDamaged: func(*DamagedError) { called.Add(1) }})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if s.Damaged() != nil {
		t.Fatalf("found on open with the check off: %v", s.Damaged())
	}
	if !s.Put(Record{Key: "https://h/p/0999x", Value: []byte("v")}) {
		t.Fatal("Put refused")
	}
	err = s.Flush()
	if !errors.Is(err, ErrDamaged) {
		t.Fatalf("Flush = %v, want ErrDamaged", err)
	}
	if called.Load() != 1 || len(movedAside(t, path)) != 1 {
		t.Fatalf("OnDamaged called %d times; moved: %v", called.Load(), movedAside(t, path))
	}
	if err := s.Flush(); err != nil {
		t.Fatalf("second Flush: %v", err)
	}
	checkDegraded(t, s)
}

func TestOpenNotABboltFileIsLeftAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(path, []byte(strings.Repeat("not a database\n", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Options{Path: path})
	if err == nil || !strings.Contains(err.Error(), "not a bbolt database") || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open = %v", err)
	}
	if _, err := os.Stat(path); err != nil || len(movedAside(t, path)) != 0 {
		t.Fatalf("file was moved: %v", err)
	}
}
