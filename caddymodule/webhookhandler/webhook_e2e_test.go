package webhookhandler

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendors"
	"github.com/craftedge/craftedge/vendorsim"
	"github.com/craftedge/craftedge/webhook"
)

// Webhook secrets of the tests (Standard Webhooks: whsec_ + base64).
var (
	hookSecretNew  = "whsec_" + base64.StdEncoding.EncodeToString([]byte("new webhook secret, 32 bytes...."))
	hookSecretOld  = "whsec_" + base64.StdEncoding.EncodeToString([]byte("old webhook secret, 32 bytes...."))
	hookSecretBad  = "whsec_" + base64.StdEncoding.EncodeToString([]byte("forged secret, nobody has it...."))
	purgeSecret    = "whsec_" + base64.StdEncoding.EncodeToString([]byte("craft purge secret 32 bytes....."))
	hookCfgNew     = webhook.Config{Scheme: webhook.SchemeStandard, Secrets: []string{hookSecretNew}}
	hookCfgOld     = webhook.Config{Scheme: webhook.SchemeStandard, Secrets: []string{hookSecretOld}}
	hookCfgForged  = webhook.Config{Scheme: webhook.SchemeStandard, Secrets: []string{hookSecretBad}}
	purgeCfg       = webhook.Config{Scheme: webhook.SchemeStandard, Secrets: []string{purgeSecret}}
	hookURLPath    = "/webhooks/shop"
	purgeURLPath   = "/.craftedge/purge"
	productPage    = "/vendors/v1/shop/product/3"
	refetchBackoff = "backoff 10ms 50ms"
)

type webhookOptions struct {
	scheme   string // the webhook block's scheme lines; default "scheme standard"
	webhook  string // extra lines in the vendor's webhook block
	purge    string // extra lines in the craftedge_purge block
	global   string // extra lines in the global craftedge option (a cdn block)
	resource string // extra lines in the product resource (media fields)
	site     string // extra lines at the top of the site block (a log directive)
	storage  string
}

func webhookCaddyfile(simURL string, o webhookOptions) string {
	if o.scheme == "" {
		o.scheme = "scheme standard"
	}
	return fmt.Sprintf(`{
%s	grace_period 1ns
	skip_install_trust
	craftedge {
		storage %s
		memory 16MiB
		%s
		jobs {
			kind vendor.sync {
				backoff 10ms 50ms
			}
			kind vendor.refetch {
				%s
				max_attempts 3
			}
		}
		vendor shop {
			base_url %s
			version path v2
			header Authorization "Bearer {env.SHOP_TOKEN}"
			timeout 2s
			rate 1000/s burst 1000
			retries 0
			hedge 0s
			resource product {
				get /products/{id}
				list "/products?updated_since={since}&page={page}&per_page={per_page}" items data has_more has_more per_page 10
				id id
				version version
				updated updated_at
				field title title.en required
				field price price.amount required
				tags shop:product:{id}
				public
				%s
			}
			webhook {
				%s
				secret {env.SHOP_WEBHOOK_SECRET} {env.SHOP_WEBHOOK_SECRET_OLD}
				max_body_size 4KiB
				event product.* product
				%s
			}
		}
	}
}
%s {
	%s
	craftedge_webhook
	craftedge_purge {
		secret {env.CRAFT_PURGE_SECRET}
		%s
	}
	craftedge {
		upstream records
		ttl 1h
	}
	craftedge_records
}
`, e2e.GlobalPorts(), o.storage, o.global, refetchBackoff, simURL, o.resource, o.scheme, o.webhook, e2e.SiteAddr, o.site, o.purge)
}

type webhookEnv struct {
	*vendorEnv
	simURL string
	opts   webhookOptions
}

func startWebhookGateway(t *testing.T, o webhookOptions) *webhookEnv {
	t.Helper()
	t.Setenv("SHOP_TOKEN", vendorsim.DefaultCommerceToken)
	t.Setenv("SHOP_WEBHOOK_SECRET", hookSecretNew)
	t.Setenv("SHOP_WEBHOOK_SECRET_OLD", hookSecretOld)
	t.Setenv("CRAFT_PURGE_SECRET", purgeSecret)
	sim := vendorsim.New(vendorsim.Options{Products: 5, Seed: 1, Now: nowFunc})
	t.Cleanup(func() { _ = sim.Close() })
	srv, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if o.storage == "" {
		o.storage = filepath.Join(t.TempDir(), "craftedge.db")
	}
	caddymodule.ResetWebhookRejections()
	t.Cleanup(caddymodule.ResetWebhookRejections)
	g := e2e.StartConfig(t, nil, webhookCaddyfile(srv.URL(), o), o.storage)
	// The webhook tests read bodies as a browser would: decompressed.
	g.Client = &http.Client{Timeout: 10 * time.Second}
	e := &webhookEnv{vendorEnv: &vendorEnv{Gateway: g, sim: sim}, simURL: srv.URL(), opts: o}
	e.sync("first", jobs.StateDone)
	return e
}

// post sends a webhook to path signed with cfg at the given time.
func (e *webhookEnv) post(path string, cfg webhook.Config, id string, at time.Time, contentType, body string) e2e.Response {
	e.T.Helper()
	req := webhook.Request{Method: http.MethodPost, URL: e2e.SiteAddr + path, Header: http.Header{}, Body: []byte(body)}
	if err := cfg.Sign(&req, id, at); err != nil {
		e.T.Fatal(err)
	}
	h := map[string]string{"Content-Type": contentType}
	for k := range req.Header {
		h[k] = req.Header.Get(k)
	}
	return e.Do(http.MethodPost, path, h, body)
}

