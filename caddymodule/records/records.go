package records

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/httpcache"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendors"
)

func init() {
	caddy.RegisterModule(RecordsHandler{})
	httpcaddyfile.RegisterHandlerDirective("craftedge_records", parseRecordsDirective)
	// Ordered in caddymodule/directives.go, with the other craftedge directives.
}

// Defaults of the records handler.
const (
	recordsPrefix         = "/vendors/v1/"
	defaultRecordsMaxAge  = time.Minute
	defaultRecordsMaxBody = 1 << 20
	defaultRecordsPerPage = 50
)

// RecordsHandler serves the read-model API of the synced vendor records
// under /vendors/v1/ and accepts writes into the outbox:
//
//	GET      /vendors/v1/{vendor}/{resource}/{id}
//	GET      /vendors/v1/{vendor}/{resource}?updated_since=&page=&per_page=
//	POST|PUT /vendors/v1/{vendor}/{resource}[/{id}]   → 202, outbox job
//	GET      /vendors/v1/outbox/{job id}
//	GET      /vendors/v1/media/{sha256}                 stored media file
//
// Reads are served from the stored records only; they never call a
// vendor. A record of a resource with media fields carries "media": each
// file's edge URL under /vendors/v1/media/ once downloaded, the vendor URL
// until then (caddymodule.MediaRef). Media files are public: their address
// is the SHA-256 of their content. Other paths go to the next handler.
//
// Writes, outbox job states and reads of resources that are not public
// need an authenticated caller: a user set by an authentication handler in
// front ({http.auth.user.id}: basic_auth, forward_auth with copy_headers
// setting it) or one of BearerTokens. Without one they get 401 (a bearer
// token is configured) or 403, before anything is looked at or enqueued.
type RecordsHandler struct {
	// MaxAge is the max-age of read responses' Cache-Control. Default 1m.
	MaxAge caddy.Duration `json:"max_age,omitempty"`

	// MaxBodySize bounds the body of a write. Default 1 MiB.
	MaxBodySize int64 `json:"max_body_size,omitempty"`

	// BearerTokens authenticate a caller that sends "Authorization: Bearer
	// <token>" (compared in constant time). Each must be an {env.*}
	// placeholder (a literal token would be kept in Caddy's JSON config),
	// resolved at provision to at least 16 bytes; several allow rotation.
	BearerTokens []string `json:"bearer_tokens,omitempty"`

	// AllowAnonymousWrites lets anyone who reaches the route write to the
	// vendors (with the site's vendor credentials) and read the state of an
	// outbox job whose id they hold. Dangerous: only for a route that is
	// protected some other way (a private network, a remote_ip matcher).
	// Logged as a warning at every provision. Reads of resources that are
	// not public still need authentication.
	AllowAnonymousWrites bool `json:"allow_anonymous_writes,omitempty"`

	app    *caddymodule.App
	logger *zap.Logger
	tokens [][sha256.Size]byte // hashes of the resolved BearerTokens
}

// minBearerTokenLen is the shortest bearer token accepted.
const minBearerTokenLen = 16

// CaddyModule returns the Caddy module information.
func (RecordsHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.craftedge_records",
		New: func() caddy.Module { return new(RecordsHandler) },
	}
}

