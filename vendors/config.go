package vendors

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/craftedge/craftedge/circuit"
)

// Defaults for zero Config fields.
const (
	DefaultTimeout        = time.Second
	DefaultMaxBodyBytes   = 4 << 20
	DefaultRetryBaseDelay = 100 * time.Millisecond
	DefaultRetryMaxDelay  = 2 * time.Second
	DefaultMaxRetryAfter  = 2 * time.Second
	DefaultPerPage        = 50
	DefaultListOverlap    = time.Second
)

// Config describes one vendor API. The zero values of optional fields select
// the documented defaults; call Validate (NewClient does) before use.
//
// Config contains credentials (Headers). Headers' String and zap encoding
// redact the values, but encoding/json does not: never log a Config as JSON.
type Config struct {
	// Name identifies the vendor in records, stats and errors, e.g.
	// "commerce". Letters, digits, '.', '_' and '-' only.
	Name string `json:"name"`

	// BaseURLs are the vendor's regional base URLs, preferred first, e.g.
	// "https://eu.api.example.com". GETs are hedged across them in order;
	// writes go to the first. Credentials in the URL are refused: put them
	// in Headers.
	BaseURLs []string `json:"base_urls"`

	// Version pins the API version.
	Version APIVersion `json:"version,omitempty"`

	// Headers are sent with every request, typically authentication
	// ("Authorization": "Bearer …"). Values are already resolved (from the
	// environment, by the caller) and are never logged or put in errors.
	Headers Headers `json:"headers,omitempty"`

	// Timeout bounds each HTTP request (one region, one attempt), reading
	// the body included. Default 1s.
	Timeout time.Duration `json:"timeout,omitempty"`

	// Rate is the token bucket shared by every caller of the vendor. Every
	// request sent (hedges and retries included) takes a token. Required.
	Rate RateLimit `json:"rate"`

	// Retry configures retries of GETs. Writes are never retried here.
	Retry RetryPolicy `json:"retry,omitempty"`

	// HedgeDelay is how long a GET waits for a region before sending the
	// same GET to the next base URL; 0 disables hedging (a region that
	// fails outright still fails over to the next one at once).
	HedgeDelay time.Duration `json:"hedge_delay,omitempty"`

	// Breaker configures the vendor's circuit breaker (package circuit,
	// shared with the Craft upstreams): zero fields take its defaults.
	Breaker circuit.Config `json:"breaker,omitzero"`

	// Enabled allows live calls. When false every call returns ErrDisabled
	// and only stored records are served. The zero Config is disabled.
	Enabled bool `json:"enabled"`

	// Canary sends a share of live reads to a new configuration.
	Canary Canary `json:"canary,omitempty"`

	// MaxBodyBytes bounds a response body; a larger one fails with
	// ErrBodyTooLarge. Default 4 MiB.
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`

	// Resources are the vendor's resources by name, e.g. "products".
	Resources map[string]Resource `json:"resources,omitempty"`
}

// APIVersion pins a vendor API version.
type APIVersion struct {
	// Path is prefixed to every request path, e.g. "/v2".
	Path string `json:"path,omitempty"`
	// Header, if set, is sent with Value on every request, e.g.
	// "Accept-Version: v2".
	Header string `json:"header,omitempty"`
	// Value is the version header's value.
	Value string `json:"value,omitempty"`
}

// RateLimit is a token bucket.
type RateLimit struct {
	// PerSecond is the sustained rate in requests per second; it must be
	// positive (a zero rate would block every call forever).
	PerSecond float64 `json:"per_second"`
	// Burst is the bucket size; default the rate rounded up (at least 1).
	Burst int `json:"burst,omitempty"`
}

// RetryPolicy configures the retries of idempotent calls (GETs).
type RetryPolicy struct {
	// Retries is how many times a failed GET is retried; 0 means none.
	// Timeouts, transport errors, 5xx, 408 and 429 are retried; other 4xx,
	// mapping errors, an open breaker and a cancelled context are not.
	Retries int `json:"retries,omitempty"`
	// BaseDelay is the backoff cap of the first retry; the n-th retry waits
	// a uniformly random time in [0, min(MaxDelay, BaseDelay·2^(n-1))].
	// Default 100ms.
	BaseDelay time.Duration `json:"base_delay,omitempty"`
	// MaxDelay caps the backoff. Default 2s.
	MaxDelay time.Duration `json:"max_delay,omitempty"`
	// MaxRetryAfter is the longest Retry-After a GET retry waits for; a
	// longer one is returned at once as *RateLimitedError. Default 2s.
	MaxRetryAfter time.Duration `json:"max_retry_after,omitempty"`
}

// Canary sends a share of live reads (Get and Do) to a new configuration.
// Sync's List calls and writes always use the stable configuration, so a
// pass never mixes two backends.
type Canary struct {
	// Percent is the share of live reads, 0 to 100, that use the canary.
	Percent int `json:"percent,omitempty"`
	// BaseURLs replace Config.BaseURLs for canary reads; empty keeps them.
	BaseURLs []string `json:"base_urls,omitempty"`
	// Headers are added to (and override) Config.Headers for canary reads.
	Headers Headers `json:"headers,omitempty"`
	// Version, if set, replaces Config.Version for canary reads.
	Version *APIVersion `json:"version,omitempty"`
}

// Resource describes one vendor resource and its mapping to Records.
type Resource struct {
	// Get fetches one item by id; nil if the vendor cannot.
	Get *GetSpec `json:"get,omitempty"`
	// List lists items changed since a time, page by page; nil if the
	// vendor cannot (then the resource cannot be synced).
	List *ListSpec `json:"list,omitempty"`
	// Upsert writes one item; nil if the resource is read-only.
	Upsert *UpsertSpec `json:"upsert,omitempty"`

	// ID is the JSON dot path of the item's id (a string or a number).
	// Required.
	ID string `json:"id"`
	// Version is the path of the item's version (a string or a number). If
	// empty the version is a hash of the item's payload.
	Version string `json:"version,omitempty"`
	// UpdatedAt is the path of the item's last-modified time (an RFC 3339
	// string, or a number of Unix seconds). Required when List is set.
	UpdatedAt string `json:"updated_at,omitempty"`

	// Fields maps normalized field names to their place in the payload.
	Fields map[string]Field `json:"fields,omitempty"`

	// Tags are the cache tags of a record, as templates: "{id}",
	// "{vendor}", "{resource}", "{version}" and "{FIELD}" (a Fields name)
	// are replaced, e.g. "shop:product:{id}". A tag whose field is absent
	// from the record is skipped.
	Tags []string `json:"tags,omitempty"`

	// Sensitive names Fields whose values are encrypted at rest (see
	// Records.UseSealing): they may not be the id, version or updated_at
	// mapping, nor appear in Tags.
	Sensitive []string `json:"sensitive,omitempty"`
}

// GetSpec says how to fetch one item.
type GetSpec struct {
	// Path is the request path under the versioned base URL, with {id},
	// e.g. "/products/{id}".
	Path string `json:"path"`
	// Item is the dot path of the item in the response; empty if the
	// response is the item itself.
	Item string `json:"item,omitempty"`
}

// ListSpec says how to list items changed since a time. Exactly one of
// HasMore, NextPage and EmptyPageEnds says whether another page follows.
type ListSpec struct {
	// Path is the request path and query with {since}, {page} and
	// {per_page}, e.g. "/products?updated_since={since}&page={page}&per_page={per_page}".
	Path string `json:"path"`
	// Items is the dot path of the items array, e.g. "data" or "results";
	// empty if the response is the array itself.
	Items string `json:"items,omitempty"`
	// PerPage is the page size sent as {per_page}. Default 50.
	PerPage int `json:"per_page,omitempty"`
	// HasMore is the dot path of a boolean that is true when another page
	// follows, e.g. "has_more".
	HasMore string `json:"has_more,omitempty"`
	// NextPage is the dot path of the next page's number, absent or null on
	// the last page, e.g. "paging.next.page".
	NextPage string `json:"next_page,omitempty"`
	// EmptyPageEnds: the list ends at the first page with no items.
	EmptyPageEnds bool `json:"empty_page_ends,omitempty"`
	// Total is the dot path of the number of items the whole list holds,
	// e.g. "total", when the vendor reports it; it gives a backfill's
	// progress its end (and ETA). Optional.
	Total string `json:"total,omitempty"`
	// SinceFormat is how {since} is written: "rfc3339" (default; UTC with
	// nanoseconds), "unix" (seconds) or "unix_ms".
	SinceFormat string `json:"since_format,omitempty"`
	// Overlap is subtracted from the sync cursor when a pass starts, so
	// items sharing the cursor's timestamp (or written while the previous
	// pass ran) are listed again; re-listed unchanged items cost nothing.
	// Default 1s; negative means none.
	Overlap time.Duration `json:"overlap,omitempty"`
}

// UpsertSpec says how to write one item.
type UpsertSpec struct {
	// Method is the HTTP method, e.g. "PUT" or "POST". Default PUT.
	Method string `json:"method,omitempty"`
	// Path is the request path, usually with {id}, e.g. "/products/{id}".
	Path string `json:"path"`
	// Item is the dot path of the written item in the response; empty if
	// the response is the item itself.
	Item string `json:"item,omitempty"`
}

// Field maps one normalized field.
type Field struct {
	// Path is the JSON dot path in the item, e.g. "title.en"; numeric
	// segments index arrays ("images.0.url").
	Path string `json:"path"`
	// Required makes a missing or null value a *MappingError.
	Required bool `json:"required,omitempty"`
	// Type, if set, is checked: "string", "number", "integer", "bool",
	// "object", "array", or "time" (an RFC 3339 string, normalized to UTC).
	// A value of another type is a *MappingError. Empty accepts any value.
	Type string `json:"type,omitempty"`
}

// Headers are request headers whose values are secrets. String, GoString
// and zap's encoding print the names only.
type Headers map[string]string

// String lists the header names with redacted values.
func (h Headers) String() string {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	for i, k := range names {
		names[i] = k + ": REDACTED"
	}
	return "{" + strings.Join(names, ", ") + "}"
}

// GoString is String, so %#v redacts too.
func (h Headers) GoString() string { return h.String() }

// Redacted returns a copy of c whose header values (Headers and
// Canary.Headers) are replaced by "REDACTED", safe to log or show.
func (c Config) Redacted() Config {
	red := func(h Headers) Headers {
		if h == nil {
			return nil
		}
		out := make(Headers, len(h))
		for k := range h {
			out[k] = "REDACTED"
		}
		return out
	}
	c.Headers = red(c.Headers)
	c.Canary.Headers = red(c.Canary.Headers)
	return c
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Known field types.
var fieldTypes = map[string]bool{"": true, "any": true, "string": true, "number": true,
	"integer": true, "bool": true, "object": true, "array": true, "time": true}

// withDefaults returns c with zero optional fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.Rate.Burst == 0 && c.Rate.PerSecond > 0 {
		c.Rate.Burst = max(1, int(c.Rate.PerSecond+0.999999))
	}
	if c.Retry.BaseDelay == 0 {
		c.Retry.BaseDelay = DefaultRetryBaseDelay
	}
	if c.Retry.MaxDelay == 0 {
		c.Retry.MaxDelay = DefaultRetryMaxDelay
	}
	if c.Retry.MaxRetryAfter == 0 {
		c.Retry.MaxRetryAfter = DefaultMaxRetryAfter
	}
	c.Breaker = c.Breaker.WithDefaults()
	c.BaseURLs = trimURLs(c.BaseURLs)
	c.Canary.BaseURLs = trimURLs(c.Canary.BaseURLs)
	c.Version.Path = strings.TrimRight(c.Version.Path, "/")
	if c.Canary.Version != nil {
		v := *c.Canary.Version
		v.Path = strings.TrimRight(v.Path, "/")
		c.Canary.Version = &v
	}
	if len(c.Resources) > 0 {
		res := make(map[string]Resource, len(c.Resources))
		for name, r := range c.Resources {
			if r.List != nil {
				l := *r.List
				if l.PerPage == 0 {
					l.PerPage = DefaultPerPage
				}
				if l.SinceFormat == "" {
					l.SinceFormat = "rfc3339"
				}
				if l.Overlap == 0 {
					l.Overlap = DefaultListOverlap
				} else if l.Overlap < 0 {
					l.Overlap = 0
				}
				r.List = &l
			}
			if r.Upsert != nil {
				u := *r.Upsert
				if u.Method == "" {
					u.Method = http.MethodPut
				}
				u.Method = strings.ToUpper(u.Method)
				r.Upsert = &u
			}
			res[name] = r
		}
		c.Resources = res
	}
	return c
}

func trimURLs(in []string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, u := range in {
		out[i] = strings.TrimRight(strings.TrimSpace(u), "/")
	}
	return out
}

// Validate checks c (after applying defaults) and returns every problem
// found, each naming the field, joined; the result wraps ErrInvalidConfig.
// Header values never appear in the result.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: vendor %q: %s: %s", ErrInvalidConfig, c.Name, field, fmt.Sprintf(format, args...)))
	}

	if !nameRE.MatchString(c.Name) {
		bad("name", "must be letters, digits, '.', '_' or '-' (got %q)", c.Name)
	}
	if len(c.BaseURLs) == 0 {
		bad("base_urls", "at least one base URL is required")
	}
	for i, u := range c.BaseURLs {
		if err := checkBaseURL(u); err != nil {
			bad(fmt.Sprintf("base_urls[%d]", i), "%v", err)
		}
	}
	checkVersion := func(field string, v APIVersion) {
		if v.Path != "" && !strings.HasPrefix(v.Path, "/") {
			bad(field+".path", "must start with '/' (got %q)", v.Path)
		}
		if (v.Header == "") != (v.Value == "") {
			bad(field, "header and value must be set together")
		}
		if v.Header != "" && !validHeaderName(v.Header) {
			bad(field+".header", "invalid header name %q", v.Header)
		}
	}
	checkVersion("version", c.Version)
	checkHeaders := func(field string, h Headers) {
		for k, v := range h {
			if !validHeaderName(k) {
				bad(field, "invalid header name %q", k)
			}
			if strings.ContainsAny(v, "\r\n\x00") {
				bad(field, "value of header %q contains a control character", k) // the value is a secret: not shown
			}
		}
	}
	checkHeaders("headers", c.Headers)
	if c.Timeout < 0 {
		bad("timeout", "must not be negative")
	}
	if !(c.Rate.PerSecond > 0) {
		bad("rate.per_second", "must be positive (got %v)", c.Rate.PerSecond)
	}
	if c.Rate.Burst < 0 {
		bad("rate.burst", "must not be negative")
	}
	if c.Retry.Retries < 0 || c.Retry.BaseDelay < 0 || c.Retry.MaxDelay < 0 || c.Retry.MaxRetryAfter < 0 {
		bad("retry", "values must not be negative")
	}
	if c.HedgeDelay < 0 {
		bad("hedge_delay", "must not be negative")
	}
	if err := c.Breaker.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: vendor %q: %w", ErrInvalidConfig, c.Name, err))
	}
	if c.MaxBodyBytes < 0 {
		bad("max_body_bytes", "must not be negative")
	}
	if c.Canary.Percent < 0 || c.Canary.Percent > 100 {
		bad("canary.percent", "must be 0..100 (got %d)", c.Canary.Percent)
	}
	for i, u := range c.Canary.BaseURLs {
		if err := checkBaseURL(u); err != nil {
			bad(fmt.Sprintf("canary.base_urls[%d]", i), "%v", err)
		}
	}
	checkHeaders("canary.headers", c.Canary.Headers)
	if c.Canary.Version != nil {
		checkVersion("canary.version", *c.Canary.Version)
	}
	if c.Canary.Percent > 0 && len(c.Canary.BaseURLs) == 0 && len(c.Canary.Headers) == 0 && c.Canary.Version == nil {
		bad("canary", "percent is set but base_urls, headers and version are all empty")
	}

	names := make([]string, 0, len(c.Resources))
	for n := range c.Resources {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, err := range c.Resources[n].validate() {
			bad("resources."+n, "%v", err)
		}
		if !nameRE.MatchString(n) {
			bad("resources", "resource name %q: must be letters, digits, '.', '_' or '-'", n)
		}
	}
	return errors.Join(errs...)
}

// validate returns the resource's problems, each naming its field.
func (r Resource) validate() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if r.ID == "" {
		bad("id", "the id mapping is required")
	}
	if r.Get == nil && r.List == nil && r.Upsert == nil {
		bad("get/list/upsert", "at least one operation is required")
	}
	if r.Get != nil {
		checkTemplate(bad, "get.path", r.Get.Path, "id")
	}
	if r.List != nil {
		l := r.List
		checkTemplate(bad, "list.path", l.Path, "since", "page", "per_page")
		if !strings.Contains(l.Path, "{page}") {
			bad("list.path", "must contain {page}")
		}
		if !strings.Contains(l.Path, "{since}") {
			bad("list.path", "must contain {since}")
		}
		if l.PerPage < 0 {
			bad("list.per_page", "must not be negative")
		}
		n := 0
		if l.HasMore != "" {
			n++
		}
		if l.NextPage != "" {
			n++
		}
		if l.EmptyPageEnds {
			n++
		}
		if n != 1 {
			bad("list", "exactly one of has_more, next_page and empty_page_ends is required")
		}
		switch l.SinceFormat {
		case "rfc3339", "unix", "unix_ms":
		default:
			bad("list.since_format", "unknown format %q (want rfc3339, unix or unix_ms)", l.SinceFormat)
		}
		if r.UpdatedAt == "" {
			bad("updated_at", "the updated_at mapping is required for list (it drives the sync cursor)")
		}
	}
	if r.Upsert != nil {
		checkTemplate(bad, "upsert.path", r.Upsert.Path, "id")
		switch r.Upsert.Method {
		case http.MethodPut, http.MethodPost, http.MethodPatch:
		default:
			bad("upsert.method", "must be PUT, POST or PATCH (got %q)", r.Upsert.Method)
		}
	}
	fieldNames := make([]string, 0, len(r.Fields))
	for name := range r.Fields {
		fieldNames = append(fieldNames, name)
	}
	sort.Strings(fieldNames)
	for _, name := range fieldNames {
		f := r.Fields[name]
		if name == "" {
			bad("fields", "a field has an empty name")
		}
		if f.Path == "" {
			bad("fields."+name+".path", "is required")
		}
		if !fieldTypes[f.Type] {
			bad("fields."+name+".type", "unknown type %q", f.Type)
		}
	}
	for i, t := range r.Tags {
		known := []string{"id", "vendor", "resource", "version"}
		known = append(known, fieldNames...)
		checkTemplate(bad, fmt.Sprintf("tags[%d]", i), t, known...)
		if strings.TrimSpace(t) == "" {
			bad(fmt.Sprintf("tags[%d]", i), "is empty")
		}
	}
	return append(errs, r.sensitiveErrors()...)
}

// checkTemplate reports a template that does not parse or uses a
// placeholder not in known.
func checkTemplate(bad func(field, format string, args ...any), field, tmpl string, known ...string) {
	names, err := placeholders(tmpl)
	if err != nil {
		bad(field, "%v", err)
		return
	}
	for _, n := range names {
		ok := false
		for _, k := range known {
			if n == k {
				ok = true
				break
			}
		}
		if !ok {
			bad(field, "unknown placeholder {%s} (known: %s)", n, strings.Join(known, ", "))
		}
	}
}

// checkBaseURL accepts absolute http(s) URLs without credentials, query or
// fragment.
func checkBaseURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("invalid URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("invalid URL %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("invalid URL %q: no host", raw)
	}
	if u.User != nil {
		return errors.New("invalid URL: credentials in the URL are not allowed (use headers)")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("invalid URL %q: query and fragment are not allowed", raw)
	}
	return nil
}

// validHeaderName reports whether s is an HTTP token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}

// Resource returns the named resource of c.
func (c Config) Resource(name string) (Resource, error) {
	r, ok := c.Resources[name]
	if !ok {
		return Resource{}, fmt.Errorf("vendor %q: resource %q: %w", c.Name, name, ErrUnknownResource)
	}
	return r, nil
}