func (e *webhookEnv) event(cfg webhook.Config, id, body string) e2e.Response {
	e.T.Helper()
	return e.post(hookURLPath, cfg, id, nowFunc(), "application/json", body)
}

func productEvent(id string, version int) string {
	return fmt.Sprintf(`{"type":"product.updated","id":%q,"version":%d}`, id, version)
}

// refetchJobs lists the vendor.refetch jobs.
func (e *webhookEnv) refetchJobs() []jobs.Job {
	e.T.Helper()
	list, err := caddymodule.ActiveApp().JobQueue().List(jobs.ListFilter{Kind: jobKindVendorRefetch})
	if err != nil {
		e.T.Fatal(err)
	}
	return list
}

// waitRefetchesDone waits until n refetch jobs exist and all are done.
func (e *webhookEnv) waitRefetchesDone(n int) []jobs.Job {
	e.T.Helper()
	var list []jobs.Job
	e2e.WaitFor(e.T, fmt.Sprintf("%d refetch jobs to be done", n), func() bool {
		list = e.refetchJobs()
		if len(list) != n {
			return false
		}
		for _, j := range list {
			if j.State != jobs.StateDone && j.State != jobs.StateDead {
				return false
			}
		}
		return true
	})
	return list
}

func (e *webhookEnv) lineage(id string) caddymodule.LineageResponse {
	e.T.Helper()
	r := e.Admin(http.MethodGet, "/craftedge/lineage?vendor=shop&resource=product&id="+id, "")
	e2e.WantStatus(e.T, r, 200)
	var l caddymodule.LineageResponse
	if err := json.Unmarshal([]byte(r.Body), &l); err != nil {
		e.T.Fatal(err)
	}
	return l
}

func (e *webhookEnv) productGets() int {
	return e.sim.Requests().Count(vendorsim.RouteProductGet, 200) + e.sim.Requests().Count(vendorsim.RouteProductGet, 404)
}

// The whole path: a cached page built from a record; a signed webhook
// from the simulator; one refetch; the page's tag purged; the next request
// a miss with the new data. A forged webhook changes nothing.
func TestWebhookRefetchPurgesCachedRecord(t *testing.T) {
	e := startWebhookGateway(t, webhookOptions{})
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; fwd=")
	r := e.Get(productPage)
	e2e.WantCacheStatusPrefix(t, r, "craftedge; hit")
	before := decodeRecord(t, r)
	e.sim.Reset()

	if err := e.sim.AddWebhookTarget(e2e.SiteAddr+hookURLPath, hookCfgNew); err != nil {
		t.Fatal(err)
	}
	version, err := e.sim.Update(vendorsim.KindProduct, "3", func(f map[string]any) {
		f["title"] = map[string]any{"en": "Renamed by the vendor"}
	})
	if err != nil {
		t.Fatal(err)
	}
	sent := e.sim.Webhooks()
	if len(sent) != 1 || sent[0].Status != http.StatusAccepted || sent[0].Err != nil {
		t.Fatalf("simulator deliveries = %+v, want one answered 202", sent)
	}
	list := e.waitRefetchesDone(1)
	if list[0].State != jobs.StateDone || list[0].Key != fmt.Sprintf("shop:product:3:%d", version) {
		t.Fatalf("refetch job = %+v", list[0])
	}
	if n := e.sim.Requests().Count(vendorsim.RouteProductGet, 200); n != 1 {
		t.Fatalf("simulator saw %d GETs of the product, want exactly 1", n)
	}
	r = e.Get(productPage)
	e2e.WantCacheStatusPrefix(t, r, "craftedge; fwd=")
	after := decodeRecord(t, r)
	if after.Fields["title"] != "Renamed by the vendor" || after.Version == before.Version {
		t.Fatalf("after the webhook: %+v", after)
	}
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; hit")
	// Other records' pages were not purged.
	e2e.WantCacheStatusPrefix(t, e.Get("/vendors/v1/shop/product/4"), "craftedge; fwd=")
	e2e.WantCacheStatusPrefix(t, e.Get("/vendors/v1/shop/product/4"), "craftedge; hit")

	// Lineage: the webhook change names its delivery and job; the sync
	// before it names its job.
	l := e.lineage("3")
	if len(l.Changes) != 2 || l.Record == nil || l.Record.Version != after.Version {
		t.Fatalf("lineage = %+v", l)
	}
	if c := l.Changes[0]; c.Source != vendors.SourceWebhook || c.Delivery != sent[0].DeliveryID || c.Job != list[0].ID ||
		c.Version != after.Version || c.PreviousVersion != before.Version {
		t.Fatalf("webhook change = %+v (delivery %s, job %s)", c, sent[0].DeliveryID, list[0].ID)
	}
	if c := l.Changes[1]; c.Source != vendors.SourceSync || c.Job == "" || c.Delivery != "" {
		t.Fatalf("sync change = %+v", c)
	}

	// A forged webhook (right shape, wrong secret) changes nothing.
	e.sim.ClearWebhookTargets()
	e.sim.Reset()
	if _, err := e.sim.Update(vendorsim.KindProduct, "3", func(f map[string]any) {
		f["title"] = map[string]any{"en": "Changed again"}
	}); err != nil {
		t.Fatal(err)
	}
	forged := e.event(hookCfgForged, "msg_forged", productEvent("3", version+1))
	e2e.WantStatus(t, forged, http.StatusUnauthorized)
	if !strings.Contains(forged.Body, rejectBadSignature) {
		t.Fatalf("forged answer = %s", forged.Body)
	}
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; hit")
	if n := len(e.refetchJobs()); n != 1 || e.productGets() != 0 {
		t.Fatalf("a forged webhook made %d jobs, %d vendor GETs", n, e.productGets())
	}
	if l := e.lineage("3"); len(l.Changes) != 2 {
		t.Fatalf("lineage after a forged webhook: %+v", l.Changes)
	}
}

