package records

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendorsim"
)

// The read-model setup of the README: a craftedge cache in front of
// craftedge_records, nothing else.
const readmeRecordsSite = "craftedge {\n\t\tupstream records\n\t}\n\tcraftedge_records"

const (
	recordsTokenEnv = "CRAFTEDGE_TEST_RECORDS_TOKEN"
	recordsToken    = "test-records-token-0123456789"
)

// An editor basic_auth knows (bcrypt cost 4, so that tests are fast).
const (
	editorUser     = "editor"
	editorPass     = "editor-pass"
	editorUserHash = "$2a$04$9ft4H9U3EqSxEJzxduOBs.y44v7dNR1KAwxybIFWilvOuSy.E/Zda"
)

func productBody(title string) string {
	return `{"sku":"SKU-3","title":{"en":"` + title + `"},"price":{"amount":1299,"currency":"EUR"},"stock":3}`
}

// wantRefused checks a refused request: 401 or 403 with the API's JSON
// error body, never stored.
func wantRefused(t *testing.T, what string, r e2e.Response) {
	t.Helper()
	if r.Status != http.StatusUnauthorized && r.Status != http.StatusForbidden {
		t.Fatalf("%s: status %d, want 401 or 403; body %s", what, r.Status, r.Body)
	}
	var e caddymodule.ErrorBody
	if err := json.Unmarshal([]byte(r.Body), &e); err != nil || e.Error == "" {
		t.Fatalf("%s: body %q is not {\"error\":…}", what, r.Body)
	}
	if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Fatalf("%s: Cache-Control %q, want no-store", what, cc)
	}
}

func TestRecordsAnonymousWritesRefused(t *testing.T) {
	e := startVendorGateway(t, 5, vendorOptions{site: readmeRecordsSite, private: true})
	e.sync("first", jobs.StateDone)

	for _, m := range []string{http.MethodPut, http.MethodPost, http.MethodDelete, http.MethodPatch} {
		wantRefused(t, "anonymous "+m, e.Do(m, "/vendors/v1/shop/product/5", map[string]string{"Content-Type": "application/json"}, productBody("Pwned")))
	}
	// Refused before anything is looked at or enqueued: unknown vendors too.
	wantRefused(t, "anonymous PUT, unknown vendor", e.Do(http.MethodPut, "/vendors/v1/nope/product/5", nil, "{}"))
	// A basic or wrong bearer credential the route does not check is no
	// authentication.
	wantRefused(t, "PUT with an unchecked Authorization", e.Do(http.MethodPut, "/vendors/v1/shop/product/5",
		map[string]string{"Authorization": "Bearer " + vendorsim.DefaultCommerceToken}, productBody("Pwned")))
	if js := e.outboxJobs(); len(js) != 0 {
		t.Fatalf("outbox jobs after refused writes: %+v", js)
	}
	if w := e.Sim.Writes(); len(w) != 0 {
		t.Fatalf("the vendor received %d writes", len(w))
	}
}

func TestRecordsWritesWithBasicAuth(t *testing.T) {
	site := fmt.Sprintf("basic_auth /vendors/* {\n\t\t%s %s\n\t}\n\t%s", editorUser, editorUserHash, readmeRecordsSite)
	e := startVendorGateway(t, 5, vendorOptions{site: site, private: true})
	e.sync("first", jobs.StateDone)
	auth := map[string]string{"Authorization": e2e.BasicAuth(editorUser, editorPass)}

	r := e.Do(http.MethodPut, "/vendors/v1/shop/product/3", auth, productBody("Basic"))
	e2e.WantStatus(t, r, http.StatusAccepted)
	loc := r.Header.Get("Location")
	e2e.WaitFor(t, "the outbox write", func() bool {
		var j jobs.Job
		r := e.Do(http.MethodGet, loc, auth, "")
		_ = json.Unmarshal([]byte(r.Body), &j)
		return r.Status == 200 && j.State == jobs.StateDone
	})
	if w := e.Sim.WritesFor(vendorsim.KindProduct, "3"); len(w) != 1 || !strings.Contains(string(w[0].Body), "Basic") {
		t.Fatalf("vendor writes: %+v", w)
	}
	// Reads of a resource that is not public need the user too, and are
	// private: no shared cache (craftedge's included) keeps them.
	r = e.Do(http.MethodGet, "/vendors/v1/shop/product/3", auth, "")
	e2e.WantStatus(t, r, 200)
	if cc := r.Header.Get("Cache-Control"); !strings.HasPrefix(cc, "private") {
		t.Fatalf("authenticated read Cache-Control = %q, want private", cc)
	}
}

