package records

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"image"
	_ "image/png"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendorsim"
)

// Media files named by a record's media field: downloaded in the
// background by media.fetch jobs from the vendor simulator, stored
// content-addressed on disk, served by craftedge_records.

const mediaResource = "field image image\n\t\t\t\tmedia image"

// startMediaGateway starts a gateway whose product resource has the media
// field image, with the media store in a temp dir (mediaExtra: more media
// subdirectives). Before the first sync, products get the image paths in
// images (id → path on the simulator).
func startMediaGateway(t *testing.T, images map[string]string, mediaExtra string) (*vendorEnv, string) {
	t.Helper()
	sim, url := e2e.StartVendorSim(t, 4)
	for id, p := range images {
		if _, err := sim.Update(vendorsim.KindProduct, id, func(f map[string]any) { f["image"] = url + p }); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(t.TempDir(), "media")
	e := startVendorGatewayWith(t, sim, vendorOptions{baseURL: url, resource: mediaResource,
		global: "media {\n\t\t\tdir " + dir + "\n\t\t\t" + mediaExtra + "\n\t\t}"})
	return e, dir
}

// mediaJobs lists the media.fetch jobs.
func (e *vendorEnv) mediaJobs() []jobs.Job {
	e.T.Helper()
	js, err := e.app().JobQueue().List(jobs.ListFilter{Kind: "media.fetch"})
	if err != nil {
		e.T.Fatal(err)
	}
	return js
}

// waitMediaJobs waits until n media.fetch jobs exist and every one is done
// or dead, and returns them by record id.
func (e *vendorEnv) waitMediaJobs(n int) map[string]jobs.Job {
	e.T.Helper()
	e2e.WaitFor(e.T, "the media downloads to finish", func() bool {
		js := e.mediaJobs()
		if len(js) < n {
			return false
		}
		for _, j := range js {
			if j.State != jobs.StateDone && j.State != jobs.StateDead {
				return false
			}
		}
		return true
	})
	out := map[string]jobs.Job{}
	for _, j := range e.mediaJobs() {
		var p struct{ ID string }
		_ = json.Unmarshal(j.Payload, &p)
		out[p.ID] = j
	}
	return out
}

// mediaRef reads a product and returns its image's media reference.
func (e *vendorEnv) mediaRef(id string) caddymodule.MediaRef {
	e.T.Helper()
	r := e.Get("/vendors/v1/shop/product/" + id)
	e2e.WantStatus(e.T, r, 200)
	var ans struct {
		Fields map[string]any                  `json:"fields"`
		Media  map[string]caddymodule.MediaRef `json:"media"`
	}
	if err := json.Unmarshal([]byte(r.Body), &ans); err != nil {
		e.T.Fatalf("decoding %q: %v", r.Body, err)
	}
	ref, ok := ans.Media["image"]
	if !ok {
		e.T.Fatalf("product %s answer has no media.image: %s", id, r.Body)
	}
	return ref
}

// mediaFetches is craftedge_media_fetches_total of an outcome.
func (e *vendorEnv) mediaFetches(outcome string) float64 {
	e.T.Helper()
	return e2e.Scrape(e.Gateway, `craftedge_media_fetches_total{outcome="`+outcome+`"}`)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestMediaServedFromTheEdgeWhileTheVendorIsDown(t *testing.T) {
	e, _ := startMediaGateway(t, map[string]string{
		"1": "/media/p1.png", "2": "/media/fake.png", "3": "/media/missing.png",
	}, "allow_private_addresses\n\t\t\twidths 4 8 32")
	badType, notFound := e.mediaFetches("bad_type"), e.mediaFetches("not_found") // counters are process-wide
	e.sync("first", jobs.StateDone)                                              // one file's 404 or bad type never blocks the sync
	js := e.waitMediaJobs(3)

	// The image: stored, named by its edge URL.
	png := vendorsim.MediaPNG("p1.png")
	hash := sha256Hex(png)
	ref := e.mediaRef("1")
	if !ref.Stored || ref.URL != caddymodule.MediaPathPrefix+hash || ref.Type != "image/png" || ref.Size != int64(len(png)) ||
		!strings.HasSuffix(ref.VendorURL, "/media/p1.png") {
		t.Fatalf("product 1 media = %+v, want stored at %s", ref, caddymodule.MediaPathPrefix+hash)
	}
	if j := js["1"]; j.State != jobs.StateDone {
		t.Fatalf("product 1 media job = %s (%s)", j.State, j.LastError)
	}
	// Scaled-down copies (the PNG is 16x8: no 32px copy), made in the job.
	if len(ref.Widths) != 2 || ref.Widths[4] == "" || ref.Widths[8] == "" {
		t.Fatalf("widths = %v, want 4 and 8", ref.Widths)
	}
	for w, h := range map[int]int{4: 2, 8: 4} {
		r := e.Get(ref.Widths[w])
		e2e.WantStatus(t, r, 200)
		cfg, format, err := image.DecodeConfig(strings.NewReader(r.Body))
		if err != nil || format != "png" || cfg.Width != w || cfg.Height != h || r.Header.Get("Content-Type") != "image/png" {
			t.Fatalf("%dpx copy: %dx%d %s (%v), Content-Type %q", w, cfg.Width, cfg.Height, format, err, r.Header.Get("Content-Type"))
		}
	}

	// HTML sent as image/png is refused by content; a 404 is given up.
	for id, want := range map[string]string{"2": "content type not allowed", "3": "not found at the source"} {
		j := js[id]
		if j.State != jobs.StateDead || j.Attempts != 1 || !strings.Contains(j.LastError, want) {
			t.Fatalf("product %s media job: %s after %d attempts (%q), want dead after 1 with %q", id, j.State, j.Attempts, j.LastError, want)
		}
		// Until (unless) fetched, the record names the vendor URL.
		if ref := e.mediaRef(id); ref.Stored || ref.URL != ref.VendorURL {
			t.Fatalf("product %s media = %+v, want the vendor URL", id, ref)
		}
	}
	if n := e.mediaFetches("bad_type") - badType; n != 1 {
		t.Fatalf("bad_type fetches = %v, want 1", n)
	}
	if n := e.mediaFetches("not_found") - notFound; n != 1 {
		t.Fatalf("not_found fetches = %v, want 1", n)
	}

	// The vendor goes down: the file is served from the edge, with no
	// request to the vendor.
	if err := e.Sim.Chaos().Set(vendorsim.ChaosConfig{Outage: vendorsim.OutageClose}); err != nil {
		t.Fatal(err)
	}
	e.Sim.Reset()
	r := e.Get(ref.URL)
	e2e.WantStatus(t, r, 200)
	if r.Body != string(png) {
		t.Fatalf("served %d bytes, want the %d bytes of the PNG", len(r.Body), len(png))
	}
	for h, want := range map[string]string{
		"Content-Type":           "image/png",
		"ETag":                   `"` + hash + `"`,
		"Cache-Control":          "public, max-age=31536000, immutable",
		"X-Content-Type-Options": "nosniff",
		// A craftedge handler in front keeps no second copy.
		"Craftedge-Cache-Control": "no-store",
	} {
		if got := r.Header.Get(h); got != want {
			t.Fatalf("%s = %q, want %q", h, got, want)
		}
	}
	// Range and conditional requests.
	r = e.Get(ref.URL, "Range", "bytes=1-3")
	e2e.WantStatus(t, r, 206)
	if r.Body != string(png[1:4]) || r.Header.Get("Content-Range") != "bytes 1-3/"+itoa(len(png)) {
		t.Fatalf("range answer %q, Content-Range %q", r.Body, r.Header.Get("Content-Range"))
	}
	e2e.WantStatus(t, e.Get(ref.URL, "If-None-Match", `"`+hash+`"`), 304)
	// Unknown, malformed and traversal-looking addresses.
	for _, p := range []string{caddymodule.MediaPathPrefix + strings.Repeat("0", 64), caddymodule.MediaPathPrefix + "..",
		caddymodule.MediaPathPrefix + hash[:10], caddymodule.MediaPathPrefix + strings.ToUpper(hash)} {
		e2e.WantStatus(t, e.Get(p), 404)
	}
	if st := e.Sim.Requests(); st.Total != 0 {
		t.Fatalf("serving media called the vendor: %+v", st)
	}
}

func itoa(n int) string { return jsonNumber(n) }

func jsonNumber(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestMediaTooLargeRefusedWithoutHoldingIt(t *testing.T) {
	const size = 300 << 20 // streamed by the simulator, never built in memory
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	e, dir := startMediaGateway(t, map[string]string{"1": "/media/large.bin?bytes=" + jsonNumber(size)},
		"allow_private_addresses\n\t\t\tmax_file_size 1MiB")
	tooLarge := e.mediaFetches("too_large")
	e.sync("first", jobs.StateDone)
	j := e.waitMediaJobs(1)["1"]
	if j.State != jobs.StateDead || j.Attempts != 1 || !strings.Contains(j.LastError, "larger than the size bound") {
		t.Fatalf("large file job: %s after %d attempts (%q), want dead after 1: too large", j.State, j.Attempts, j.LastError)
	}
	if n := e.mediaFetches("too_large") - tooLarge; n != 1 {
		t.Fatalf("too_large fetches = %v, want 1", n)
	}
	tmps, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil || len(tmps) != 0 {
		t.Fatalf("temporary files left: %v (err %v)", tmps, err)
	}
	if ref := e.mediaRef("1"); ref.Stored {
		t.Fatalf("too large file stored: %+v", ref)
	}
	if n := e2e.Scrape(e.Gateway, "craftedge_media_stored_bytes"); n != 0 {
		t.Fatalf("stored bytes = %v, want 0", n)
	}
	// Nothing near the file's size was ever obtained from the OS.
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := int64(after.Sys) - int64(before.Sys); grew > 64<<20 {
		t.Fatalf("the process obtained %d MiB more memory while refusing a %d MiB file", grew>>20, size>>20)
	}
}

func TestMediaPrivateAddressRefusedByDefault(t *testing.T) {
	// The simulator is on 127.0.0.1: without allow_private_addresses a
	// media URL must not make craftedge connect there.
	e, _ := startMediaGateway(t, map[string]string{"1": "/media/p1.png"}, "")
	e.sync("first", jobs.StateDone)
	j := e.waitMediaJobs(1)["1"]
	if j.State != jobs.StateDead || !strings.Contains(j.LastError, "not a public address") {
		t.Fatalf("job: %s (%q), want dead: not a public address", j.State, j.LastError)
	}
	if n := e.Sim.Requests().ByRoute[vendorsim.RouteMedia].ByStatus[200]; n != 0 {
		t.Fatalf("the simulator served %d media requests", n)
	}
}

func TestMediaDamagedFileNotServedAndUnreferencedRemoved(t *testing.T) {
	e, dir := startMediaGateway(t, map[string]string{"1": "/media/p1.png"}, "allow_private_addresses")
	e.sync("first", jobs.StateDone)
	e.waitMediaJobs(1)
	ref := e.mediaRef("1")
	if !ref.Stored {
		t.Fatalf("not stored: %+v", ref)
	}
	path := filepath.Join(dir, "objects", ref.Hash[:2], ref.Hash)
	damaged := e2e.Scrape(e.Gateway, "craftedge_media_damaged_total")
	removed := e2e.Scrape(e.Gateway, "craftedge_media_removed_total")

	// Damage the stored file (same size, one byte flipped): never served,
	// removed, the record names the vendor URL, and it is downloaded again.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.Get(ref.URL)
	e2e.WantStatus(t, r, 404)
	if strings.Contains(r.Body, "PNG") {
		t.Fatal("damaged content served")
	}
	e2e.WaitFor(t, "the damaged file to be downloaded again", func() bool { return e.mediaRef("1").Stored })
	if n := e2e.Scrape(e.Gateway, "craftedge_media_damaged_total") - damaged; n != 1 {
		t.Fatalf("damaged_total = %v", n)
	}
	r = e.Get(ref.URL)
	e2e.WantStatus(t, r, 200)
	if r.Body != string(vendorsim.MediaPNG("p1.png")) {
		t.Fatal("the downloaded-again file differs")
	}

	// The product's image changes: the new one is downloaded, and the
	// maintenance job removes the old one, which no record names.
	if _, err := e.Sim.Update(vendorsim.KindProduct, "1", func(f map[string]any) { f["image"] = e.SimURL + "/media/p1b.png" }); err != nil {
		t.Fatal(err)
	}
	e.sync("second", jobs.StateDone)
	e2e.WaitFor(t, "the new image", func() bool { r := e.mediaRef("1"); return r.Stored && r.Hash != ref.Hash })
	e2e.WantStatus(t, e.Get(ref.URL), 200) // not removed before the maintenance job
	job, _, err := e.app().JobQueue().Enqueue(t.Context(), jobs.EnqueueRequest{Kind: "media.gc"})
	if err != nil {
		t.Fatal(err)
	}
	e2e.WaitJobState(e.Gateway, job.ID, jobs.StateDone)
	e2e.WantStatus(t, e.Get(ref.URL), 404)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("old file still on disk: %v", err)
	}
	e2e.WantStatus(t, e.Get(e.mediaRef("1").URL), 200)
	if n := e2e.Scrape(e.Gateway, "craftedge_media_removed_total") - removed; n != 1 {
		t.Fatalf("removed_total = %v", n)
	}
}

func TestMediaConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ resource, global, want string }{
		{"media image", "", "is not a configured field"},
		{"field image image\n\t\t\t\tsensitive image\n\t\t\t\tmedia image", "", "cannot be both sensitive and media"},
		{mediaResource, "media {\n\t\t\ttypes image/svg+xml\n\t\t}", "cannot be accepted (known by content"},
		{mediaResource, "media {\n\t\t\tmax_file_size 2GiB\n\t\t\tmax_total_size 1GiB\n\t\t}", "max_file_size is larger than max_total_size"},
		{mediaResource, "media {\n\t\t\ttimeout 0s\n\t\t}", "timeout must be positive"},
		{mediaResource, "media {\n\t\t\tcolour blue\n\t\t}", "unknown media subdirective"},
		{mediaResource, "media {\n\t\t}\n\t\tmedia {\n\t\t}", "media is configured twice"},
	} {
		cfg := vendorCaddyfile(vendorOptions{baseURL: "http://127.0.0.1:9", storage: dir + "/x.db", resource: tc.resource, global: tc.global})
		e2e.AssertLoadError(t, cfg, tc.want)
	}
}

