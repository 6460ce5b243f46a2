package status

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
)

// The status page's users (bcrypt, cost 4: fast tests).
const (
	statusUser     = "editor"
	statusPass     = "editor-pass"
	statusUserHash = "$2a$04$9ft4H9U3EqSxEJzxduOBs.y44v7dNR1KAwxybIFWilvOuSy.E/Zda"
	oncallUser     = "oncall"
	oncallPass     = "oncall-pass"
	oncallUserHash = "$2a$04$gFVrzoMTm9ZFo2ElNZXX8OqQLIjyH61FhrqsFfgZtBzVRzho776Y."
)

// statusOptions is a gateway config with the status page.
type statusOptions struct {
	globalExtra string // inside the global craftedge { }
	statusExtra string // inside craftedge_status { }
	// site replaces the default basic_auth + craftedge_status lines.
	site    string
	storage string
}

// statusCaddyfile is caddyfileFor's site with the status page mounted the
// way the README recommends: basic_auth and craftedge_status with the same
// path matcher, at top level (both run before the craftedge cache).
func statusCaddyfile(o *e2e.Origin, opts statusOptions) string {
	site := opts.site
	if site == "" {
		site = fmt.Sprintf(`basic_auth /status* {
		%s %s
		%s %s
	}
	craftedge_status /status* {
		title "Example shop status"
		refresh 1s
		%s
	}`, statusUser, statusUserHash, oncallUser, oncallUserHash, opts.statusExtra)
	}
	return e2e.CaddyfileFor(o, e2e.Options{Storage: opts.storage, GlobalExtra: opts.globalExtra, SiteExtra: site})
}

func startStatusGateway(t *testing.T, o *e2e.Origin, opts statusOptions) *e2e.Gateway {
	t.Helper()
	if opts.storage == "" {
		opts.storage = filepath.Join(t.TempDir(), "craftedge.db")
	}
	return e2e.StartConfig(t, o, statusCaddyfile(o, opts), opts.storage)
}

// statusSession is a browser-like session on the status page: its basic
// auth, its CSRF cookie and the token the page embedded.
type statusSession struct {
	g      *e2e.Gateway
	auth   string
	cookie string // "name=value"
	token  string
}

var csrfAttr = regexp.MustCompile(`data-csrf="([^"]+)"`)

// openStatus loads the page as user and keeps its cookie and token.
func openStatus(g *e2e.Gateway, user, pass string) *statusSession {
	g.T.Helper()
	s := &statusSession{g: g, auth: e2e.BasicAuth(user, pass)}
	r := g.Get("/status", "Authorization", s.auth)
	e2e.WantStatus(g.T, r, http.StatusOK)
	m := csrfAttr.FindStringSubmatch(r.Body)
	if m == nil {
		g.T.Fatalf("page has no CSRF token: %.300s", r.Body)
	}
	s.token = m[1]
	resp := http.Response{Header: r.Header}
	for _, c := range resp.Cookies() {
		if c.Name == statusCSRFCookie {
			s.cookie = c.Name + "=" + c.Value
		}
	}
	if s.cookie == "" {
		g.T.Fatalf("page set no %s cookie: %v", statusCSRFCookie, r.Header.Values("Set-Cookie"))
	}
	return s
}

// post sends an action the way the page does, with extra headers
// overriding (an empty value removes one).
func (s *statusSession) post(action, body string, extra ...string) e2e.Response {
	s.g.T.Helper()
	h := map[string]string{
		"Authorization":  s.auth,
		"Content-Type":   "application/json",
		"Cookie":         s.cookie,
		"X-CSRF-Token":   s.token,
		"Origin":         e2e.SiteAddr,
		"Sec-Fetch-Site": "same-origin",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "" {
			delete(h, extra[i])
		} else {
			h[extra[i]] = extra[i+1]
		}
	}
	return s.g.Do(http.MethodPost, "/status/actions/"+action, h, body)
}

func (s *statusSession) report() StatusReport {
	s.g.T.Helper()
	r := s.g.Get("/status/status.json", "Authorization", s.auth)
	e2e.WantStatus(s.g.T, r, http.StatusOK)
	var rep StatusReport
	if err := json.Unmarshal([]byte(r.Body), &rep); err != nil {
		s.g.T.Fatalf("status.json is not a report: %v: %s", err, r.Body)
	}
	return rep
}