func TestWebhookRejections(t *testing.T) {
	e := startWebhookGateway(t, webhookOptions{})
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; fwd=")
	rejected := func(reason string) float64 {
		v := e2e.Scrape(e.Gateway, fmt.Sprintf(`craftedge_webhooks_rejected_total{reason=%q,vendor="shop"}`, reason))
		return max(v, 0)
	}
	now := nowFunc()
	body := productEvent("3", 2)
	for _, tc := range []struct {
		name, path, ctype, body, reason string
		cfg                             webhook.Config
		at                              time.Time
		status                          int
	}{
		{"bad signature", hookURLPath, "application/json", body, rejectBadSignature, hookCfgForged, now, 401},
		{"stale", hookURLPath, "application/json", body, rejectStale, hookCfgNew, now.Add(-6 * time.Minute), 401},
		{"future", hookURLPath, "application/json", body, rejectFuture, hookCfgNew, now.Add(6 * time.Minute), 401},
		{"too large", hookURLPath, "application/json", `{"type":"product.updated","id":"3","pad":"` + strings.Repeat("x", 5000) + `"}`, rejectTooLarge, hookCfgNew, now, 413},
		{"content type", hookURLPath, "text/plain", body, rejectContentType, hookCfgNew, now, 415},
		{"no record id", hookURLPath, "application/json", `{"type":"product.updated"}`, rejectBadPayload, hookCfgNew, now, 400},
		{"not json", hookURLPath, "application/json", `{"type":`, rejectBadPayload, hookCfgNew, now, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := rejected(tc.reason)
			r := e.post(tc.path, tc.cfg, "msg_"+strings.ReplaceAll(tc.name, " ", "_"), tc.at, tc.ctype, tc.body)
			e2e.WantStatus(t, r, tc.status)
			var eb caddymodule.ErrorBody
			if err := json.Unmarshal([]byte(r.Body), &eb); err != nil || eb.Reason != tc.reason || eb.Error == "" {
				t.Fatalf("body %s is not an error body naming reason %s (%v)", r.Body, tc.reason, err)
			}
			if got := rejected(tc.reason); got != before+1 {
				t.Fatalf("rejected{reason=%s} went %v → %v", tc.reason, before, got)
			}
		})
	}
	// Missing signature headers.
	e2e.WantStatus(t, e.Do(http.MethodPost, hookURLPath, map[string]string{"Content-Type": "application/json"}, body), 401)
	// Unknown vendor, wrong method.
	unknown := e2e.Scrape(e.Gateway, `craftedge_webhooks_rejected_total{reason="unknown_vendor",vendor="unknown"}`)
	e2e.WantStatus(t, e.post("/webhooks/nope", hookCfgNew, "msg_x", now, "application/json", body), 404)
	if got := e2e.Scrape(e.Gateway, `craftedge_webhooks_rejected_total{reason="unknown_vendor",vendor="unknown"}`); got != max(unknown, 0)+1 {
		t.Fatalf("unknown_vendor count %v → %v", unknown, got)
	}
	e2e.WantStatus(t, e.Get(hookURLPath), http.StatusMethodNotAllowed)
	if n := len(e.refetchJobs()); n != 0 || e.productGets() != 0 {
		t.Fatalf("rejected webhooks made %d jobs, %d vendor GETs", n, e.productGets())
	}
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; hit")

	// Replay: the same delivery id again is acknowledged, not processed.
	body = productEvent("3", 1)
	e2e.WantStatus(t, e.event(hookCfgNew, "msg_once", body), http.StatusAccepted)
	jobsBefore := e.waitRefetchesDone(1)
	replays := rejected(rejectReplay)
	r := e.event(hookCfgNew, "msg_once", body)
	e2e.WantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.Body, "duplicate") || rejected(rejectReplay) != replays+1 {
		t.Fatalf("replay answer %s, replay count %v → %v", r.Body, replays, rejected(rejectReplay))
	}
	if got := e.refetchJobs(); len(got) != 1 || got[0].ID != jobsBefore[0].ID || got[0].Attempts != 1 {
		t.Fatalf("a replay made a new job or ran it again: %+v", got)
	}
	// The replay key survives a restart (bbolt).
	e.restartWebhook()
	e2e.WantStatus(t, e.event(hookCfgNew, "msg_once", body), http.StatusOK)

	received := e2e.Scrape(e.Gateway, `craftedge_webhooks_received_total{vendor="shop"}`)
	verified := e2e.Scrape(e.Gateway, `craftedge_webhooks_verified_total{vendor="shop"}`)
	if received < 12 || verified < 5 || received-verified < 7 {
		t.Fatalf("received %v, verified %v", received, verified)
	}

	// The recent rejections (which the status page lists) name no secret.
	rejections := caddymodule.RecentWebhookRejections()
	st, err := json.Marshal(rejections)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]bool{}
	for _, w := range rejections {
		reasons[w.Reason] = true
		if w.RemoteIP == "" || w.Status == 0 {
			t.Fatalf("rejection without sender or status: %+v", w)
		}
	}
	for _, want := range []string{rejectStale, rejectFuture, rejectBadSignature, rejectTooLarge, rejectContentType, rejectUnknownVendor, rejectReplay} {
		if !reasons[want] {
			t.Fatalf("recent rejections %+v lack %s", rejections, want)
		}
	}
	for _, secret := range []string{hookSecretNew, hookSecretOld, hookSecretBad, strings.TrimPrefix(hookSecretNew, "whsec_")} {
		if strings.Contains(string(st), secret) {
			t.Fatal("a recent rejection shows a secret")
		}
	}
}

