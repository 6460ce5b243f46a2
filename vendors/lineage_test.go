package vendors

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func TestLineageRecordsCausesNewestFirst(t *testing.T) {
	rs, err := NewRecords(openDB(t, filepath.Join(t.TempDir(), "craftedge.db")))
	if err != nil {
		t.Fatal(err)
	}
	if ch, _, err := rs.PutCaused(rec("1", 1, t0), Cause{Source: SourceSync, Job: "j1"}); err != nil || !ch {
		t.Fatalf("first put: %v %v", ch, err)
	}
	// Unchanged: no lineage entry.
	if ch, _, _ := rs.PutCaused(rec("1", 1, t0), Cause{Source: SourceSync, Job: "j2"}); ch {
		t.Fatal("same version reported changed")
	}
	ch, prev, err := rs.PutCaused(rec("1", 2, t0.Add(time.Minute)), Cause{Source: SourceWebhook, Job: "j3", Delivery: "msg_1"})
	if err != nil || !ch || prev == nil || prev.Version != "1" {
		t.Fatalf("webhook put: changed %v prev %+v err %v", ch, prev, err)
	}
	// Put without a cause is still recorded (unknown source).
	if _, err := rs.Put(rec("1", 3, t0.Add(2*time.Minute))); err != nil {
		t.Fatal(err)
	}
	ch, stored, err := rs.MarkDeletedCaused("commerce", "products", "1", t0.Add(3*time.Minute), Cause{Source: SourceWebhook, Job: "j4", Delivery: "msg_2"})
	if err != nil || !ch || !stored.Deleted || stored.Tags[0] != "shop:product:1" {
		t.Fatalf("mark deleted: %v %+v %v", ch, stored, err)
	}
	// A record whose id extends another's has its own history.
	_, _ = rs.Put(rec("10", 1, t0))

	got, err := rs.Lineage("commerce", "products", "1")
	if err != nil {
		t.Fatal(err)
	}
	var summary []string
	for _, c := range got {
		summary = append(summary, fmt.Sprintf("%s/%s/%s:%s>%s:%v", c.Source, c.Job, c.Delivery, c.PreviousVersion, c.Version, c.Deleted))
	}
	want := "[webhook/j4/msg_2:3>3:true //:2>3:false webhook/j3/msg_1:1>2:false sync/j1/:>1:false]"
	if fmt.Sprint(summary) != want {
		t.Fatalf("lineage = %v\nwant      %v", summary, want)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Seq >= got[i-1].Seq || got[i].At.IsZero() {
			t.Fatalf("lineage not newest first or without time: %+v", got)
		}
	}
	if l, _ := rs.Lineage("commerce", "products", "10"); len(l) != 1 {
		t.Fatalf("lineage of id 10 = %+v", l)
	}
	if l, err := rs.Lineage("commerce", "products", "nope"); err != nil || len(l) != 0 {
		t.Fatalf("lineage of an unknown id = %v, %v", l, err)
	}
}

func TestLineageBounded(t *testing.T) {
	rs, err := NewRecords(openDB(t, filepath.Join(t.TempDir(), "craftedge.db")))
	if err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= MaxLineage+7; v++ {
		if _, _, err := rs.PutCaused(rec("1", v, t0.Add(time.Duration(v)*time.Second)), Cause{Source: SourceSync}); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := rs.Lineage("commerce", "products", "1")
	if len(got) != MaxLineage || got[0].Version != fmt.Sprint(MaxLineage+7) || got[len(got)-1].Version != "8" {
		t.Fatalf("lineage: %d entries, newest %s, oldest %s", len(got), got[0].Version, got[len(got)-1].Version)
	}
}
