package caddymodule

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/cluster"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendorsim"
)

// startClusterNodes starts node b with an embedded NATS server (this
// gateway's node) and node a, another node connected to it.
func startClusterNodes(t *testing.T) (a, b *cluster.Node) {
	t.Helper()
	b, err := cluster.Start(cluster.Config{NodeName: "b", ReconnectWait: 50 * time.Millisecond,
		Embedded: &cluster.Embedded{Listen: "127.0.0.1:0", StoreDir: t.TempDir()}}, cluster.Handlers{}, cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err = cluster.Start(cluster.Config{NodeName: "a", URLs: []string{b.ClientURL()}, ReconnectWait: 50 * time.Millisecond},
		cluster.Handlers{}, cluster.Options{})
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	return a, b
}

// TestClusterOutboxThroughTheRecordsAPI: in cluster mode an outbox write
// to this gateway is stored in the cluster and delivered once, with the
// client's (scoped) Idempotency-Key; a write another node accepted and
// that node then gone for good is delivered by this one; without NATS a
// write is refused with 503 and nothing is stored.
func TestClusterOutboxThroughTheRecordsAPI(t *testing.T) {
	e := startVendorGateway(t, 5, vendorOptions{})
	app := currentApp.Load()
	if app == nil {
		t.Fatal("no running craftedge app")
	}
	a, b := startClusterNodes(t)
	var closeB sync.Once
	stopB := func() { closeB.Do(func() { b.Close() }) }
	defer stopB()
	co, err := app.startClusterOutbox(b)
	if err != nil {
		t.Fatal(err)
	}
	defer co.Stop()
	e2e.WaitFor(t, "the cluster outbox ready", co.o.Ready)

	// Through this gateway's records API.
	hdr := map[string]string{"Content-Type": "application/json", "Idempotency-Key": "client-key-1"}
	body := `{"sku":"SKU-3","title":{"en":"Cluster teapot"},"price":{"amount":7,"currency":"EUR"},"stock":3}`
	r := e.Do(http.MethodPut, "/vendors/v1/shop/product/3", hdr, body)
	e2e.WantStatus(t, r, http.StatusAccepted)
	var acc OutboxAccepted
	if err := json.Unmarshal([]byte(r.Body), &acc); err != nil {
		t.Fatal(err)
	}
	if _, err := app.jobs.Get(acc.Job); err == nil {
		t.Fatal("the write went to the local queue")
	}
	e2e.WaitFor(t, "the write done", func() bool {
		j, err := app.OutboxJob(acc.Job)
		return err == nil && j.State == jobs.StateDone
	})
	// The client retries the same write: the same job, no second effect.
	r = e.Do(http.MethodPut, "/vendors/v1/shop/product/3", hdr, body)
	e2e.WantStatus(t, r, http.StatusAccepted)
	if !strings.Contains(r.Body, acc.Job) {
		t.Fatalf("the retried write is another job: %s", r.Body)
	}
	writes := e.Sim.WritesFor(vendorsim.KindProduct, "3")
	if len(writes) != 1 || writes[0].Key == "" {
		t.Fatalf("vendor saw %d writes of product 3 (%+v), want 1 with a key", len(writes), writes)
	}
	rec, err := app.Record("shop", "product", "3")
	if err != nil || rec.Fields["title"] != "Cluster teapot" {
		t.Fatalf("stored record %+v, %v", rec, err)
	}
	st := e.Get("/vendors/v1/outbox/" + acc.Job)
	e2e.WantStatus(t, st, http.StatusOK)
	e2e.WantStatus(t, e.Get("/vendors/v1/outbox/"+strings.Repeat("0", 32)), http.StatusNotFound)
	e2e.WantStatus(t, e.Get("/vendors/v1/outbox/not-an-id"), http.StatusNotFound) // as in the local queue, to an anonymous caller

	// Accepted by node a, which never comes back: delivered here, once.
	oa, err := cluster.NewOutbox(a, cluster.OutboxConfig{})
	if err != nil {
		t.Fatal(err)
	}
	e2e.WaitFor(t, "a's outbox ready", oa.Ready)
	req, err := app.OutboxWrite("shop", "product", "4", []byte(`{"sku":"SKU-4","title":{"en":"From a"},"price":{"amount":9,"currency":"EUR"},"stock":1}`))
	if err != nil {
		t.Fatal(err)
	}
	ja, created, err := oa.Accept(context.Background(), cluster.OutboxRequest{Kind: req.Kind, Key: "from-a-1",
		Entity: req.Entity, Payload: req.Payload})
	if err != nil || !created {
		t.Fatalf("a accepts: %v %v", created, err)
	}
	oa.Close()
	a.Close()
	e2e.WaitFor(t, "a's write delivered here", func() bool {
		j, err := app.OutboxJob(ja.ID)
		return err == nil && j.State == jobs.StateDone
	})
	if w := e.Sim.WritesFor(vendorsim.KindProduct, "4"); len(w) != 1 || w[0].Key != "from-a-1" {
		t.Fatalf("vendor saw %+v for a's write", w)
	}

	// NATS gone (this node's embedded server with it): refused, nothing stored.
	stopB()
	r = e.Do(http.MethodPut, "/vendors/v1/shop/product/5", map[string]string{"Content-Type": "application/json"},
		`{"sku":"SKU-5","title":{"en":"x"},"price":{"amount":1,"currency":"EUR"},"stock":1}`)
	e2e.WantStatus(t, r, http.StatusServiceUnavailable)
	if !strings.Contains(r.Body, "cluster") || r.Header.Get("Retry-After") == "" {
		t.Fatalf("503 without saying why: %q %v", r.Body, r.Header)
	}
	if n := len(e.Sim.WritesFor(vendorsim.KindProduct, "5")); n != 0 {
		t.Fatalf("vendor saw %d writes of a refused write", n)
	}
	co.Stop()
	// Back to the local queue once the cluster outbox stops.
	r = e.Do(http.MethodPut, "/vendors/v1/shop/product/5", map[string]string{"Content-Type": "application/json"},
		`{"sku":"SKU-5","title":{"en":"local"},"price":{"amount":1,"currency":"EUR"},"stock":1}`)
	e2e.WantStatus(t, r, http.StatusAccepted)
}
