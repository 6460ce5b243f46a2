package vendors

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"
)

// syncHarness runs Sync against a catalog with a real bbolt file.
type syncHarness struct {
	cat    *catalog
	client *Client
	rs     *Records
	mu     sync.Mutex
	saves  []SyncState
	purged []string
}

func newSyncHarness(t *testing.T, items int) *syncHarness {
	h := &syncHarness{cat: newCatalog(t, items)}
	h.client, _ = newTestClient(t, testConfig(h.cat.URL()), nil)
	var err error
	if h.rs, err = NewRecords(openDB(t, "")); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *syncHarness) opts() SyncOptions {
	return SyncOptions{
		Save: func(s SyncState) error { h.mu.Lock(); h.saves = append(h.saves, s); h.mu.Unlock(); return nil },
		Purge: func(tags []string) error {
			h.mu.Lock()
			h.purged = append(h.purged, tags...)
			h.mu.Unlock()
			return nil
		},
	}
}

func (h *syncHarness) lastSave() SyncState { return h.saves[len(h.saves)-1] }

func (h *syncHarness) storedIDs(t *testing.T) []string {
	p, err := h.rs.List("commerce", "products", time.Time{}, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range p.Records {
		ids = append(ids, r.ID)
	}
	sort.Strings(ids)
	return ids
}

func TestSyncBackfillThenDelta(t *testing.T) {
	h := newSyncHarness(t, 5) // 3 pages of 2
	var st SyncState
	if err := Sync(context.Background(), h.client, h.rs, "products", &st, h.opts()); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(h.storedIDs(t)); got != "[1 2 3 4 5]" {
		t.Errorf("stored %s", got)
	}
	if got := fmt.Sprint(h.cat.listedPages()); got != "[1 2 3]" {
		t.Errorf("pages %s", got)
	}
	if len(h.saves) != 3 || h.saves[0].Page != 2 || h.saves[1].Page != 3 || !h.saves[0].Backfill {
		t.Errorf("saves %+v", h.saves)
	}
	cursor, _ := h.rs.Cursor("commerce", "products")
	if !cursor.Equal(t0.Add(5*time.Minute)) || st.InProgress() || !st.LastCursor.Equal(cursor) {
		t.Errorf("cursor %v, state %+v", cursor, st)
	}
	// Per page: each changed record's tag, and the shared tag once.
	if got := fmt.Sprint(h.purged); got != "[shop:product:1 shop:product:2 shop:products shop:product:3 shop:product:4 shop:products shop:product:5 shop:products]" {
		t.Errorf("purged %s", got)
	}

	// Delta: one record changes; the pass lists from the cursor (minus the
	// 1s overlap), stores and purges only it, and advances the cursor.
	h.cat.update("2", t0.Add(10*time.Minute), "Renamed")
	h.purged, h.saves = nil, nil
	h.cat.pages = nil
	if err := Sync(context.Background(), h.client, h.rs, "products", &st, h.opts()); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(h.purged); got != "[shop:product:2 shop:products]" {
		t.Errorf("delta purged %s", got)
	}
	r2, _ := h.rs.Get("commerce", "products", "2")
	if r2.Fields["title"] != "Renamed" || r2.Version != "2" {
		t.Errorf("record 2: %+v", r2)
	}
	if cursor, _ := h.rs.Cursor("commerce", "products"); !cursor.Equal(t0.Add(10 * time.Minute)) {
		t.Errorf("delta cursor %v", cursor)
	}
	if st.LastCompleted.IsZero() || len(h.saves) != 1 {
		t.Errorf("delta saves %+v", h.saves)
	}
}

func TestSyncResumesAfterInterruption(t *testing.T) {
	h := newSyncHarness(t, 6) // pages 1-3
	failPage3 := true
	h.cat.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if failPage3 && r.URL.Query().Get("page") == "3" {
			http.Error(w, "down", http.StatusBadGateway)
			return true
		}
		return false
	}
	var st SyncState
	err := Sync(context.Background(), h.client, h.rs, "products", &st, h.opts())
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 502 {
		t.Fatalf("want the 502, got %v", err)
	}
	saved := h.lastSave()
	if saved.Page != 3 || saved.Pages != 2 || !saved.InProgress() {
		t.Fatalf("saved state %+v", saved)
	}
	if c, _ := h.rs.Cursor("commerce", "products"); !c.IsZero() {
		t.Errorf("cursor advanced by an unfinished pass: %v", c)
	}

	// "Restart": a fresh state value loaded from what Save received.
	failPage3 = false
	h.cat.pages = nil
	h.purged = nil
	resumed := saved
	if err := Sync(context.Background(), h.client, h.rs, "products", &resumed, h.opts()); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(h.cat.listedPages()); got != "[3]" {
		t.Errorf("resumed pass fetched pages %s, want [3]", got)
	}
	if got := fmt.Sprint(h.storedIDs(t)); got != "[1 2 3 4 5 6]" {
		t.Errorf("stored %s", got)
	}
	if c, _ := h.rs.Cursor("commerce", "products"); !c.Equal(t0.Add(6 * time.Minute)) {
		t.Errorf("cursor %v", c)
	}
}

