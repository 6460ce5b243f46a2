package records

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/sealed"
	"github.com/craftedge/craftedge/vendorsim"
)

// sensitiveResource maps the product's sku and marks it sensitive.
const sensitiveResource = "field sku sku\n\t\t\t\tsensitive sku"

// withKeys returns a caddyfile builder adding encryption_key lines to the
// global craftedge block of vendorCaddyfile.
func withKeys(lines ...string) func(vendorOptions) string {
	return func(o vendorOptions) string {
		keys := ""
		for _, l := range lines {
			keys += "\t\t" + l + "\n"
		}
		return strings.Replace(vendorCaddyfile(o), "\t\tvendor shop {", keys+"\t\tvendor shop {", 1)
	}
}

// setKey puts a random 32-byte key, base64, in the environment variable.
func setKey(t *testing.T, env string, b byte) {
	t.Helper()
	t.Setenv(env, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)))
}

// fileHas reports whether the file holds s in clear or base64-encoded at
// any alignment (job payloads are []byte, stored as base64 in JSON).
func fileHas(t *testing.T, path, s string) bool {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(s)) {
		return true
	}
	for off := range 3 {
		enc := base64.StdEncoding.EncodeToString(append(bytes.Repeat([]byte{'x'}, off), s...))
		core := enc[4*min(off, 1) : len(enc)-4]
		if len(core) >= 8 && bytes.Contains(raw, []byte(core)) {
			return true
		}
	}
	return false
}

