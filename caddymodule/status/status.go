// Package status is the craftedge_status handler (http.handlers.craftedge_status):
// the operator and editor status page, its JSON and its CSRF-protected
// actions. It reads the craftedge app through its exported API.
package status

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendors"
)

func init() {
	caddy.RegisterModule(StatusHandler{})
	httpcaddyfile.RegisterDirective("craftedge_status", parseStatusDirective)
	// Ordered in directives.go.
}

// Status page defaults and bounds.
const (
	defaultStatusTitle   = "craftedge status"
	defaultStatusRefresh = 5 * time.Second
	minStatusRefresh     = time.Second
	maxStatusRefresh     = 10 * time.Minute

	// statusQueueAgeRed is the queue age (lag of the oldest due job) past
	// which a job kind, and so the page, is red.
	statusQueueAgeRed = 10 * time.Minute

	// statusDeadLetterLimit bounds the dead letters listed on the page.
	statusDeadLetterLimit = 50

	// statusCSRFCookie holds the per-browser nonce of the double-submit
	// CSRF protection; statusCSRFHeader carries the token derived from it.
	statusCSRFCookie = "craftedge_status_csrf"
	statusCSRFHeader = "X-CSRF-Token"
)

// The sub-paths the status handler answers, relative to where it is
// mounted.
const (
	statusPathJSON         = "/status.json"
	statusPathRetry        = "/actions/retry"
	statusPathReplay       = "/actions/replay"
	statusPathSnapshotOnly = "/actions/snapshot-only"
)

var statusSubPaths = []string{statusPathJSON, statusPathRetry, statusPathReplay, statusPathSnapshotOnly}

//go:embed status_page.html
var statusPageHTML string

var statusPageTemplate = template.Must(template.New("status").Parse(statusPageHTML))

// statusSecret keys the CSRF tokens. It is generated once per process, so
// a config reload keeps open pages working; a restart asks editors to
// reload the page.
var statusSecret = sync.OnceValue(func() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return b
})

// StatusHandler serves the operator and editor status page: one
// self-contained HTML page (no external assets) and its JSON, with a few
// CSRF-protected actions (retry or replay dead letters, toggle the kill
// switch). It answers every request it gets and never calls the next
// handler. Mount it behind authentication (basic_auth): unless
// AllowUnauthenticated is set, it refuses requests no authentication
// handler has identified a user for.
//
// Relative to where it is mounted (e.g. /status):
//
//	GET  /status                        the HTML page (also /status/)
//	GET  /status/status.json            the page's data
//	POST /status/actions/retry          {"id": "<job id>"}: run a dead or ready job now
//	POST /status/actions/replay         {"kind": "<kind>"}: replay every dead letter of a kind
//	POST /status/actions/snapshot-only  {"upstream": "<name or empty for all>", "enabled": true}
//
// Colours (each upstream, vendor and job kind is green, amber or red,
// with the reasons; the page's overall colour is the worst of them):
//
//   - upstream: red when its circuit breaker is open (the origin is
//     failing and not called); amber when the breaker is half-open (trial
//     requests), or when the kill switch is on for it (deliberate:
//     snapshot-only is a decision, not an outage); green otherwise.
//   - job kind: red when its queue age (how long its oldest due job has
//     waited) exceeds 10 minutes; amber when it has dead letters; green
//     otherwise. The job queue's colour is the worst of its kinds.
//   - vendor: red when its client's circuit breaker is open; amber when
//     it is half-open or the vendor is disabled (enabled off); green
//     otherwise.
type StatusHandler struct {
	// Title is the page's heading and title. Default "craftedge status".
	Title string `json:"title,omitempty"`

	// Refresh is how often the page fetches fresh data (without
	// reloading). Default 5s; from 1s to 10m.
	Refresh caddy.Duration `json:"refresh,omitempty"`

	// PathPrefix is where the page is mounted (e.g. "/status"); requests
	// for other paths under it are 404. When empty, the mount point is
	// inferred from each request: a path ending in one of the handler's
	// sub-paths (status.json, actions/...) is that sub-path, any other
	// path is the page. The Caddyfile sets it from a directive's own path
	// matcher (`craftedge_status /status*`).
	PathPrefix string `json:"path_prefix,omitempty"`

	// AllowUnauthenticated serves requests for which no authentication
	// handler set a user ({http.auth.user.id}). Off by default, so a
	// status page mounted without basic_auth fails closed with 403. Set
	// it when authentication happens elsewhere (forward_auth, a private
	// network, an IP matcher).
	AllowUnauthenticated bool `json:"allow_unauthenticated,omitempty"`

	app    *caddymodule.App
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (StatusHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.craftedge_status",
		New: func() caddy.Module { return new(StatusHandler) },
	}
}

