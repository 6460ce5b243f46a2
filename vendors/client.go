package vendors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/craftedge/craftedge/circuit"
)

// ClientOptions are a Client's collaborators. Every field is optional.
type ClientOptions struct {
	// HTTPClient sends the requests; nil means a client with its own
	// transport. Either way redirects are never followed (a redirect could
	// carry the credentials to another host); a 3xx is returned as is.
	HTTPClient *http.Client
	// Logger receives breaker transitions (info) and retries and hedges
	// (debug); never header values. nil means zap.NewNop().
	Logger *zap.Logger
	// Now is the clock of the token bucket, Retry-After windows and
	// SyncedAt; nil means time.Now.
	Now func() time.Time
	// Sleep waits for a token, a backoff, a Retry-After or a hedge delay;
	// nil means a timer. It must return ctx.Err() if ctx ends first.
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand returns a uniform float64 in [0, 1) for backoff jitter and the
	// canary split; nil means math/rand/v2. It must be safe for concurrent
	// use.
	Rand func() float64
	// OnRequest, if set, is called for every request sent and every call
	// refused (breaker open, disabled, throttled), synchronously and from
	// several goroutines at once: keep it fast and safe for concurrent use.
	// It may be called after the call returned, for a hedge that lost.
	OnRequest func(RequestInfo)
	// OnBreakerChange, if set, is called when the vendor's circuit breaker
	// enters another state ("closed", "open", "half-open"; an elapsed
	// cooldown is seen at the next call or Stats). It is called
	// synchronously, outside the breaker's lock, and must be fast and safe
	// for concurrent use. Every transition is also logged with its reason.
	OnBreakerChange func(vendor, from, to string)
}

// Client calls one vendor under its timeout, token bucket, breaker, retry,
// hedging and coalescing policies. It is safe for concurrent use; share one
// per vendor among every caller so the limits are shared.
type Client struct {
	cfg       Config
	hc        *http.Client
	log       *zap.Logger
	now       func() time.Time
	sleep     func(context.Context, time.Duration) error
	rand      func() float64
	onRequest func(RequestInfo)

	enabled       atomic.Bool
	canaryPercent atomic.Int32
	stable        *variant
	canary        *variant // nil when no canary is configured

	limiter *limiter
	breaker *circuit.Breaker
	flights coalescer
	stats   *stats
	secrets []string // header values, redacted from error bodies
}

// variant is one way of calling the vendor: stable or canary.
type variant struct {
	canary   bool
	baseURLs []string
	version  APIVersion
	header   http.Header // credentials and version header
}

// rawResponse is an answer shared by coalesced callers: read-only.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
	region string
	canary bool
}

// getCall is one coalescable GET (or HEAD).
type getCall struct {
	resource string
	method   string
	path     string      // path and query under the versioned base URL
	header   http.Header // forwarded headers, never credentials
	v        *variant
}

// key identifies identical GETs.
func (g *getCall) key() string {
	var b strings.Builder
	b.WriteString(g.method)
	if g.v.canary {
		b.WriteString(" canary ")
	} else {
		b.WriteString(" stable ")
	}
	b.WriteString(g.path)
	names := make([]string, 0, len(g.header))
	for k := range g.header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		b.WriteString("\x00" + k + ":" + strings.Join(g.header[k], ","))
	}
	return b.String()
}

// outbound is one HTTP request to one region.
type outbound struct {
	resource, method, path string
	header                 http.Header
	body                   []byte
	v                      *variant
	region, attempt        int
}

// Page is one page of a List.
type Page struct {
	Records []Record `json:"records"`
	// HasMore reports whether another page follows.
	HasMore bool `json:"has_more"`
	// NextPage is the number of the next page when HasMore is true.
	NextPage int `json:"next_page,omitempty"`
	// Total is the size of the whole list when the vendor reports it
	// (ListSpec.Total); 0 when unknown.
	Total int `json:"total,omitempty"`
}

// Request is a live read-through request for Do.
type Request struct {
	// Method is GET (the default) or HEAD.
	Method string
	// Path is the path under the versioned base URL, e.g. "/products/3";
	// it must start with '/' and must not contain "." or ".." segments.
	Path string
	// RawQuery is the encoded query, without '?'.
	RawQuery string
	// Header is forwarded, except credentials (Authorization, Cookie, the
	// configured header names), hop-by-hop headers and Accept-Encoding (the
	// transport negotiates compression and decodes the body).
	Header http.Header
}