func (rep StatusReport) upstream(t *testing.T, name string) StatusUpstream {
	t.Helper()
	for _, u := range rep.Upstreams {
		if u.Name == name {
			return u
		}
	}
	t.Fatalf("upstream %q not in the report: %+v", name, rep.Upstreams)
	return StatusUpstream{}
}

func wantNoStore(t *testing.T, r e2e.Response) {
	t.Helper()
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control = %q, want no-store (status %d)", cc, r.Status)
	}
	if xfo := r.Header.Get("X-Frame-Options"); xfo != "DENY" {
		t.Fatalf("X-Frame-Options = %q, want DENY", xfo)
	}
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("Content-Security-Policy = %q", csp)
	}
}

func TestStatusPageShapeColoursAndHeaders(t *testing.T) {
	o := e2e.NewOrigin(t)
	e2e.HandleBoom(o, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	g := startStatusGateway(t, o, statusOptions{})

	// basic_auth runs first.
	r := g.Get("/status")
	e2e.WantStatus(t, r, http.StatusUnauthorized)

	s := openStatus(g, statusUser, statusPass)
	page := g.Get("/status", "Authorization", s.auth)
	wantNoStore(t, page)
	if ct := page.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("page Content-Type %q", ct)
	}
	csp := page.Header.Get("Content-Security-Policy")
	nonce := regexp.MustCompile(`script-src 'nonce-([^']+)'`).FindStringSubmatch(csp)
	if nonce == nil || !strings.Contains(page.Body, `<script nonce="`+nonce[1]+`">`) || !strings.Contains(page.Body, `<style nonce="`+nonce[1]+`">`) {
		t.Fatalf("inline script and style do not carry the CSP nonce; CSP %q", csp)
	}
	// Self-contained: no external (or any) src/href, no link elements.
	for _, bad := range []string{"src=", "href=", "<link", "http://", "https://", "@import", "url("} {
		if strings.Contains(page.Body, bad) {
			t.Fatalf("page refers to an external asset (%q)", bad)
		}
	}
	if !strings.Contains(page.Body, "<title>Example shop status</title>") || !strings.Contains(page.Body, "signed in as <b>editor</b>") {
		t.Fatal("page lacks its title or user")
	}
	cookie := page.Header.Get("Set-Cookie")
	for _, want := range []string{statusCSRFCookie + "=", "Path=/status", "HttpOnly", "SameSite=Strict"} {
		if !strings.Contains(cookie, want) {
			t.Fatalf("CSRF cookie %q lacks %q", cookie, want)
		}
	}
	// The browser's cookie is reused: the token stays valid across reloads.
	again := g.Get("/status", "Authorization", s.auth, "Cookie", s.cookie)
	if again.Header.Get("Set-Cookie") != "" || !strings.Contains(again.Body, `data-csrf="`+s.token+`"`) {
		t.Fatal("reloading the page changed the CSRF nonce")
	}

	// The JSON: the empty lists are lists, everything green.
	j := g.Get("/status/status.json", "Authorization", s.auth)
	wantNoStore(t, j)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(j.Body), &raw); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"status", "why", "upstreams", "vendors", "kill_switch", "memory", "snapshots", "served", "jobs", "dead_letters", "webhook_rejections"} {
		if _, ok := raw[key]; !ok {
			t.Fatalf("status.json lacks %q: %s", key, j.Body)
		}
	}
	if string(raw["vendors"]) != "[]" || string(raw["webhook_rejections"]) != "[]" || string(raw["dead_letters"]) != "[]" {
		t.Fatalf("empty lists are not []: vendors %s, webhook_rejections %s, dead_letters %s", raw["vendors"], raw["webhook_rejections"], raw["dead_letters"])
	}
	rep := s.report()
	if rep.Status != StatusGreen || rep.Title != "Example shop status" || rep.RefreshSeconds != 1 {
		t.Fatalf("fresh gateway: status %s, title %q, refresh %v; why %v", rep.Status, rep.Title, rep.RefreshSeconds, rep.Why)
	}
	if u := rep.upstream(t, "craft"); u.Status != StatusGreen || u.Breaker != "closed" {
		t.Fatalf("fresh upstream: %+v", u)
	}
	if rep.Memory.HitRatio != nil {
		t.Fatalf("hit ratio before any lookup: %v", *rep.Memory.HitRatio)
	}

	// A cached page: a miss then a hit.
	e2e.WantStatus(t, g.Get("/page"), 200)
	e2e.WantStatus(t, g.Get("/page"), 200)
	if rep := s.report(); rep.Memory.HitRatio == nil || *rep.Memory.HitRatio != 0.5 {
		t.Fatalf("hit ratio after a miss and a hit: %v", rep.Memory.HitRatio)
	}

	// The upstream fails (on three paths) until its breaker opens: red,
	// with why.
	for _, p := range e2e.BoomPaths {
		e2e.WantStatus(t, g.Get(p), http.StatusInternalServerError)
	}
	rep = s.report()
	u := rep.upstream(t, "craft")
	if u.Status != StatusRed || u.Breaker != "open" || len(u.Why) != 1 || !strings.Contains(u.Why[0], "circuit breaker open") {
		t.Fatalf("failing upstream: %+v", u)
	}
	if rep.Status != StatusRed || len(rep.Why) == 0 || !strings.Contains(rep.Why[0], "craft: circuit breaker open") {
		t.Fatalf("overall %s, why %v", rep.Status, rep.Why)
	}
	// With the breaker open the page still answers (it runs before the
	// cache), and still asks for credentials first.
	e2e.WantStatus(t, g.Get("/status"), http.StatusUnauthorized)
	e2e.WantStatus(t, g.Get("/status/", "Authorization", s.auth), http.StatusOK)
	// HEAD works; the page is never cached by the gateway.
	e2e.WantStatus(t, g.Do(http.MethodHead, "/status", map[string]string{"Authorization": s.auth}, ""), http.StatusOK)
	if got := o.Count("/status") + o.Count("/status/") + o.Count("/status/status.json"); got != 0 {
		t.Fatalf("the origin saw %d status page requests", got)
	}
}