func TestMediaNotCopiedByACacheHandlerInFront(t *testing.T) {
	sim, url := e2e.StartVendorSim(t, 2)
	if _, err := sim.Update(vendorsim.KindProduct, "1", func(f map[string]any) { f["image"] = url + "/media/p1.png" }); err != nil {
		t.Fatal(err)
	}
	e := startVendorGatewayWith(t, sim, vendorOptions{baseURL: url, resource: mediaResource,
		global: "media {\n\t\t\tdir " + filepath.Join(t.TempDir(), "media") + "\n\t\t\tallow_private_addresses\n\t\t}",
		site:   "craftedge {\n\t\tupstream records\n\t}\n\tcraftedge_records {\n\t\tallow_anonymous_writes\n\t}"})
	e.sync("first", jobs.StateDone)
	e.waitMediaJobs(1)
	e2e.WaitFor(t, "the record's cached answer to name the edge URL", func() bool { return e.mediaRef("1").Stored })
	ref := e.mediaRef("1")
	for range 2 {
		r := e.Get(ref.URL)
		e2e.WantStatus(t, r, 200)
		if cs := r.Header.Get("Cache-Status"); cs == "" || r.Header.Get("Craftedge-Cache-Control") != "" || strings.Contains(cs, "hit") {
			t.Fatalf("the cache handler kept or passed on the media answer: Cache-Status %q, Craftedge-Cache-Control %q",
				r.Header.Get("Cache-Status"), r.Header.Get("Craftedge-Cache-Control"))
		}
		if r.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" || r.Body != string(vendorsim.MediaPNG("p1.png")) {
			t.Fatalf("answer through the cache handler: Cache-Control %q, %d bytes", r.Header.Get("Cache-Control"), len(r.Body))
		}
	}
}