// Provision sets defaults and attaches to the craftedge app (created with
// defaults when the config has no craftedge block).
func (s *StatusHandler) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	if s.Title == "" {
		s.Title = defaultStatusTitle
	}
	if s.Refresh == 0 {
		s.Refresh = caddy.Duration(defaultStatusRefresh)
	}
	s.PathPrefix = strings.TrimSuffix(s.PathPrefix, "/")
	appIface, err := ctx.App("craftedge")
	if err != nil {
		return fmt.Errorf("craftedge_status: loading app: %w", err)
	}
	s.app = appIface.(*caddymodule.App)
	return nil
}

// Validate checks the configuration.
func (s *StatusHandler) Validate() error {
	if r := time.Duration(s.Refresh); r < minStatusRefresh || r > maxStatusRefresh {
		return fmt.Errorf("craftedge_status: refresh must be from %s to %s, got %s", minStatusRefresh, maxStatusRefresh, r)
	}
	if s.PathPrefix != "" && !strings.HasPrefix(s.PathPrefix, "/") {
		return fmt.Errorf("craftedge_status: path_prefix must start with /, got %q", s.PathPrefix)
	}
	return nil
}

// statusError is an error answered as JSON with its HTTP status.
type statusError struct {
	status int
	msg    string
}

func (e statusError) Error() string { return e.msg }

func statusErrorf(status int, format string, args ...any) statusError {
	return statusError{status: status, msg: fmt.Sprintf(format, args...)}
}

// ServeHTTP serves the page, its JSON and its actions.
func (s *StatusHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Robots-Tag", "noindex, nofollow")
	hdr.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")

	user := caddymodule.AuthUser(r)
	if user == "" && !s.AllowUnauthenticated {
		return s.writeError(w, statusErrorf(http.StatusForbidden,
			"the status page is not behind authentication: put basic_auth in front of craftedge_status "+
				"(or set allow_unauthenticated when authentication happens elsewhere)"))
	}

	sub, ok := s.subPath(r.URL.Path)
	if !ok && s.PathPrefix != "" {
		// Under handle_path the prefix was stripped: match the path the
		// client asked for.
		sub, ok = s.subPath(originalPath(r))
	}
	if !ok {
		return s.writeError(w, statusErrorf(http.StatusNotFound, "no status page resource at %s", r.URL.Path))
	}
	switch sub {
	case "", "/":
		if err := allowMethods(w, r, http.MethodGet, http.MethodHead); err != nil {
			return s.writeError(w, err)
		}
		return s.servePage(w, r, sub, user)
	case statusPathJSON:
		if err := allowMethods(w, r, http.MethodGet, http.MethodHead); err != nil {
			return s.writeError(w, err)
		}
		return s.writeJSON(w, http.StatusOK, s.status())
	case statusPathRetry, statusPathReplay, statusPathSnapshotOnly:
		if err := allowMethods(w, r, http.MethodPost); err != nil {
			return s.writeError(w, err)
		}
		if err := s.checkCSRF(r, user); err != nil {
			s.logger.Warn("status page action refused",
				zap.String("action", strings.TrimPrefix(sub, "/actions/")),
				zap.String("user", user), zap.String("remote_ip", caddymodule.RemoteIP(r)),
				zap.String("reason", err.Error()))
			return s.writeError(w, err)
		}
		result, err := s.act(r, sub, user)
		if err != nil {
			return s.writeError(w, err)
		}
		return s.writeJSON(w, http.StatusOK, result)
	}
	return s.writeError(w, statusErrorf(http.StatusNotFound, "no status page resource at %s", r.URL.Path))
}

// subPath returns the part of path the handler routes on ("" or "/" for
// the page), or false when path is not one of the handler's resources.
func (s *StatusHandler) subPath(path string) (string, bool) {
	if s.PathPrefix != "" {
		rest, ok := strings.CutPrefix(path, s.PathPrefix)
		if !ok || (rest != "" && !strings.HasPrefix(rest, "/")) {
			return "", false
		}
		return rest, rest == "" || rest == "/" || slices.Contains(statusSubPaths, rest)
	}
	for _, sp := range statusSubPaths {
		if strings.HasSuffix(path, sp) {
			return sp, true
		}
	}
	// Without a prefix, any other path is the page, except what is
	// clearly not it: an unknown action, or a file name (favicon.ico...).
	last := path[strings.LastIndexByte(path, '/')+1:]
	if strings.Contains(path, "/actions/") || strings.Contains(last, ".") {
		return "", false
	}
	return "/", true
}

