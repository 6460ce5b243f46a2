package records

import (
	"net/http"
	"strings"
	"testing"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendorsim"
)

// TestOutboxAnswerFetchesMedia: a write through the outbox whose vendor
// answer names a new image downloads it in the background.
func TestOutboxAnswerFetchesMedia(t *testing.T) {
	e, _ := startMediaGateway(t, nil, "allow_private_addresses")
	e.sync("first", jobs.StateDone)
	if r := e.Get("/vendors/v1/shop/product/2"); strings.Contains(r.Body, "image") {
		t.Fatalf("product 2 has an image before the write: %s", r.Body)
	}
	body := `{"sku":"SKU-2","title":{"en":"Pictured"},"price":{"amount":500,"currency":"EUR"},"stock":1,"image":"` +
		e.SimURL + `/media/outbox2.png"}`
	r := e.Do(http.MethodPut, "/vendors/v1/shop/product/2", map[string]string{"Content-Type": "application/json"}, body)
	e2e.WantStatus(t, r, http.StatusAccepted)
	e.waitMediaJobs(1)
	ref := e.mediaRef("2")
	if !ref.Stored || ref.VendorURL != e.SimURL+"/media/outbox2.png" {
		t.Fatalf("image after the outbox write: %+v", ref)
	}
	got := e.Get(ref.URL)
	e2e.WantStatus(t, got, 200)
	if got.Body != string(vendorsim.MediaPNG("outbox2.png")) {
		t.Fatal("the edge serves other bytes than the vendor's image")
	}
}
