package vendors

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/craftedge/craftedge/circuit"
	"github.com/craftedge/craftedge/vendorsim"
)

func TestPushPresets(t *testing.T) {
	for _, name := range PushPresets {
		spec, err := PushPreset(name, "products")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := spec.Validate(); err != nil {
			t.Errorf("%s: preset does not validate: %v", name, err)
		}
	}
	for _, bad := range []string{"", "a/b", "a?b", "{id}", "a b", "a%2f"} {
		if _, err := PushPreset(PresetMeilisearch, bad); err == nil {
			t.Errorf("index %q accepted", bad)
		}
	}
	if _, err := PushPreset("solr", "x"); err == nil || !strings.Contains(err.Error(), "meilisearch") {
		t.Errorf("unknown preset: %v (want the known ones listed)", err)
	}
	for _, spec := range []PushSpec{
		{},
		{Path: "relative"},
		{Path: "//host/x"},
		{Path: "/x/{sku}"},
		{Path: "/x", Method: "GET"},
		{Path: "/x", DeleteMethod: "PATCH"},
		{Path: "/x", Body: "xml"},
		{Path: "/x", DeletePath: "/y/{nope}"},
	} {
		if err := spec.Validate(); err == nil {
			t.Errorf("%+v accepted", spec)
		}
	}
}

func TestPushDocumentShapes(t *testing.T) {
	rec := Record{Vendor: "shop", Resource: "products", ID: "7", Version: "3", UpdatedAt: t0,
		Fields: map[string]any{"title": "Mug", "price": 1299}, Tags: []string{"shop:product:7"}}
	algolia, _ := PushPreset(PresetAlgolia, "products")
	body, del, err := algolia.PushDocument(rec)
	if err != nil || del || string(body) != `{"objectID":"7","price":1299,"title":"Mug"}` {
		t.Errorf("algolia: %s %v %v", body, del, err)
	}
	meili, _ := PushPreset(PresetMeilisearch, "products")
	meili.Fields = []string{"title", "absent"}
	body, _, _ = meili.PushDocument(rec)
	if string(body) != `[{"id":"7","title":"Mug"}]` {
		t.Errorf("meilisearch with fields: %s", body)
	}
	gone := rec
	gone.Deleted = true
	if body, del, _ := meili.PushDocument(gone); !del || body != nil {
		t.Errorf("deleted record with a delete path: body %s, del %v", body, del)
	}
	events := PushSpec{Method: "POST", Path: "/events", Body: PushBodyRecord}
	body, del, _ = events.PushDocument(gone)
	var got map[string]any
	_ = json.Unmarshal(body, &got)
	if del || got["deleted"] != true || got["id"] != "7" || got["tags"] != nil || got["version"] != "3" {
		t.Errorf("record body of a deletion: %s (del %v)", body, del)
	}
	body, _, _ = PushSpec{Path: "/docs"}.PushDocument(gone)
	if string(body) != `{"_deleted":true,"id":"7","price":1299,"title":"Mug"}` {
		t.Errorf("document body of a deletion without a delete path: %s", body)
	}
}