func TestRecordsWritesWithBearerToken(t *testing.T) {
	t.Setenv(recordsTokenEnv, recordsToken)
	site := "craftedge {\n\t\tupstream records\n\t}\n\tcraftedge_records {\n\t\tbearer_token {env." + recordsTokenEnv + "}\n\t}"
	e := startVendorGateway(t, 5, vendorOptions{site: site})
	e.sync("first", jobs.StateDone)

	wantRefused(t, "anonymous PUT", e.Do(http.MethodPut, "/vendors/v1/shop/product/3", nil, productBody("Anon")))
	r := e.Do(http.MethodPut, "/vendors/v1/shop/product/3", map[string]string{"Authorization": "Bearer wrong-token"}, productBody("Wrong"))
	wantRefused(t, "PUT with a wrong token", r)
	if r.Status != http.StatusUnauthorized || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("wrong token: %d, WWW-Authenticate %q; want 401 with a Bearer challenge", r.Status, r.Header.Get("WWW-Authenticate"))
	}
	auth := map[string]string{"Authorization": "Bearer " + recordsToken}
	r1 := e.Do(http.MethodPut, "/vendors/v1/shop/product/3", auth, productBody("One"))
	e2e.WantStatus(t, r1, http.StatusAccepted)
	r2 := e.Do(http.MethodPut, "/vendors/v1/shop/product/4", auth, productBody("Two"))
	e2e.WantStatus(t, r2, http.StatusAccepted)

	// Outbox ids are 128 random bits, and a job's state needs the token.
	var a1, a2 caddymodule.OutboxAccepted
	if err := json.Unmarshal([]byte(r1.Body), &a1); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(r2.Body), &a2); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a1.Job, a2.Job} {
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("outbox job id %q: want 32 hex digits (128 random bits)", id)
		}
	}
	if a1.Job[:24] == a2.Job[:24] {
		t.Fatalf("consecutive outbox ids share a prefix: %s, %s", a1.Job, a2.Job)
	}
	wantRefused(t, "anonymous outbox GET", e.Get(a1.Location))
	wantRefused(t, "outbox GET with a wrong token", e.Get(a1.Location, "Authorization", "Bearer nope"))
	for _, loc := range []string{a1.Location, a2.Location} {
		e2e.WaitFor(t, "outbox job "+loc, func() bool {
			var j jobs.Job
			r := e.Do(http.MethodGet, loc, auth, "")
			_ = json.Unmarshal([]byte(r.Body), &j)
			return r.Status == 200 && j.State == jobs.StateDone
		})
	}
	if n := len(e.Sim.Writes()); n != 2 {
		t.Fatalf("vendor writes = %d, want 2", n)
	}
}