// Response is the vendor's answer to Do.
type Response struct {
	StatusCode int
	// Header is the vendor's response header without hop-by-hop headers
	// and Set-Cookie.
	Header http.Header
	Body   []byte
	// Region is the host of the base URL that answered.
	Region string
	// Canary is true when the canary configuration answered.
	Canary bool
}

// NewClient validates cfg and returns its Client.
func NewClient(cfg Config, opts ClientOptions) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Client{
		cfg:       cfg,
		log:       opts.Logger,
		now:       opts.Now,
		sleep:     opts.Sleep,
		rand:      opts.Rand,
		onRequest: opts.OnRequest,
		stats:     newStats(),
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	c.log = c.log.With(zap.String("vendor", cfg.Name))
	if c.now == nil {
		c.now = time.Now
	}
	if c.sleep == nil {
		c.sleep = sleepCtx
	}
	if c.rand == nil {
		c.rand = rand.Float64
	}
	if opts.HTTPClient != nil {
		hc := *opts.HTTPClient
		c.hc = &hc
	} else {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 32
		c.hc = &http.Client{Transport: tr}
	}
	c.hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	c.stable = newVariant(false, cfg.BaseURLs, cfg.Version, cfg.Headers, nil)
	if cn := cfg.Canary; len(cn.BaseURLs) > 0 || len(cn.Headers) > 0 || cn.Version != nil {
		urls, ver := cfg.BaseURLs, cfg.Version
		if len(cn.BaseURLs) > 0 {
			urls = cn.BaseURLs
		}
		if cn.Version != nil {
			ver = *cn.Version
		}
		c.canary = newVariant(true, urls, ver, cfg.Headers, cn.Headers)
	}
	for _, h := range []Headers{cfg.Headers, cfg.Canary.Headers} {
		for _, v := range h {
			if len(v) >= 4 {
				c.secrets = append(c.secrets, v)
			}
		}
	}
	c.enabled.Store(cfg.Enabled)
	c.canaryPercent.Store(int32(cfg.Canary.Percent))
	c.limiter = newLimiter(cfg.Name, cfg.Rate, c.now, c.sleep, c.stats)
	var onChange func(from, to string)
	if fn := opts.OnBreakerChange; fn != nil {
		name := cfg.Name
		onChange = func(from, to string) { fn(name, from, to) }
	}
	c.breaker = newBreaker(cfg.Breaker, c.log, c.now, onChange)
	return c, nil
}

func newVariant(canary bool, urls []string, ver APIVersion, headers, overrides Headers) *variant {
	h := http.Header{}
	for k, v := range headers {
		h.Set(k, v)
	}
	for k, v := range overrides {
		h.Set(k, v)
	}
	if ver.Header != "" {
		h.Set(ver.Header, ver.Value)
	}
	return &variant{canary: canary, baseURLs: urls, version: ver, header: h}
}

// Close releases the client's idle connections. Calls in flight finish;
// the Client must not be used afterwards.
func (c *Client) Close() {
	c.hc.CloseIdleConnections()
}

// Name returns the vendor's name.
func (c *Client) Name() string { return c.cfg.Name }

// Config returns the client's configuration with defaults applied and
// header values redacted.
func (c *Client) Config() Config { return c.cfg.Redacted() }

// Enabled reports whether live calls are allowed.
func (c *Client) Enabled() bool { return c.enabled.Load() }

// SetEnabled turns live calls on or off at run time (a kill switch).
func (c *Client) SetEnabled(on bool) { c.enabled.Store(on) }

// SetCanaryPercent changes the canary's share of live reads at run time.
func (c *Client) SetCanaryPercent(p int) error {
	if p < 0 || p > 100 {
		return fmt.Errorf("%w: vendor %q: canary percent must be 0..100 (got %d)", ErrInvalidRequest, c.cfg.Name, p)
	}
	if p > 0 && c.canary == nil {
		return fmt.Errorf("%w: vendor %q: no canary is configured", ErrInvalidRequest, c.cfg.Name)
	}
	c.canaryPercent.Store(int32(p))
	return nil
}

// Stats returns a copy of the vendor's counters and breaker state.
func (c *Client) Stats() Stats {
	s := c.stats.snapshot(c.cfg.Name)
	s.Breaker, s.BreakerSince, s.BreakerTransitions = breakerStatus(c.breaker)
	return s
}