// TestPushToIndex pushes through a real HTTP index (the simulator's):
// upserts, deletes (a 404 is done), the idempotency key, and the breaker.
func TestPushToIndex(t *testing.T) {
	sim, ep, c := startIndexClient(t, circuit.Config{Failures: 2, Cooldown: circuit.Duration(time.Hour)})
	ctx := context.Background()
	meili, _ := PushPreset(PresetMeilisearch, "products")
	rec := Record{Vendor: "shop", Resource: "products", ID: "7", Version: "1", Fields: map[string]any{"title": "Mug"}}

	if err := c.Push(ctx, meili, "products", rec, "k1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Push(ctx, meili, "products", rec, "k1"); err != nil { // a retry: replayed, no second effect
		t.Fatal(err)
	}
	if d, ok := sim.IndexDocument("products", "7"); !ok || d["title"] != "Mug" {
		t.Fatalf("document: %v %v", d, ok)
	}
	if n := len(sim.IndexWrites()); n != 1 {
		t.Errorf("%d effects for one push and its retry, want 1", n)
	}
	put := PushSpec{Path: "/indexes/products/documents/{id}"}
	rec.Fields["title"] = "Big mug"
	if err := c.Push(ctx, put, "products", rec, ""); err != nil {
		t.Fatal(err)
	}
	if d, _ := sim.IndexDocument("products", "7"); d["title"] != "Big mug" {
		t.Errorf("after PUT: %v", d)
	}
	rec.Deleted = true
	if err := c.Push(ctx, meili, "products", rec, "k2"); err != nil {
		t.Fatal(err)
	}
	if _, ok := sim.IndexDocument("products", "7"); ok {
		t.Error("deleted record still indexed")
	}
	if err := c.Push(ctx, meili, "products", rec, "k3"); err != nil {
		t.Errorf("delete of an absent document: %v (want done)", err)
	}

	// The index down: one record failing again and again does not open
	// the breaker; failures across records do, then calls are refused.
	ep.Chaos().Update(func(cc *vendorsim.ChaosConfig) { cc.ErrorRate = 1 })
	rec.Deleted = false
	for range 4 {
		if err := c.Push(ctx, meili, "products", rec, ""); err == nil || IsPermanent(err) || errors.Is(err, ErrBreakerOpen) {
			t.Fatalf("push to a failing index: %v (want a retryable error, breaker closed)", err)
		}
	}
	for _, id := range []string{"a", "b"} {
		other := rec
		other.ID = id
		if err := c.Push(ctx, meili, "products", other, ""); err == nil || errors.Is(err, ErrBreakerOpen) {
			t.Fatalf("push %s: %v", id, err)
		}
	}
	if err := c.Push(ctx, meili, "products", rec, ""); !errors.Is(err, ErrBreakerOpen) {
		t.Errorf("push after failures on three records: %v (want the breaker open)", err)
	}
	// A 4xx is permanent.
	ep.Chaos().Clear()
	// An id naming another endpoint of the engine is refused, never sent.
	algolia, _ := PushPreset(PresetAlgolia, "products")
	before := len(sim.IndexWrites())
	settings := rec
	settings.ID = "settings"
	if err := c.Push(ctx, algolia, "products", settings, ""); !IsPermanent(err) || !strings.Contains(err.Error(), "names another endpoint") {
		t.Errorf("algolia push of id settings: %v (want a permanent refusal)", err)
	}
	if n := len(sim.IndexWrites()); n != before {
		t.Errorf("the refused push reached the index")
	}
	c2, _ := newTestClient(t, Config{Name: "search2", BaseURLs: c.cfg.BaseURLs, Enabled: true, Rate: c.cfg.Rate,
		Headers: Headers{"Authorization": "Bearer wrong"}}, nil)
	if err := c2.Push(ctx, meili, "products", rec, ""); !IsPermanent(err) {
		t.Errorf("401: %v (want permanent)", err)
	}
}

// An index with one upsert path names the record in the breaker's path,
// escaped: ids that differ only after a '?' are different records (the
// breaker ignores whatever follows a '?' in a path), so failures across
// them open the breaker as failures across any records do.
func TestPushBreakerPathKeepsTheWholeID(t *testing.T) {
	_, ep, c := startIndexClient(t, circuit.Config{Failures: 3, MinPaths: 3, Cooldown: circuit.Duration(time.Hour)})
	ctx := context.Background()
	meili, _ := PushPreset(PresetMeilisearch, "products")
	ep.Chaos().Update(func(cc *vendorsim.ChaosConfig) { cc.ErrorRate = 1 })
	for _, id := range []string{"x?1", "x?2", "x?3"} {
		rec := Record{Vendor: "shop", Resource: "products", ID: id, Version: "1", Fields: map[string]any{"title": "Mug"}}
		if err := c.Push(ctx, meili, "products", rec, ""); err == nil || errors.Is(err, ErrBreakerOpen) {
			t.Fatalf("push %s to a failing index: %v (want its failure)", id, err)
		}
	}
	if c.BreakerState() != BreakerOpen {
		t.Fatalf("breaker %s after failures on three records, want open", c.BreakerState())
	}
}

// startIndexClient starts a simulated search index (its own simulator)
// and a client of it with breaker.
func startIndexClient(t *testing.T, breaker circuit.Config) (*vendorsim.Sim, *vendorsim.Endpoint, *Client) {
	t.Helper()
	sim := vendorsim.New(vendorsim.Options{})
	t.Cleanup(func() { _ = sim.Close() })
	ep := sim.NewEndpoint()
	srv, err := ep.Start("")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Name: "search", BaseURLs: []string{srv.URL()}, Enabled: true, Timeout: 5 * time.Second,
		Headers: Headers{"Authorization": "Bearer " + vendorsim.DefaultIndexToken},
		Rate:    RateLimit{PerSecond: 1000}, Breaker: breaker}
	c, _ := newTestClient(t, cfg, nil)
	return sim, ep, c
}
