package vendorsim

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/craftedge/craftedge/webhook"
)

// receiver verifies webhooks with cfg at the harness's clock.
type receiver struct {
	t     *testing.T
	cfg   webhook.Config
	now   func() time.Time
	srv   *httptest.Server
	mu    sync.Mutex
	got   []Event
	ids   []string
	fails []error
}

func newReceiver(t *testing.T, cfg webhook.Config, now func() time.Time) *receiver {
	r := &receiver{t: t, cfg: cfg, now: now}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		d, err := r.cfg.Verify(webhook.Request{Method: req.Method, URL: r.srv.URL + req.URL.RequestURI(), Header: req.Header, Body: body}, r.now())
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil {
			r.fails = append(r.fails, err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var ev Event
		if err := json.Unmarshal(body, &ev); err != nil {
			r.fails = append(r.fails, err)
		}
		r.got = append(r.got, ev)
		r.ids = append(r.ids, d.ID)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) events() ([]Event, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.got...), append([]error(nil), r.fails...)
}

func TestSendWebhookSignsForEveryScheme(t *testing.T) {
	configs := map[string]webhook.Config{
		"standard": {Scheme: webhook.SchemeStandard, Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
		"shopify":  {Scheme: webhook.SchemeShopify, Secrets: []string{"shpss_secret"}},
		"stripe":   {Scheme: webhook.SchemeStripe, Secrets: []string{"whsec_stripe"}},
		"hubspot":  {Scheme: webhook.SchemeHubSpot, Secrets: []string{"hubspot-client-secret"}},
		"hmac":     {Scheme: webhook.SchemeHMAC, Secrets: []string{"s3cret"}, Header: "X-Hub-Signature-256", Prefix: "sha256=", TimestampHeader: "X-Timestamp"},
		"static":   {Scheme: webhook.SchemeStatic, Secrets: []string{"static-token"}, Header: "X-Webhook-Token"},
	}
	h := newHarness(t, Options{Products: 3})
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			rc := newReceiver(t, cfg, h.clock.Now)
			ev := Event{Type: "product.updated", ID: "3", Version: 8}
			status, err := h.sim.SendWebhook(context.Background(), rc.srv.URL+"/hooks/vendor?x=1", cfg, ev)
			if err != nil || status != http.StatusNoContent {
				t.Fatalf("SendWebhook = %d, %v", status, err)
			}
			got, fails := rc.events()
			if len(fails) != 0 || len(got) != 1 || got[0] != ev {
				t.Fatalf("received %v, failures %v", got, fails)
			}
		})
	}
	// A receiver with another secret refuses; the status comes back, not an error.
	rc := newReceiver(t, webhook.Config{Scheme: webhook.SchemeShopify, Secrets: []string{"other"}}, h.clock.Now)
	status, err := h.sim.SendWebhook(context.Background(), rc.srv.URL, configs["shopify"], Event{Type: "product.updated", ID: "1", Version: 2})
	if err != nil || status != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d, %v", status, err)
	}
	if _, err := h.sim.SendWebhook(context.Background(), rc.srv.URL, webhook.Config{Scheme: "carrier-pigeon"}, Event{}); err == nil {
		t.Error("invalid config accepted")
	}
	if n := len(h.sim.Webhooks()); n != len(configs)+2 {
		t.Errorf("%d deliveries recorded, want %d", n, len(configs)+2)
	}
}

func TestAutoWebhooksOnUpdate(t *testing.T) {
	h := newHarness(t, Options{Products: 3})
	cfg := webhook.Config{Scheme: webhook.SchemeStandard, Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}
	rc := newReceiver(t, cfg, h.clock.Now)
	if err := h.sim.AddWebhookTarget(rc.srv.URL, cfg); err != nil {
		t.Fatal(err)
	}
	if err := h.sim.AddWebhookTarget(rc.srv.URL, webhook.Config{Scheme: webhook.SchemeHMAC}); err == nil {
		t.Error("invalid target config accepted")
	}
	h.sim.Update(KindProduct, "3", func(f map[string]any) { f["stock"] = 1 })
	h.sim.Update(KindProduct, "3", func(f map[string]any) { f["stock"] = 2 })
	got, fails := rc.events() // Update delivers before returning
	want := []Event{{"product.updated", "3", 2}, {"product.updated", "3", 3}}
	if len(fails) != 0 || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("received %v (failures %v), want %v", got, fails, want)
	}
	if rc.ids[0] == rc.ids[1] {
		t.Errorf("delivery ids repeat: %v", rc.ids)
	}

	// API writes notify in the background.
	h.call(t, "POST", "/v2/products", `{"sku":"N"}`)
	h.sim.WaitWebhooks()
	got, _ = rc.events()
	if len(got) != 3 || got[2] != (Event{"product.created", "4", 1}) {
		t.Fatalf("after POST: %v", got)
	}
	for _, d := range h.sim.Webhooks() {
		if !d.Auto || d.Dropped || d.Status != http.StatusNoContent || d.Err != nil {
			t.Errorf("delivery %+v", d)
		}
	}
}

func TestWebhookDropRate(t *testing.T) {
	h := newHarness(t, Options{Contacts: 2})
	cfg := webhook.Config{Scheme: webhook.SchemeStripe, Secrets: []string{"whsec_x"}}
	rc := newReceiver(t, cfg, h.clock.Now)
	_ = h.sim.AddWebhookTarget(rc.srv.URL, cfg)
	if err := h.sim.SetWebhookDropRate(1.0); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		h.sim.Update(KindContact, "c-1", nil)
	}
	h.call(t, "PUT", "/v1/contacts/c-2", `{"email":"a@b.c"}`)
	h.sim.WaitWebhooks()
	if got, _ := rc.events(); len(got) != 0 {
		t.Fatalf("drop rate 1.0 delivered %v", got)
	}
	ds := h.sim.Webhooks()
	if len(ds) != 6 {
		t.Fatalf("%d deliveries recorded, want 6", len(ds))
	}
	for _, d := range ds {
		if !d.Dropped || d.Status != 0 {
			t.Errorf("delivery %+v not dropped", d)
		}
	}
	if ds[5].Event != (Event{"contact.updated", "c-2", 2}) {
		t.Errorf("last dropped event %+v", ds[5].Event)
	}
	if err := h.sim.SetWebhookDropRate(1.5); err == nil {
		t.Error("drop rate 1.5 accepted")
	}

	// A fraction drops some, deterministically for a seed.
	_ = h.sim.SetWebhookDropRate(0.5)
	h.sim.ResetWebhooks()
	for range 40 {
		h.sim.Update(KindContact, "c-1", nil)
	}
	dropped := 0
	for _, d := range h.sim.Webhooks() {
		if d.Dropped {
			dropped++
		}
	}
	got, _ := rc.events()
	if dropped == 0 || dropped == 40 || len(got) != 40-dropped {
		t.Fatalf("rate 0.5: %d dropped, %d delivered", dropped, len(got))
	}
}