// restartWebhook unloads craftedge and loads the same config again.
func (e *webhookEnv) restartWebhook() {
	e.T.Helper()
	e2e.StopGateway(e.T)
	e.Tester.InitServer(webhookCaddyfile(e.simURL, e.opts), "caddyfile")
	if e.T.Failed() {
		e.T.FailNow()
	}
}

// Many deliveries for one version of a record arriving while its refetch
// has not started coalesce into one refetch; a new version gets its own.
func TestWebhookDeliveriesCoalesce(t *testing.T) {
	e := startWebhookGateway(t, webhookOptions{})
	e.sim.Reset()
	version, err := e.sim.Update(vendorsim.KindProduct, "2", func(f map[string]any) { f["stock"] = 7 })
	if err != nil {
		t.Fatal(err)
	}
	// The vendor rate-limits the first refetch for an hour: it waits,
	// ready, while the other deliveries arrive.
	if err := e.sim.Chaos().Set(vendorsim.ChaosConfig{ThrottleNext: 1, RetryAfter: time.Hour}); err != nil {
		t.Fatal(err)
	}
	var jobIDs []string
	for i := range 5 {
		if i == 1 {
			e2e.WaitFor(t, "the refetch to back off", func() bool {
				j := e2e.JobByID(e.Gateway, jobIDs[0])
				return j.State == jobs.StateReady && j.Attempts == 1
			})
		}
		r := e.event(hookCfgNew, fmt.Sprintf("msg_c%d", i), productEvent("2", version))
		e2e.WantStatus(t, r, http.StatusAccepted)
		var ack struct {
			Job       string `json:"job"`
			Coalesced bool   `json:"coalesced"`
		}
		_ = json.Unmarshal([]byte(r.Body), &ack)
		if ack.Coalesced != (i > 0) {
			t.Fatalf("delivery %d: coalesced = %v", i, ack.Coalesced)
		}
		jobIDs = append(jobIDs, ack.Job)
	}
	e2e.Advance(time.Hour + time.Minute) // the vendor's Retry-After has passed
	e.waitRefetchesDone(1)
	for _, id := range jobIDs[1:] {
		if id != jobIDs[0] {
			t.Fatalf("deliveries got different jobs: %v", jobIDs)
		}
	}
	if n := e.productGets(); n != 1 {
		t.Fatalf("5 deliveries made %d GETs, want 1", n)
	}
	version, _ = e.sim.Update(vendorsim.KindProduct, "2", func(f map[string]any) { f["stock"] = 8 })
	e2e.WantStatus(t, e.event(hookCfgNew, "msg_c_next", productEvent("2", version)), http.StatusAccepted)
	e.waitRefetchesDone(2)
	if n := e.productGets(); n != 2 {
		t.Fatalf("a new version made %d GETs in total, want 2", n)
	}
	// An event type the webhook block does not map is acknowledged and
	// ignored.
	r := e.event(hookCfgNew, "msg_order", `{"type":"order.created","id":"9"}`)
	e2e.WantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.Body, "ignored") || len(e.refetchJobs()) != 2 {
		t.Fatalf("ignored event: %s, %d jobs", r.Body, len(e.refetchJobs()))
	}
}

// Rotation: while both secrets are configured, deliveries signed with
// either are accepted; once the old one's variable is unset (reload), only
// the new one is.
func TestWebhookSecretRotation(t *testing.T) {
	e := startWebhookGateway(t, webhookOptions{})
	e2e.WantStatus(t, e.event(hookCfgOld, "msg_old", productEvent("1", 1)), http.StatusAccepted)
	e2e.WantStatus(t, e.event(hookCfgNew, "msg_new", productEvent("2", 1)), http.StatusAccepted)
	// The vendor signs with both during its own rotation (several
	// signatures in one header): accepted.
	both := webhook.Config{Scheme: webhook.SchemeStandard, Secrets: []string{hookSecretBad}}
	req := webhook.Request{Method: http.MethodPost, URL: e2e.SiteAddr + hookURLPath, Header: http.Header{}, Body: []byte(productEvent("4", 1))}
	// One timestamp for both signatures: two clock reads can straddle a
	// second, and the header carries only the first one's.
	signedAt := nowFunc()
	_ = both.Sign(&req, "msg_both", signedAt)
	other := webhook.Request{Method: http.MethodPost, URL: e2e.SiteAddr + hookURLPath, Header: http.Header{}, Body: req.Body}
	_ = hookCfgNew.Sign(&other, "msg_both", signedAt)
	h := map[string]string{"Content-Type": "application/json"}
	for k := range req.Header {
		h[k] = req.Header.Get(k)
	}
	// The canonical key: h already holds req's single signature under it,
	// and a second spelling would make the header depend on map order.
	h[http.CanonicalHeaderKey(webhook.HeaderStandardSignature)] = req.Header.Get(webhook.HeaderStandardSignature) + " " + other.Header.Get(webhook.HeaderStandardSignature)
	e2e.WantStatus(t, e.Do(http.MethodPost, hookURLPath, h, string(req.Body)), http.StatusAccepted)

	// Retire the old secret: unset its variable and reload. (Caddy skips
	// a reload whose config is unchanged, so an env-only change needs
	// `caddy reload --force`; here the window line changes the config.)
	t.Setenv("SHOP_WEBHOOK_SECRET_OLD", "")
	e.opts.webhook = "window 4m"
	e.Tester.InitServer(webhookCaddyfile(e.simURL, e.opts), "caddyfile")
	e2e.WantStatus(t, e.event(hookCfgOld, "msg_old_2", productEvent("1", 1)), http.StatusUnauthorized)
	e2e.WantStatus(t, e.event(hookCfgNew, "msg_new_2", productEvent("5", 1)), http.StatusAccepted)
}

