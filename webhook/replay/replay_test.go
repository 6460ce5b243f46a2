package replay

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openStore(t *testing.T) (*Store, *bolt.DB) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "replay.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	s, err := Open(db)
	if err != nil {
		t.Fatal(err)
	}
	return s, db
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestClaimOnceUntilExpiry(t *testing.T) {
	s, _ := openStore(t)
	ok, err := s.Claim("shop", "msg_1", t0, time.Hour)
	if err != nil || !ok {
		t.Fatalf("first claim = %v, %v; want true", ok, err)
	}
	ok, err = s.Claim("shop", "msg_1", t0.Add(59*time.Minute), time.Hour)
	if err != nil || ok {
		t.Fatalf("replay within ttl = %v, %v; want false", ok, err)
	}
	// Same id from another source is another delivery.
	if ok, _ := s.Claim("crm", "msg_1", t0, time.Hour); !ok {
		t.Fatal("the same id from another source was refused")
	}
	if seen, _ := s.Seen("shop", "msg_1", t0.Add(30*time.Minute)); !seen {
		t.Fatal("Seen = false within ttl")
	}
	// Expired: claimable again, with a new expiry.
	ok, err = s.Claim("shop", "msg_1", t0.Add(time.Hour), time.Hour)
	if err != nil || !ok {
		t.Fatalf("claim after expiry = %v, %v; want true", ok, err)
	}
	if ok, _ := s.Claim("shop", "msg_1", t0.Add(90*time.Minute), time.Hour); ok {
		t.Fatal("second claim's ttl not honoured")
	}
}

func TestReleaseAndSweep(t *testing.T) {
	s, _ := openStore(t)
	for i, id := range []string{"a", "b", "c"} {
		if _, err := s.Claim("shop", id, t0.Add(time.Duration(i)*time.Minute), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Release("shop", "b"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Claim("shop", "b", t0, time.Hour); !ok {
		t.Fatal("a released delivery could not be claimed again")
	}
	// a expires at t0+1h, b (re-claimed) at t0+1h, c at t0+1h2m.
	n, err := s.Sweep(t0.Add(time.Hour+time.Minute), 0)
	if err != nil || n != 2 {
		t.Fatalf("sweep = %d, %v; want 2", n, err)
	}
	if l, _ := s.Len(); l != 1 {
		t.Fatalf("Len after sweep = %d, want 1", l)
	}
	if seen, _ := s.Seen("shop", "c", t0.Add(time.Hour+time.Minute)); !seen {
		t.Fatal("sweep removed a live entry")
	}
	// Bounded sweep.
	for i := range 5 {
		_, _ = s.Claim("bulk", strings.Repeat("x", i+1), t0, time.Minute)
	}
	if n, _ := s.Sweep(t0.Add(2*time.Minute), 3); n != 3 {
		t.Fatalf("bounded sweep = %d, want 3", n)
	}
	if n, _ := s.Sweep(t0.Add(2*time.Minute), 0); n != 2 {
		t.Fatalf("second sweep = %d, want 2", n)
	}
}

// A re-claimed entry keeps its new expiry when the old index entry is swept.
func TestSweepKeepsReclaimed(t *testing.T) {
	s, _ := openStore(t)
	_, _ = s.Claim("shop", "a", t0, time.Minute)
	_, _ = s.Claim("shop", "a", t0.Add(2*time.Minute), time.Hour) // expired, claimed again
	if n, _ := s.Sweep(t0.Add(3*time.Minute), 0); n != 0 {
		t.Fatalf("sweep removed %d entries, want 0", n)
	}
	if seen, _ := s.Seen("shop", "a", t0.Add(3*time.Minute)); !seen {
		t.Fatal("re-claimed entry lost")
	}
}

func TestInvalidKeys(t *testing.T) {
	s, _ := openStore(t)
	for _, tc := range [][2]string{{"", "x"}, {"shop", ""}, {"sh\x00op", "x"}, {"shop", "a\x00b"}, {"shop", strings.Repeat("x", 2000)}} {
		if _, err := s.Claim(tc[0], tc[1], t0, time.Hour); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("Claim(%q, %q) error = %v, want ErrInvalidKey", tc[0], tc[1], err)
		}
	}
	if _, err := s.Claim("shop", "x", t0, 0); err == nil {
		t.Fatal("zero ttl accepted")
	}
}

// Claims survive reopening the file.
func TestDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replay.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := Open(db)
	_, _ = s.Claim("shop", "msg", t0, time.Hour)
	_ = db.Close()
	db, err = bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, _ = Open(db)
	if ok, _ := s.Claim("shop", "msg", t0.Add(time.Minute), time.Hour); ok {
		t.Fatal("claim lost across reopen")
	}
}