func TestSensitiveFieldsEncryptedAtRest(t *testing.T) {
	setKey(t, "CRAFTEDGE_KEY_1", 1)
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	keys := withKeys("encryption_key k1 {env.CRAFTEDGE_KEY_1}")
	o := vendorOptions{resource: sensitiveResource, site: "log\n\t" + liveVendorSite(""),
		caddyfile: func(o vendorOptions) string {
			// Debug logs, and access logs, to a file the test greps.
			return strings.Replace(keys(o), "\tgrace_period 1ns", "\tlog {\n\t\toutput file "+logFile+"\n\t\tlevel DEBUG\n\t}\n\tgrace_period 1ns", 1)
		}}
	e := startVendorGateway(t, 5, o)
	const synced, written = "SKU-Synced-Secret-4711", "SKU-Written-Secret-0815"
	if _, err := e.Sim.Update(vendorsim.KindProduct, "3", func(f map[string]any) { f["sku"] = synced }); err != nil {
		t.Fatal(err)
	}
	e.sync("first", jobs.StateDone)

	// The read model returns the decrypted value.
	rec := decodeRecord(t, e.Get("/vendors/v1/shop/product/3"))
	if rec.Fields["sku"] != synced {
		t.Fatalf("record fields = %v, want sku %q", rec.Fields, synced)
	}
	r := e.Get("/vendors/v1/shop/product?per_page=10")
	e2e.WantStatus(t, r, 200)
	if !strings.Contains(r.Body, synced) {
		t.Fatalf("list lacks the decrypted sku: %.300s", r.Body)
	}

	// An outbox write: its job payload is sealed, the vendor gets the body.
	r = e.Do(http.MethodPut, "/vendors/v1/shop/product/4", map[string]string{"Content-Type": "application/json"},
		`{"sku":"`+written+`","title":{"en":"Lamp"},"price":{"amount":1299,"currency":"EUR"},"stock":3}`)
	e2e.WantStatus(t, r, http.StatusAccepted)
	var acc caddymodule.OutboxAccepted
	_ = json.Unmarshal([]byte(r.Body), &acc)
	job := e2e.WaitJobState(e.Gateway, acc.Job, jobs.StateDone)
	if strings.Contains(string(job.Payload), written) || !strings.Contains(string(job.Payload), `"sealed":"enc:v1:k1:`) {
		t.Fatalf("outbox payload = %s", job.Payload)
	}
	if w := e.Sim.WritesFor(vendorsim.KindProduct, "4"); len(w) != 1 || !strings.Contains(string(w[0].Body), written) {
		t.Fatalf("vendor writes = %+v", w)
	}
	if rec := decodeRecord(t, e.Get("/vendors/v1/shop/product/4")); rec.Fields["sku"] != written {
		t.Fatalf("written record = %v", rec.Fields)
	}

	// Never in lineage, health, the job's API view or the job lists (the
	// status page shows health and the dead letters).
	for _, path := range []string{"/craftedge/lineage?vendor=shop&resource=product&id=3", "/craftedge/health",
		"/craftedge/jobs/" + acc.Job, "/craftedge/jobs?kind=outbox", "/craftedge/jobs?state=dead", "/metrics"} {
		if r := e.Admin(http.MethodGet, path, ""); strings.Contains(r.Body, synced) || strings.Contains(r.Body, written) {
			t.Fatalf("GET %s shows a sensitive value: %.300s", path, r.Body)
		}
	}
	if r := e.Get(acc.Location); strings.Contains(r.Body, written) {
		t.Fatalf("outbox job view shows the written value: %s", r.Body)
	}

	// A live read holding the sensitive field is served and cached in
	// memory, never snapshotted: with the vendor down and memory purged
	// there is no snapshot to fall back on.
	r = e.Get("/shop-api/products/3")
	e2e.WantStatus(t, r, 200)
	if !strings.Contains(r.Body, synced) {
		t.Fatalf("live read = %.200s", r.Body)
	}
	e2e.WantCacheStatusPrefix(t, r, "craftedge; fwd=miss; stored")
	e2e.WantCacheStatus(t, e.Get("/shop-api/products/3"), statusHit)
	e.FlushSnapshots()
	if err := e.Sim.Chaos().Set(vendorsim.ChaosConfig{Outage: vendorsim.OutageClose}); err != nil {
		t.Fatal(err)
	}
	e2e.WantStatus(t, e.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["vendor:shop"],"mode":"hard"}`), 200)
	r = e.Get("/shop-api/products/3")
	if r.Status == 200 || strings.Contains(r.Body, synced) {
		t.Fatalf("a live answer with a sensitive field came back from a snapshot: %d %q %.200s", r.Status, r.Header.Get("Cache-Status"), r.Body)
	}

	// On disk: no plaintext, k1 ciphertext instead; nor in the logs.
	e2e.StopGateway(t)
	if logs, err := os.ReadFile(logFile); err != nil || !strings.Contains(string(logs), "outbox write accepted") {
		t.Fatalf("no debug log to check (%v): %.300s", err, logs)
	}
	for _, s := range []string{synced, written} {
		if fileHas(t, logFile, s) {
			t.Errorf("the log holds %q", s)
		}
	}
	for _, s := range []string{synced, written} {
		if fileHas(t, e.Storage, s) {
			t.Errorf("the bbolt file holds %q", s)
		}
	}
	if !fileHas(t, e.Storage, sealed.Prefix+"k1:") {
		t.Error("no k1 ciphertext in the bbolt file")
	}
}

func TestSensitiveFieldsKeyRotation(t *testing.T) {
	setKey(t, "CRAFTEDGE_KEY_1", 1)
	setKey(t, "CRAFTEDGE_KEY_2", 2)
	o := vendorOptions{resource: sensitiveResource, site: liveVendorSite(""),
		caddyfile: withKeys("encryption_key k1 {env.CRAFTEDGE_KEY_1}")}
	e := startVendorGateway(t, 12, o)
	o.storage, o.baseURL = e.Storage, e.SimURL
	const secret = "SKU-Rotated-Secret-2026"
	e.Sim.Update(vendorsim.KindProduct, "3", func(f map[string]any) { f["sku"] = secret })
	e.sync("first", jobs.StateDone)
	r := e.Do(http.MethodPut, "/vendors/v1/shop/product/5", nil, `{"sku":"SKU-W","title":{"en":"Mug"},"price":{"amount":999,"currency":"EUR"},"stock":1}`)
	e2e.WantStatus(t, r, http.StatusAccepted)
	var acc caddymodule.OutboxAccepted
	_ = json.Unmarshal([]byte(r.Body), &acc)
	e2e.WaitJobState(e.Gateway, acc.Job, jobs.StateDone)

	// Key 2 added as current (listed first, so "current" is what selects
	// it): new writes use it, key 1 values still open.
	o.caddyfile = withKeys("encryption_key k2 {env.CRAFTEDGE_KEY_2} current", "encryption_key k1 {env.CRAFTEDGE_KEY_1}")
	e.Tester.InitServer(o.caddyfile(o), "caddyfile")
	if rec := decodeRecord(t, e.Get("/vendors/v1/shop/product/3")); rec.Fields["sku"] != secret {
		t.Fatalf("after adding k2: %v", rec.Fields)
	}
	e.Sim.Update(vendorsim.KindProduct, "7", func(f map[string]any) { f["sku"] = "SKU-new-7" })
	e.sync("second", jobs.StateDone)

	// Re-encrypt online: every record and the outbox payload move to k2.
	r = e.Admin(http.MethodPost, "/craftedge/reencrypt", "")
	e2e.WantStatus(t, r, 200)
	var rep caddymodule.ReencryptReport
	if err := json.Unmarshal([]byte(r.Body), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.CurrentKey != "k2" || rep.Records.Scanned != 12 || rep.Records.Resealed != 11 || rep.Records.Failed != 0 || rep.OutboxJobs != 1 {
		t.Fatalf("reencrypt report = %+v (want 11 of 12 resealed: product 7 was written with k2)", rep)
	}
	if j := e2e.JobByID(e.Gateway, acc.Job); !strings.Contains(string(j.Payload), `"sealed":"enc:v1:k2:`) {
		t.Fatalf("outbox payload after reencrypt = %s", j.Payload)
	}
	r = e.Admin(http.MethodPost, "/craftedge/reencrypt", "")
	if err := json.Unmarshal([]byte(r.Body), &rep); err != nil || rep.Records.Resealed != 0 || rep.OutboxJobs != 0 {
		t.Fatalf("second reencrypt = %s", r.Body)
	}

	// Key 1 removed: still readable.
	o.caddyfile = withKeys("encryption_key k2 {env.CRAFTEDGE_KEY_2}")
	e.Tester.InitServer(o.caddyfile(o), "caddyfile")
	if rec := decodeRecord(t, e.Get("/vendors/v1/shop/product/3")); rec.Fields["sku"] != secret {
		t.Fatalf("after removing k1: %v", rec.Fields)
	}

	// Stopped, the command re-encrypts and compacts the file: no k1
	// ciphertext left, not even in free pages.
	e2e.StopGateway(t)
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(o.caddyfile(o)), nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err = caddymodule.Reencrypt(context.Background(), caddymodule.ReencryptOptions{Config: cfg})
	if err != nil || !rep.Compacted || rep.Records.Scanned != 12 || rep.Records.Resealed != 0 {
		t.Fatalf("Reencrypt = %+v, %v", rep, err)
	}
	if fileHas(t, e.Storage, sealed.Prefix+"k1:") {
		t.Fatal("k1 ciphertext left in the bbolt file after reencrypt")
	}
	if fileHas(t, e.Storage, secret) || !fileHas(t, e.Storage, sealed.Prefix+"k2:") {
		t.Fatal("the file holds the plaintext, or no k2 ciphertext")
	}
	e.Tester.InitServer(o.caddyfile(o), "caddyfile")
	if rec := decodeRecord(t, e.Get("/vendors/v1/shop/product/3")); rec.Fields["sku"] != secret {
		t.Fatalf("after the command: %v", rec.Fields)
	}

	// A key that does not open the values: a clear error, never garbage;
	// the reencrypt endpoint reports the values it could not open.
	setKey(t, "CRAFTEDGE_KEY_3", 3)
	o.caddyfile = withKeys("encryption_key k3 {env.CRAFTEDGE_KEY_3}")
	e.Tester.InitServer(o.caddyfile(o), "caddyfile")
	r = e.Get("/vendors/v1/shop/product/3")
	e2e.WantStatus(t, r, http.StatusInternalServerError)
	// The reader (maybe anonymous) learns that, not which field or key:
	// those go to the log and the reencrypt report.
	if !strings.Contains(r.Body, "cannot be opened") || strings.Contains(r.Body, "sku") || strings.Contains(r.Body, "k2") {
		t.Fatalf("read with the key gone = %s", r.Body)
	}
	e2e.WantStatus(t, e.Get("/vendors/v1/shop/product?per_page=5"), http.StatusInternalServerError)
	r = e.Admin(http.MethodPost, "/craftedge/reencrypt", "")
	e2e.WantStatus(t, r, http.StatusConflict)
	if err := json.Unmarshal([]byte(r.Body), &rep); err != nil || rep.Records.Failed != 12 || rep.OutboxFailed != 1 || len(rep.Errors) == 0 {
		t.Fatalf("reencrypt with the key gone = %s", r.Body)
	}
	// The offline command refuses a file that is in use.
	cfg3, _, _ := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(o.caddyfile(o)), nil)
	if _, err := caddymodule.Reencrypt(context.Background(), caddymodule.ReencryptOptions{Config: cfg3, LockTimeout: 50 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("Reencrypt on a running instance's file: %v", err)
	}
}

