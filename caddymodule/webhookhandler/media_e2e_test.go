package webhookhandler

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendorsim"
)

// TestWebhookFetchesMedia: a verified webhook's refetch finds a new media
// URL on the record and downloads the file in the background; after the
// image changes again, POST /craftedge/media/gc removes the old file.
func TestWebhookFetchesMedia(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "media")
	e := startWebhookGateway(t, webhookOptions{
		global:   "media {\n\t\t\tdir " + dir + "\n\t\t\tallow_private_addresses\n\t\t}",
		resource: "field image image\n\t\t\t\tmedia image",
	})
	image := func() caddymodule.MediaRef {
		r := e.Get(productPage)
		e2e.WantStatus(t, r, 200)
		var ans struct {
			Media map[string]caddymodule.MediaRef `json:"media"`
		}
		if err := json.Unmarshal([]byte(r.Body), &ans); err != nil {
			t.Fatal(err)
		}
		return ans.Media["image"]
	}
	if ref := image(); ref.VendorURL != "" {
		t.Fatalf("product 3 has an image before the change: %+v", ref)
	}
	setImage := func(name string) int {
		v, err := e.sim.Update(vendorsim.KindProduct, "3", func(f map[string]any) { f["image"] = e.simURL + "/media/" + name })
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	v := setImage("hook3.png")
	e2e.WantStatus(t, e.event(hookCfgNew, "msg-media-1", productEvent("3", v)), http.StatusAccepted)
	e.waitRefetchesDone(1)
	var first caddymodule.MediaRef
	e2e.WaitFor(t, "the image downloaded after the webhook", func() bool { first = image(); return first.Stored })
	r := e.Get(first.URL)
	e2e.WantStatus(t, r, 200)
	if r.Body != string(vendorsim.MediaPNG("hook3.png")) {
		t.Fatal("the edge serves other bytes than the vendor's image")
	}

	v = setImage("hook3b.png")
	e2e.WantStatus(t, e.event(hookCfgNew, "msg-media-2", productEvent("3", v)), http.StatusAccepted)
	e.waitRefetchesDone(2)
	e2e.WaitFor(t, "the new image", func() bool { ref := image(); return ref.Stored && ref.Hash != first.Hash })
	e2e.WantStatus(t, e.Get(first.URL), 200) // kept until the maintenance job runs

	ans := e.Admin(http.MethodPost, "/craftedge/media/gc", "")
	e2e.WantStatus(t, ans, http.StatusAccepted)
	var started caddymodule.MediaGCStarted
	if err := json.Unmarshal([]byte(ans.Body), &started); err != nil || started.Job == "" ||
		ans.Header.Get("Location") != "/craftedge/jobs/"+started.Job {
		t.Fatalf("POST /craftedge/media/gc: %s (Location %q)", ans.Body, ans.Header.Get("Location"))
	}
	e2e.WaitJobState(e.Gateway, started.Job, jobs.StateDone)
	e2e.WantStatus(t, e.Get(first.URL), 404)
	e2e.WantStatus(t, e.Get(image().URL), 200)
	e2e.WantStatus(t, e.Admin(http.MethodGet, "/craftedge/media/gc", ""), http.StatusMethodNotAllowed)
}

// Without media fields there is no media store to maintain.
func TestMediaGCWithoutMediaStore(t *testing.T) {
	e := startWebhookGateway(t, webhookOptions{})
	e2e.WantStatus(t, e.Admin(http.MethodPost, "/craftedge/media/gc", ""), http.StatusNotFound)
}
