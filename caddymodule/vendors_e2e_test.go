package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendors"
	"github.com/craftedge/craftedge/vendorsim"
)

type vendorOptions struct {
	baseURL  string
	vendor   string // extra vendor subdirectives
	resource string // extra resource subdirectives
	storage  string
	// caddyfile builds the config; default vendorCaddyfile.
	caddyfile func(vendorOptions) string
	site      string // site block body; default craftedge_records with allow_anonymous_writes
	// private leaves the product resource without "public" (the tests of
	// other features read it anonymously).
	private bool
}

func vendorCaddyfile(o vendorOptions) string {
	if o.site == "" {
		// Tests of other features write anonymously; the records' own
		// authentication is tested in records_auth_e2e_test.go.
		o.site = "craftedge_records {\n\t\tallow_anonymous_writes\n\t}"
	}
	return e2e.VendorCaddyfile(e2e.VendorConfig{Storage: o.storage, BaseURL: o.baseURL, Vendor: o.vendor,
		Resource: o.resource, Public: !o.private, Site: o.site})
}

type vendorEnv struct {
	*e2e.Gateway
	sim *vendorsim.Sim
	// simURL is the base URL the vendor block points at.
	simURL string
}

func startVendorGateway(t *testing.T, products int, o vendorOptions) *vendorEnv {
	t.Helper()
	t.Setenv("SHOP_TOKEN", vendorsim.DefaultCommerceToken)
	sim := vendorsim.New(vendorsim.Options{Products: products, Seed: 1})
	t.Cleanup(func() { _ = sim.Close() })
	srv, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.baseURL = srv.URL()
	return startVendorGatewayWith(t, sim, o)
}

// startVendorGatewayWith starts craftedge in front of sim, whose endpoints
// o.baseURL (and any base_url in o.vendor) already serve.
func startVendorGatewayWith(t *testing.T, sim *vendorsim.Sim, o vendorOptions) *vendorEnv {
	t.Helper()
	if o.storage == "" {
		o.storage = filepath.Join(t.TempDir(), "craftedge.db")
	}
	if o.caddyfile == nil {
		o.caddyfile = vendorCaddyfile
	}
	g := e2e.StartConfig(t, nil, o.caddyfile(o), o.storage)
	// The vendor tests read bodies as a browser would: decompressed.
	g.Client = &http.Client{Timeout: 10 * time.Second}
	return &vendorEnv{Gateway: g, sim: sim, simURL: o.baseURL}
}

// sync enqueues a vendor.sync job and waits for it to reach state.
func (e *vendorEnv) sync(key string, state jobs.State) jobs.Job {
	e.T.Helper()
	app := currentApp.Load()
	if app == nil {
		e.T.Fatal("no running craftedge app")
	}
	job, created, err := app.jobs.Enqueue(context.Background(), jobs.EnqueueRequest{
		Kind: jobKindVendorSync, Key: key, Payload: []byte(`{"vendor":"shop","resource":"product"}`),
	})
	if err != nil || !created {
		e.T.Fatalf("enqueue sync: created=%v err=%v", created, err)
	}
	return e2e.WaitJobState(e.Gateway, job.ID, state)
}

func (e *vendorEnv) health() Health {
	e.T.Helper()
	r := e.Admin(http.MethodGet, "/craftedge/health", "")
	e2e.WantStatus(e.T, r, 200)
	var h Health
	if err := json.Unmarshal([]byte(r.Body), &h); err != nil {
		e.T.Fatal(err)
	}
	return h
}

func decodeRecord(t *testing.T, r e2e.Response) vendors.Record {
	t.Helper()
	var rec vendors.Record
	if err := json.Unmarshal([]byte(r.Body), &rec); err != nil {
		t.Fatalf("decoding %q: %v", r.Body, err)
	}
	return rec
}

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
	if n := e.sim.Requests().ByRoute[vendorsim.RouteProductList].ByStatus[200]; n < 3 {
		t.Fatalf("sim saw %d list requests, want ≥ 3 (25 products, 10 per page)", n)
	}
	e.sim.Reset()

	// Read model: one record, ETag, 304, Cache-Tag, Cache-Control.
	r := e.Get("/vendors/v1/shop/product/3")
	e2e.WantStatus(t, r, 200)
	rec := decodeRecord(t, r)
	want, _ := e.sim.Get(vendorsim.KindProduct, "3")
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
	if !strings.Contains(r.Header.Get("Cache-Tag"), collectionTag("shop", "product")) {
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
	if st := e.sim.Requests(); st.Total != 0 {
		t.Fatalf("the read model called the vendor: %+v", st)
	}

	// Vendor down: the read model still serves.
	if err := e.sim.Chaos().Set(vendorsim.ChaosConfig{Outage: vendorsim.OutageClose}); err != nil {
		t.Fatal(err)
	}
	e2e.WantStatus(t, e.Get("/vendors/v1/shop/product/7"), 200)
	e2e.WantStatus(t, e.Get("/vendors/v1/shop/product"), 200)
	if st := e.sim.Requests(); st.Total != 0 {
		t.Fatalf("the read model called the vendor: %+v", st)
	}
}