// BreakerState returns "closed", "open" or "half-open".
func (c *Client) BreakerState() string {
	return c.breaker.Status().State.String()
}

// pickVariant chooses stable or canary for one live read.
func (c *Client) pickVariant() *variant {
	if p := c.canaryPercent.Load(); p > 0 && c.canary != nil && c.rand()*100 < float64(p) {
		c.stats.canary.Add(1)
		return c.canary
	}
	return c.stable
}

// begin counts a call and refuses it when the vendor is disabled. path is
// the call's path when known ("" for a resource call not expanded yet).
func (c *Client) begin(resource, method, path string) error {
	c.stats.calls.Add(1)
	if !c.enabled.Load() {
		return c.refuse(resource, method, path, c.stable, 0, OutcomeDisabled, ErrDisabled)
	}
	return nil
}

// refuse reports a call that was not sent and returns its error, naming
// the vendor once, the method and what was called: the path, the resource
// or both ("GET /products/3 (resource product)").
func (c *Client) refuse(resource, method, path string, v *variant, attempt int, outcome string, sentinel error) error {
	target := path
	switch {
	case path == "":
		target = "resource " + resource
	case resource != "":
		target = path + " (resource " + resource + ")"
	}
	err := fmt.Errorf("vendor %q: %s %s: %w", c.cfg.Name, method, target, sentinel)
	c.report(RequestInfo{Vendor: c.cfg.Name, Resource: resource, Method: method, Canary: v.canary,
		Attempt: attempt, Outcome: outcome, Err: err})
	return err
}

// report counts info and passes it to OnRequest.
func (c *Client) report(info RequestInfo) {
	c.stats.observe(info)
	if c.onRequest != nil {
		c.onRequest(info)
	}
}

// freshKey marks a context whose GETs must not join an in-flight one.
type freshKey struct{}

// WithFresh returns a context whose Get and Do calls never join a GET
// already in flight (they start their own; later calls may still join
// them). Use it for webhook refetches: a GET that started before the
// vendor's change may return the previous version.
func WithFresh(ctx context.Context) context.Context {
	return context.WithValue(ctx, freshKey{}, true)
}

// fetch runs a GET through coalescing, retries, the breaker and hedging.
func (c *Client) fetch(ctx context.Context, call *getCall) (*rawResponse, error) {
	if fresh, _ := ctx.Value(freshKey{}).(bool); fresh {
		return c.retryGET(ctx, call)
	}
	resp, shared, err := c.flights.do(ctx, call.key(), func(fctx context.Context) (*rawResponse, error) {
		return c.retryGET(fctx, call)
	})
	if shared {
		c.stats.coalesced.Add(1)
	}
	return resp, err
}

// Get fetches one item of resource by id and maps it to a Record. A 404 is
// an error matching ErrNotFound (a *StatusError); a payload that does not
// map, or whose id differs from id, is a *MappingError. Webhook refetches
// should pass WithFresh(ctx).
func (c *Client) Get(ctx context.Context, resource, id string) (Record, error) {
	res, err := c.cfg.Resource(resource)
	if err == nil && res.Get == nil {
		err = fmt.Errorf("vendor %q: resource %q has no get: %w", c.cfg.Name, resource, ErrUnknownResource)
	}
	if err != nil {
		return Record{}, err
	}
	if err := checkID(id); err != nil {
		return Record{}, fmt.Errorf("vendor %q: get %s: %w", c.cfg.Name, resource, err)
	}
	if err := c.begin(resource, http.MethodGet, ""); err != nil {
		return Record{}, err
	}
	call := &getCall{resource: resource, method: http.MethodGet,
		path:   expandURL(res.Get.Path, map[string]string{"id": id}),
		header: http.Header{"Accept": {"application/json"}}, v: c.pickVariant()}
	raw, err := c.fetch(ctx, call)
	if err != nil {
		return Record{}, err
	}
	if err := c.statusErr(http.MethodGet, call.v, call.path, raw); err != nil {
		return Record{}, err
	}
	m := mapper{vendor: c.cfg.Name, resource: resource, res: res}
	rec, err := c.mapBody(m, raw.body, res.Get.Item)
	if err != nil {
		return Record{}, err
	}
	if rec.ID != id {
		return Record{}, &MappingError{Vendor: c.cfg.Name, Resource: resource, ID: id, Field: "id", Path: res.ID,
			Reason: fmt.Sprintf("payload id %q does not match the requested id", rec.ID)}
	}
	return rec, nil
}