func TestSyncBatchPagesAndDefaultSave(t *testing.T) {
	h := newSyncHarness(t, 5)
	var st SyncState
	opts := SyncOptions{BatchPages: 2} // nil Save: kept in the Records store
	if err := Sync(context.Background(), h.client, h.rs, "products", &st, opts); err != nil {
		t.Fatal(err)
	}
	if !st.InProgress() || st.Page != 3 {
		t.Fatalf("after one batch: %+v", st)
	}
	loaded, err := h.rs.LoadSyncState("commerce", "products")
	if err != nil || loaded.Page != 3 || loaded.Pass != st.Pass {
		t.Fatalf("stored state %+v %v", loaded, err)
	}
	if err := Sync(context.Background(), h.client, h.rs, "products", &loaded, opts); err != nil {
		t.Fatal(err)
	}
	if loaded.InProgress() || fmt.Sprint(h.cat.listedPages()) != "[1 2 3]" {
		t.Errorf("second batch: %+v, pages %v", loaded, h.cat.listedPages())
	}
}

func TestSyncSchemaChangeFailsLoudly(t *testing.T) {
	h := newSyncHarness(t, 4)
	var st SyncState
	if err := Sync(context.Background(), h.client, h.rs, "products", &st, h.opts()); err != nil {
		t.Fatal(err)
	}
	before, _ := h.rs.Cursor("commerce", "products")

	// The vendor renames "title" and updates a record.
	h.cat.update("3", t0.Add(time.Hour), "Changed")
	h.cat.mu.Lock()
	h.cat.renamed = true
	h.cat.mu.Unlock()
	err := Sync(context.Background(), h.client, h.rs, "products", &st, h.opts())
	var me *MappingError
	if !errors.As(err, &me) || me.Field != "title" || me.Path != "title.en" || me.Reason != "missing" || !IsPermanent(err) {
		t.Fatalf("want a MappingError for title, got %v", err)
	}
	r3, _ := h.rs.Get("commerce", "products", "3")
	if r3.Fields["title"] != "Product 3" || r3.Version != "1" {
		t.Errorf("last good version not kept: %+v", r3)
	}
	if after, _ := h.rs.Cursor("commerce", "products"); !after.Equal(before) {
		t.Errorf("cursor moved: %v -> %v", before, after)
	}
	if !st.InProgress() {
		t.Errorf("the failed pass should stay in progress: %+v", st)
	}

	// A live Get fails the same way.
	if _, err := h.client.Get(context.Background(), "products", "3"); !errors.As(err, &me) {
		t.Errorf("Get: %v", err)
	}
}

func TestSyncRewindsWhenARecordMovesDuringThePass(t *testing.T) {
	h := newSyncHarness(t, 6) // pages [1 2] [3 4] [5 6]
	// After page 1 is served, record 1 is updated: it moves to the end and
	// everything shifts left by one, so offset paging skips record 3.
	h.cat.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Query().Get("page") == "2" && h.cat.items["1"].Version == 1 {
			h.cat.update("1", t0.Add(time.Hour), "Moved")
		}
		return false
	}
	var st SyncState
	if err := Sync(context.Background(), h.client, h.rs, "products", &st, h.opts()); err != nil {
		t.Fatal(err)
	}
	ids := h.storedIDs(t)
	if slices.Contains(ids, "3") {
		t.Fatalf("the scenario did not skip record 3: %v", ids)
	}
	cursor, _ := h.rs.Cursor("commerce", "products")
	if !cursor.Equal(t0.Add(time.Minute)) { // record 1's old UpdatedAt, not the high-water mark (t0+1h)
		t.Errorf("cursor %v, want it held back to %v", cursor, t0.Add(time.Minute))
	}
	// The next pass picks record 3 up.
	if err := Sync(context.Background(), h.client, h.rs, "products", &st, h.opts()); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(h.storedIDs(t)); got != "[1 2 3 4 5 6]" {
		t.Errorf("after the next pass: %s", got)
	}
	if cursor, _ := h.rs.Cursor("commerce", "products"); !cursor.Equal(t0.Add(time.Hour)) {
		t.Errorf("cursor after the next pass %v", cursor)
	}
}

func TestSyncResumeRepurgesThePageThatWasNotSaved(t *testing.T) {
	h := newSyncHarness(t, 4) // pages [1 2] [3 4]
	var st SyncState
	opts := h.opts()
	saveErr := errors.New("disk full")
	opts.Save = func(s SyncState) error {
		if s.Page == 2 { // page 1 is committed and purged, but its progress is lost
			return saveErr
		}
		return nil
	}
	if err := Sync(context.Background(), h.client, h.rs, "products", &st, opts); !errors.Is(err, saveErr) {
		t.Fatalf("want the save error, got %v", err)
	}
	// The last saved state is mid-pass at page 1 (as if the process died
	// after the commit): resume from it.
	resume := SyncState{Pass: st.Pass, Page: 1, Since: st.Since, StartedAt: st.StartedAt, Backfill: true}
	h.purged = nil
	if err := Sync(context.Background(), h.client, h.rs, "products", &resume, h.opts()); err != nil {
		t.Fatal(err)
	}
	// Page 1's records are unchanged now, but their tags are purged again.
	if got := fmt.Sprint(h.purged); got != "[shop:product:1 shop:product:2 shop:products shop:product:3 shop:product:4 shop:products]" {
		t.Errorf("purged %s", got)
	}
}
