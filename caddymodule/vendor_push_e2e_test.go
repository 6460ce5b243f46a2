package caddymodule

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendorsim"
)

// pushEnv is a gateway syncing the simulator's products and pushing them
// to the simulator's search index, served by an endpoint of its own (its
// own chaos knobs).
type pushEnv struct {
	*vendorEnv
	index *vendorsim.Endpoint
}

// indexVendor is the search index's vendor block.
func indexVendor(url string) string {
	return fmt.Sprintf(`vendor search {
			base_url %s
			header Authorization "Bearer %s"
			timeout 2s
			rate 1000/s burst 1000
			breaker {
				failures 3
				successes 1
				cooldown 200ms
			}
		}`, url, vendorsim.DefaultIndexToken)
}

func startPushGateway(t *testing.T, products int, push string) *pushEnv {
	t.Helper()
	return startPushGatewayGlobal(t, products, push, "")
}

// startPushGatewayGlobal is startPushGateway with extra global lines.
func startPushGatewayGlobal(t *testing.T, products int, push, global string) *pushEnv {
	t.Helper()
	sim, url := e2e.StartVendorSim(t, products)
	ep := sim.NewEndpoint()
	srv, err := ep.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := startVendorGatewayWith(t, sim, vendorOptions{baseURL: url, resource: push,
		caddyfile: func(o vendorOptions) string {
			c := e2e.VendorConfig{Storage: o.storage, BaseURL: o.baseURL, Resource: o.resource, Public: true,
				Global: global + "\n\t\t" + indexVendor(srv.URL()), Site: "craftedge_records {\n\t\tallow_anonymous_writes\n\t}"}
			return e2e.VendorCaddyfile(c)
		}})
	return &pushEnv{vendorEnv: e, index: ep}
}

// pushesSettled reports that no push job is ready or running.
func pushesSettled(t *testing.T) bool {
	st, err := currentApp.Load().jobs.Stats()
	if err != nil {
		t.Fatal(err)
	}
	k := st.Kinds[jobKindPush]
	return k.Ready == 0 && k.Running == 0
}

// effects returns the index's effects on a product, as "op:title".
func effects(sim *vendorsim.Sim, id string) []string {
	var out []string
	for _, w := range sim.IndexWrites() {
		if w.ID != id {
			continue
		}
		title, _ := w.Doc["title"].(string)
		out = append(out, w.Op+":"+title)
	}
	return out
}

func setTitle(t *testing.T, sim *vendorsim.Sim, id, title string) {
	t.Helper()
	if _, err := sim.Update(vendorsim.KindProduct, id, func(f map[string]any) { f["title"] = map[string]any{"en": title} }); err != nil {
		t.Fatal(err)
	}
}

