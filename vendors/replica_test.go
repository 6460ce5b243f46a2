package vendors

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// TestRecordsReplicaBetweenTwoStores: a change committed on one node's
// store reaches OnChange, travels sealed, and is applied by another
// node's store with Put's rule; the applied change is reported with
// SourceCluster (which a publisher skips), and a stale one changes nothing.
func TestRecordsReplicaBetweenTwoStores(t *testing.T) {
	ring := testRing(t, "", "k1")
	open := func() *Records {
		rs, err := NewRecords(openDB(t, ""))
		if err != nil {
			t.Fatal(err)
		}
		if err := rs.UseSealing(ring, priceSensitive); err != nil {
			t.Fatal(err)
		}
		return rs
	}
	a, b := open(), open()
	var mu sync.Mutex
	var fromA [][]byte
	var causesB []string
	a.OnChange(func(r Record, c Cause) {
		data, err := a.MarshalReplica(r)
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		fromA = append(fromA, data)
		mu.Unlock()
	})
	b.OnChange(func(r Record, c Cause) {
		mu.Lock()
		causesB = append(causesB, c.Source+":"+r.Version)
		mu.Unlock()
	})

	r1 := rec("p1", 1, t0)
	r1.Fields["title"] = "Secret-Title-31337"
	if _, err := a.Put(r1); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Put(r1); err != nil { // unchanged: not reported
		t.Fatal(err)
	}
	r2 := rec("p1", 2, t0.Add(time.Minute))
	r2.Fields["title"] = "Secret-Title-31337"
	if _, _, err := a.PutCaused(r2, Cause{Source: SourceSync, Job: "j1"}); err != nil {
		t.Fatal(err)
	}
	if len(fromA) != 2 {
		t.Fatalf("a reported %d changes, want 2", len(fromA))
	}
	if bytes.Contains(fromA[1], []byte("Secret-Title-31337")) {
		t.Fatalf("a sensitive field travels in clear: %s", fromA[1])
	}
	// b gets the two versions in the wrong order: the older one is stale.
	if _, changed, _, err := b.ApplyReplica(fromA[1]); err != nil || !changed {
		t.Fatalf("apply v2: %v %v", changed, err)
	}
	if _, changed, _, err := b.ApplyReplica(fromA[0]); err != nil || changed {
		t.Fatalf("apply stale v1: %v %v", changed, err)
	}
	got, err := b.Get("commerce", "products", "p1")
	if err != nil || got.Version != "2" || got.Fields["title"] != "Secret-Title-31337" {
		t.Fatalf("b serves %+v, %v", got, err)
	}
	if len(causesB) != 1 || causesB[0] != SourceCluster+":2" {
		t.Fatalf("b's changes: %v", causesB)
	}
	lin, err := b.Lineage("commerce", "products", "p1")
	if err != nil || len(lin) != 1 || lin[0].Source != SourceCluster {
		t.Fatalf("b's lineage %+v, %v", lin, err)
	}
	if _, _, _, err := b.ApplyReplica([]byte("not json")); err == nil {
		t.Fatal("garbage applied")
	}
	a.OnChange(nil)
	if _, err := a.Put(rec("p2", 1, t0)); err != nil || len(fromA) != 2 {
		t.Fatalf("OnChange(nil) still reports: %d, %v", len(fromA), err)
	}
}