func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) error {
	if slices.Contains(methods, r.Method) {
		return nil
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	return statusErrorf(http.StatusMethodNotAllowed, "method %s not allowed; use %s", r.Method, strings.Join(methods, " or "))
}

func (s *StatusHandler) writeJSON(w http.ResponseWriter, status int, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

func (s *StatusHandler) writeError(w http.ResponseWriter, err error) error {
	var se statusError
	if !errors.As(err, &se) {
		se = statusError{status: http.StatusInternalServerError, msg: err.Error()}
	}
	return caddymodule.WriteError(w, se.status, caddymodule.ErrorBody{Error: se.msg})
}

// servePage renders the HTML page with a fresh CSP nonce and the CSRF
// token of this browser's nonce cookie (set when missing).
func (s *StatusHandler) servePage(w http.ResponseWriter, r *http.Request, sub, user string) error {
	nonce := ""
	if c, err := r.Cookie(statusCSRFCookie); err == nil && validCSRFNonce(c.Value) {
		nonce = c.Value
	} else {
		nonce = rand.Text()
		http.SetCookie(w, &http.Cookie{
			Name:     statusCSRFCookie,
			Value:    nonce,
			Path:     s.mountPath(r, sub),
			HttpOnly: true,
			Secure:   r.TLS != nil,
			SameSite: http.SameSiteStrictMode,
		})
	}
	cspNonce := rand.Text()
	w.Header().Set("Content-Security-Policy", fmt.Sprintf(
		"default-src 'none'; script-src 'nonce-%[1]s'; style-src 'nonce-%[1]s'; connect-src 'self'; img-src 'self' data:; "+
			"frame-ancestors 'none'; base-uri 'none'; form-action 'none'", cspNonce))
	var buf bytes.Buffer
	err := statusPageTemplate.Execute(&buf, map[string]any{
		"Title":     s.Title,
		"Nonce":     cspNonce,
		"CSRF":      csrfToken(nonce, user),
		"RefreshMS": time.Duration(s.Refresh).Milliseconds(),
		"User":      user,
	})
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(buf.Bytes())
	return err
}

// mountPath is the path the page is mounted at, as the browser sees it
// (before any handle_path stripping), for the CSRF cookie's Path.
func (s *StatusHandler) mountPath(r *http.Request, sub string) string {
	p := strings.TrimSuffix(strings.TrimSuffix(originalPath(r), sub), "/")
	if p == "" {
		return "/"
	}
	return p
}

// originalPath is the request's path before rewrites and prefix stripping.
func originalPath(r *http.Request) string {
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		return orig.URL.Path
	}
	return r.URL.Path
}

// validCSRFNonce reports whether a cookie value looks like a nonce we
// issued (rand.Text: 26 base32 characters).
func validCSRFNonce(v string) bool {
	if len(v) != 26 {
		return false
	}
	for _, c := range v {
		if !(c >= 'A' && c <= 'Z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// csrfToken is HMAC(process secret, cookie nonce, user): a page's token
// only works with the cookie it was issued with, for the same user.
func csrfToken(nonce, user string) string {
	m := hmac.New(sha256.New, statusSecret())
	m.Write([]byte("craftedge-status-csrf\x00"))
	m.Write([]byte(nonce))
	m.Write([]byte{0})
	m.Write([]byte(user))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF refuses a POST that a browser sent from another site, or that
// lacks the double-submitted token (header) matching its nonce (cookie).
func (s *StatusHandler) checkCSRF(r *http.Request, user string) error {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin":
	default:
		return statusErrorf(http.StatusForbidden, "cross-site request refused (Sec-Fetch-Site: %s)", site)
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || origin == "null" || !strings.EqualFold(u.Host, r.Host) {
			return statusErrorf(http.StatusForbidden, "cross-origin request refused (Origin %q is not %q)", origin, r.Host)
		}
	}
	c, err := r.Cookie(statusCSRFCookie)
	if err != nil || !validCSRFNonce(c.Value) {
		return statusErrorf(http.StatusForbidden, "missing CSRF cookie: reload the status page and try again")
	}
	token := r.Header.Get(statusCSRFHeader)
	if token == "" {
		return statusErrorf(http.StatusForbidden, "missing %s header: reload the status page and try again", statusCSRFHeader)
	}
	if !hmac.Equal([]byte(token), []byte(csrfToken(c.Value, user))) {
		return statusErrorf(http.StatusForbidden, "invalid CSRF token (the page may be from before a restart): reload the status page and try again")
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return statusErrorf(http.StatusUnsupportedMediaType, "actions take a JSON body (Content-Type: application/json), got %q", ct)
	}
	return nil
}

// decodeAction decodes an action's JSON body strictly.
func decodeAction(r *http.Request, v any) error {
	if err := caddymodule.DecodeJSONBody(r, v); err != nil {
		var ae caddy.APIError
		if errors.As(err, &ae) {
			return statusError{status: ae.HTTPStatus, msg: ae.Err.Error()}
		}
		return statusErrorf(http.StatusBadRequest, "%v", err)
	}
	return nil
}

// act runs a POSTed action and logs who did it.
func (s *StatusHandler) act(r *http.Request, sub, user string) (any, error) {
	app := s.app
	log := s.logger.With(zap.String("user", user), zap.String("remote_ip", caddymodule.RemoteIP(r)))
	switch sub {
	case statusPathRetry:
		var req struct {
			ID string `json:"id"`
		}
		if err := decodeAction(r, &req); err != nil {
			return nil, err
		}
		if req.ID == "" {
			return nil, statusErrorf(http.StatusBadRequest, `"id" (a job id) is required`)
		}
		if err := app.JobQueue().RetryNow(req.ID); err != nil {
			return nil, jobsStatusError(err)
		}
		job, err := app.JobQueue().Get(req.ID)
		if err != nil {
			return nil, jobsStatusError(err)
		}
		log.Info("job retried from the status page", zap.String("job_id", job.ID), zap.String("kind", job.Kind))
		return map[string]any{"retried": job.ID, "kind": job.Kind, "state": job.State}, nil

	case statusPathReplay:
		var req struct {
			Kind string `json:"kind"`
		}
		if err := decodeAction(r, &req); err != nil {
			return nil, err
		}
		if req.Kind == "" {
			return nil, statusErrorf(http.StatusBadRequest, `"kind" (a job kind) is required`)
		}
		n, err := app.JobQueue().ReplayDead(req.Kind)
		if err != nil {
			return nil, jobsStatusError(err)
		}
		log.Warn("dead letters replayed from the status page", zap.String("kind", req.Kind), zap.Int("jobs", n))
		return map[string]any{"replayed": n, "kind": req.Kind}, nil

	case statusPathSnapshotOnly:
		var req struct {
			Upstream string `json:"upstream"`
			Enabled  *bool  `json:"enabled"`
		}
		if err := decodeAction(r, &req); err != nil {
			return nil, err
		}
		if req.Enabled == nil {
			return nil, statusErrorf(http.StatusBadRequest, `"enabled" (true or false) is required`)
		}
		if err := app.CheckSnapshotOnlyOverride(req.Upstream, *req.Enabled); err != nil {
			return nil, statusErrorf(http.StatusBadRequest, "%v", err)
		}
		if err := app.SetSnapshotOnlyOverride(req.Upstream, *req.Enabled); err != nil {
			return nil, statusErrorf(http.StatusInternalServerError, "storing the kill-switch override: %v", err)
		}
		scope := req.Upstream
		if scope == "" {
			scope = "(all upstreams)"
		}
		log.Warn("snapshot-only override changed from the status page",
			zap.String("upstream", scope), zap.Bool("enabled", *req.Enabled))
		return app.KillSwitchStatus(), nil
	}
	return nil, statusErrorf(http.StatusNotFound, "unknown action %s", sub)
}

// jobsStatusError maps the queue's errors to statuses, as the admin API does.
func jobsStatusError(err error) error {
	var ae caddy.APIError
	if errors.As(caddymodule.JobsAPIError(err), &ae) {
		return statusError{status: ae.HTTPStatus, msg: err.Error()}
	}
	return statusErrorf(http.StatusInternalServerError, "%v", err)
}

// StatusColor is green, amber or red.
type StatusColor string

// The status colours, from best to worst.
const (
	StatusGreen StatusColor = "green"
	StatusAmber StatusColor = "amber"
	StatusRed   StatusColor = "red"
)

func (c StatusColor) rank() int {
	switch c {
	case StatusRed:
		return 2
	case StatusAmber:
		return 1
	}
	return 0
}

// worse returns the worse of two colours.
func (c StatusColor) worse(o StatusColor) StatusColor {
	if o.rank() > c.rank() {
		return o
	}
	return c
}

// StatusReport is the body of GET <mount>/status.json.
type StatusReport struct {
	Title string    `json:"title"`
	Time  time.Time `json:"time"`
	// RefreshSeconds is how often the page refreshes.
	RefreshSeconds float64 `json:"refresh_seconds"`
	// Status is the worst colour on the page; Why lists what is not green.
	Status StatusColor `json:"status"`
	Why    []string    `json:"why"`

	Upstreams  []StatusUpstream           `json:"upstreams"`
	Vendors    []StatusVendor             `json:"vendors"`
	KillSwitch StatusKillSwitch           `json:"kill_switch"`
	Memory     StatusMemory               `json:"memory"`
	Snapshots  caddymodule.SnapshotHealth `json:"snapshots"`
	Served     map[string]uint64          `json:"served"`
	Jobs       StatusJobs                 `json:"jobs"`
	// DeadLetters are the oldest dead jobs (at most 50);
	// DeadLettersMore reports that there are more.
	DeadLetters     []StatusDeadLetter `json:"dead_letters"`
	DeadLettersMore bool               `json:"dead_letters_more"`
	// WebhookRejections are recent rejected webhooks, newest first.
	WebhookRejections []caddymodule.StatusWebhookRejection `json:"webhook_rejections"`
	// Cluster is this node's cluster (absent without a cluster block).
	Cluster *StatusCluster `json:"cluster,omitempty"`
}

// StatusCluster is this node's view of the cluster: red while it cannot
// reach NATS (other nodes' purges do not reach it), amber while it is
// connecting or catching up, behind on purges, or holds kill-switch
// changes the cluster has not stored.
type StatusCluster struct {
	Status StatusColor `json:"status"`
	Why    []string    `json:"why"`
	caddymodule.ClusterHealth
	// KillSwitchPending are this node's kill-switch changes not yet
	// stored by the cluster.
	KillSwitchPending map[string]bool `json:"kill_switch_pending,omitempty"`
}

// StatusUpstream is one upstream (Craft) behind a craftedge handler.
type StatusUpstream struct {
	Name   string      `json:"name"`
	Status StatusColor `json:"status"`
	Why    []string    `json:"why"`
	// Breaker is closed, open or half-open, since BreakerSince.
	Breaker      string    `json:"breaker"`
	BreakerSince time.Time `json:"breaker_since"`
	Opens        uint64    `json:"opens"`
	// SnapshotOnly is the effective kill switch; SnapshotOnlyBy lists why
	// ("caddyfile", "handler", "override: all", "override").
	SnapshotOnly   bool     `json:"snapshot_only"`
	SnapshotOnlyBy []string `json:"snapshot_only_by"`
	// Override is this upstream's own kill-switch override (what the
	// page's toggle sets).
	Override bool `json:"override"`
}

// StatusVendor is one configured vendor API: its breaker and last sync.
type StatusVendor struct {
	Name   string      `json:"name"`
	Status StatusColor `json:"status"`
	Why    []string    `json:"why"`
	// Breaker is the vendor client's breaker state.
	Breaker string `json:"breaker,omitempty"`
	// LastSuccessAt is the last successful sync (nil: never).
	LastSuccessAt *time.Time `json:"last_success_at"`
	// LastError is the error of the last failed call, if any.
	LastError string `json:"last_error,omitempty"`
}

// StatusKillSwitch is the global kill switch.
type StatusKillSwitch struct {
	// Configured is snapshot_only in the Caddyfile's global block (the
	// page cannot turn it off).
	Configured bool `json:"configured"`
	// Override is the global admin override (all upstreams).
	Override bool `json:"override"`
	// Overrides are all overrides in force ("" = all upstreams).
	Overrides map[string]bool `json:"overrides"`
}

// StatusMemory is the memory tier.
type StatusMemory struct {
	Entries  int    `json:"entries"`
	Bytes    int    `json:"bytes"`
	MaxBytes int64  `json:"max_bytes"`
	Hits     uint64 `json:"hits"`
	Misses   uint64 `json:"misses"`
	// HitRatio is hits / (hits + misses); nil before the first lookup.
	HitRatio *float64 `json:"hit_ratio"`
}

// StatusJobs is the durable job queue.
type StatusJobs struct {
	Status          StatusColor     `json:"status"`
	Why             []string        `json:"why"`
	Ready           int             `json:"ready"`
	Running         int             `json:"running"`
	Done            int             `json:"done"`
	Dead            int             `json:"dead"`
	QueueAgeSeconds float64         `json:"queue_age_seconds"`
	Kinds           []StatusJobKind `json:"kinds"`
}

// StatusJobKind is the queue of one job kind.
type StatusJobKind struct {
	Kind            string      `json:"kind"`
	Status          StatusColor `json:"status"`
	Why             []string    `json:"why"`
	Registered      bool        `json:"registered"`
	Ready           int         `json:"ready"`
	Running         int         `json:"running"`
	Done            int         `json:"done"`
	Dead            int         `json:"dead"`
	QueueAgeSeconds float64     `json:"queue_age_seconds"`
}

// StatusDeadLetter is a dead job (its payload is not shown).
type StatusDeadLetter struct {
	ID         string    `json:"id"`
	Kind       string    `json:"kind"`
	Key        string    `json:"key,omitempty"`
	Entity     string    `json:"entity,omitempty"`
	Attempts   int       `json:"attempts"`
	LastError  string    `json:"last_error,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// status builds the report from the app's health, the dead letters and
// the colour rules (see StatusHandler).
func (s *StatusHandler) status() StatusReport {
	a := s.app
	h := a.Health()
	rep := StatusReport{
		Title:             s.Title,
		Time:              h.Time,
		RefreshSeconds:    time.Duration(s.Refresh).Seconds(),
		Status:            StatusGreen,
		Why:               []string{},
		Upstreams:         []StatusUpstream{},
		Vendors:           []StatusVendor{},
		Snapshots:         h.Snapshots,
		Served:            h.Served,
		DeadLetters:       []StatusDeadLetter{},
		WebhookRejections: caddymodule.RecentWebhookRejections(),
	}
	add := func(c StatusColor, why []string) {
		rep.Status = rep.Status.worse(c)
		if c != StatusGreen {
			rep.Why = append(rep.Why, why...)
		}
	}

	ks := h.KillSwitch
	rep.KillSwitch = StatusKillSwitch{Configured: ks.Configured, Override: ks.Overrides[""], Overrides: ks.Overrides}

	handlerOn := a.HandlerSnapshotOnly()
	for _, u := range h.Upstreams {
		su := StatusUpstream{
			Name: u.Name, Status: StatusGreen, Why: []string{},
			Breaker: u.Breaker, BreakerSince: u.Since, Opens: u.Opens,
			SnapshotOnly: u.SnapshotOnly, SnapshotOnlyBy: []string{}, Override: ks.Overrides[u.Name],
		}
		since := u.Since.UTC().Format("2006-01-02 15:04:05 UTC")
		switch u.Breaker {
		case "open":
			su.Status = StatusRed
			su.Why = append(su.Why, fmt.Sprintf("%s: circuit breaker open since %s: the origin is failing; serving stale copies, snapshots or the fallback", u.Name, since))
		case "half-open":
			su.Status = StatusAmber
			su.Why = append(su.Why, fmt.Sprintf("%s: circuit breaker half-open since %s: trying the origin again", u.Name, since))
		}
		if ks.Configured {
			su.SnapshotOnlyBy = append(su.SnapshotOnlyBy, "caddyfile")
		}
		if handlerOn[u.Name] {
			su.SnapshotOnlyBy = append(su.SnapshotOnlyBy, "handler")
		}
		if ks.Overrides[""] {
			su.SnapshotOnlyBy = append(su.SnapshotOnlyBy, "override: all")
		}
		if ks.Overrides[u.Name] {
			su.SnapshotOnlyBy = append(su.SnapshotOnlyBy, "override")
		}
		if u.SnapshotOnly {
			su.Status = su.Status.worse(StatusAmber)
			su.Why = append(su.Why, fmt.Sprintf("%s: kill switch on (%s): serving memory and snapshots only, never the origin",
				u.Name, strings.Join(su.SnapshotOnlyBy, ", ")))
		}
		add(su.Status, su.Why)
		rep.Upstreams = append(rep.Upstreams, su)
	}

	ms := a.MemoryStats()
	rep.Memory = StatusMemory{Entries: ms.Entries, Bytes: ms.Bytes, MaxBytes: ms.MaxBytes, Hits: ms.Hits, Misses: ms.Misses}
	if n := ms.Hits + ms.Misses; n > 0 {
		ratio := float64(ms.Hits) / float64(n)
		rep.Memory.HitRatio = &ratio
	}

	rep.Jobs = StatusJobs{Status: StatusGreen, Why: []string{}, Kinds: []StatusJobKind{}}
	if h.Jobs == nil {
		rep.Jobs.Status = StatusAmber
		rep.Jobs.Why = append(rep.Jobs.Why, "job queue: statistics unreadable (see the logs)")
	} else {
		j := h.Jobs
		rep.Jobs.Ready, rep.Jobs.Running, rep.Jobs.Done, rep.Jobs.Dead = j.Ready, j.Running, j.Done, j.Dead
		rep.Jobs.QueueAgeSeconds = j.QueueAgeSeconds
		names := make([]string, 0, len(j.Kinds))
		for k := range j.Kinds {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, name := range names {
			k := j.Kinds[name]
			sk := StatusJobKind{
				Kind: name, Status: StatusGreen, Why: []string{}, Registered: k.Registered,
				Ready: k.Ready, Running: k.Running, Done: k.Done, Dead: k.Dead, QueueAgeSeconds: k.QueueAgeSeconds,
			}
			if age := time.Duration(k.QueueAgeSeconds * float64(time.Second)); age > statusQueueAgeRed {
				sk.Status = StatusRed
				sk.Why = append(sk.Why, fmt.Sprintf("jobs %s: the oldest due job has waited %s (over %s)", name, age.Round(time.Second), statusQueueAgeRed))
			}
			if k.Dead > 0 {
				sk.Status = sk.Status.worse(StatusAmber)
				sk.Why = append(sk.Why, fmt.Sprintf("jobs %s: %d dead letter(s)", name, k.Dead))
			}
			rep.Jobs.Status = rep.Jobs.Status.worse(sk.Status)
			rep.Jobs.Why = append(rep.Jobs.Why, sk.Why...)
			rep.Jobs.Kinds = append(rep.Jobs.Kinds, sk)
		}
		dead, err := a.JobQueue().List(jobs.ListFilter{State: jobs.StateDead, Limit: statusDeadLetterLimit + 1})
		if err != nil {
			s.logger.Error("listing dead letters for the status page", zap.Error(err))
			rep.Jobs.Status = rep.Jobs.Status.worse(StatusAmber)
			rep.Jobs.Why = append(rep.Jobs.Why, "job queue: dead letters unreadable (see the logs)")
		}
		if len(dead) > statusDeadLetterLimit {
			dead, rep.DeadLettersMore = dead[:statusDeadLetterLimit], true
		}
		for _, d := range dead {
			rep.DeadLetters = append(rep.DeadLetters, StatusDeadLetter{
				ID: d.ID, Kind: d.Kind, Key: d.Key, Entity: d.Entity, Attempts: d.Attempts,
				LastError: vendors.Snippet([]byte(d.LastError), nil, 500), CreatedAt: d.CreatedAt, FinishedAt: d.FinishedAt,
			})
		}
	}
	add(rep.Jobs.Status, rep.Jobs.Why)
	for _, v := range h.Vendors {
		sv := StatusVendor{Name: v.Name, Status: StatusGreen, Why: []string{}, Breaker: v.Breaker}
		switch v.Breaker {
		case "open":
			sv.Status, sv.Why = StatusRed, append(sv.Why, v.Name+": circuit breaker open")
		case "half-open":
			sv.Status, sv.Why = StatusAmber, append(sv.Why, v.Name+": circuit breaker half-open")
		}
		if !v.Enabled {
			sv.Status = sv.Status.worse(StatusAmber)
			sv.Why = append(sv.Why, v.Name+": disabled (enabled off)")
		}
		for _, r := range v.Resources {
			if !r.LastSync.IsZero() && (sv.LastSuccessAt == nil || r.LastSync.After(*sv.LastSuccessAt)) {
				t := r.LastSync
				sv.LastSuccessAt = &t
			}
		}
		rep.Vendors = append(rep.Vendors, sv)
	}
	for _, v := range rep.Vendors {
		add(v.Status, v.Why)
	}
	if h.Cluster != nil {
		rep.Cluster = statusCluster(h.Cluster, ks.ClusterPending)
		add(rep.Cluster.Status, rep.Cluster.Why)
	}
	return rep
}

// statusCluster colours the cluster's health.
func statusCluster(h *caddymodule.ClusterHealth, pending map[string]bool) *StatusCluster {
	c := &StatusCluster{Status: StatusGreen, Why: []string{}, ClusterHealth: *h, KillSwitchPending: pending}
	switch {
	case !h.Connected:
		c.Status = StatusRed
		why := fmt.Sprintf("cluster: node %s cannot reach NATS (%s): other nodes' purges do not reach it", h.Node, h.State)
		if h.LastError != "" {
			why += "; " + h.LastError
		}
		c.Why = append(c.Why, why)
	case h.State != "ready":
		c.Status = StatusAmber
		c.Why = append(c.Why, fmt.Sprintf("cluster: node %s is %s: the memory tier serves again once it has applied the purges it missed", h.Node, strings.ReplaceAll(h.State, "_", " ")))
	case h.Lag != nil && *h.Lag > 0:
		c.Status = StatusAmber
		c.Why = append(c.Why, fmt.Sprintf("cluster: node %s has %d purge(s) of other nodes still to apply", h.Node, *h.Lag))
	}
	if h.Queued > 0 {
		c.Status = c.Status.worse(StatusAmber)
		c.Why = append(c.Why, fmt.Sprintf("cluster: %d purge(s) made here wait to be published", h.Queued))
	}
	if len(pending) > 0 {
		c.Status = c.Status.worse(StatusAmber)
		c.Why = append(c.Why, "cluster: kill-switch changes made here are not shared yet (NATS unreachable)")
	}
	return c
}

// parseStatusDirective parses the craftedge_status directive. When the
// directive has its own path matcher (`craftedge_status /status*`), that
// path is the handler's path_prefix unless one is set.
func parseStatusDirective(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	matcherSet, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	s := new(StatusHandler)
	if err := s.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	if s.PathPrefix == "" {
		s.PathPrefix = prefixFromMatcherSet(matcherSet)
	}
	return h.NewRoute(matcherSet, s), nil
}

// prefixFromMatcherSet returns the mount prefix a single path matcher
// describes ("/status*" or "/status/*" -> "/status"), or "".
func prefixFromMatcherSet(ms caddy.ModuleMap) string {
	raw, ok := ms["path"]
	if !ok {
		return ""
	}
	var paths []string
	if err := json.Unmarshal(raw, &paths); err != nil || len(paths) != 1 {
		return ""
	}
	p := strings.TrimSuffix(paths[0], "*")
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "*%{") {
		return ""
	}
	return strings.TrimSuffix(p, "/")
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	craftedge_status [<matcher>] {
//	    title       <text>
//	    refresh     <duration>
//	    path_prefix <path>
//	    allow_unauthenticated
//	}
func (s *StatusHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Errf("craftedge_status takes no arguments besides a matcher, got %q (use a block)", d.Val())
	}
	for d.NextBlock(0) {
		sub := d.Val()
		switch sub {
		case "title":
			v, err := caddymodule.OneArg(d)
			if err != nil {
				return err
			}
			s.Title = v
		case "refresh":
			dur, err := caddymodule.ParseDuration(d)
			if err != nil {
				return err
			}
			if r := time.Duration(dur); r < minStatusRefresh || r > maxStatusRefresh {
				return d.Errf("refresh must be from %s to %s, got %s", minStatusRefresh, maxStatusRefresh, r)
			}
			s.Refresh = dur
		case "path_prefix":
			v, err := caddymodule.OneArg(d)
			if err != nil {
				return err
			}
			if !strings.HasPrefix(v, "/") {
				return d.Errf("path_prefix must start with /, got %q", v)
			}
			s.PathPrefix = strings.TrimSuffix(v, "/")
		case "allow_unauthenticated":
			s.AllowUnauthenticated = true
		default:
			return d.Errf("unrecognized craftedge_status subdirective %q (want title, refresh, path_prefix or allow_unauthenticated)", sub)
		}
		if d.NextArg() {
			return d.Errf("too many arguments to %q: %q", sub, d.Val())
		}
	}
	return nil
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*StatusHandler)(nil)
	_ caddy.Validator             = (*StatusHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*StatusHandler)(nil)
	_ caddyfile.Unmarshaler       = (*StatusHandler)(nil)
)
