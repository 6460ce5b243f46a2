package webhookhandler

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/caddymodule/internal/clock"
	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendors"
	"github.com/craftedge/craftedge/vendorsim"
)

// nowFunc is the gateway's clock (the tests move it with e2e.Advance).
var nowFunc = clock.Now

// The webhook rejection reasons, as labelled in the metrics and the
// status page.
const (
	rejectBadSignature  = "bad_signature"
	rejectStale         = "stale"
	rejectFuture        = "future"
	rejectReplay        = "replay"
	rejectTooLarge      = "too_large"
	rejectContentType   = "content_type"
	rejectBadPayload    = "bad_payload"
	rejectUnknownVendor = "unknown_vendor"
)

const jobKindVendorRefetch = "vendor.refetch"

// cfToken is the Cloudflare API token of the tests' CDN block.
const cfToken = "cf-test-token-7f3a9c"

// vendorEnv is a gateway in front of the vendor simulator.
type vendorEnv struct {
	*e2e.Gateway
	sim *vendorsim.Sim
	// simURL is the base URL the vendor block points at.
	simURL string
}

// sync enqueues a vendor.sync job and waits for it to reach state.
func (e *vendorEnv) sync(key string, state jobs.State) jobs.Job {
	e.T.Helper()
	app := caddymodule.ActiveApp()
	if app == nil {
		e.T.Fatal("no running craftedge app")
	}
	job, created, err := app.JobQueue().Enqueue(context.Background(), jobs.EnqueueRequest{
		Kind: "vendor.sync", Key: key, Payload: []byte(`{"vendor":"shop","resource":"product"}`),
	})
	if err != nil || !created {
		e.T.Fatalf("enqueue sync: created=%v err=%v", created, err)
	}
	return e2e.WaitJobState(e.Gateway, job.ID, state)
}

// decodeRecord decodes a read-model answer.
func decodeRecord(t *testing.T, r e2e.Response) vendors.Record {
	return e2e.DecodeJSON[vendors.Record](t, r)
}

// fakeCDN is a real HTTP server on 127.0.0.1 standing in for Cloudflare's
// purge API: it records every request's body and answers success.
type fakeCDN struct {
	ln     net.Listener
	mu     sync.Mutex
	bodies []string
}

type cdnRequest struct{ Body string }

func newFakeCDN(t *testing.T) *fakeCDN {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeCDN{ln: ln}
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return f
}

func (f *fakeCDN) url() string { return "http://" + f.ln.Addr().String() }

func (f *fakeCDN) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.bodies = append(f.bodies, string(b))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"success":true,"errors":[],"messages":[],"result":{"id":"x"}}`)
}

func (f *fakeCDN) got() []cdnRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]cdnRequest, 0, len(f.bodies))
	for _, b := range slices.Clone(f.bodies) {
		out = append(out, cdnRequest{Body: b})
	}
	return out
}