func TestRecordsReadsArePerResource(t *testing.T) {
	t.Setenv(recordsTokenEnv, recordsToken)
	site := "craftedge {\n\t\tupstream records\n\t}\n\tcraftedge_records {\n\t\tbearer_token {env." + recordsTokenEnv + "}\n\t}"

	// Not public (the default): record and list reads are refused
	// anonymously, served with the token, never cached for others.
	e := startVendorGateway(t, 5, vendorOptions{site: site, private: true})
	e.sync("first", jobs.StateDone)
	for _, p := range []string{"/vendors/v1/shop/product/3", "/vendors/v1/shop/product", "/vendors/v1/shop/product?page=1"} {
		wantRefused(t, "anonymous GET "+p, e.Get(p))
		if r := e.Do(http.MethodHead, p, nil, ""); r.Status != http.StatusUnauthorized {
			t.Fatalf("anonymous HEAD %s: %d, want 401", p, r.Status)
		}
		r := e.Get(p, "Authorization", "Bearer "+recordsToken)
		e2e.WantStatus(t, r, 200)
		if cc := r.Header.Get("Cache-Control"); !strings.HasPrefix(cc, "private") {
			t.Fatalf("GET %s Cache-Control = %q, want private", p, cc)
		}
		// The authenticated answer was not stored for the next visitor.
		wantRefused(t, "anonymous GET after an authenticated one "+p, e.Get(p))
	}
	e2e.StopGateway(t)

	// public: anyone reads (and the cache shares the answer); writes still
	// need the token.
	e = startVendorGateway(t, 5, vendorOptions{site: site})
	e.sync("first", jobs.StateDone)
	r := e.Get("/vendors/v1/shop/product/3")
	e2e.WantStatus(t, r, 200)
	if cc := r.Header.Get("Cache-Control"); cc != "public, max-age=60" {
		t.Fatalf("public read Cache-Control = %q", cc)
	}
	e2e.WantStatus(t, e.Get("/vendors/v1/shop/product"), 200)
	wantRefused(t, "anonymous PUT to a public resource", e.Do(http.MethodPut, "/vendors/v1/shop/product/3", nil, productBody("Anon")))
	if n := len(e.Sim.Writes()); n != 0 {
		t.Fatalf("vendor writes = %d, want 0", n)
	}
}

func TestRecordsAllowAnonymousWritesOptOut(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	e := startVendorGateway(t, 5, vendorOptions{
		site: readmeRecordsSite + " {\n\t\tallow_anonymous_writes\n\t}",
		caddyfile: func(o vendorOptions) string {
			return strings.Replace(vendorCaddyfile(o), "\tgrace_period 1ns\n",
				"\tgrace_period 1ns\n\tlog {\n\t\toutput file "+logFile+"\n\t\tformat json\n\t}\n", 1)
		},
	})
	e.sync("first", jobs.StateDone)
	r := e.Do(http.MethodPut, "/vendors/v1/shop/product/3", nil, productBody("Anonymous"))
	e2e.WantStatus(t, r, http.StatusAccepted)
	// The writer can follow its own job (its id is unguessable).
	loc := r.Header.Get("Location")
	e2e.WaitFor(t, "the anonymous outbox write", func() bool {
		var j jobs.Job
		r := e.Get(loc)
		_ = json.Unmarshal([]byte(r.Body), &j)
		return r.Status == 200 && j.State == jobs.StateDone
	})
	if n := len(e.Sim.Writes()); n != 1 {
		t.Fatalf("vendor writes = %d, want 1", n)
	}
	logs, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	var warned bool
	for _, line := range bytes.Split(logs, []byte("\n")) {
		var entry struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(line, &entry) == nil && entry.Level == "warn" && strings.Contains(entry.Msg, "allow_anonymous_writes") {
			warned = true
		}
	}
	if !warned {
		t.Fatalf("no warning about allow_anonymous_writes at provision in:\n%s", logs)
	}
}