// Provision binds the handler to the craftedge app.
func (h *RecordsHandler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.MaxAge == 0 {
		h.MaxAge = caddy.Duration(defaultRecordsMaxAge)
	}
	if h.MaxBodySize == 0 {
		h.MaxBodySize = defaultRecordsMaxBody
	}
	repl := caddy.NewReplacer()
	h.tokens = nil
	for _, t := range h.BearerTokens {
		if !isEnvPlaceholder(t) {
			return fmt.Errorf("craftedge_records: bearer token must be an {env.NAME} placeholder, not a literal (it would be kept in Caddy's JSON config)")
		}
		v := repl.ReplaceKnown(t, "")
		if v == "" {
			return fmt.Errorf("craftedge_records: bearer token %s resolves to nothing (is the variable set?)", t)
		}
		if len(v) < minBearerTokenLen {
			return fmt.Errorf("craftedge_records: bearer token %s is %d bytes; use at least %d random bytes (e.g. openssl rand -hex 32)",
				t, len(v), minBearerTokenLen)
		}
		h.tokens = append(h.tokens, sha256.Sum256([]byte(v)))
	}
	appIface, err := ctx.App("craftedge")
	if err != nil {
		return fmt.Errorf("craftedge_records: loading the craftedge app: %w", err)
	}
	h.app = appIface.(*caddymodule.App)
	if h.AllowAnonymousWrites {
		h.logger.Warn("craftedge_records: allow_anonymous_writes is on: anyone who can reach this route can write " +
			"to your vendors with the site's vendor credentials and read outbox jobs; remove it unless the route is " +
			"protected some other way")
	}
	return nil
}

// isEnvPlaceholder reports whether s is exactly one {env.NAME} placeholder.
func isEnvPlaceholder(s string) bool {
	name, ok := strings.CutPrefix(s, "{env.")
	if !ok {
		return false
	}
	name, ok = strings.CutSuffix(name, "}")
	return ok && name != "" && !strings.ContainsAny(name, "{}")
}

// idempotencyKey is the job key of a write with an Idempotency-Key: the
// caller's key within the caller's namespace (its user, a hash of its
// bearer token, or "anonymous"), for this record and this body. A retry of
// the same write finds its job; another caller reusing a guessable key
// ("order-1001"), or the same key with another record or body, makes a job
// of its own instead of being handed (and shown) someone else's.
func idempotencyKey(r *http.Request, vendor, resource, id string, body []byte, key string) string {
	caller := "anonymous"
	if user := caddymodule.AuthUser(r); user != "" {
		caller = "user:" + user
	} else if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		caller = "token:" + hex.EncodeToString(sum[:8])
	}
	h := sha256.New()
	for _, part := range []string{caller, vendor, resource, id, key} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Write(body)
	return vendor + ":" + resource + ":" + hex.EncodeToString(h.Sum(nil)[:16])
}

// authResult is what authenticate found.
type authResult int

const (
	authNone authResult = iota // no credentials this route checks
	authBad                    // a bearer token that matches none
	authOK                     // an authenticated user or a valid token
)