func TestMediaStoreFullRetriesWithoutDamage(t *testing.T) {
	// Room for one of the two images only.
	p1, p2 := vendorsim.MediaPNG("p1.png"), vendorsim.MediaPNG("p2.png")
	bound := jsonNumber(len(p1) + len(p2) - 1)
	e, dir := startMediaGateway(t, map[string]string{"1": "/media/p1.png", "2": "/media/p2.png"},
		"allow_private_addresses\n\t\t\tmax_file_size "+bound+"\n\t\t\tmax_total_size "+bound)
	storeFull := e.mediaFetches("store_full")
	e.sync("first", jobs.StateDone)
	var full, stored string
	e2e.WaitFor(t, "one image stored and the other postponed", func() bool {
		a, b := e.mediaRef("1"), e.mediaRef("2")
		if a.Stored == b.Stored {
			return false
		}
		full, stored = "2", "1"
		if b.Stored {
			full, stored = "1", "2"
		}
		return e.mediaFetches("store_full") > storeFull
	})
	for _, j := range e.mediaJobs() {
		if j.State == jobs.StateDead {
			t.Fatalf("a full store dead-lettered a download: %s", j.LastError)
		}
	}
	if ref := e.mediaRef(full); ref.Stored || ref.URL != ref.VendorURL {
		t.Fatalf("postponed image: %+v, want the vendor URL", ref)
	}
	if tmps, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmps) > 1 { // at most the retry in progress
		t.Fatalf("temporary files pile up: %d", len(tmps))
	}
	// The stored one is intact and served.
	r := e.Get(e.mediaRef(stored).URL)
	e2e.WantStatus(t, r, 200)

	// The stored image's record drops it; maintenance frees the room and
	// the postponed download goes through.
	if _, err := e.Sim.Update(vendorsim.KindProduct, stored, func(f map[string]any) { f["image"] = "" }); err != nil {
		t.Fatal(err)
	}
	e.sync("second", jobs.StateDone)
	job, _, err := e.app().JobQueue().Enqueue(t.Context(), jobs.EnqueueRequest{Kind: "media.gc"})
	if err != nil {
		t.Fatal(err)
	}
	e2e.WaitJobState(e.Gateway, job.ID, jobs.StateDone)
	e2e.WaitFor(t, "the postponed image to be stored", func() bool { return e.mediaRef(full).Stored })
	e2e.WantStatus(t, e.Get(e.mediaRef(full).URL), 200)
}