func TestRecordsBearerTokenConfigErrors(t *testing.T) {
	t.Setenv(recordsTokenEnv, recordsToken)
	t.Setenv(recordsTokenEnv+"_SHORT", "short")
	for _, c := range []struct{ site, want string }{
		{"craftedge_records {\n\t\tbearer_token literal-token-0123456789\n\t}", "{env."},
		{"craftedge_records {\n\t\tbearer_token {env.CRAFTEDGE_TEST_UNSET_TOKEN}\n\t}", "CRAFTEDGE_TEST_UNSET_TOKEN"},
		{"craftedge_records {\n\t\tbearer_token {env." + recordsTokenEnv + "_SHORT}\n\t}", "at least"},
		{"craftedge_records {\n\t\tbearer_token\n\t}", "wrong argument count"},
		{"craftedge_records {\n\t\tallow_anonymous_writes yes\n\t}", "wrong argument count"},
	} {
		cfg := vendorCaddyfile(vendorOptions{baseURL: "http://127.0.0.1:1", storage: filepath.Join(t.TempDir(), "x.db"), site: c.site})
		caddytest.AssertLoadError(t, cfg, "caddyfile", c.want)
	}
}

// TestRecordsStoreOnlyMappedFields: a vendor field the resource does not
// map never reaches the bbolt file (records, lineage, sync or refetch jobs).
func TestRecordsStoreOnlyMappedFields(t *testing.T) {
	const canary = "unmapped-canary-7f3a9c"
	sim := vendorsim.New(vendorsim.Options{Products: 5, Seed: 1})
	if _, err := sim.Update(vendorsim.KindProduct, "3", func(f map[string]any) { f["internal_note"] = canary }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	srv, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SHOP_TOKEN", vendorsim.DefaultCommerceToken)
	e := startVendorGatewayWith(t, sim, vendorOptions{baseURL: srv.URL()})
	e.sync("first", jobs.StateDone)
	rec := decodeRecord(t, e.Get("/vendors/v1/shop/product/3"))
	if rec.Fields["title"] == nil {
		t.Fatalf("record not synced: %+v", rec)
	}
	if strings.Contains(fmt.Sprint(rec.Fields), canary) {
		t.Fatalf("unmapped field served: %+v", rec)
	}
	e.FlushSnapshots()
	e2e.StopGateway(t) // closes the file: everything committed is on disk
	raw, err := os.ReadFile(e.Storage)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(canary)) {
		t.Fatalf("the unmapped field's value %q is in %s", canary, e.Storage)
	}
}

// The README's Security examples: basic_auth on writes and the outbox only
// (public reads stay anonymous), and forward_auth setting the user with vars.
func TestRecordsReadmeAuthExamples(t *testing.T) {
	site := fmt.Sprintf(`@records_auth {
		path /vendors/*
		not {
			method GET HEAD
			not path /vendors/v1/outbox/*
		}
	}
	basic_auth @records_auth {
		%s %s
	}
	%s`, editorUser, editorUserHash, readmeRecordsSite)
	e := startVendorGateway(t, 5, vendorOptions{site: site})
	e.sync("first", jobs.StateDone)
	e2e.WantStatus(t, e.Get("/vendors/v1/shop/product/3"), 200)
	e2e.WantStatus(t, e.Do(http.MethodPut, "/vendors/v1/shop/product/3", nil, productBody("Anon")), http.StatusUnauthorized)
	auth := map[string]string{"Authorization": e2e.BasicAuth(editorUser, editorPass)}
	r := e.Do(http.MethodPut, "/vendors/v1/shop/product/3", auth, productBody("Basic"))
	e2e.WantStatus(t, r, http.StatusAccepted)
	loc := r.Header.Get("Location")
	e2e.WantStatus(t, e.Get(loc), http.StatusUnauthorized)
	e2e.WantStatus(t, e.Do(http.MethodGet, loc, auth, ""), 200)
	e2e.StopGateway(t)

	// forward_auth: the auth service answers 200 with Remote-User for the
	// right cookie, 401 otherwise.
	authSrv := e2e.NewOrigin(t)
	authSrv.Handle("/auth", func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie("session"); err == nil && c.Value == "good" {
			w.Header().Set("Remote-User", "editor")
			w.WriteHeader(200)
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
	})
	site = fmt.Sprintf(`route /vendors/* {
		forward_auth %s {
			uri /auth
			copy_headers Remote-User
		}
		vars http.auth.user.id {http.request.header.Remote-User}
		craftedge_records
	}`, authSrv.Addr())
	e = startVendorGateway(t, 5, vendorOptions{site: site, private: true})
	e.sync("first", jobs.StateDone)
	e2e.WantStatus(t, e.Get("/vendors/v1/shop/product/3"), http.StatusUnauthorized) // forward_auth's answer
	// A client's own Remote-User header is no authentication.
	e2e.WantStatus(t, e.Get("/vendors/v1/shop/product/3", "Remote-User", "mallory"), http.StatusUnauthorized)
	e2e.WantStatus(t, e.Get("/vendors/v1/shop/product/3", "Cookie", "session=good"), 200)
	e2e.WantStatus(t, e.Do(http.MethodPut, "/vendors/v1/shop/product/3", map[string]string{"Cookie": "session=good"}, productBody("Fwd")), http.StatusAccepted)
}