// mapBody decodes body and maps the item at itemPath.
func (c *Client) mapBody(m mapper, body []byte, itemPath string) (Record, error) {
	doc, err := decodeJSON(body)
	if err != nil {
		return Record{}, &MappingError{Vendor: m.vendor, Resource: m.resource, Field: "item", Reason: "invalid JSON: " + err.Error()}
	}
	item, ok := lookup(doc, itemPath)
	if !ok {
		return Record{}, &MappingError{Vendor: m.vendor, Resource: m.resource, Field: "item", Path: itemPath, Reason: "missing"}
	}
	return m.mapItem(item, c.now())
}

// List fetches one page (1-based) of the items of resource changed since
// since (all items when since is zero) and maps them. Every item must map:
// one that does not fails the page with its *MappingError. List always uses
// the stable configuration (never the canary), so a sync pass talks to one
// backend.
func (c *Client) List(ctx context.Context, resource string, since time.Time, page int) (Page, error) {
	res, err := c.cfg.Resource(resource)
	if err == nil && res.List == nil {
		err = fmt.Errorf("vendor %q: resource %q has no list: %w", c.cfg.Name, resource, ErrUnknownResource)
	}
	if err != nil {
		return Page{}, err
	}
	if page < 1 {
		return Page{}, fmt.Errorf("vendor %q: list %s: page %d: %w", c.cfg.Name, resource, page, ErrInvalidRequest)
	}
	if err := c.begin(resource, http.MethodGet, ""); err != nil {
		return Page{}, err
	}
	l := res.List
	call := &getCall{resource: resource, method: http.MethodGet,
		path: expandURL(l.Path, map[string]string{
			"since":    formatSince(since, l.SinceFormat),
			"page":     strconv.Itoa(page),
			"per_page": strconv.Itoa(l.PerPage),
		}),
		header: http.Header{"Accept": {"application/json"}}, v: c.stable}
	raw, err := c.fetch(ctx, call)
	if err != nil {
		return Page{}, err
	}
	if err := c.statusErr(http.MethodGet, call.v, call.path, raw); err != nil {
		return Page{}, err
	}
	return c.mapPage(resource, res, raw.body, page)
}

// mapPage maps a list response.
func (c *Client) mapPage(resource string, res Resource, body []byte, page int) (Page, error) {
	l := res.List
	merr := func(field, path, reason string) error {
		return &MappingError{Vendor: c.cfg.Name, Resource: resource, Field: field, Path: path, Reason: reason}
	}
	doc, err := decodeJSON(body)
	if err != nil {
		return Page{}, merr("items", l.Items, "invalid JSON: "+err.Error())
	}
	iv, ok := lookup(doc, l.Items)
	if !ok {
		return Page{}, merr("items", l.Items, "missing")
	}
	items, ok := iv.([]any)
	if !ok {
		return Page{}, merr("items", l.Items, "expected array, got "+jsonType(iv))
	}
	m := mapper{vendor: c.cfg.Name, resource: resource, res: res}
	now := c.now()
	out := Page{Records: make([]Record, 0, len(items))}
	for _, item := range items {
		rec, err := m.mapItem(item, now)
		if err != nil {
			return Page{}, err
		}
		out.Records = append(out.Records, rec)
	}
	switch {
	case l.HasMore != "":
		v, ok := lookup(doc, l.HasMore)
		b, isBool := v.(bool)
		if !ok || !isBool {
			return Page{}, merr("has_more", l.HasMore, "expected bool, got "+jsonType(v))
		}
		out.HasMore = b
	case l.NextPage != "":
		v, ok := lookup(doc, l.NextPage)
		if ok && v != nil {
			s, _ := scalarString(v)
			n, err := strconv.Atoi(s)
			if err != nil {
				return Page{}, merr("next_page", l.NextPage, "expected a page number, got "+jsonType(v))
			}
			if n <= page {
				return Page{}, merr("next_page", l.NextPage, fmt.Sprintf("next page %d does not advance past page %d", n, page))
			}
			out.HasMore, out.NextPage = true, n
		}
	default: // EmptyPageEnds
		out.HasMore = len(items) > 0
	}
	if out.HasMore && out.NextPage == 0 {
		out.NextPage = page + 1
	}
	if l.Total != "" {
		if v, ok := lookup(doc, l.Total); ok && v != nil {
			s, _ := scalarString(v)
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				return Page{}, merr("total", l.Total, "expected a count, got "+jsonType(v))
			}
			out.Total = n
		}
	}
	return out, nil
}