// A refetch answered 404 marks the record deleted and purges its page.
func TestWebhookRefetchNotFoundMarksDeleted(t *testing.T) {
	e := startWebhookGateway(t, webhookOptions{})
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; fwd=")
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; hit")
	if err := e.sim.AddWebhookTarget(e2e.SiteAddr+hookURLPath, hookCfgNew); err != nil {
		t.Fatal(err)
	}
	e.sim.Reset()
	if err := e.sim.Delete(vendorsim.KindProduct, "3"); err != nil {
		t.Fatal(err)
	}
	if sent := e.sim.Webhooks(); len(sent) != 1 || sent[0].Status != http.StatusAccepted {
		t.Fatalf("deliveries = %+v", sent)
	}
	list := e.waitRefetchesDone(1)
	if list[0].State != jobs.StateDone || e.sim.Requests().Count(vendorsim.RouteProductGet, 404) != 1 {
		t.Fatalf("refetch %+v; sim %+v", list[0], e.sim.Requests())
	}
	r := e.Get(productPage)
	e2e.WantStatus(t, r, http.StatusGone)
	l := e.lineage("3")
	if len(l.Changes) != 2 || !l.Changes[0].Deleted || l.Changes[0].Source != vendors.SourceWebhook || l.Record == nil || !l.Record.Deleted {
		t.Fatalf("lineage after a 404 refetch: %+v", l)
	}
}

// craftedge_purge: a signed purge from Craft on another host; forged,
// stale, replayed and malformed purges change nothing.
func TestRemotePurge(t *testing.T) {
	e := startWebhookGateway(t, webhookOptions{})
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; fwd=")
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; hit")
	purge := `{"tags":["shop:product:3"]}`
	purgeRejected := func(reason string) float64 {
		return max(e2e.Scrape(e.Gateway, fmt.Sprintf(`craftedge_webhooks_rejected_total{reason=%q,vendor="craftedge_purge"}`, reason)), 0)
	}

	bad := purgeRejected(rejectBadSignature)
	e2e.WantStatus(t, e.post(purgeURLPath, hookCfgNew, "p_forged", nowFunc(), "application/json", purge), http.StatusUnauthorized)
	e2e.WantStatus(t, e.post(purgeURLPath, purgeCfg, "p_stale", nowFunc().Add(-10*time.Minute), "application/json", purge), http.StatusUnauthorized)
	e2e.WantStatus(t, e.post(purgeURLPath, purgeCfg, "p_bad", nowFunc(), "application/json", `{"tags":[""]}`), http.StatusBadRequest)
	e2e.WantStatus(t, e.post(purgeURLPath, purgeCfg, "p_unknown", nowFunc(), "application/json", `{"tagz":["x"]}`), http.StatusBadRequest)
	e2e.WantStatus(t, e.post(purgeURLPath, purgeCfg, "p_mode", nowFunc(), "application/json", `{"tags":["x"],"mode":"gentle"}`), http.StatusBadRequest)
	e2e.WantStatus(t, e.post(purgeURLPath, purgeCfg, "p_big", nowFunc(), "application/json", `{"tags":["`+strings.Repeat("x", 70<<10)+`"]}`), http.StatusRequestEntityTooLarge)
	e2e.WantStatus(t, e.post(purgeURLPath, purgeCfg, "p_type", nowFunc(), "text/plain", purge), http.StatusUnsupportedMediaType)
	if got := purgeRejected(rejectBadSignature); got != bad+1 {
		t.Fatalf("purge bad_signature count %v → %v", bad, got)
	}
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; hit")

	r := e.post(purgeURLPath, purgeCfg, "p_ok", nowFunc(), "application/json", purge)
	e2e.WantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.Body, `"purged": 1`) {
		t.Fatalf("purge answer %s", r.Body)
	}
	// Soft (purge_mode's default): the copy was kept, stale, and is
	// fetched again (answering after stale_after if the upstream is slower).
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; fwd=stale")
	e2e.WaitFor(t, "the soft-purged page fetched again", func() bool {
		return strings.HasPrefix(e.Get(productPage).Header.Get("Cache-Status"), "craftedge; hit")
	})
	// Hard, as the purge asks: the copy is gone.
	r = e.post(purgeURLPath, purgeCfg, "p_hard", nowFunc(), "application/json", `{"tags":["shop:product:3"],"mode":"hard"}`)
	e2e.WantStatus(t, r, http.StatusOK)
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; fwd=miss")
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; hit")
	// Replayed: acknowledged, nothing purged.
	r = e.post(purgeURLPath, purgeCfg, "p_ok", nowFunc(), "application/json", purge)
	e2e.WantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.Body, "duplicate") {
		t.Fatalf("replayed purge answer %s", r.Body)
	}
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; hit")
}