// TestPushReachesIndexOnceThroughOutage: every record change reaches the
// index once, in order per record, deletes as deletes, even when the index
// is down long enough for its breaker to open, and a lost answer is
// retried with the same Idempotency-Key.
func TestPushReachesIndexOnceThroughOutage(t *testing.T) {
	e2e.ResetClock()
	e := startPushGateway(t, 5, "push search meilisearch products")
	app := currentApp.Load()
	deleted0 := e2e.Scrape(e.Gateway, `craftedge_push_total{outcome="deleted",target="search"}`) // counters are per process
	e.sync("s1", jobs.StateDone)
	e2e.WaitFor(t, "the first sync's pushes", func() bool { return pushesSettled(t) })
	if n := e.Sim.IndexDocuments("products"); n != 5 {
		t.Fatalf("%d documents indexed after the first sync, want 5", n)
	}
	if got := e.Sim.IndexWrites(); len(got) != 5 {
		t.Fatalf("%d index effects for 5 new records, want 5", len(got))
	}
	doc, _ := e.Sim.IndexDocument("products", "1")
	rec, _ := app.records.Get("shop", "product", "1")
	if doc["title"] != rec.Fields["title"] || doc["id"] != "1" || doc["price"] == nil {
		t.Fatalf("document %v, want the record's fields %v", doc, rec.Fields)
	}
	// A sync listing the same versions again pushes nothing.
	e.sync("s2", jobs.StateDone)
	e2e.WaitFor(t, "pushes", func() bool { return pushesSettled(t) })
	if got := e.Sim.IndexWrites(); len(got) != 5 {
		t.Fatalf("%d index effects after an unchanged sync, want 5", len(got))
	}

	// The index goes down. Product 1 changes twice (two syncs, two queued
	// pushes), product 2 is deleted at the vendor (webhook refetch).
	e.index.Chaos().Update(func(c *vendorsim.ChaosConfig) { c.ErrorRate = 1 })
	setTitle(t, e.Sim, "1", "Title two")
	setTitle(t, e.Sim, "3", "Title three")
	setTitle(t, e.Sim, "5", "Title five") // failures on three records open the breaker
	e.sync("s3", jobs.StateDone)
	// (The breaker's cooldown runs on the wall clock: it is short here.)
	e2e.WaitFor(t, "pushes refused by the open breaker", func() bool {
		e2e.Advance(100 * time.Millisecond) // the failed pushes' backoffs
		return e2e.Scrape(e.Gateway, `craftedge_push_total{outcome="breaker_open",target="search"}`) > 0
	})
	setTitle(t, e.Sim, "1", "Title final")
	e.sync("s4", jobs.StateDone)
	if err := e.Sim.Delete(vendorsim.KindProduct, "2"); err != nil {
		t.Fatal(err)
	}
	ref, _, err := app.enqueueRefetch(context.Background(), refetchPayload{Vendor: "shop", Resource: "product", ID: "2", Delivery: "d-2"}, "")
	if err != nil {
		t.Fatal(err)
	}
	e2e.WaitJobState(e.Gateway, ref.ID, jobs.StateDone)
	if len(e.Sim.IndexWrites()) != 5 {
		t.Fatalf("effects while the index is down: %v", e.Sim.IndexWrites()[5:])
	}

	// The index answers again; the first write's answer is lost (the
	// effect is kept), so its retry must be replayed, not applied again.
	e.index.Chaos().Set(vendorsim.ChaosConfig{FailAfterWrite: 1})
	e2e.WaitFor(t, "a write whose answer is lost", func() bool {
		e2e.Advance(100 * time.Millisecond)
		return len(e.Sim.IndexWrites()) > 5
	})
	e.index.Chaos().Clear()
	e2e.WaitFor(t, "the index to catch up", func() bool {
		e2e.Advance(100 * time.Millisecond)
		return pushesSettled(t)
	})
	if got, want := strings.Join(effects(e.Sim, "1"), ","), "upsert:"+rec.Fields["title"].(string)+",upsert:Title final"; got != want {
		t.Errorf("effects on product 1: %s, want %s (the intermediate version superseded, the last once)", got, want)
	}
	if got := effects(e.Sim, "2"); len(got) != 2 || got[1] != "delete:" {
		t.Errorf("effects on product 2: %v, want its upsert then one delete", got)
	}
	if got := effects(e.Sim, "3"); len(got) != 2 || got[1] != "upsert:Title three" {
		t.Errorf("effects on product 3: %v, want one more upsert", got)
	}
	if _, ok := e.Sim.IndexDocument("products", "2"); ok {
		t.Error("the deleted product is still indexed")
	}
	if n := e2e.Scrape(e.Gateway, `craftedge_push_total{outcome="superseded",target="search"}`); n < 1 {
		t.Errorf("superseded pushes: %v, want ≥ 1", n)
	}
	if n := e2e.Scrape(e.Gateway, `craftedge_push_total{outcome="deleted",target="search"}`) - deleted0; n != 1 {
		t.Errorf("deleted pushes: %v, want 1", n)
	}
	if n := e2e.Scrape(e.Gateway, `craftedge_push_queue_age_seconds_count{target="search"}`); n < 9 {
		t.Errorf("queue age observations: %v, want one per push job (≥ 9)", n)
	}
	dead, err := app.jobs.List(jobs.ListFilter{Kind: jobKindPush, State: jobs.StateDead})
	if err != nil || len(dead) != 0 {
		t.Errorf("dead push jobs: %v %v", dead, err)
	}
}

