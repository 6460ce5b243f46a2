package vendorsim

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/craftedge/craftedge/webhook"
)

func TestDeleteRemovesAndNotifies(t *testing.T) {
	s := New(Options{Products: 3, Seed: 1})
	t.Cleanup(func() { _ = s.Close() })
	cfg := webhook.Config{Scheme: webhook.SchemeStandard, Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}
	r := newReceiver(t, cfg, time.Now)
	if err := s.AddWebhookTarget(r.srv.URL+"/hook", cfg); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(KindProduct, "2"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Get(KindProduct, "2"); ok || s.Len(KindProduct) != 2 {
		t.Fatalf("record 2 still there (len %d)", s.Len(KindProduct))
	}
	got, fails := r.events()
	if len(fails) != 0 || len(got) != 1 || got[0] != (Event{Type: "product.deleted", ID: "2", Version: 1}) {
		t.Fatalf("events %+v, failures %v", got, fails)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/v2/products/2", nil)
	req.Header.Set("Authorization", "Bearer "+DefaultCommerceToken)
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusNotFound {
		t.Fatalf("GET a deleted product = %d, want 404", rec.Code)
	}
	if err := s.Delete(KindProduct, "2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
}