func TestWebhookLineageRoute(t *testing.T) {
	e := startWebhookGateway(t, webhookOptions{})
	l := e.lineage("1")
	if len(l.Changes) != 1 || l.Changes[0].Source != vendors.SourceSync || l.Record == nil {
		t.Fatalf("lineage after the first sync: %+v", l)
	}
	for path, code := range map[string]int{
		"/craftedge/lineage":                                     400,
		"/craftedge/lineage?vendor=shop&resource=product":        400,
		"/craftedge/lineage?vendor=nope&resource=product&id=1":   404,
		"/craftedge/lineage?vendor=shop&resource=nope&id=1":      404,
		"/craftedge/lineage?vendor=shop&resource=product&id=999": 404,
	} {
		e2e.WantStatus(t, e.Admin(http.MethodGet, path, ""), code)
	}
	e2e.WantStatus(t, e.Admin(http.MethodPost, "/craftedge/lineage?vendor=shop&resource=product&id=1", ""), 405)
}

// Bad webhook and craftedge_purge config fails at load, naming the line.
func TestWebhookCaddyfileErrors(t *testing.T) {
	t.Setenv("SHOP_WEBHOOK_SECRET", hookSecretNew)
	t.Setenv("CRAFT_PURGE_SECRET", purgeSecret)
	base := webhookCaddyfile("http://127.0.0.1:1", webhookOptions{storage: filepath.Join(t.TempDir(), "x.db")})
	for _, tc := range []struct{ extra, want string }{
		{"frobnicate 1", "unknown webhook subdirective"},
		{"window -1s", "must not be negative"},
		{"replay_ttl 1m", "replay_ttl 1m0s must be longer than the window"},
		{"content_type ;;", "content_type"},
		{"secret notbase64!", "not a Standard Webhooks secret"},
		{"encoding hex", "only used by the hmac and static schemes"},
		{"event product.*.x product", "* is only allowed at the end"},
	} {
		cfg := strings.Replace(base, "\t\t\t\tevent product.* product\n", "\t\t\t\tevent product.* product\n\t\t\t\t"+tc.extra+"\n", 1)
		e2e.AssertLoadError(t, cfg, tc.want)
	}
	// Checked against the resources: named at the webhook line.
	cfg := strings.Replace(base, "event product.* product", "event order.* order", 1)
	line := 1 + strings.Count(cfg[:strings.Index(cfg, "webhook {")], "\n")
	caddytest.AssertLoadError(t, cfg, "caddyfile", fmt.Sprintf("Caddyfile:%d: vendor \\\"shop\\\": webhook: unknown resource \\\"order\\\"", line))
	// No scheme.
	cfg = strings.Replace(base, "\t\t\t\tscheme standard\n", "\t\t\t\t\n", 1)
	e2e.AssertLoadError(t, cfg, "scheme is required")
	// craftedge_purge without a secret.
	cfg = strings.Replace(base, "\t\tsecret {env.CRAFT_PURGE_SECRET}\n", "", 1)
	e2e.AssertLoadError(t, cfg, "craftedge_purge: secret is required")
	// Every secret placeholder empty: refused at provision.
	t.Setenv("SHOP_WEBHOOK_SECRET", "")
	t.Setenv("SHOP_WEBHOOK_SECRET_OLD", "")
	caddytest.AssertLoadError(t, base, "caddyfile", "no secret configured")
}

// The drop knob of the simulator: dropped deliveries never arrive; the
// delta sync heals the record anyway.
func TestWebhookDroppedHealedBySync(t *testing.T) {
	e := startWebhookGateway(t, webhookOptions{})
	if err := e.sim.AddWebhookTarget(e2e.SiteAddr+hookURLPath, hookCfgNew); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.SetWebhookDropRate(1); err != nil {
		t.Fatal(err)
	}
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; fwd=")
	if _, err := e.sim.Update(vendorsim.KindProduct, "3", func(f map[string]any) {
		f["title"] = map[string]any{"en": "Changed while webhooks drop"}
	}); err != nil {
		t.Fatal(err)
	}
	if sent := e.sim.Webhooks(); len(sent) != 1 || !sent[0].Dropped {
		t.Fatalf("deliveries = %+v", sent)
	}
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; hit")
	e.sync("heal", jobs.StateDone)
	r := e.Get(productPage)
	e2e.WantCacheStatusPrefix(t, r, "craftedge; fwd=")
	if rec := decodeRecord(t, r); rec.Fields["title"] != "Changed while webhooks drop" {
		t.Fatalf("after the sync: %+v", rec)
	}
}