func TestStatusKillSwitchIsAmberAndToggles(t *testing.T) {
	o := e2e.NewOrigin(t)
	g := startStatusGateway(t, o, statusOptions{})
	s := openStatus(g, statusUser, statusPass)

	// Through the admin API: amber (deliberate), not red.
	e2e.WantStatus(t, g.Admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":true,"upstream":"craft"}`), 200)
	rep := s.report()
	u := rep.upstream(t, "craft")
	if u.Status != StatusAmber || !u.SnapshotOnly || !u.Override || strings.Join(u.SnapshotOnlyBy, ",") != "override" {
		t.Fatalf("upstream under the kill switch: %+v", u)
	}
	if rep.Status != StatusAmber || !strings.Contains(strings.Join(rep.Why, "\n"), "kill switch on") {
		t.Fatalf("overall %s, why %v", rep.Status, rep.Why)
	}

	// Through the page's action: off for craft, on for all, off again;
	// each shows in /craftedge/health.
	r := s.post("snapshot-only", `{"upstream":"craft","enabled":false}`)
	e2e.WantStatus(t, r, 200)
	wantNoStore(t, r)
	if h := health(g); h.KillSwitch.Overrides["craft"] || h.Upstreams[0].SnapshotOnly {
		t.Fatalf("health after clearing the override: %+v", h.KillSwitch)
	}
	e2e.WantStatus(t, s.post("snapshot-only", `{"upstream":"","enabled":true}`), 200)
	if h := health(g); !h.KillSwitch.Overrides[""] || !h.Upstreams[0].SnapshotOnly {
		t.Fatalf("health after the global override: %+v %+v", h.KillSwitch, h.Upstreams)
	}
	rep = s.report()
	if !rep.KillSwitch.Override || rep.upstream(t, "craft").Status != StatusAmber ||
		strings.Join(rep.upstream(t, "craft").SnapshotOnlyBy, ",") != "override: all" {
		t.Fatalf("report after the global override: %+v %+v", rep.KillSwitch, rep.Upstreams)
	}
	e2e.WantStatus(t, s.post("snapshot-only", `{"enabled":false}`), 200)
	if h := health(g); h.KillSwitch.Overrides[""] || h.Upstreams[0].SnapshotOnly {
		t.Fatalf("health after clearing the global override: %+v", h.KillSwitch)
	}
	if rep := s.report(); rep.Status != StatusGreen {
		t.Fatalf("status %s after clearing, why %v", rep.Status, rep.Why)
	}

	// Bad requests.
	for _, tc := range []struct {
		body string
		code int
		want string
	}{
		{`{"upstream":"nope","enabled":true}`, 400, `unknown upstream \"nope\"`},
		{`{"upstream":"craft"}`, 400, `\"enabled\" (true or false) is required`},
		{`{"upstream":"craft","enabled":true,"extra":1}`, 400, "unknown field"},
		{``, 400, "empty body"},
		{`{"enabled":`, 400, "malformed JSON"},
	} {
		r := s.post("snapshot-only", tc.body)
		if r.Status != tc.code || !strings.Contains(r.Body, tc.want) {
			t.Errorf("%s: %d %s, want %d %q", tc.body, r.Status, r.Body, tc.code, tc.want)
		}
	}
	// The configured kill switch cannot be cleared from the page, and says so.
	g.Tester.InitServer(statusCaddyfile(o, statusOptions{storage: g.Storage, globalExtra: "snapshot_only"}), "caddyfile")
	rep = s.report()
	if u := rep.upstream(t, "craft"); !rep.KillSwitch.Configured || u.Status != StatusAmber || strings.Join(u.SnapshotOnlyBy, ",") != "caddyfile" {
		t.Fatalf("configured kill switch: %+v %+v", rep.KillSwitch, u)
	}
}

func TestStatusActionsNeedCSRFProtection(t *testing.T) {
	o := e2e.NewOrigin(t)
	g := startStatusGateway(t, o, statusOptions{})
	s := openStatus(g, statusUser, statusPass)
	other := openStatus(g, oncallUser, oncallPass)
	body := `{"upstream":"craft","enabled":true}`

	for _, tc := range []struct {
		name   string
		extra  []string
		status int
		want   string
	}{
		{"no token, no cookie", []string{"X-CSRF-Token", "", "Cookie", ""}, 403, "CSRF cookie"},
		{"no token", []string{"X-CSRF-Token", ""}, 403, "missing X-CSRF-Token"},
		{"no cookie", []string{"Cookie", ""}, 403, "missing CSRF cookie"},
		{"forged token", []string{"X-CSRF-Token", "AAAA"}, 403, "invalid CSRF token"},
		{"another session's token", []string{"X-CSRF-Token", other.token}, 403, "invalid CSRF token"},
		{"another user's cookie and token", []string{"Cookie", other.cookie, "X-CSRF-Token", other.token}, 403, "invalid CSRF token"},
		{"cross-site fetch", []string{"Sec-Fetch-Site", "cross-site"}, 403, "cross-site request refused"},
		{"same-site fetch", []string{"Sec-Fetch-Site", "same-site"}, 403, "cross-site request refused"},
		{"foreign origin", []string{"Origin", "https://evil.example"}, 403, "cross-origin request refused"},
		{"null origin", []string{"Origin", "null"}, 403, "cross-origin request refused"},
		{"form post", []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "JSON body"},
	} {
		r := s.post("snapshot-only", body, tc.extra...)
		if r.Status != tc.status || !strings.Contains(r.Body, tc.want) {
			t.Errorf("%s: %d %s, want %d %q", tc.name, r.Status, r.Body, tc.status, tc.want)
		}
		wantNoStore(t, r)
	}
	if h := health(g); h.KillSwitch.Overrides["craft"] {
		t.Fatal("a refused action changed the kill switch")
	}
	// The page's own request, and a non-browser client (no Origin, no
	// Sec-Fetch-Site) with the cookie and token, are accepted.
	e2e.WantStatus(t, s.post("snapshot-only", body), 200)
	e2e.WantStatus(t, s.post("snapshot-only", `{"upstream":"craft","enabled":false}`, "Origin", "", "Sec-Fetch-Site", ""), 200)
	e2e.WantStatus(t, other.post("snapshot-only", body), 200)
	if h := health(g); !h.KillSwitch.Overrides["craft"] {
		t.Fatal("accepted action did not change the kill switch")
	}
}

func TestStatusRetryAndReplayDeadLetters(t *testing.T) {
	o := e2e.NewOrigin(t)
	g := startStatusGateway(t, o, statusOptions{globalExtra: `jobs {
			kind test.echo {
				max_attempts 1
				backoff 1ms 10ms
			}
		}`})
	s := openStatus(g, statusUser, statusPass)
	prefix := t.Name() + ":"

	flaky := enqueue(g, prefix+"flaky", "fail-first")
	e2e.WaitJobState(g, flaky.ID, jobs.StateDead)
	rep := s.report()
	if len(rep.DeadLetters) != 1 || rep.DeadLetters[0].ID != flaky.ID || rep.DeadLetters[0].Kind != "test.echo" ||
		!strings.Contains(rep.DeadLetters[0].LastError, "503") || rep.DeadLetters[0].Key != prefix+"flaky" {
		t.Fatalf("dead letters: %+v", rep.DeadLetters)
	}
	if rep.Jobs.Status != StatusAmber || rep.Status != StatusAmber || rep.Jobs.Dead != 1 {
		t.Fatalf("jobs %s (dead %d), overall %s; why %v", rep.Jobs.Status, rep.Jobs.Dead, rep.Status, rep.Why)
	}
	var echo *StatusJobKind
	for i, k := range rep.Jobs.Kinds {
		if k.Kind == "test.echo" {
			echo = &rep.Jobs.Kinds[i]
		}
	}
	if echo == nil || echo.Dead != 1 || echo.Status != StatusAmber || len(echo.Why) != 1 {
		t.Fatalf("job kinds: %+v", rep.Jobs.Kinds)
	}
	if strings.Contains(g.Get("/status/status.json", "Authorization", s.auth).Body, "payload") {
		t.Fatal("status.json shows job payloads")
	}

	// Retry: the job leaves the dead letters and succeeds.
	r := s.post("retry", `{"id":"`+flaky.ID+`"}`)
	e2e.WantStatus(t, r, 200)
	if !strings.Contains(r.Body, `"retried": "`+flaky.ID+`"`) {
		t.Fatalf("retry answered %s", r.Body)
	}
	e2e.WaitJobState(g, flaky.ID, jobs.StateDone)
	if rep := s.report(); len(rep.DeadLetters) != 0 || rep.Status != StatusGreen {
		t.Fatalf("after retry: dead letters %+v, status %s %v", rep.DeadLetters, rep.Status, rep.Why)
	}
	// Retrying a done job is a conflict; bad ids are client errors.
	for _, tc := range []struct {
		body string
		code int
	}{
		{`{"id":"` + flaky.ID + `"}`, http.StatusConflict},
		{`{"id":"not-an-id"}`, http.StatusBadRequest},
		{`{"id":"00000000000fffff"}`, http.StatusNotFound},
		{`{}`, http.StatusBadRequest},
	} {
		if r := s.post("retry", tc.body); r.Status != tc.code {
			t.Errorf("retry %s: %d %s, want %d", tc.body, r.Status, r.Body, tc.code)
		}
	}

	// Replay all of a kind.
	a := enqueue(g, prefix+"a", "fail-first")
	b := enqueue(g, prefix+"b", "fail-first")
	e2e.WaitJobState(g, a.ID, jobs.StateDead)
	e2e.WaitJobState(g, b.ID, jobs.StateDead)
	r = s.post("replay", `{"kind":"test.echo"}`)
	e2e.WantStatus(t, r, 200)
	if !strings.Contains(r.Body, `"replayed": 2`) {
		t.Fatalf("replay answered %s", r.Body)
	}
	e2e.WaitJobState(g, a.ID, jobs.StateDone)
	e2e.WaitJobState(g, b.ID, jobs.StateDone)
	if r := s.post("replay", `{}`); r.Status != http.StatusBadRequest {
		t.Fatalf("replay without a kind: %d %s", r.Status, r.Body)
	}
}

func TestStatusRoutesAndMethods(t *testing.T) {
	o := e2e.NewOrigin(t)
	g := startStatusGateway(t, o, statusOptions{})
	auth := e2e.BasicAuth(statusUser, statusPass)
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/status", 200},
		{"GET", "/status/", 200},
		{"GET", "/status/status.json", 200},
		{"GET", "/status/foo", 404},
		{"GET", "/status/status.json/x", 404},
		{"GET", "/status/actions/nope", 404},
		{"POST", "/status/actions/nope", 404},
		{"GET", "/statusfoo", 404},
		{"GET", "/status/actions/retry", 405},
		{"POST", "/status/status.json", 405},
		{"POST", "/status", 405},
		{"DELETE", "/status/actions/retry", 405},
	} {
		r := g.Do(tc.method, tc.path, map[string]string{"Authorization": auth}, "")
		if r.Status != tc.code {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, r.Status, r.Body, tc.code)
			continue
		}
		wantNoStore(t, r)
		if tc.code == 405 && r.Header.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", tc.method, tc.path)
		}
	}
}