// authenticate checks the caller: a user set by an authentication handler,
// or a bearer token matching one of h's (every token is compared, each in
// constant time).
func (h *RecordsHandler) authenticate(r *http.Request) authResult {
	if caddymodule.AuthUser(r) != "" {
		return authOK
	}
	if len(h.tokens) == 0 {
		return authNone
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return authNone
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	match := 0
	for i := range h.tokens {
		match |= subtle.ConstantTimeCompare(sum[:], h.tokens[i][:])
	}
	if match == 1 {
		return authOK
	}
	return authBad
}

// refuse answers a request that needs authentication and has none.
func (h *RecordsHandler) refuse(w http.ResponseWriter, res authResult, what string) error {
	if len(h.tokens) > 0 {
		if res == authBad {
			w.Header().Set("WWW-Authenticate", `Bearer realm="craftedge records", error="invalid_token"`)
			return writeAPIError(w, http.StatusUnauthorized, "%s needs authentication: the bearer token is not valid", what)
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="craftedge records"`)
		return writeAPIError(w, http.StatusUnauthorized, "%s needs authentication: send your token in an Authorization: Bearer header", what)
	}
	return writeAPIError(w, http.StatusForbidden,
		"%s needs authentication, and this route has none: put basic_auth or forward_auth in front of craftedge_records, "+
			"or set its bearer_token", what)
}

// writeAPIError answers a records API request with status and the error
// body (caddymodule.ErrorBody) saying fmt.Sprintf(format, args...).
func writeAPIError(w http.ResponseWriter, status int, format string, args ...any) error {
	return caddymodule.WriteError(w, status, caddymodule.ErrorBody{Error: fmt.Sprintf(format, args...)})
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *RecordsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	rest, ok := strings.CutPrefix(r.URL.Path, recordsPrefix)
	if !ok {
		return next.ServeHTTP(w, r)
	}
	parts := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	for _, p := range parts {
		if p == "" {
			return writeAPIError(w, http.StatusNotFound, "not found")
		}
	}
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	write := r.Method == http.MethodPost || r.Method == http.MethodPut
	// Anything but a read is a write (DELETE and others included): refused
	// before the path is looked at, unless authenticated or opted out.
	auth := h.authenticate(r)
	if !read && auth != authOK && (auth == authBad || !h.AllowAnonymousWrites) {
		return h.refuse(w, auth, "writing")
	}
	switch {
	case parts[0] == "media" && len(parts) == 2 && read:
		// Stored media files are public: their address is the hash of
		// their content.
		return h.app.ServeMedia(w, r, parts[1], h.logger)
	case parts[0] == "media":
		if len(parts) == 2 {
			w.Header().Set("Allow", "GET, HEAD")
			return writeAPIError(w, http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
		}
		return writeAPIError(w, http.StatusNotFound, "not found")
	case parts[0] == "outbox" && len(parts) == 2 && read:
		// An anonymous caller (on a route open to anonymous writes) reads
		// a job only by its random 32-hex-digit id: the 16-digit ids of
		// jobs accepted before ids were random are sequential, so guessable.
		if auth != authOK && (auth == authBad || !h.AllowAnonymousWrites) {
			return h.refuse(w, auth, "reading an outbox job")
		}
		if auth != authOK && len(parts[1]) != 32 {
			return writeAPIError(w, http.StatusNotFound, "not found")
		}
		return h.serveOutboxJob(w, parts[1])
	case parts[0] == "outbox":
		return writeAPIError(w, http.StatusNotFound, "not found")
	case len(parts) < 2 || len(parts) > 3:
		return writeAPIError(w, http.StatusNotFound, "not found")
	}
	vendor, resource := parts[0], parts[1]
	vc, ok := h.app.Vendors[vendor]
	var res *caddymodule.VendorResource
	if ok {
		res, ok = vc.Resources[resource]
	}
	if !ok {
		if auth != authOK && !h.AllowAnonymousWrites {
			// An unauthenticated caller cannot tell an unknown vendor or
			// resource from one it may not read (no enumeration; a route
			// open to anonymous writes tells everyone anyway).
			return h.refuse(w, auth, fmt.Sprintf("reading %s/%s", vendor, resource))
		}
		if vc == nil {
			return writeAPIError(w, http.StatusNotFound, "unknown vendor %q", vendor)
		}
		return writeAPIError(w, http.StatusNotFound, "unknown resource %q of vendor %q", resource, vendor)
	}
	id := ""
	if len(parts) == 3 {
		id = parts[2]
	}
	if read && !res.Public && auth != authOK {
		return h.refuse(w, auth, fmt.Sprintf("reading %s/%s (not public)", vendor, resource))
	}
	switch {
	case read && id != "":
		return h.serveRecord(w, r, vendor, resource, id, res.Public)
	case read:
		return h.serveList(w, r, vendor, resource, res.Public)
	case write:
		return h.acceptWrite(w, r, vendor, resource, id, res)
	}
	w.Header().Set("Allow", "GET, HEAD, POST, PUT")
	return writeAPIError(w, http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
}

func (h *RecordsHandler) serveRecord(w http.ResponseWriter, r *http.Request, vendor, resource, id string, public bool) error {
	rec, err := h.app.Record(vendor, resource, id)
	switch {
	case errors.Is(err, vendors.ErrNotFound):
		return writeAPIError(w, http.StatusNotFound, "no %s %q", resource, id)
	case errors.Is(err, vendors.ErrInvalidRequest):
		return writeAPIError(w, http.StatusBadRequest, "%v", err)
	case err != nil:
		return caddymodule.WriteRecordsReadError(w, h.logger, err)
	}
	if rec.Deleted {
		return writeAPIError(w, http.StatusGone, "%s %q was deleted", resource, id)
	}
	body, err := json.Marshal(h.answer(rec))
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	h.app.KeepPrivate(w.Header(), vendor, resource)
	return h.writeRead(w, r, body, rec.Tags, public)
}

// RecordsPage is the body of a list answer.
type RecordsPage struct {
	Records  []RecordAnswer `json:"records"`
	Page     int            `json:"page"`
	PerPage  int            `json:"per_page"`
	HasMore  bool           `json:"has_more"`
	NextPage int            `json:"next_page,omitempty"`
}

func (h *RecordsHandler) serveList(w http.ResponseWriter, r *http.Request, vendor, resource string, public bool) error {
	q := r.URL.Query()
	var since time.Time
	if s := q.Get("updated_since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return writeAPIError(w, http.StatusBadRequest, "updated_since must be an RFC 3339 time, got %q", s)
		}
		since = t
	}
	page, perPage := 1, defaultRecordsPerPage
	for _, p := range []struct {
		name     string
		dst      *int
		min, max int
	}{{"page", &page, 1, 1 << 30}, {"per_page", &perPage, 1, vendors.MaxPerPage}} {
		s := q.Get(p.name)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < p.min || n > p.max {
			return writeAPIError(w, http.StatusBadRequest, "%s must be an integer in %d..%d, got %q", p.name, p.min, p.max, s)
		}
		*p.dst = n
	}
	pg, err := h.app.ListRecords(vendor, resource, since, page, perPage)
	if errors.Is(err, vendors.ErrInvalidRequest) {
		return writeAPIError(w, http.StatusBadRequest, "%v", err)
	}
	if err != nil {
		return caddymodule.WriteRecordsReadError(w, h.logger, err)
	}
	tags := []string{caddymodule.CollectionTag(vendor, resource)}
	seen := map[string]bool{}
	for _, rec := range pg.Records {
		for _, t := range rec.Tags {
			if !seen[t] {
				seen[t] = true
				tags = append(tags, t)
			}
		}
	}
	answers := make([]RecordAnswer, len(pg.Records))
	for i, rec := range pg.Records {
		answers[i] = h.answer(rec)
	}
	body, err := json.Marshal(RecordsPage{Records: answers, Page: page, PerPage: perPage, HasMore: pg.HasMore, NextPage: pg.NextPage})
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	h.app.KeepPrivate(w.Header(), vendor, resource)
	return h.writeRead(w, r, body, tags, public)
}

// writeRead answers a read with a strong ETag, Cache-Control and the
// records' cache tags, or 304 when the client has the same body. Answers of
// a resource that is not public are private: no shared cache (craftedge's
// memory tier and snapshots, a CDN) keeps them for another caller.
func (h *RecordsHandler) writeRead(w http.ResponseWriter, r *http.Request, body []byte, tags []string, public bool) error {
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	hdr := w.Header()
	hdr.Set("ETag", etag)
	if hdr.Get("Cache-Control") == "" { // keepPrivate may have set it
		visibility := "public"
		if !public {
			visibility = "private"
		}
		hdr.Set("Cache-Control", fmt.Sprintf("%s, max-age=%d", visibility, int(time.Duration(h.MaxAge).Seconds())))
	}
	hdr.Set("Vary", "Accept-Encoding")
	if len(tags) > 0 {
		hdr.Set("Cache-Tag", strings.Join(tags, ","))
	}
	if httpcache.ETagMatch(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err := w.Write(body)
	return err
}

func (h *RecordsHandler) acceptWrite(w http.ResponseWriter, r *http.Request, vendor, resource, id string, res *caddymodule.VendorResource) error {
	if res.Upsert == nil {
		return writeAPIError(w, http.StatusMethodNotAllowed, "resource %q of vendor %q is read-only", resource, vendor)
	}
	if id == "" && strings.Contains(res.Upsert.Path, "{id}") {
		return writeAPIError(w, http.StatusBadRequest, "writes to %s/%s need an id in the path", vendor, resource)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.MaxBodySize))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return writeAPIError(w, http.StatusRequestEntityTooLarge, "body larger than %s", humanize.IBytes(uint64(h.MaxBodySize)))
	}
	if err != nil {
		return writeAPIError(w, http.StatusBadRequest, "reading body: %v", err)
	}
	if !json.Valid(body) {
		return writeAPIError(w, http.StatusBadRequest, "body is not valid JSON")
	}
	req, err := h.app.OutboxWrite(vendor, resource, id, body)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	// The request id ties the job's log lines to this request's.
	req.Correlation = caddymodule.RequestID(r)
	if k := r.Header.Get("Idempotency-Key"); k != "" {
		req.Key = idempotencyKey(r, vendor, resource, id, body, k)
	}
	// Enqueue returns once the job is durable: committed and fsynced, or
	// in cluster mode stored by the cluster's replicas.
	job, created, err := h.app.OutboxBackend().Enqueue(r.Context(), req)
	if errors.Is(err, jobs.ErrInvalid) {
		return writeAPIError(w, http.StatusBadRequest, "%v", err)
	}
	if errors.Is(err, jobs.ErrUnavailable) {
		return h.app.RefuseDurableWrite(w, "outbox write", err)
	}
	if err != nil {
		return caddyhttp.Error(http.StatusServiceUnavailable, err)
	}
	h.logger.Info("outbox write accepted", zap.String("request_id", req.Correlation), zap.String("job_id", job.ID),
		zap.String("vendor", vendor), zap.String("resource", resource), zap.Bool("created", created))
	loc := recordsPrefix + "outbox/" + job.ID
	w.Header().Set("Location", loc)
	w.Header().Set("Cache-Control", "no-store")
	return caddymodule.WriteJSON(w, http.StatusAccepted, caddymodule.OutboxAccepted{Job: job.ID, State: job.State, Location: loc})
}

func (h *RecordsHandler) serveOutboxJob(w http.ResponseWriter, id string) error {
	job, err := h.app.OutboxJob(id)
	switch {
	case errors.Is(err, jobs.ErrInvalidID):
		return writeAPIError(w, http.StatusBadRequest, "invalid job id %q", id)
	case errors.Is(err, jobs.ErrNotFound):
		return writeAPIError(w, http.StatusNotFound, "no job %q", id)
	case errors.Is(err, jobs.ErrUnavailable):
		w.Header().Set("Retry-After", "5")
		return writeAPIError(w, http.StatusServiceUnavailable, "job %q cannot be read now: %v", id, err)
	case err != nil:
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	w.Header().Set("Cache-Control", "no-store")
	return caddymodule.WriteJSON(w, http.StatusOK, job)
}

func parseRecordsDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	rh := new(RecordsHandler)
	if err := rh.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return rh, nil
}

// UnmarshalCaddyfile sets up the handler:
//
//	craftedge_records [<matcher>] {
//	    max_age                <duration>
//	    max_body_size          <size>
//	    bearer_token           <{env.NAME}...>
//	    allow_anonymous_writes
//	}
func (h *RecordsHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "max_age":
			dur, err := caddymodule.ParseDuration(d)
			if err != nil {
				return err
			}
			h.MaxAge = dur
		case "max_body_size":
			n, err := caddymodule.ParseSize(d)
			if err != nil {
				return err
			}
			h.MaxBodySize = n
		case "bearer_token":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			for _, a := range args {
				if !isEnvPlaceholder(a) {
					return d.Errf("bearer_token: use an {env.NAME} placeholder, not a literal token (it would be kept in Caddy's JSON config)")
				}
			}
			h.BearerTokens = append(h.BearerTokens, args...)
			continue
		case "allow_anonymous_writes":
			h.AllowAnonymousWrites = true
		default:
			return d.Errf("unknown craftedge_records subdirective %q", d.Val())
		}
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	return nil
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*RecordsHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*RecordsHandler)(nil)
	_ caddyfile.Unmarshaler       = (*RecordsHandler)(nil)
)