// The generic HMAC scheme through Caddy: header, prefix, encoding and a
// signed timestamp header come from the webhook block.
func TestWebhookGenericHMACScheme(t *testing.T) {
	e := startWebhookGateway(t, webhookOptions{scheme: "scheme hmac\n\t\t\t\theader X-Hub-Signature-256\n\t\t\t\tprefix sha256=\n\t\t\t\tencoding base64\n\t\t\t\ttimestamp_header X-Hub-Timestamp"})
	cfg := webhook.Config{Scheme: webhook.SchemeHMAC, Secrets: []string{hookSecretOld}, Header: "X-Hub-Signature-256",
		Prefix: "sha256=", Encoding: "base64", TimestampHeader: "X-Hub-Timestamp"}
	at := nowFunc()
	e2e.WantStatus(t, e.post(hookURLPath, cfg, "", at, "application/json", productEvent("3", 1)), http.StatusAccepted)
	// The same signed request again: timestamp and body are the replay key.
	e2e.WantStatus(t, e.post(hookURLPath, cfg, "", at, "application/json", productEvent("3", 1)), http.StatusOK)
	stale := e.post(hookURLPath, cfg, "", nowFunc().Add(-time.Hour), "application/json", productEvent("4", 1))
	e2e.WantStatus(t, stale, http.StatusUnauthorized)
	if !strings.Contains(stale.Body, rejectStale) {
		t.Fatalf("stale answer %s", stale.Body)
	}
	hex := cfg
	hex.Encoding = "hex"
	e2e.WantStatus(t, e.event(hex, "", productEvent("5", 1)), http.StatusUnauthorized)
	e2e.WantStatus(t, e.event(hookCfgNew, "msg_std", productEvent("5", 1)), http.StatusUnauthorized)
	e.waitRefetchesDone(1)
}

// A delete announced with the version of an update already refetched (the
// vendor's delete carries the record's last version) gets its own
// refetch: the done refetch of the update does not swallow it.
func TestWebhookDeleteAfterUpdateOfSameVersion(t *testing.T) {
	e := startWebhookGateway(t, webhookOptions{})
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; fwd=")
	if err := e.sim.AddWebhookTarget(e2e.SiteAddr+hookURLPath, hookCfgNew); err != nil {
		t.Fatal(err)
	}
	e.sim.Reset()
	version, err := e.sim.Update(vendorsim.KindProduct, "3", func(f map[string]any) { f["stock"] = 1 })
	if err != nil {
		t.Fatal(err)
	}
	e.waitRefetchesDone(1)
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; fwd=")
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; hit")
	if err := e.sim.Delete(vendorsim.KindProduct, "3"); err != nil {
		t.Fatal(err)
	}
	sent := e.sim.Webhooks()
	if len(sent) != 2 || sent[1].Status != http.StatusAccepted {
		t.Fatalf("deliveries = %+v", sent)
	}
	if ev := sent[1].Event; ev.Type != "product.deleted" || ev.Version != version {
		t.Fatalf("the delete delivery %+v does not carry version %d", ev, version)
	}
	list := e.waitRefetchesDone(2)
	if list[1].Key == list[0].Key || list[1].State != jobs.StateDone {
		t.Fatalf("refetch jobs = %+v", list)
	}
	if n := e.sim.Requests().Count(vendorsim.RouteProductGet, 404); n != 1 {
		t.Fatalf("vendor GETs answered 404 = %d, want 1", n)
	}
	e2e.WantStatus(t, e.Get(productPage), http.StatusGone)
	if l := e.lineage("3"); l.Record == nil || !l.Record.Deleted || l.Changes[0].Delivery != sent[1].DeliveryID {
		t.Fatalf("lineage = %+v", l)
	}
}

// Schemes without a delivery id: a repeat of the same body sent later
// (an editor saving entry 5 twice) is processed again. With a signed
// timestamp the replay key is timestamp+body, so only the very same
// signed request is a duplicate; without a timestamp nothing is deduped.
func TestSignedRepeatsWithoutDeliveryID(t *testing.T) {
	purge := `{"tags":["shop:product:3"]}`
	purged := func(e *webhookEnv, r e2e.Response) {
		t.Helper()
		e2e.WantStatus(t, r, http.StatusOK)
		if !strings.Contains(r.Body, `"purged": 1`) {
			t.Fatalf("purge answer %s", r.Body)
		}
		e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; fwd=")
		e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; hit")
	}

	// craftedge_purge with hmac and a timestamp header; webhooks with a
	// static secret.
	e := startWebhookGateway(t, webhookOptions{
		scheme: "scheme static\n\t\t\t\theader X-Shop-Secret",
		purge:  "scheme hmac\n\t\theader X-Craft-Signature\n\t\ttimestamp_header X-Craft-Timestamp",
	})
	hmacCfg := webhook.Config{Scheme: webhook.SchemeHMAC, Secrets: []string{purgeSecret}, Header: "X-Craft-Signature", TimestampHeader: "X-Craft-Timestamp"}
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; fwd=")
	at := nowFunc()
	purged(e, e.post(purgeURLPath, hmacCfg, "", at, "application/json", purge))
	// The same signed request (a replay) is a duplicate and purges nothing.
	r := e.post(purgeURLPath, hmacCfg, "", at, "application/json", purge)
	e2e.WantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.Body, "duplicate") {
		t.Fatalf("replayed purge answer %s", r.Body)
	}
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; hit")
	// The same purge sent again later is a new purge.
	e2e.Advance(time.Minute)
	purged(e, e.post(purgeURLPath, hmacCfg, "", nowFunc(), "application/json", purge))

	// Static webhooks: the same event twice makes two accepted
	// deliveries (coalesced into one refetch while it waits).
	static := webhook.Config{Scheme: webhook.SchemeStatic, Secrets: []string{hookSecretNew}, Header: "X-Shop-Secret"}
	for i := range 2 {
		r := e.event(static, "", productEvent("4", 1))
		e2e.WantStatus(t, r, http.StatusAccepted)
		if strings.Contains(r.Body, "duplicate") {
			t.Fatalf("delivery %d: %s", i, r.Body)
		}
	}
	e.waitRefetchesDone(len(e.refetchJobs()))

	// craftedge_purge with a static secret: never deduplicated.
	e2e.StopGateway(t)
	e = startWebhookGateway(t, webhookOptions{purge: "scheme static\n\t\theader X-Craft-Purge-Secret"})
	staticPurge := webhook.Config{Scheme: webhook.SchemeStatic, Secrets: []string{purgeSecret}, Header: "X-Craft-Purge-Secret"}
	e2e.WantCacheStatusPrefix(t, e.Get(productPage), "craftedge; fwd=")
	purged(e, e.post(purgeURLPath, staticPurge, "", nowFunc(), "application/json", purge))
	purged(e, e.post(purgeURLPath, staticPurge, "", nowFunc(), "application/json", purge))
}