// An Idempotency-Key is scoped to its caller, record and body: another
// caller replaying a guessable key ("order-1001") gets a job of its own,
// never the victim's job id (and with it the victim's write body).
func TestRecordsIdempotencyKeyScopedToCallerAndWrite(t *testing.T) {
	e := startVendorGateway(t, 5, vendorOptions{private: true}) // allow_anonymous_writes
	e.sync("first", jobs.StateDone)
	ct := map[string]string{"Content-Type": "application/json", "Idempotency-Key": "order-1001"}
	victim := e.Do(http.MethodPut, "/vendors/v1/shop/product/3", ct, productBody("Victim"))
	e2e.WantStatus(t, victim, http.StatusAccepted)
	retry := e.Do(http.MethodPut, "/vendors/v1/shop/product/3", ct, productBody("Victim"))
	if retry.Header.Get("Location") != victim.Header.Get("Location") {
		t.Fatalf("a retry of the same write got another job: %q vs %q", retry.Header.Get("Location"), victim.Header.Get("Location"))
	}
	// Anonymous job reads only by random id: the sequential 16-digit ids of
	// jobs accepted before ids were random are refused (guessable).
	e2e.WantStatus(t, e.Get(victim.Header.Get("Location")), http.StatusOK)
	if r := e.Get("/vendors/v1/outbox/0000000000000001"); r.Status != http.StatusNotFound {
		t.Fatalf("anonymous read of a sequential job id: %d %s", r.Status, r.Body)
	}
	for _, other := range []struct {
		path, body string
	}{{"/vendors/v1/shop/product/4", productBody("x")}, {"/vendors/v1/shop/product/3", productBody("Other")}} {
		r := e.Do(http.MethodPut, other.path, ct, other.body)
		e2e.WantStatus(t, r, http.StatusAccepted)
		if r.Header.Get("Location") == victim.Header.Get("Location") {
			t.Fatalf("PUT %s with the victim's Idempotency-Key was handed the victim's job", other.path)
		}
	}
}

// Without credentials, an unknown vendor or resource is refused like a
// resource the caller may not read: names cannot be enumerated.
func TestRecordsNoEnumerationBeforeAuth(t *testing.T) {
	t.Setenv(recordsTokenEnv, recordsToken)
	site := "craftedge_records {\n\t\tbearer_token {env." + recordsTokenEnv + "}\n\t}"
	e := startVendorGateway(t, 5, vendorOptions{site: site, private: true})
	known := e.Get("/vendors/v1/shop/product/3")
	for _, p := range []string{"/vendors/v1/nope/product/3", "/vendors/v1/shop/customer/3"} {
		if r := e.Get(p); r.Status != known.Status {
			t.Errorf("GET %s: %d, a non-public known resource: %d (enumeration)", p, r.Status, known.Status)
		}
	}
	auth := e.Get("/vendors/v1/nope/product/3", "Authorization", "Bearer "+recordsToken)
	e2e.WantStatus(t, auth, http.StatusNotFound)
}