// Upsert writes body (JSON) as the item id of resource with the
// resource's upsert method and path, sending idempotencyKey (if not empty)
// as Idempotency-Key. It is sent once, to the first base URL, under the
// breaker and the token bucket, and never retried here: the durable job
// retries with the same key. The returned Record is mapped from the
// response (just the ids when the response is empty). If the write was
// accepted but the response does not map, Upsert returns the ids-only
// record and the *MappingError: refetch with Get rather than resending.
func (c *Client) Upsert(ctx context.Context, resource, id string, body []byte, idempotencyKey string) (Record, error) {
	res, err := c.cfg.Resource(resource)
	if err == nil && res.Upsert == nil {
		err = fmt.Errorf("vendor %q: resource %q has no upsert: %w", c.cfg.Name, resource, ErrUnknownResource)
	}
	if err != nil {
		return Record{}, err
	}
	u := res.Upsert
	if strings.Contains(u.Path, "{id}") {
		if err := checkID(id); err != nil {
			return Record{}, fmt.Errorf("vendor %q: upsert %s: %w", c.cfg.Name, resource, err)
		}
	}
	if strings.ContainsAny(idempotencyKey, "\r\n\x00") {
		return Record{}, fmt.Errorf("vendor %q: upsert %s: idempotency key contains a control character: %w", c.cfg.Name, resource, ErrInvalidRequest)
	}
	if err := c.begin(resource, u.Method, ""); err != nil {
		return Record{}, err
	}
	h := http.Header{"Accept": {"application/json"}, "Content-Type": {"application/json"}}
	if idempotencyKey != "" {
		h.Set("Idempotency-Key", idempotencyKey)
	}
	out := outbound{resource: resource, method: u.Method, path: expandURL(u.Path, map[string]string{"id": id}),
		header: h, body: body, v: c.stable}
	var raw *rawResponse
	berr := c.breaker.RunOn(out.path, func() circuit.Outcome {
		raw, err = c.send(ctx, out)
		return breakerOutcome(ctx, out.path, err)
	})
	if errors.Is(berr, circuit.ErrOpen) {
		return Record{}, c.refuse(resource, u.Method, out.path, c.stable, 0, OutcomeBreakerOpen, ErrBreakerOpen)
	}
	if err != nil {
		return Record{}, err
	}
	if err := c.statusErr(u.Method, c.stable, out.path, raw); err != nil {
		return Record{}, err
	}
	ids := Record{Vendor: c.cfg.Name, Resource: resource, ID: id, SyncedAt: c.now().UTC()}
	if len(bytes.TrimSpace(raw.body)) == 0 {
		return ids, nil
	}
	rec, err := c.mapBody(mapper{vendor: c.cfg.Name, resource: resource, res: res}, raw.body, u.Item)
	if err != nil {
		return ids, err
	}
	return rec, nil
}

// Do performs a live read-through GET (or HEAD) of any path under the
// vendor's versioned base URL, with the credentials injected and under the
// breaker, token bucket, retries, hedging, coalescing and canary split. Any
// status but 5xx, 408 and 429 is returned as a Response (the caller relays
// 404s and 3xx); those three, timeouts and transport errors are errors, as
// for Get. The body is bounded by Config.MaxBodyBytes.
func (c *Client) Do(ctx context.Context, req Request) (*Response, error) {
	method := strings.ToUpper(req.Method)
	if method == "" {
		method = http.MethodGet
	}
	if method != http.MethodGet && method != http.MethodHead {
		return nil, fmt.Errorf("vendor %q: do: method %q (only GET and HEAD): %w", c.cfg.Name, req.Method, ErrInvalidRequest)
	}
	if err := checkPath(req.Path); err != nil {
		return nil, fmt.Errorf("vendor %q: do: %w", c.cfg.Name, err)
	}
	if strings.ContainsAny(req.RawQuery, "#\x00\r\n ") {
		return nil, fmt.Errorf("vendor %q: do: malformed query: %w", c.cfg.Name, ErrInvalidRequest)
	}
	if err := c.begin("", method, req.Path); err != nil {
		return nil, err
	}
	path := req.Path
	if req.RawQuery != "" {
		path += "?" + req.RawQuery
	}
	v := c.pickVariant()
	call := &getCall{method: method, path: path, header: c.forwardable(req.Header), v: v}
	raw, err := c.fetch(ctx, call)
	if err != nil {
		return nil, err
	}
	out := &Response{StatusCode: raw.status, Header: http.Header{}, Region: raw.region, Canary: raw.canary,
		Body: bytes.Clone(raw.body)}
	for k, vs := range raw.header {
		if dropResponseHeader(k) || c.isConfiguredHeader(k) {
			continue
		}
		out.Header[k] = append([]string(nil), vs...)
	}
	return out, nil
}