// cdnRequestsWithTag counts the fake CDN's requests whose body names tag.
func cdnRequestsWithTag(cdn *fakeCDN, tag string) int {
	n := 0
	for _, r := range cdn.got() {
		if strings.Contains(r.Body, `"`+tag+`"`) {
			n++
		}
	}
	return n
}

// A purge that fails inside a job (here: the CDN purge cannot be queued)
// fails the job; its retry purges the record's tags again although the
// record is unchanged by then, so the CDN does get the purge. Refetch and
// sync.
func TestJobPurgeFailureIsRetried(t *testing.T) {
	t.Setenv("CF_API_TOKEN", cfToken)
	cdn := newFakeCDN(t)
	e := startWebhookGateway(t, webhookOptions{global: `cdn cloudflare zone-abc {
			token {env.CF_API_TOKEN}
			endpoint ` + cdn.url() + `
		}`})
	t.Cleanup(func() { caddymodule.FailCDNEnqueues(0) })
	const tag = "shop:product:3"
	e2e.WaitFor(t, "the first sync's CDN purges", func() bool { return cdnRequestsWithTag(cdn, tag) == 1 })

	// Refetch.
	if err := e.sim.AddWebhookTarget(e2e.SiteAddr+hookURLPath, hookCfgNew); err != nil {
		t.Fatal(err)
	}
	caddymodule.FailCDNEnqueues(1)
	if _, err := e.sim.Update(vendorsim.KindProduct, "3", func(f map[string]any) { f["stock"] = 1 }); err != nil {
		t.Fatal(err)
	}
	j := e.waitRefetchesDone(1)[0]
	if j.State != jobs.StateDone || j.Attempts != 2 || !strings.Contains(j.History[0].Error, "forwarding the purge to the CDN") {
		t.Fatalf("refetch job = %+v", j)
	}
	e2e.WaitFor(t, "the refetch's CDN purge", func() bool { return cdnRequestsWithTag(cdn, tag) == 2 })

	// Sync.
	e.sim.ClearWebhookTargets()
	if _, err := e.sim.Update(vendorsim.KindProduct, "3", func(f map[string]any) { f["stock"] = 2 }); err != nil {
		t.Fatal(err)
	}
	caddymodule.FailCDNEnqueues(1)
	j = e.sync("after the fault", jobs.StateDone)
	if j.Attempts != 2 || !strings.Contains(j.History[0].Error, "forwarding the purge to the CDN") {
		t.Fatalf("sync job = %+v", j)
	}
	e2e.WaitFor(t, "the sync's CDN purge", func() bool { return cdnRequestsWithTag(cdn, tag) == 3 })
}

// Caddy's access log records every request header as it arrived (it copies
// the request before any handler runs): a static secret must not end up
// there, for webhooks or craftedge_purge, accepted or rejected.
func TestWebhookStaticSecretsStayOutOfTheAccessLog(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "access.log")
	e := startWebhookGateway(t, webhookOptions{
		scheme: "scheme static\n\t\t\t\theader X-Craft-Webhook-Secret",
		purge:  "scheme static\n\t\theader X-Craft-Purge-Secret",
		site:   "log {\n\t\toutput file " + logFile + "\n\t\tformat json\n\t}",
	})
	static := webhook.Config{Scheme: webhook.SchemeStatic, Secrets: []string{hookSecretNew}, Header: "X-Craft-Webhook-Secret"}
	e2e.WantStatus(t, e.event(static, "", productEvent("4", 1)), http.StatusAccepted)
	const wrong = "a-wrong-secret-close-to-the-real-one"
	wrongCfg := static
	wrongCfg.Secrets = []string{wrong}
	e2e.WantStatus(t, e.event(wrongCfg, "", productEvent("4", 1)), http.StatusUnauthorized)
	staticPurge := webhook.Config{Scheme: webhook.SchemeStatic, Secrets: []string{purgeSecret}, Header: "X-Craft-Purge-Secret"}
	e2e.WantStatus(t, e.post(purgeURLPath, staticPurge, "", nowFunc(), "application/json", `{"tags":["shop:product:3"]}`), http.StatusOK)
	e2e.WantStatus(t, e.Get(productPage), http.StatusOK)
	e2e.StopGateway(t) // every request's access-log line is written

	logs, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(logs, []byte(productPage)) {
		t.Fatalf("the access log does not work (no line for %s):\n%s", productPage, logs)
	}
	for _, secret := range []string{hookSecretNew, purgeSecret, wrong} {
		if bytes.Contains(logs, []byte(secret)) {
			t.Errorf("secret %q in the access log:\n%s", secret, logs)
		}
	}
}