func TestEncryptionConfigErrors(t *testing.T) {
	base := func(keys, resource string) string {
		o := vendorOptions{baseURL: "http://127.0.0.1:9", storage: filepath.Join(t.TempDir(), "c.db"), resource: resource}
		return withKeys(keys)(o)
	}
	setKey(t, "CRAFTEDGE_KEY_OK", 1)
	short := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 16))
	t.Setenv("CRAFTEDGE_KEY_SHORT", short)
	t.Setenv("CRAFTEDGE_KEY_EMPTY", "")
	t.Setenv("SHOP_TOKEN", "x")
	unset := base("encryption_key k1 {env.CRAFTEDGE_KEY_EMPTY}", "")
	unsetLine := 1 + strings.Count(unset[:strings.Index(unset, "encryption_key")], "\n")
	for name, tc := range map[string]struct{ caddyfile, want string }{
		"literal key":      {base("encryption_key k1 "+base64.StdEncoding.EncodeToString(make([]byte, 32)), ""), "placeholder such as {env.CRAFTEDGE_KEY_1}"},
		"bad id":           {base("encryption_key k/1 {env.CRAFTEDGE_KEY_OK}", ""), "want 1 to 64 letters"},
		"two current":      {base("encryption_key a {env.CRAFTEDGE_KEY_OK} current\n\t\tencryption_key b {env.CRAFTEDGE_KEY_OK} current", ""), "already current"},
		"missing arg":      {base("encryption_key k1", ""), "encryption_key wants"},
		"unset variable":   {unset, fmt.Sprintf(":%d): {env.CRAFTEDGE_KEY_EMPTY} is empty", unsetLine)},
		"short key":        {base("encryption_key k1 {env.CRAFTEDGE_KEY_SHORT}", ""), "decodes to 16 bytes, want 32"},
		"no key":           {base("", sensitiveResource), "has sensitive fields but no encryption_key is configured"},
		"unmapped field":   {base("encryption_key k1 {env.CRAFTEDGE_KEY_OK}", "sensitive email"), "is not a mapped field"},
		"sensitive id":     {base("encryption_key k1 {env.CRAFTEDGE_KEY_OK}", "field ident id\n\t\t\t\tsensitive ident"), "which is also the id mapping"},
		"sensitive in tag": {base("encryption_key k1 {env.CRAFTEDGE_KEY_OK}", sensitiveResource+"\n\t\t\t\ttags sku:{sku}"), "is used in tags"},
		"no fields":        {base("encryption_key k1 {env.CRAFTEDGE_KEY_OK}", "sensitive"), "sensitive needs at least one field name"},
	} {
		t.Run(name, func(t *testing.T) {
			caddytest.AssertLoadError(t, tc.caddyfile, "caddyfile", tc.want)
		})
	}
	// The short key's value never appears in the error.
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(base("encryption_key k1 {env.CRAFTEDGE_KEY_SHORT}", "")), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := caddymodule.Reencrypt(context.Background(), caddymodule.ReencryptOptions{Config: cfg}); err == nil || !strings.Contains(err.Error(), "16 bytes") || strings.Contains(err.Error(), short) {
		t.Fatalf("Reencrypt with a short key: %v", err)
	}
}

