package vendors

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func rec(id string, version int, updated time.Time) Record {
	return Record{Vendor: "commerce", Resource: "products", ID: id, Version: fmt.Sprint(version),
		UpdatedAt: updated, Fields: map[string]any{"title": "P" + id, "price": json.Number("12.50")},
		Tags: []string{"shop:product:" + id}}
}

func TestRecordsPutGetListOrdering(t *testing.T) {
	path := filepath.Join(t.TempDir(), "craftedge.db")
	db := openDB(t, path)
	rs, err := NewRecords(db)
	if err != nil {
		t.Fatal(err)
	}
	// Same timestamp for b and a: ordered by id within it.
	puts := []Record{rec("c", 1, t0.Add(3*time.Minute)), rec("b", 1, t0.Add(time.Minute)),
		rec("a", 1, t0.Add(time.Minute)), rec("d", 1, t0)}
	for _, r := range puts {
		if changed, err := rs.Put(r); err != nil || !changed {
			t.Fatalf("Put %s: %v %v", r.ID, changed, err)
		}
	}
	// Another resource and vendor do not show up.
	other := rec("zz", 1, t0)
	other.Resource = "contacts"
	rs.Put(other)
	other.Vendor, other.Resource = "crm", "products"
	rs.Put(other)

	ids := func(p Page) (out []string) {
		for _, r := range p.Records {
			out = append(out, r.ID)
		}
		return out
	}
	p1, err := rs.List("commerce", "products", time.Time{}, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ids(p1)) != "[d a b]" || !p1.HasMore || p1.NextPage != 2 {
		t.Errorf("page 1: %v more %v next %d", ids(p1), p1.HasMore, p1.NextPage)
	}
	p2, _ := rs.List("commerce", "products", time.Time{}, 2, 3)
	if fmt.Sprint(ids(p2)) != "[c]" || p2.HasMore {
		t.Errorf("page 2: %v more %v", ids(p2), p2.HasMore)
	}
	since, _ := rs.List("commerce", "products", t0.Add(time.Minute), 1, 10)
	if fmt.Sprint(ids(since)) != "[a b c]" {
		t.Errorf("since (inclusive): %v", ids(since))
	}
	if _, err := rs.List("commerce", "products", time.Time{}, 0, 10); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("page 0: %v", err)
	}

	// Same version: no-op. Older update: stale, ignored. Newer: stored and re-indexed.
	if changed, _ := rs.Put(rec("a", 1, t0.Add(time.Minute))); changed {
		t.Errorf("same version reported changed")
	}
	if changed, _ := rs.Put(rec("a", 2, t0.Add(-time.Hour))); changed {
		t.Errorf("stale version reported changed")
	}
	if changed, _ := rs.Put(rec("a", 3, t0.Add(5*time.Minute))); !changed {
		t.Errorf("new version not stored")
	}
	all, _ := rs.List("commerce", "products", time.Time{}, 1, 10)
	if fmt.Sprint(ids(all)) != "[d b c a]" {
		t.Errorf("after update: %v", ids(all))
	}
	got, err := rs.Get("commerce", "products", "a")
	if err != nil || got.Version != "3" || got.Fields["price"] != json.Number("12.50") || got.SyncedAt.IsZero() {
		t.Errorf("Get: %+v %v", got, err)
	}
	if _, err := rs.Get("commerce", "products", "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing: %v", err)
	}

	// Deletion keeps the last good fields and moves the record to the end.
	if changed, err := rs.MarkDeleted("commerce", "products", "d", t0.Add(time.Hour)); err != nil || !changed {
		t.Fatalf("MarkDeleted: %v %v", changed, err)
	}
	if changed, _ := rs.MarkDeleted("commerce", "products", "d", t0.Add(2*time.Hour)); changed {
		t.Errorf("second MarkDeleted changed")
	}
	d, _ := rs.Get("commerce", "products", "d")
	if !d.Deleted || d.Fields["title"] != "Pd" {
		t.Errorf("deleted: %+v", d)
	}
	all, _ = rs.List("commerce", "products", time.Time{}, 1, 10)
	if fmt.Sprint(ids(all)) != "[b c a d]" {
		t.Errorf("after delete: %v", ids(all))
	}
	// Re-created at the vendor: an older UpdatedAt still replaces a deletion.
	if changed, _ := rs.Put(rec("d", 2, t0)); !changed {
		t.Errorf("re-created record not stored")
	}

	// Cursors are durable.
	if c, _ := rs.Cursor("commerce", "products"); !c.IsZero() {
		t.Errorf("fresh cursor %v", c)
	}
	if err := rs.SetCursor("commerce", "products", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	rs2, err := NewRecords(openDB(t, path))
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := rs2.Cursor("commerce", "products"); !c.Equal(t0.Add(time.Hour)) {
		t.Errorf("cursor after reopen: %v", c)
	}
	if n, _ := rs2.List("commerce", "products", time.Time{}, 1, 10); len(n.Records) != 4 {
		t.Errorf("records after reopen: %d", len(n.Records))
	}
}

func TestRecordsPutBatchIsAtomic(t *testing.T) {
	rs, _ := NewRecords(openDB(t, ""))
	bad := rec("", 1, t0)
	if _, err := rs.PutBatch([]Record{rec("a", 1, t0), bad}); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("want ErrInvalidRequest, got %v", err)
	}
	if _, err := rs.Get("commerce", "products", "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a failed batch stored a record: %v", err)
	}
}