// TestPushRebuildIndex rebuilds a lost index from the stored records,
// with no call to the source vendor.
func TestPushRebuildIndex(t *testing.T) {
	e2e.ResetClock()
	e := startPushGateway(t, 12, `push search {
					upsert PUT /indexes/catalog/documents/{id}
					delete /indexes/catalog/documents/{id}
					fields title
				}`)
	app := currentApp.Load()
	e.sync("s1", jobs.StateDone)
	e2e.WaitFor(t, "pushes", func() bool { return pushesSettled(t) })
	if err := e.Sim.Delete(vendorsim.KindProduct, "4"); err != nil {
		t.Fatal(err)
	}
	ref, _, _ := app.enqueueRefetch(context.Background(), refetchPayload{Vendor: "shop", Resource: "product", ID: "4", Delivery: "d-4"}, "")
	e2e.WaitJobState(e.Gateway, ref.ID, jobs.StateDone)
	e2e.WaitFor(t, "pushes", func() bool { return pushesSettled(t) })
	doc, _ := e.Sim.IndexDocument("catalog", "1")
	if len(doc) != 2 || doc["title"] == nil {
		t.Errorf("document %v, want the id and the title only", doc)
	}

	e.Sim.ClearIndex() // the index is lost
	e.Sim.Reset()      // count the source vendor's requests from here
	e.Sim.Endpoint().Chaos().Set(vendorsim.ChaosConfig{Outage: vendorsim.OutageClose})
	r := e.Admin(http.MethodPost, "/craftedge/reindex", `{"vendor":"shop","resource":"product","target":"search"}`)
	e2e.WantStatus(t, r, http.StatusAccepted)
	var st ReindexStatus
	_ = json.Unmarshal([]byte(r.Body), &st)
	if st.JobID == "" || r.Header.Get("Location") != "/craftedge/reindex/"+st.JobID {
		t.Fatalf("reindex answer %s (Location %q)", r.Body, r.Header.Get("Location"))
	}
	// A second start joins the running rebuild.
	r2 := e.Admin(http.MethodPost, "/craftedge/reindex", `{"vendor":"shop","resource":"product","target":"search"}`)
	var st2 ReindexStatus
	_ = json.Unmarshal([]byte(r2.Body), &st2)
	if st2.JobID != st.JobID && st2.State != BackfillDone {
		t.Errorf("a second start made job %s beside %s", st2.JobID, st.JobID)
	}
	e2e.WaitFor(t, "the rebuild", func() bool {
		st = e2e.AdminJSON[ReindexStatus](e.Gateway, "/craftedge/reindex/"+st.JobID)
		return st.State == BackfillDone
	})
	if st.Records != 12 || st.Deleted != 1 || st.Total != 12 {
		t.Errorf("rebuild status %+v, want 12 records, 1 of them deleted, total 12", st)
	}
	if n := e.Sim.IndexDocuments("catalog"); n != 11 {
		t.Errorf("%d documents after the rebuild, want 11", n)
	}
	if n := e.Sim.Requests().Total; n != 0 {
		t.Errorf("the rebuild made %d requests to the source vendor, want 0", n)
	}
	e2e.WantStatus(t, e.Admin(http.MethodPost, "/craftedge/reindex", `{"vendor":"shop","resource":"product","target":"nope"}`), 404)
	e2e.WantStatus(t, e.Admin(http.MethodPost, "/craftedge/reindex", `{"vendor":"shop"}`), 400)
	e2e.WantStatus(t, e.Admin(http.MethodGet, "/craftedge/reindex/"+ref.ID, ""), 404) // not a rebuild
}

func TestPushConfigErrors(t *testing.T) {
	base := func(resource, global string) string {
		return e2e.VendorCaddyfile(e2e.VendorConfig{Storage: filepath.Join(t.TempDir(), "x.db"), BaseURL: "http://127.0.0.1:1",
			Resource: resource, Global: global, Site: "craftedge_records"})
	}
	idx := indexVendor("http://127.0.0.1:2")
	for _, tc := range []struct{ resource, bad, want string }{
		{"push search solr products", "push search solr", "unknown push preset"},
		{"push search meilisearch a/b", "push search meilisearch", "index"},
		{"push search", "push search", "path: is required"},
		{"push search {\n upsert GET /x\n }", "upsert GET", "upsert method"},
		{"push search {\n upsert /x/{sku}\n }", "upsert /x/{sku}", "unknown placeholder {sku}"},
		{"push search {\n upsert /x\n fields nope\n }", "fields nope", "not a field of the resource"},
		{"push search {\n upsert /x\n body xml\n }", "body xml", "body \\\"xml\\\""},
		{"push search meilisearch a\n push search meilisearch b", "push search meilisearch b", "defined twice"},
	} {
		cfg := base(tc.resource, idx)
		line := 1 + strings.Count(cfg[:strings.Index(cfg, tc.bad)], "\n")
		e2e.AssertLoadError(t, cfg, tc.want)
		e2e.AssertLoadError(t, cfg, fmt.Sprintf("Caddyfile:%d", line))
	}
	// A target that is not a configured vendor is named at provisioning.
	caddytest.AssertLoadError(t, base("push search meilisearch products", ""), "caddyfile",
		`resource \"product\": push \"search\": no vendor \"search\" is configured`)
}