// The README's read-model set-up puts a craftedge handler in front of
// craftedge_records: answers holding decrypted sensitive values must not be
// stored by it (memory or snapshots) nor by a CDN; other resources' are.
func TestSensitiveReadModelAnswersNotCached(t *testing.T) {
	setKey(t, "CRAFTEDGE_KEY_1", 1)
	site := "craftedge {\n\t\tupstream records\n\t\tttl 1m\n\t}\n\tcraftedge_records"
	o := vendorOptions{resource: sensitiveResource, site: site, caddyfile: withKeys("encryption_key k1 {env.CRAFTEDGE_KEY_1}")}
	e := startVendorGateway(t, 5, o)
	e.sync("first", jobs.StateDone)
	for _, path := range []string{"/vendors/v1/shop/product/3", "/vendors/v1/shop/product?per_page=5"} {
		for range 2 {
			r := e.Get(path)
			e2e.WantStatus(t, r, 200)
			if cc := r.Header.Get("Cache-Control"); cc != "private, no-store" {
				t.Fatalf("%s: Cache-Control = %q", path, cc)
			}
			if cs := r.Header.Get("Cache-Status"); strings.Contains(cs, "hit") || strings.Contains(cs, "stored") {
				t.Fatalf("%s: stored by the cache: %q", path, cs)
			}
		}
	}
	e.FlushSnapshots()
	if n := e.health().Snapshots.Count; n != 0 {
		t.Fatalf("%d snapshots of read-model answers with sensitive values", n)
	}

	// Without sensitive fields the same answers are public and cached.
	e2e.StopGateway(t)
	o = vendorOptions{site: site, storage: filepath.Join(t.TempDir(), "plain.db"), baseURL: e.SimURL}
	e.Tester.InitServer(vendorCaddyfile(o), "caddyfile")
	e.sync("plain", jobs.StateDone)
	e2e.WantStatus(t, e.Get("/vendors/v1/shop/product/3"), 200)
	r := e.Get("/vendors/v1/shop/product/3")
	if cc := r.Header.Get("Cache-Control"); !strings.HasPrefix(cc, "public") {
		t.Fatalf("plain Cache-Control = %q", cc)
	}
	e2e.WantCacheStatus(t, r, statusHit)
}