func TestVendorSchemaChangeDeadLetters(t *testing.T) {
	e := startVendorGateway(t, 5, vendorOptions{})
	e.sync("first", jobs.StateDone)
	before := decodeRecord(t, e.Get("/vendors/v1/shop/product/3"))

	if _, err := e.sim.Update(vendorsim.KindProduct, "3", func(f map[string]any) { f["stock"] = 1 }); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.Chaos().Set(vendorsim.ChaosConfig{SchemaChange: true}); err != nil {
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
	writes := e.sim.WritesFor(vendorsim.KindProduct, "3")
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
	if n := len(e.sim.Writes()); n != 2 {
		t.Fatalf("sim saw %d writes, want 2", n)
	}
}

func TestVendorDisabledMakesNoCalls(t *testing.T) {
	e := startVendorGateway(t, 5, vendorOptions{vendor: "enabled off", resource: "sync every 1h"})
	e.sync("first", jobs.StateDone)
	if st := e.sim.Requests(); st.Total != 0 {
		t.Fatalf("a disabled vendor was called: %+v", st)
	}
	if h := e.health(); len(h.Vendors) != 1 || h.Vendors[0].Enabled {
		t.Fatalf("health vendors = %+v", h.Vendors)
	}
	e2e.WantStatus(t, e.Get("/vendors/v1/shop/product/3"), 404)
}

func TestVendorCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct{ vendor, resource, bad, want string }{
		{vendor: "frobnicate 1", bad: "frobnicate 1", want: `unknown vendor subdirective`},
		{resource: "frobnicate 1", bad: "frobnicate 1", want: `unknown resource subdirective`},
		{vendor: "rate 0/s", bad: "rate 0/s", want: "rate must be a positive number"},
		{vendor: "base_url ftp://x", bad: "base_url ftp://x", want: "scheme must be http or https"},
		{vendor: "canary 10 not-a-url", bad: "canary 10 not-a-url", want: "canary URL"},
		{vendor: "enabled maybe", bad: "enabled maybe", want: "enabled wants on or off"},
		{vendor: "retries -1", bad: "retries -1", want: `retries must be an integer ≥ 0, got \"-1\"`},
		{vendor: "canary 101%", bad: "canary 101%", want: `canary percent must be an integer from 0 to 100, got \"101\"`},
		{vendor: "rate 5/s burst 0", bad: "rate 5/s burst 0", want: `rate: burst must be a positive integer, got \"0\"`},
	} {
		cfg := vendorCaddyfile(vendorOptions{storage: filepath.Join(t.TempDir(), "x.db"), baseURL: "http://127.0.0.1:1",
			vendor: tc.vendor, resource: tc.resource})
		line := 1 + strings.Count(cfg[:strings.Index(cfg, tc.bad)], "\n")
		e2e.AssertLoadError(t, cfg, tc.want)
		caddytest.AssertLoadError(t, cfg, "caddyfile", fmt.Sprintf("Caddyfile:%d", line))
	}
	// A resource without id names the resource's line.
	cfg := strings.Replace(vendorCaddyfile(vendorOptions{storage: filepath.Join(t.TempDir(), "x.db"), baseURL: "http://127.0.0.1:1"}),
		"\t\t\t\tid id\n", "", 1)
	line := 1 + strings.Count(cfg[:strings.Index(cfg, "resource product")], "\n")
	caddytest.AssertLoadError(t, cfg, "caddyfile", fmt.Sprintf("Caddyfile:%d: resource \\\"product\\\": id is required", line))
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

	if _, err := e.sim.Update(vendorsim.KindProduct, "3", func(f map[string]any) {
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

// An unchanged reload keeps the vendor's client (breaker, limiter); a
// changed vendor config gets a new one.
func TestVendorClientSurvivesReload(t *testing.T) {
	o := vendorOptions{storage: filepath.Join(t.TempDir(), "craftedge.db")}
	e := startVendorGateway(t, 5, o)
	before := currentApp.Load().vendorClients["shop"]
	o.baseURL = before.Config().BaseURLs[0]
	e.Tester.InitServer(vendorCaddyfile(o), "caddyfile")
	if got := currentApp.Load().vendorClients["shop"]; got != before {
		t.Fatal("an unchanged reload replaced the vendor client")
	}
	o.vendor = "retries 2"
	e.Tester.InitServer(vendorCaddyfile(o), "caddyfile")
	if got := currentApp.Load().vendorClients["shop"]; got == before {
		t.Fatal("a changed vendor kept its old client")
	}
}

// restartVendorGateway unloads craftedge (memory tier gone, bbolt file
// closed) and loads the same config on the same file again.
func (e *vendorEnv) restartVendorGateway(o vendorOptions) {
	e.T.Helper()
	e2e.StopGateway(e.T)
	if currentApp.Load() != nil {
		e.T.Fatal("craftedge app still registered after unloading it")
	}
	o.storage, o.baseURL = e.Storage, e.simURL
	caddytest.NewTester(e.T).InitServer(vendorCaddyfile(o), "caddyfile")
	if e.T.Failed() {
		e.T.FailNow()
	}
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
		if _, err := e.sim.Update(vendorsim.KindProduct, id, func(f map[string]any) {
			f["title"] = map[string]any{"en": "Changed " + id}
		}); err != nil {
			t.Fatal(err)
		}
	}
	e.sim.Reset()
	job := e.sync("after-restart", jobs.StateDone)
	list := e.sim.Requests().ByRoute[vendorsim.RouteProductList]
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
	if err := e.sim.Chaos().Set(vendorsim.ChaosConfig{FailAfterWrite: 1}); err != nil {
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
	e.sim.Chaos().Clear()
	e2e.WaitFor(t, "the outbox job to finish", func() bool {
		var j jobs.Job
		_ = json.Unmarshal([]byte(e.Get(loc).Body), &j)
		return j.State == jobs.StateDone
	})
	writes := e.sim.WritesFor(vendorsim.KindProduct, "2")
	if len(writes) != 1 {
		t.Fatalf("the vendor applied %d writes, want exactly 1", len(writes))
	}
	if rec := decodeRecord(t, e.Get("/vendors/v1/shop/product/2")); rec.Fields["title"] != "Once" {
		t.Fatalf("record after the write = %+v", rec)
	}
}

func TestBackfillAdminStartsOneJobAtATime(t *testing.T) {
	e := startVendorGateway(t, 25, vendorOptions{})
	start := func() BackfillStatus {
		r := e.Admin(http.MethodPost, "/craftedge/backfill", `{"vendor":"shop","resource":"product"}`)
		if r.Status != http.StatusAccepted && r.Status != http.StatusOK {
			t.Errorf("POST /craftedge/backfill: %d %s", r.Status, r.Body)
		}
		var s BackfillStatus
		_ = json.Unmarshal([]byte(r.Body), &s)
		return s
	}
	// Concurrent starts join one job.
	var wg sync.WaitGroup
	ids := make([]string, 4)
	for i := range ids {
		wg.Add(1)
		go func() { defer wg.Done(); ids[i] = start().JobID }()
	}
	wg.Wait()
	for _, id := range ids {
		if id == "" || id != ids[0] {
			t.Fatalf("concurrent backfill starts made jobs %v, want one", ids)
		}
	}
	var done BackfillStatus
	e2e.WaitFor(t, "the backfill", func() bool {
		r := e.Admin(http.MethodGet, "/craftedge/backfill/"+ids[0], "")
		_ = json.Unmarshal([]byte(r.Body), &done)
		return done.State == BackfillDone
	})
	if done.Records != 25 || done.Pages != 3 {
		t.Fatalf("backfill status %+v, want 25 records in 3 pages", done)
	}
	// A finished backfill does not block the next one.
	if next := start(); next.JobID == ids[0] || next.JobID == "" {
		t.Fatalf("a backfill after a finished one reused job %q", next.JobID)
	}
	e2e.WantStatus(t, e.Admin(http.MethodPost, "/craftedge/backfill", `{"vendor":"shop","resource":"nope"}`), 404)
	e2e.WantStatus(t, e.Admin(http.MethodPost, "/craftedge/backfill", `{"vendor":"shop"}`), 400)
	e2e.WantStatus(t, e.Admin(http.MethodGet, "/craftedge/backfill/00000000ffffffff", ""), 404)
}