func TestStatusFailsClosedWithoutAuthentication(t *testing.T) {
	o := e2e.NewOrigin(t)
	g := startStatusGateway(t, o, statusOptions{site: "craftedge_status /status*"})
	r := g.Get("/status")
	e2e.WantStatus(t, r, http.StatusForbidden)
	wantNoStore(t, r)
	// The refusal is craftedge's one error body.
	var eb caddymodule.ErrorBody
	if err := json.Unmarshal([]byte(r.Body), &eb); err != nil || !strings.Contains(eb.Error, "put basic_auth in front of craftedge_status") {
		t.Fatalf("refusal is not an error body that explains itself (%v): %s", err, r.Body)
	}

	// Authentication elsewhere, mounted with handle_path (prefix stripped,
	// mount point inferred per request).
	g.Tester.InitServer(statusCaddyfile(o, statusOptions{storage: g.Storage, site: `handle_path /ops/status* {
		craftedge_status {
			allow_unauthenticated
		}
	}`}), "caddyfile")
	r = g.Get("/ops/status")
	e2e.WantStatus(t, r, http.StatusOK)
	if c := r.Header.Get("Set-Cookie"); !strings.Contains(c, "Path=/ops/status;") {
		t.Fatalf("cookie path under handle_path: %q", c)
	}
	e2e.WantStatus(t, g.Get("/ops/status/status.json"), http.StatusOK)
	e2e.WantStatus(t, g.Get("/ops/status/favicon.ico"), http.StatusNotFound)
	e2e.WantStatus(t, g.Get("/ops/status/actions/nope"), http.StatusNotFound)
}