// hop-by-hop headers (RFC 9110 §7.6.1) and headers never forwarded.
var (
	hopHeaders = map[string]bool{"Connection": true, "Keep-Alive": true, "Proxy-Connection": true,
		"Proxy-Authenticate": true, "Proxy-Authorization": true, "Te": true, "Trailer": true,
		"Transfer-Encoding": true, "Upgrade": true}
	credentialHeaders = map[string]bool{"Authorization": true, "Cookie": true, "Host": true,
		"Accept-Encoding": true, "Content-Length": true}
)

// forwardable copies the request headers that Do may send.
func (c *Client) forwardable(h http.Header) http.Header {
	out := http.Header{}
	for k, vs := range h {
		ck := http.CanonicalHeaderKey(k)
		if hopHeaders[ck] || credentialHeaders[ck] || c.isConfiguredHeader(ck) {
			continue
		}
		out[ck] = append([]string(nil), vs...)
	}
	return out
}

// isConfiguredHeader reports whether name is one of the configured headers
// (credentials or version), which callers can neither set nor read.
func (c *Client) isConfiguredHeader(name string) bool {
	ck := http.CanonicalHeaderKey(name)
	if _, ok := c.stable.header[ck]; ok {
		return true
	}
	if c.canary != nil {
		_, ok := c.canary.header[ck]
		return ok
	}
	return false
}

func dropResponseHeader(k string) bool {
	ck := http.CanonicalHeaderKey(k)
	return hopHeaders[ck] || ck == "Set-Cookie"
}

// checkID refuses ids that would change the request path's meaning.
func checkID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "\x00\r\n") {
		return fmt.Errorf("id %q: %w", id, ErrInvalidRequest)
	}
	return nil
}

// checkPath refuses a Do path that is not absolute or could escape the
// versioned base URL, also once percent-decoded.
func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "?#\\\x00\r\n ") {
		return fmt.Errorf("path %q: %w", p, ErrInvalidRequest)
	}
	dec, err := url.PathUnescape(p)
	if err != nil {
		return fmt.Errorf("path %q: %w", p, ErrInvalidRequest)
	}
	for _, s := range []string{p, dec} {
		for _, seg := range strings.Split(s, "/") {
			if seg == "." || seg == ".." {
				return fmt.Errorf("path %q: dot segments: %w", p, ErrInvalidRequest)
			}
		}
		if strings.ContainsAny(s, "\\\x00") {
			return fmt.Errorf("path %q: %w", p, ErrInvalidRequest)
		}
	}
	return nil
}

// statusErr converts a definitive non-2xx answer to an error.
func (c *Client) statusErr(method string, v *variant, path string, raw *rawResponse) error {
	if raw.status >= 200 && raw.status < 300 {
		return nil
	}
	return &StatusError{Vendor: c.cfg.Name, Method: method, Path: v.version.Path + path, Code: raw.status,
		Body: c.snippet(raw.body)}
}

// snippet returns the start of an error body, printable, with credentials
// redacted.
// A vendor with sensitive fields may echo them in an error answer (a 422
// quoting the written item): its bodies are never quoted.
func (c *Client) snippet(body []byte) string {
	if c.cfg.HasSensitive() {
		return "(body not shown: the vendor has sensitive fields)"
	}
	return Snippet(body, c.secrets, snippetLen)
}

// snippetLen is how much of an error answer an error quotes.
const snippetLen = 256

// Snippet returns the first limit bytes of an answer for an error message:
// every secret replaced by REDACTED, unprintable runes by spaces, trimmed,
// cut on a rune boundary with "…" when longer.
func Snippet(body []byte, secrets []string, limit int) string {
	s := string(body)
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "REDACTED")
		}
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > limit {
		n := limit
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n] + "…"
	}
	return s
}