// TestPushNeverSendsSensitiveFields: a sensitive field stays out of the
// index unless the push names it.
func TestPushNeverSendsSensitiveFields(t *testing.T) {
	t.Setenv("CRAFTEDGE_KEY_1", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)))
	e := startPushGatewayGlobal(t, 3, "field sku sku\n\t\t\t\tsensitive sku\n\t\t\t\tpush search meilisearch products",
		"encryption_key k1 {env.CRAFTEDGE_KEY_1}")
	e.sync("s1", jobs.StateDone)
	e2e.WaitFor(t, "pushes", func() bool { return pushesSettled(t) })
	rec, err := currentApp.Load().records.Get("shop", "product", "2")
	if err != nil || rec.Fields["sku"] == nil {
		t.Fatalf("stored record %+v, %v: want its sku", rec, err)
	}
	doc, ok := e.Sim.IndexDocument("products", "2")
	if !ok || doc["title"] == nil {
		t.Fatalf("document %v", doc)
	}
	if _, leaked := doc["sku"]; leaked {
		t.Fatalf("the sensitive sku reached the index: %v", doc)
	}
}

// TestPushRevivedRecordReachesIndex: a record deleted (a refetch answered
// 404) and then seen again unchanged (same version and updated time: the
// vendor undid the deletion, or a lagging replica answered 404 for a
// while) is pushed again. Its push key must not join the done job of its
// first upsert, which would leave the index without a live record.
func TestPushRevivedRecordReachesIndex(t *testing.T) {
	e2e.ResetClock()
	e := startPushGateway(t, 3, "push search meilisearch products")
	app := currentApp.Load()
	e.sync("s1", jobs.StateDone)
	e2e.WaitFor(t, "pushes", func() bool { return pushesSettled(t) })
	refetch := func(delivery string) {
		t.Helper()
		ref, _, err := app.enqueueRefetch(context.Background(), refetchPayload{Vendor: "shop", Resource: "product", ID: "1", Delivery: delivery}, "")
		if err != nil {
			t.Fatal(err)
		}
		e2e.WaitJobState(e.Gateway, ref.ID, jobs.StateDone)
		e2e.WaitFor(t, "pushes", func() bool { return pushesSettled(t) })
	}
	if err := e.Sim.Delete(vendorsim.KindProduct, "1"); err != nil {
		t.Fatal(err)
	}
	e2e.Advance(time.Second)
	refetch("d-gone")
	if _, ok := e.Sim.IndexDocument("products", "1"); ok {
		t.Fatal("the deleted product is still indexed")
	}
	if err := e.Sim.Restore(vendorsim.KindProduct, "1"); err != nil {
		t.Fatal(err)
	}
	e2e.Advance(time.Second)
	refetch("d-back")
	rec, err := app.records.Get("shop", "product", "1")
	if err != nil || rec.Deleted {
		t.Fatalf("stored record %+v, %v: want it live again", rec, err)
	}
	if _, ok := e.Sim.IndexDocument("products", "1"); !ok {
		t.Errorf("the live product is missing from the index; effects %v", effects(e.Sim, "1"))
	}
	if got := effects(e.Sim, "1"); len(got) != 3 || !strings.HasPrefix(got[2], "upsert:") {
		t.Errorf("effects on product 1: %v, want upsert, delete, upsert", got)
	}
}

