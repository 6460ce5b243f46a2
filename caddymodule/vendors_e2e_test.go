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

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendorsim"
)

// The vendor gateway of the core's tests: a gateway in front of the vendor
// simulator (e2e.VendorCaddyfile) whose site is the records API by default.
// The records API's own tests (caddymodule/records) have theirs.

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
		// authentication is tested in caddymodule/records.
		o.site = "craftedge_records {\n\t\tallow_anonymous_writes\n\t}"
	}
	return e2e.VendorCaddyfile(e2e.VendorConfig{Storage: o.storage, BaseURL: o.baseURL, Vendor: o.vendor,
		Resource: o.resource, Public: !o.private, Site: o.site})
}

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