// send performs one HTTP request to one region: token, timeout, body limit,
// classification, stats. Definitive statuses (2xx-4xx but 408 and 429) come
// back as a response; the rest as errors.
func (c *Client) send(ctx context.Context, o outbound) (*rawResponse, error) {
	base := o.v.baseURLs[o.region]
	info := RequestInfo{Vendor: c.cfg.Name, Resource: o.resource, Method: o.method, Canary: o.v.canary,
		Hedge: o.region > 0, Attempt: o.attempt}
	errPath := o.v.version.Path + o.path
	fail := func(outcome string, err error) (*rawResponse, error) {
		info.Outcome, info.Err = outcome, err
		c.report(info)
		return nil, err
	}

	wait, err := c.limiter.wait(ctx)
	info.TokenWait = wait
	if err != nil {
		var rl *RateLimitedError
		if errors.As(err, &rl) || (errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) {
			return fail(OutcomeThrottled, err)
		}
		return fail(OutcomeCanceled, fmt.Errorf("vendors: %s: %s %s: %w", c.cfg.Name, o.method, errPath, err))
	}

	rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var body io.Reader
	if o.body != nil {
		body = bytes.NewReader(o.body)
	}
	req, err := http.NewRequestWithContext(rctx, o.method, base+o.v.version.Path+o.path, body)
	if err != nil {
		return fail(OutcomeClientError, fmt.Errorf("vendors: %s: %s %s: %w", c.cfg.Name, o.method, errPath, ErrInvalidRequest))
	}
	for k, vs := range o.header {
		req.Header[k] = append([]string(nil), vs...)
	}
	for k, vs := range o.v.header {
		req.Header[k] = vs
	}
	info.Region = req.URL.Host
	info.Sent = true

	start := time.Now()
	resp, err := c.hc.Do(req)
	var data []byte
	if err == nil {
		data, err = readLimited(resp.Body, c.cfg.MaxBodyBytes)
		resp.Body.Close()
		info.StatusCode = resp.StatusCode
	}
	info.Duration = time.Since(start)

	switch {
	case err == nil:
	case ctx.Err() != nil:
		return fail(OutcomeCanceled, fmt.Errorf("vendors: %s: %s %s: %w", c.cfg.Name, o.method, errPath, ctx.Err()))
	case rctx.Err() != nil:
		return fail(OutcomeTimeout, fmt.Errorf("vendors: %s: %s %s: %w after %v", c.cfg.Name, o.method, errPath, ErrTimeout, c.cfg.Timeout))
	case errors.Is(err, ErrBodyTooLarge):
		return fail(OutcomeBodyTooLarge, fmt.Errorf("vendors: %s: %s %s: %w (limit %d bytes)", c.cfg.Name, o.method, errPath, ErrBodyTooLarge, c.cfg.MaxBodyBytes))
	default:
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop the URL: the message names the path already
		}
		return fail(OutcomeTransportError, fmt.Errorf("vendors: %s: %s %s: %w: %v", c.cfg.Name, o.method, errPath, errTransport, err))
	}

	raw := &rawResponse{status: resp.StatusCode, header: resp.Header, body: data, region: info.Region, canary: o.v.canary}
	code := resp.StatusCode
	switch {
	case code == http.StatusTooManyRequests:
		c.stats.rateLimited.Add(1)
		d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), c.now())
		if ok {
			c.limiter.block(d)
		} else {
			d = c.cfg.Retry.BaseDelay
		}
		return fail(OutcomeRateLimited, &RateLimitedError{Vendor: c.cfg.Name, RetryAfter: d})
	case code >= 500 || code == http.StatusRequestTimeout:
		return fail(OutcomeServerError, c.statusErr(o.method, o.v, o.path, raw))
	case code >= 400:
		info.Outcome = OutcomeClientError
		if code == http.StatusNotFound {
			info.Outcome = OutcomeNotFound
		}
	case code >= 300:
		info.Outcome = OutcomeRedirect
	default:
		info.Outcome = OutcomeOK
	}
	c.report(info)
	return raw, nil
}

// readLimited reads r to the end, failing with ErrBodyTooLarge past limit.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, ErrBodyTooLarge
	}
	return data, nil
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		n = min(max(n, 0), 86400) // a day at most: no overflow, no absurd waits
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), 24*time.Hour), true
	}
	return 0, false
}