func TestStatusRunsBeforeTheCache(t *testing.T) {
	o := e2e.NewOrigin(t)
	e2e.HandleBoom(o, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	g := startStatusGateway(t, o, statusOptions{site: "craftedge_status /status* {\n allow_unauthenticated\n }"})
	for _, p := range e2e.BoomPaths {
		e2e.WantStatus(t, g.Get(p), http.StatusInternalServerError)
	}
	if st := e2e.BreakerState(g, "craft"); st != "open" {
		t.Fatalf("breaker %s, want open", st)
	}
	// A cacheable request (no credentials, no cookie) for the page: were
	// the cache first, the open breaker would answer 503 without a copy.
	for _, path := range []string{"/status", "/status/status.json"} {
		r := g.Get(path)
		e2e.WantStatus(t, r, http.StatusOK)
		if cs := r.Header.Get("Cache-Status"); cs != "" {
			t.Fatalf("%s went through the cache: Cache-Status %q", path, cs)
		}
	}
}

func TestStatusCaddyfileErrors(t *testing.T) {
	o := e2e.NewOrigin(t)
	for _, tc := range []struct{ extra, want string }{
		{"refresh 0s", "refresh must be from 1s to 10m0s"},
		{"refresh 1h", "refresh must be from 1s to 10m0s"},
		{"refresh soon", `refresh: invalid duration \"soon\"`},
		{"refresh", "refresh needs a duration"},
		{"title", "title needs a value"},
		{"title a b", `too many arguments to \"title\"`},
		{"path_prefix status", "path_prefix must start with /"},
		{"allow_unauthenticated yes", `too many arguments to \"allow_unauthenticated\"`},
		{"frobnicate", `unrecognized craftedge_status subdirective \"frobnicate\"`},
	} {
		e2e.AssertLoadError(t, statusCaddyfile(o, statusOptions{storage: t.TempDir() + "/x.db", statusExtra: tc.extra}), tc.want)
	}
	e2e.AssertLoadError(t, statusCaddyfile(o, statusOptions{storage: t.TempDir() + "/x.db", site: "craftedge_status /status* extra"}),
		"craftedge_status takes no arguments besides a matcher")
}

func TestStatusSubPathsAndPrefixInference(t *testing.T) {
	withPrefix := &StatusHandler{PathPrefix: "/status"}
	inferred := &StatusHandler{}
	for _, tc := range []struct {
		h    *StatusHandler
		path string
		sub  string
		ok   bool
	}{
		{withPrefix, "/status", "", true},
		{withPrefix, "/status/", "/", true},
		{withPrefix, "/status/status.json", "/status.json", true},
		{withPrefix, "/status/actions/retry", "/actions/retry", true},
		{withPrefix, "/status/foo", "/foo", false},
		{withPrefix, "/statusx", "", false},
		{withPrefix, "/other", "", false},
		{inferred, "/", "/", true},
		{inferred, "/ops/health/", "/", true},
		{inferred, "/x/status.json", "/status.json", true},
		{inferred, "/x/actions/snapshot-only", "/actions/snapshot-only", true},
		{inferred, "/x/actions/other", "", false},
		{inferred, "/x/favicon.ico", "", false},
	} {
		sub, ok := tc.h.subPath(tc.path)
		if ok != tc.ok || (ok && sub != tc.sub) {
			t.Errorf("prefix %q, %s: %q %v, want %q %v", tc.h.PathPrefix, tc.path, sub, ok, tc.sub, tc.ok)
		}
	}
	for _, tc := range []struct{ matcher, want string }{
		{`["/status*"]`, "/status"},
		{`["/status/*"]`, "/status"},
		{`["/ops/status"]`, "/ops/status"},
		{`["/a*", "/b*"]`, ""},
		{`["*.json"]`, ""},
		{`["/st*tus*"]`, ""},
	} {
		if got := prefixFromMatcherSet(caddy.ModuleMap{"path": json.RawMessage(tc.matcher)}); got != tc.want {
			t.Errorf("prefix of %s = %q, want %q", tc.matcher, got, tc.want)
		}
	}
	if got := prefixFromMatcherSet(caddy.ModuleMap{"host": json.RawMessage(`["a"]`)}); got != "" {
		t.Errorf("prefix of a host matcher = %q", got)
	}
}

// TestStatusListsRecentRejections: a refused remote purge (unsigned) shows
// on the page with its reason, source and sender, and never the secret.
func TestStatusListsRecentRejections(t *testing.T) {
	const secret = "whsec_c3RhdHVzLXBhZ2UtcHVyZ2Utc2VjcmV0LTEyMzQ1Njc4"
	t.Setenv("STATUS_TEST_PURGE_SECRET", secret)
	o := e2e.NewOrigin(t)
	g := startStatusGateway(t, o, statusOptions{site: `craftedge_status /status* {
		allow_unauthenticated
	}
	craftedge_purge {
		secret {env.STATUS_TEST_PURGE_SECRET}
	}`})
	e2e.WantStatus(t, g.Do(http.MethodPost, "/.craftedge/purge", map[string]string{"Content-Type": "application/json"}, `{"tags":["x"]}`), http.StatusUnauthorized)

	r := g.Get("/status/status.json")
	e2e.WantStatus(t, r, 200)
	var rep StatusReport
	if err := json.Unmarshal([]byte(r.Body), &rep); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, w := range rep.WebhookRejections {
		if w.Source == "craftedge_purge" && w.Status == http.StatusUnauthorized && w.Reason != "" && w.RemoteIP != "" {
			found = true
		}
	}
	if !found {
		t.Fatalf("the refused purge is not on the status page: %+v", rep.WebhookRejections)
	}
	if strings.Contains(r.Body, secret) || strings.Contains(r.Body, strings.TrimPrefix(secret, "whsec_")) {
		t.Fatal("the status page shows the purge secret")
	}
}
