package records

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendors"
	"github.com/craftedge/craftedge/vendorsim"
)

// The records API's tests run a gateway in front of the vendor simulator
// (e2e.VendorCaddyfile): vendor shop, resource product.

// statusHit is the Cache-Status of a fresh hit of the craftedge handler.
const statusHit = "craftedge; hit"

// jobKindOutbox is the kind of the outbox jobs.
const jobKindOutbox = "outbox"

type vendorOptions struct {
	baseURL  string
	vendor   string // extra vendor subdirectives
	resource string // extra resource subdirectives
	storage  string
	global   string // extra craftedge global subdirectives
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
		Resource: o.resource, Public: !o.private, Site: o.site, Global: o.global})
}

// liveVendorSite routes /shop-api/* to the shop vendor's live route and
// the rest to the read model.
func liveVendorSite(handlerExtra string) string { return e2e.VendorLiveSite(handlerExtra) }

// vendorEnv is a gateway in front of the vendor simulator.
type vendorEnv struct{ *e2e.VendorEnv }

func startVendorGateway(t *testing.T, products int, o vendorOptions) *vendorEnv {
	t.Helper()
	sim, url := e2e.StartVendorSim(t, products)
	o.baseURL = url
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
	return &vendorEnv{e2e.StartVendorEnv(t, sim, o.baseURL, o.caddyfile(o), o.storage)}
}

// restartVendorGateway unloads craftedge (memory tier gone, bbolt file
// closed) and loads the same config on the same file again.
func (e *vendorEnv) restartVendorGateway(o vendorOptions) {
	e.T.Helper()
	e2e.StopGateway(e.T)
	if caddymodule.Running() {
		e.T.Fatal("craftedge app still registered after unloading it")
	}
	o.storage, o.baseURL = e.Storage, e.SimURL
	caddytest.NewTester(e.T).InitServer(vendorCaddyfile(o), "caddyfile")
	if e.T.Failed() {
		e.T.FailNow()
	}
}

// app is the running craftedge app.
func (e *vendorEnv) app() *caddymodule.App {
	e.T.Helper()
	app := caddymodule.ActiveApp()
	if app == nil {
		e.T.Fatal("no running craftedge app")
	}
	return app
}

// sync enqueues a vendor.sync job and waits for it to reach state.
func (e *vendorEnv) sync(key string, state jobs.State) jobs.Job {
	e.T.Helper()
	job, created, err := e.app().JobQueue().Enqueue(context.Background(), jobs.EnqueueRequest{
		Kind: "vendor.sync", Key: key, Payload: []byte(`{"vendor":"shop","resource":"product"}`),
	})
	if err != nil || !created {
		e.T.Fatalf("enqueue sync: created=%v err=%v", created, err)
	}
	return e2e.WaitJobState(e.Gateway, job.ID, state)
}

// outboxJobs lists the outbox jobs of the running app.
func (e *vendorEnv) outboxJobs() []jobs.Job {
	e.T.Helper()
	js, err := e.app().JobQueue().List(jobs.ListFilter{Kind: jobKindOutbox})
	if err != nil {
		e.T.Fatal(err)
	}
	return js
}

func (e *vendorEnv) health() caddymodule.Health {
	e.T.Helper()
	r := e.Admin(http.MethodGet, "/craftedge/health", "")
	e2e.WantStatus(e.T, r, 200)
	var h caddymodule.Health
	if err := json.Unmarshal([]byte(r.Body), &h); err != nil {
		e.T.Fatal(err)
	}
	return h
}

// decodeRecord decodes a read-model answer.
func decodeRecord(t *testing.T, r e2e.Response) vendors.Record {
	return e2e.DecodeJSON[vendors.Record](t, r)
}