// Live answers snapshotted before a field was marked sensitive hold it in
// clear: reencrypt deletes the vendor's live snapshots.
func TestReencryptDeletesLiveSnapshotsTakenBeforeSensitive(t *testing.T) {
	setKey(t, "CRAFTEDGE_KEY_1", 1)
	o := vendorOptions{site: liveVendorSite("")}
	e := startVendorGateway(t, 5, o)
	o.storage, o.baseURL = e.Storage, e.SimURL
	e2e.WantStatus(t, e.Get("/shop-api/products/3"), 200)
	e.FlushSnapshots()
	if n := e.health().Snapshots.Count; n != 1 {
		t.Fatalf("%d snapshots, want the live read's", n)
	}

	o.resource = sensitiveResource
	o.caddyfile = withKeys("encryption_key k1 {env.CRAFTEDGE_KEY_1}")
	e.Tester.InitServer(o.caddyfile(o), "caddyfile")
	r := e.Admin(http.MethodPost, "/craftedge/reencrypt", "")
	e2e.WantStatus(t, r, 200)
	var rep caddymodule.ReencryptReport
	if err := json.Unmarshal([]byte(r.Body), &rep); err != nil || rep.LiveSnapshotsDeleted != 1 {
		t.Fatalf("reencrypt = %s", r.Body)
	}
	if n := e.health().Snapshots.Count; n != 0 {
		t.Fatalf("%d snapshots left", n)
	}
	// Vendor down, memory purged: no snapshot to serve.
	if err := e.Sim.Chaos().Set(vendorsim.ChaosConfig{Outage: vendorsim.OutageClose}); err != nil {
		t.Fatal(err)
	}
	e2e.WantStatus(t, e.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["vendor:shop"],"mode":"hard"}`), 200)
	if r := e.Get("/shop-api/products/3"); r.Status == 200 {
		t.Fatalf("served after reencrypt: %q", r.Header.Get("Cache-Status"))
	}
}