// TestPushRebuildRetryAfterRecordChanged: a rebuild whose page failed is
// retried from that page; a record of it pushed by the failed attempt and
// changed since is pushed again in its new state, under a key of its own:
// an index honouring Idempotency-Key refuses a key reused for another body
// (422), which dead-lettered the rebuild.
func TestPushRebuildRetryAfterRecordChanged(t *testing.T) {
	e2e.ResetClock()
	e := startPushGateway(t, 3, `push search {
					upsert PUT /indexes/catalog/documents/{id}
					delete /indexes/catalog/documents/{id}
					fields title
				}`)
	e.sync("s1", jobs.StateDone)
	e2e.WaitFor(t, "pushes", func() bool { return pushesSettled(t) })

	// Document 3 fails: the rebuild's first page fails after pushing 1 and 2.
	e.index.Chaos().Set(vendorsim.ChaosConfig{ErrorRate: 1, Only: []string{"/indexes/catalog/documents/3"}})
	r := e.Admin(http.MethodPost, "/craftedge/reindex", `{"vendor":"shop","resource":"product","target":"search"}`)
	e2e.WantStatus(t, r, http.StatusAccepted)
	var st ReindexStatus
	_ = json.Unmarshal([]byte(r.Body), &st)
	e2e.WaitFor(t, "the rebuild's first attempt to fail", func() bool {
		st = e2e.AdminJSON[ReindexStatus](e.Gateway, "/craftedge/reindex/"+st.JobID)
		return st.Error != ""
	})
	// Product 1 changes meanwhile (and is pushed by its own job).
	setTitle(t, e.Sim, "1", "Title changed")
	e2e.Advance(time.Second)
	e.sync("s2", jobs.StateDone)
	e2e.WaitFor(t, "pushes", func() bool { return pushesSettled(t) })

	e.index.Chaos().Clear()
	e2e.WaitFor(t, "the rebuild", func() bool {
		e2e.Advance(time.Second) // its backoff
		st = e2e.AdminJSON[ReindexStatus](e.Gateway, "/craftedge/reindex/"+st.JobID)
		return st.State != BackfillRunning
	})
	if st.State != BackfillDone || st.Records != 3 {
		t.Fatalf("rebuild %+v, want done with 3 records", st)
	}
	doc, _ := e.Sim.IndexDocument("catalog", "1")
	if doc["title"] == nil || !strings.Contains(fmt.Sprint(doc["title"]), "Title changed") {
		t.Errorf("document 1 %v, want its new title", doc)
	}
}

// TestPushRetryAfterReloadChangedDocument: a push whose answer was lost is
// retried; if a reload changed what the target is sent (its fields) in
// between, the retry's body differs from the first attempt's, and an index
// honouring Idempotency-Key refuses the reused key (422): the push was
// dead-lettered and the index kept the old document. The key sent names
// the body too, so the same body is replayed and another one is a new
// write.
func TestPushRetryAfterReloadChangedDocument(t *testing.T) {
	e2e.ResetClock()
	sim, url := e2e.StartVendorSim(t, 2)
	ep := sim.NewEndpoint()
	srv, err := ep.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	config := func(o vendorOptions) string {
		return e2e.VendorCaddyfile(e2e.VendorConfig{Storage: o.storage, BaseURL: o.baseURL, Resource: o.resource, Public: true,
			Global: "\n\t\t" + indexVendor(srv.URL()), Site: "craftedge_records"})
	}
	push := func(fields string) string {
		return "push search {\n\t\t\t\t\tupsert PUT /indexes/catalog/documents/{id}\n\t\t\t\t\tfields " + fields + "\n\t\t\t\t}"
	}
	o := vendorOptions{baseURL: url, resource: push("title"), caddyfile: config, storage: filepath.Join(t.TempDir(), "craftedge.db")}
	e := startVendorGatewayWith(t, sim, o)
	e.sync("s1", jobs.StateDone)
	e2e.WaitFor(t, "pushes", func() bool { return pushesSettled(t) })

	// Product 1 changes; its push is applied but the answer is lost.
	ep.Chaos().Set(vendorsim.ChaosConfig{FailAfterWrite: 1})
	setTitle(t, sim, "1", "Title two")
	e2e.Advance(time.Second)
	n := len(sim.IndexWrites())
	e.sync("s2", jobs.StateDone)
	e2e.WaitFor(t, "the write whose answer is lost", func() bool { return len(sim.IndexWrites()) > n })
	// The target now also gets the price (retries until now replayed the
	// first write, their answers lost too).
	o.resource = push("title price")
	e.Tester.InitServer(config(o), "caddyfile")
	ep.Chaos().Clear()
	e2e.WaitFor(t, "the push's retry", func() bool {
		e2e.Advance(time.Second) // its backoff
		return pushesSettled(t)
	})
	dead, err := currentApp.Load().jobs.List(jobs.ListFilter{Kind: jobKindPush, State: jobs.StateDead})
	if err != nil || len(dead) != 0 {
		t.Errorf("dead push jobs: %+v %v", dead, err)
	}
	doc, _ := sim.IndexDocument("catalog", "1")
	if doc["price"] == nil || !strings.Contains(fmt.Sprint(doc["title"]), "Title two") {
		t.Errorf("document 1 %v, want the new title and the price", doc)
	}
}
