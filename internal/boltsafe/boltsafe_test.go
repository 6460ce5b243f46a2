package boltsafe

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// A panic raised in bbolt's code is the file's; one raised by the code
// around bbolt's calls (inside a transaction too) is not.
func TestStorageTellsBboltsPanicsFromOthers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	db := damagedDB(t, path)
	cases := []struct {
		name    string
		fn      func() error
		storage bool
	}{
		{"bbolt's own", func() error {
			// The bucket's root page is junk: bbolt panics reading it.
			return db.View(func(tx *bolt.Tx) error { _ = tx.Bucket([]byte("b")).Get([]byte("k")); return nil })
		}, true},
		{"in a transaction", func() error {
			return db.Update(func(tx *bolt.Tx) error {
				var m map[string]int
				m["x"] = 1 // nil map: the caller's bug
				return nil
			})
		}, false},
		{"outside bbolt", func() error {
			var p *struct{ n int }
			return errors.New(string(rune(p.n)))
		}, false},
	}
	for _, c := range cases {
		err := Run(c.fn)
		var p *PanicError
		if !errors.As(err, &p) {
			t.Fatalf("%s: %v, want a PanicError", c.name, err)
		}
		if p.Storage != c.storage {
			t.Fatalf("%s: Storage = %v, want %v (panic %v)", c.name, p.Storage, c.storage, p.Value)
		}
	}
}

// A panic Run caught in one goroutine and raised again in another (as
// cluster.Node.TryLead does for work it runs under a lease) keeps its
// classification: the code raising it again is not bbolt's.
func TestStorageKeepsAPanicRaisedAgain(t *testing.T) {
	db := damagedDB(t, filepath.Join(t.TempDir(), "x.db"))
	for _, storage := range []bool{true, false} {
		caught := make(chan error)
		go func() {
			caught <- Run(func() error {
				if !storage {
					var m map[string]int
					m["x"] = 1
				}
				return db.View(func(tx *bolt.Tx) error { _ = tx.Bucket([]byte("b")).Get([]byte("k")); return nil })
			})
		}()
		first := <-caught
		err := Run(func() error { panic(first) })
		var p *PanicError
		if !errors.As(err, &p) || p.Storage != storage || error(p) != first {
			t.Fatalf("raised again: %v (%+v), want the first goroutine's PanicError with Storage %v", err, p, storage)
		}
	}
}

// damagedDB returns a bbolt file whose bucket "b" has its root page
// overwritten with junk.
func damagedDB(t *testing.T, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	var root uint64
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("b"))
		if err != nil {
			return err
		}
		for i := range 200 {
			if err := b.Put(fmt.Appendf(nil, "k%03d", i), make([]byte, 100)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.View(func(tx *bolt.Tx) error { root = uint64(tx.Bucket([]byte("b")).Root()); return nil }); err != nil {
		t.Fatal(err)
	}
	pageSize := db.Info().PageSize
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, pageSize)
	for i := range junk {
		junk[i] = 0xA5
	}
	if _, err := f.WriteAt(junk, int64(root)*int64(pageSize)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}
