package snapshot

import (
	"fmt"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Newest visits committed snapshots most recently stored first, across
// read chunks, skips (and reports) a record that does not decode, and
// stops when fn says so.
func TestNewestVisitsNewestFirst(t *testing.T) {
	clk := newClock()
	s := openTest(t, Options{Now: clk.Now})
	const n = 2*newestChunk + 7
	for i := range n {
		clk.Add(time.Second)
		s.Put(Record{Key: fmt.Sprintf("k%04d", i), Tags: []string{"t"}, Value: []byte{byte(i)}})
	}
	mustFlush(t, s)
	// Damage one record behind the store's back.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSnapshots).Put([]byte("k0100"), []byte{recordVersion, 1, 2})
	}); err != nil {
		t.Fatal(err)
	}
	var got []string
	var bad []string
	err := s.Newest(func(r Record) bool {
		got = append(got, r.Key)
		return true
	}, func(key string, err error) { bad = append(bad, key) })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n-1 || got[0] != fmt.Sprintf("k%04d", n-1) || got[len(got)-1] != "k0000" {
		t.Fatalf("visited %d records, first %q, last %q; want %d newest first", len(got), got[0], got[len(got)-1], n-1)
	}
	for i := 1; i < len(got); i++ {
		if got[i] >= got[i-1] {
			t.Fatalf("record %d (%s) after %s: not newest first", i, got[i], got[i-1])
		}
	}
	if len(bad) != 1 || bad[0] != "k0100" {
		t.Fatalf("bad records reported: %v, want [k0100]", bad)
	}
	got = got[:0]
	_ = s.Newest(func(r Record) bool { got = append(got, r.Key); return len(got) < 3 }, nil)
	if len(got) != 3 {
		t.Fatalf("fn returning false after 3 records: visited %d", len(got))
	}
}

// NewestKeys visits the keys of committed snapshots most recently stored
// first, across read chunks, without reading records (a damaged one is
// visited too), and stops when fn says so.
func TestNewestKeysVisitsNewestFirst(t *testing.T) {
	clk := newClock()
	s := openTest(t, Options{Now: clk.Now})
	const n = keysChunk + 9
	for i := range n {
		clk.Add(time.Second)
		if !s.Put(Record{Key: fmt.Sprintf("k%05d", i), Value: []byte{byte(i)}}) {
			mustFlush(t, s) // the queue is full
			s.Put(Record{Key: fmt.Sprintf("k%05d", i), Value: []byte{byte(i)}})
		}
	}
	mustFlush(t, s)
	s.Put(Record{Key: "queued", Value: []byte{1}}) // not committed: not visited
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSnapshots).Put([]byte("k00100"), []byte{recordVersion, 1, 2})
	}); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := s.NewestKeys(func(k string) bool { got = append(got, k); return true }); err != nil {
		t.Fatal(err)
	}
	if len(got) != n || got[0] != fmt.Sprintf("k%05d", n-1) || got[n-1] != "k00000" {
		t.Fatalf("visited %d keys, first %q, last %q; want %d newest first", len(got), got[0], got[len(got)-1], n)
	}
	for i := 1; i < len(got); i++ {
		if got[i] >= got[i-1] {
			t.Fatalf("key %d (%s) after %s: not newest first", i, got[i], got[i-1])
		}
	}
	got = got[:0]
	_ = s.NewestKeys(func(k string) bool { got = append(got, k); return len(got) < 3 })
	if len(got) != 3 {
		t.Fatalf("fn returning false after 3 keys: visited %d", len(got))
	}
}
