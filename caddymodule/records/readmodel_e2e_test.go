package records

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendors"
	"github.com/craftedge/craftedge/vendorsim"
)

// The read model and the outbox, end to end: records synced from the vendor
// simulator, read through craftedge_records, written through its outbox.

func TestVendorSyncAndReadModel(t *testing.T) {
	e := startVendorGateway(t, 25, vendorOptions{resource: "sync every 1h"})

	// The scheduler enqueues this window's pass at start.
	e2e.WaitFor(t, "the scheduled sync to complete", func() bool {
		h := e.health()
		return len(h.Vendors) == 1 && len(h.Vendors[0].Resources) == 1 && !h.Vendors[0].Resources[0].LastSync.IsZero()
	})
	h := e.health()
	if v := h.Vendors[0]; v.Name != "shop" || !v.Enabled || v.Breaker != "closed" {
		t.Fatalf("vendor health = %+v", v)
	}
	if n := e.Sim.Requests().ByRoute[vendorsim.RouteProductList].ByStatus[200]; n < 3 {
		t.Fatalf("sim saw %d list requests, want ≥ 3 (25 products, 10 per page)", n)
	}
	e.Sim.Reset()

	// Read model: one record, ETag, 304, Cache-Tag, Cache-Control.
	r := e.Get("/vendors/v1/shop/product/3")
	e2e.WantStatus(t, r, 200)
	rec := decodeRecord(t, r)
	want, _ := e.Sim.Get(vendorsim.KindProduct, "3")
	if rec.ID != "3" || rec.Fields["title"] != want["title"].(map[string]any)["en"] {
		t.Fatalf("record = %+v, sim has %v", rec, want)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "public, max-age=60" {
		t.Fatalf("Cache-Control = %q", cc)
	}
	if tags := r.Header.Get("Cache-Tag"); tags != "shop:product:3" {
		t.Fatalf("Cache-Tag = %q", tags)
	}
	etag := r.Header.Get("ETag")
	if !strings.HasPrefix(etag, `"`) {
		t.Fatalf("ETag = %q, want a strong ETag", etag)
	}
	e2e.WantStatus(t, e.Get("/vendors/v1/shop/product/3", "If-None-Match", etag), http.StatusNotModified)
	e2e.WantStatus(t, e.Get("/vendors/v1/shop/product/3", "If-None-Match", `"other"`), 200)

	// Lists page through the records.
	r = e.Get("/vendors/v1/shop/product?per_page=10&page=3")
	e2e.WantStatus(t, r, 200)
	var pg RecordsPage
	if err := json.Unmarshal([]byte(r.Body), &pg); err != nil {
		t.Fatal(err)
	}
	if len(pg.Records) != 5 || pg.HasMore {
		t.Fatalf("page 3 = %d records, has_more %v; want 5, false", len(pg.Records), pg.HasMore)
	}
	if !strings.Contains(r.Header.Get("Cache-Tag"), caddymodule.CollectionTag("shop", "product")) {
		t.Fatalf("list Cache-Tag = %q", r.Header.Get("Cache-Tag"))
	}
	r = e.Get("/vendors/v1/shop/product?updated_since=" + vendorsim.DefaultSeedTime.Add(20*time.Second).Format(time.RFC3339))
	e2e.WantStatus(t, r, 200)
	if err := json.Unmarshal([]byte(r.Body), &pg); err != nil || len(pg.Records) != 6 {
		t.Fatalf("updated_since (inclusive): %d records, err %v", len(pg.Records), err)
	}

	// Errors.
	for path, code := range map[string]int{
		"/vendors/v1/nope/product/3":               404,
		"/vendors/v1/shop/nope/3":                  404,
		"/vendors/v1/shop/product/999":             404,
		"/vendors/v1/shop/product?page=0":          400,
		"/vendors/v1/shop/product?per_page=x":      400,
		"/vendors/v1/shop/product?updated_since=y": 400,
		"/vendors/v1/outbox/zz":                    404, // anonymous: only random ids are looked up
	} {
		e2e.WantStatus(t, e.Get(path), code)
	}
	if st := e.Sim.Requests(); st.Total != 0 {
		t.Fatalf("the read model called the vendor: %+v", st)
	}

	// Vendor down: the read model still serves.
	if err := e.Sim.Chaos().Set(vendorsim.ChaosConfig{Outage: vendorsim.OutageClose}); err != nil {
		t.Fatal(err)
	}
	e2e.WantStatus(t, e.Get("/vendors/v1/shop/product/7"), 200)
	e2e.WantStatus(t, e.Get("/vendors/v1/shop/product"), 200)
	if st := e.Sim.Requests(); st.Total != 0 {
		t.Fatalf("the read model called the vendor: %+v", st)
	}
}

func TestVendorSchemaChangeDeadLetters(t *testing.T) {
	e := startVendorGateway(t, 5, vendorOptions{})
	e.sync("first", jobs.StateDone)
	before := decodeRecord(t, e.Get("/vendors/v1/shop/product/3"))

	if _, err := e.Sim.Update(vendorsim.KindProduct, "3", func(f map[string]any) { f["stock"] = 1 }); err != nil {
		t.Fatal(err)
	}
	if err := e.Sim.Chaos().Set(vendorsim.ChaosConfig{SchemaChange: true}); err != nil {
		t.Fatal(err)
	}
	job := e.sync("after-schema-change", jobs.StateDead)
	if !strings.Contains(job.LastError, "mapping field") || job.Attempts != 1 {
		t.Fatalf("dead job: attempts %d, error %q; want one attempt and a mapping error", job.Attempts, job.LastError)
	}
	after := decodeRecord(t, e.Get("/vendors/v1/shop/product/3"))
	if after.Version != before.Version || after.Fields["title"] != before.Fields["title"] {
		t.Fatalf("last good record changed: %+v → %+v", before, after)
	}
}

func TestVendorOutbox(t *testing.T) {
	e := startVendorGateway(t, 5, vendorOptions{})
	e.sync("first", jobs.StateDone)

	body := func(title string) string {
		return `{"sku":"SKU-3","title":{"en":"` + title + `"},"price":{"amount":1299,"currency":"EUR"},"stock":3}`
	}
	r1 := e.Do(http.MethodPut, "/vendors/v1/shop/product/3", map[string]string{"Content-Type": "application/json"}, body("First"))
	e2e.WantStatus(t, r1, http.StatusAccepted)
	r2 := e.Do(http.MethodPost, "/vendors/v1/shop/product/3", nil, body("Second"))
	e2e.WantStatus(t, r2, http.StatusAccepted)
	for _, r := range []e2e.Response{r1, r2} {
		loc := r.Header.Get("Location")
		if !strings.HasPrefix(loc, "/vendors/v1/outbox/") {
			t.Fatalf("Location = %q", loc)
		}
		e2e.WaitFor(t, "outbox job "+loc, func() bool {
			r := e.Get(loc)
			var j jobs.Job
			_ = json.Unmarshal([]byte(r.Body), &j)
			return r.Status == 200 && j.State == jobs.StateDone
		})
	}
	writes := e.Sim.WritesFor(vendorsim.KindProduct, "3")
	if len(writes) != 2 {
		t.Fatalf("sim saw %d writes, want 2", len(writes))
	}
	if !strings.Contains(string(writes[0].Body), "First") || !strings.Contains(string(writes[1].Body), "Second") {
		t.Fatalf("writes out of order: %s / %s", writes[0].Body, writes[1].Body)
	}
	if writes[0].Key == "" || writes[1].Key == "" || writes[0].Key == writes[1].Key {
		t.Fatalf("idempotency keys = %q, %q", writes[0].Key, writes[1].Key)
	}
	rec := decodeRecord(t, e.Get("/vendors/v1/shop/product/3"))
	if rec.Fields["title"] != "Second" {
		t.Fatalf("record after the writes = %+v", rec)
	}

	// Bad writes are refused before anything is enqueued.
	e2e.WantStatus(t, e.Do(http.MethodPost, "/vendors/v1/shop/product/3", nil, "{not json"), 400)
	e2e.WantStatus(t, e.Do(http.MethodPost, "/vendors/v1/shop/product", nil, "{}"), 400)
	e2e.WantStatus(t, e.Do(http.MethodPost, "/vendors/v1/shop/product/3", nil, `{"x":"`+strings.Repeat("a", 2<<20)+`"}`), 413)
	e2e.WantStatus(t, e.Do(http.MethodPost, "/vendors/v1/nope/product/3", nil, "{}"), 404)
	if n := len(e.Sim.Writes()); n != 2 {
		t.Fatalf("sim saw %d writes, want 2", n)
	}
}

func TestVendorDisabledMakesNoCalls(t *testing.T) {
	e := startVendorGateway(t, 5, vendorOptions{vendor: "enabled off", resource: "sync every 1h"})
	e.sync("first", jobs.StateDone)
	if st := e.Sim.Requests(); st.Total != 0 {
		t.Fatalf("a disabled vendor was called: %+v", st)
	}
	if h := e.health(); len(h.Vendors) != 1 || h.Vendors[0].Enabled {
		t.Fatalf("health vendors = %+v", h.Vendors)
	}
	e2e.WantStatus(t, e.Get("/vendors/v1/shop/product/3"), 404)
}

// A craftedge handler in front caches read-model answers by their
// Cache-Tag; a sync that changes a record purges it.
func TestVendorReadModelCachedAndPurgedBySync(t *testing.T) {
	o := vendorOptions{site: "craftedge {\n\t\tupstream records\n\t\tttl 1h\n\t}\n\tcraftedge_records"}
	e := startVendorGateway(t, 5, o)
	e.sync("first", jobs.StateDone)

	e2e.WantCacheStatusPrefix(t, e.Get("/vendors/v1/shop/product/3"), "craftedge; fwd=")
	r := e.Get("/vendors/v1/shop/product/3")
	e2e.WantCacheStatusPrefix(t, r, "craftedge; hit")
	if r.Header.Get("Cache-Tag") != "" {
		t.Fatalf("Cache-Tag leaked: %q", r.Header.Get("Cache-Tag"))
	}
	e2e.WantCacheStatusPrefix(t, e.Get("/vendors/v1/shop/product/4"), "craftedge; fwd=")

	if _, err := e.Sim.Update(vendorsim.KindProduct, "3", func(f map[string]any) {
		f["title"] = map[string]any{"en": "Renamed"}
	}); err != nil {
		t.Fatal(err)
	}
	e.sync("second", jobs.StateDone)
	r = e.Get("/vendors/v1/shop/product/3")
	e2e.WantCacheStatusPrefix(t, r, "craftedge; fwd=")
	if rec := decodeRecord(t, r); rec.Fields["title"] != "Renamed" {
		t.Fatalf("after the sync: %+v", rec)
	}
	// Product 4 did not change: still cached.
	e2e.WantCacheStatusPrefix(t, e.Get("/vendors/v1/shop/product/4"), "craftedge; hit")
}
func TestVendorSyncCursorSurvivesRestart(t *testing.T) {
	o := vendorOptions{}
	e := startVendorGateway(t, 25, o)
	e.sync("first", jobs.StateDone)
	cursor := e.health().Vendors[0].Resources[0].Cursor
	if cursor.IsZero() {
		t.Fatal("no cursor after the first pass")
	}

	e.restartVendorGateway(o)
	if got := e.health().Vendors[0].Resources[0].Cursor; !got.Equal(cursor) {
		t.Fatalf("cursor after restart = %v, want %v", got, cursor)
	}

	// Two records change at the vendor: the next pass lists from the
	// persisted cursor (minus the overlap), one page with just them.
	for _, id := range []string{"4", "9"} {
		if _, err := e.Sim.Update(vendorsim.KindProduct, id, func(f map[string]any) {
			f["title"] = map[string]any{"en": "Changed " + id}
		}); err != nil {
			t.Fatal(err)
		}
	}
	e.Sim.Reset()
	job := e.sync("after-restart", jobs.StateDone)
	list := e.Sim.Requests().ByRoute[vendorsim.RouteProductList]
	if list.Total != 1 {
		t.Fatalf("delta pass after restart made %d list requests, want 1 (a backfill would make 3)", list.Total)
	}
	var st vendors.SyncState
	if err := json.Unmarshal(job.Context, &st); err != nil || st.LastSeen > 5 || st.LastChanged != 2 || st.LastBackfill {
		// Seen counts the changed records plus those the 1s overlap lists again.
		t.Fatalf("pass after restart: %+v (err %v), want 2 changed of a few seen, not a backfill", st, err)
	}
	if rec := decodeRecord(t, e.Get("/vendors/v1/shop/product/9")); rec.Fields["title"] != "Changed 9" {
		t.Fatalf("record 9 = %+v", rec)
	}
}

func TestVendorOutboxIdempotentWhenTheAnswerIsLost(t *testing.T) {
	e := startVendorGateway(t, 5, vendorOptions{})
	e.sync("first", jobs.StateDone)
	// The vendor applies the write but the answer is lost (502): the job
	// retries with the same Idempotency-Key and the vendor replays it.
	if err := e.Sim.Chaos().Set(vendorsim.ChaosConfig{FailAfterWrite: 1}); err != nil {
		t.Fatal(err)
	}
	r := e.Do(http.MethodPut, "/vendors/v1/shop/product/2", map[string]string{"Content-Type": "application/json"},
		`{"sku":"SKU-2","title":{"en":"Once"},"price":{"amount":500,"currency":"EUR"},"stock":1}`)
	e2e.WantStatus(t, r, http.StatusAccepted)
	loc := r.Header.Get("Location")
	e2e.WaitFor(t, "the first attempt to fail after the write", func() bool {
		var j jobs.Job
		_ = json.Unmarshal([]byte(e.Get(loc).Body), &j)
		return j.Attempts >= 1 && j.LastError != ""
	})
	e.Sim.Chaos().Clear()
	e2e.WaitFor(t, "the outbox job to finish", func() bool {
		var j jobs.Job
		_ = json.Unmarshal([]byte(e.Get(loc).Body), &j)
		return j.State == jobs.StateDone
	})
	writes := e.Sim.WritesFor(vendorsim.KindProduct, "2")
	if len(writes) != 1 {
		t.Fatalf("the vendor applied %d writes, want exactly 1", len(writes))
	}
	if rec := decodeRecord(t, e.Get("/vendors/v1/shop/product/2")); rec.Fields["title"] != "Once" {
		t.Fatalf("record after the write = %+v", rec)
	}
}
