package caddymodule

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/craftedge/craftedge/circuit"
	"github.com/craftedge/craftedge/vendors"
)

// VendorConfig configures one external vendor API (e-commerce, CRM,
// search): how to reach it, the limits every call obeys, and its resources.
// It is converted to a vendors.Config when the app is provisioned.
type VendorConfig struct {
	// BaseURLs are the vendor's regional base URLs, preferred first. GETs
	// are hedged across them in order; writes go to the first.
	BaseURLs []string `json:"base_urls"`

	// Version pins the vendor's API version, as a path prefix or a header.
	Version *VendorVersion `json:"version,omitempty"`

	// Headers are sent with every request (typically Authorization).
	// Values may hold placeholders such as {env.SHOP_TOKEN}, resolved when
	// the app is provisioned; values are never logged.
	Headers map[string]string `json:"headers,omitempty"`

	// Timeout bounds each request (one region, one attempt). Default 1s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Rate is the sustained number of requests per second the vendor
	// gets, shared by every caller. Required.
	Rate float64 `json:"rate"`

	// Burst is the token bucket size. Default the rate rounded up.
	Burst int `json:"burst,omitempty"`

	// Retries is how many times a failed GET is retried. Writes are never
	// retried by the client; the outbox job retries them.
	Retries int `json:"retries,omitempty"`

	// Hedge is how long a GET waits for a region before sending the same
	// GET to the next base URL; zero disables hedging.
	Hedge caddy.Duration `json:"hedge,omitempty"`

	// Breaker configures the vendor's circuit breaker: the same breaker,
	// settings and defaults as a Craft upstream's (see package circuit).
	Breaker circuit.Config `json:"breaker,omitzero"`

	// Enabled allows live calls to the vendor. When false, syncs and
	// writes make no call and only stored records are served. Default
	// true.
	Enabled *bool `json:"enabled,omitempty"`

	// Canary sends a share of live reads to other base URLs.
	Canary *VendorCanary `json:"canary,omitempty"`

	// Resources are the vendor's resources by name.
	Resources map[string]*VendorResource `json:"resources,omitempty"`

	// Webhook, if set, accepts the vendor's signed webhooks (see the
	// craftedge_webhook handler): each verified delivery refetches the
	// record it names.
	Webhook *VendorWebhook `json:"webhook,omitempty"`
}

// VendorVersion pins a vendor API version.
type VendorVersion struct {
	// Path is prefixed to every request path, e.g. "/v2".
	Path string `json:"path,omitempty"`
	// Header is sent with Value on every request, e.g. "Accept-Version".
	Header string `json:"header,omitempty"`
	// Value is the version header's value.
	Value string `json:"value,omitempty"`
}

// VendorCanary sends a share of live reads to new base URLs.
type VendorCanary struct {
	// Percent is the share of live reads, 0 to 100, sent to the canary.
	Percent int `json:"percent"`
	// BaseURLs replace the vendor's base URLs for canary reads.
	BaseURLs []string `json:"base_urls,omitempty"`
}

// VendorResource describes one vendor resource, its mapping to normalized
// records and its sync schedule.
type VendorResource struct {
	// Get fetches one item by id.
	Get *vendors.GetSpec `json:"get,omitempty"`
	// List lists items changed since a time, page by page.
	List *VendorList `json:"list,omitempty"`
	// Upsert writes one item (the outbox).
	Upsert *vendors.UpsertSpec `json:"upsert,omitempty"`
	// ID is the JSON dot path of the item's id. Required.
	ID string `json:"id"`
	// Version is the JSON dot path of the item's version; empty hashes
	// the payload.
	Version string `json:"version,omitempty"`
	// UpdatedAt is the JSON dot path of the item's last-modified time.
	// Required with List.
	UpdatedAt string `json:"updated_at,omitempty"`
	// Fields maps normalized field names to their place in the payload.
	Fields map[string]vendors.Field `json:"fields,omitempty"`
	// Tags are the record's cache tags, as templates ("shop:product:{id}").
	Tags []string `json:"tags,omitempty"`
	// SyncEvery, if set, schedules a delta sync of the resource once per
	// window of this length.
	SyncEvery caddy.Duration `json:"sync_every,omitempty"`
	// Public lets anyone read the resource's records through
	// craftedge_records (GET of a record or a list), and lets shared caches
	// keep the answers. Off by default: reads then need the same
	// authentication as writes, and answers are private. Only for data that
	// may be published (a product catalogue, never CRM contacts).
	Public bool `json:"public,omitempty"`

	// Sensitive names Fields whose values are encrypted at rest (records,
	// outbox payloads) with the app's encryption keys, and never logged.
	Sensitive []string `json:"sensitive,omitempty"`

	// Media names Fields holding the URL of a media file (a string, or an
	// array of strings): each is downloaded in the background by a
	// media.fetch job, stored on local disk and named in read-model
	// answers by its edge URL (see MediaConfig). A media field cannot be
	// sensitive.
	Media []string `json:"media,omitempty"`

	// Push sends the resource's records to other configured vendors (a
	// search index, an analytics endpoint) on every change; see
	// VendorPush.
	Push []*VendorPush `json:"push,omitempty"`
}

// VendorList says how to list a resource's items changed since a time.
type VendorList struct {
	// Path is the request path and query with {since}, {page} and
	// {per_page}.
	Path string `json:"path"`
	// Items is the dot path of the items array; empty if the response is
	// the array.
	Items string `json:"items,omitempty"`
	// HasMore is the dot path of a boolean telling that another page
	// follows.
	HasMore string `json:"has_more,omitempty"`
	// NextPage is the dot path of the next page's number.
	NextPage string `json:"next_page,omitempty"`
	// EmptyPageEnds ends the list at the first empty page.
	EmptyPageEnds bool `json:"empty_page_ends,omitempty"`
	// Total is the dot path of the list's item count in a list response,
	// when the vendor reports one: backfill progress then shows an ETA.
	Total string `json:"total,omitempty"`
	// PerPage is the page size. Default 50.
	PerPage int `json:"per_page,omitempty"`
	// SinceFormat is rfc3339 (default), unix or unix_ms.
	SinceFormat string `json:"since_format,omitempty"`
	// Overlap is subtracted from the cursor when a pass starts. Default
	// 1s.
	Overlap caddy.Duration `json:"overlap,omitempty"`
}

// vendorsConfig converts c to the Caddy-free vendors.Config, with header
// values as given (resolve placeholders first).
func (c *VendorConfig) vendorsConfig(name string, headers map[string]string) vendors.Config {
	cfg := vendors.Config{
		Name:       name,
		BaseURLs:   c.BaseURLs,
		Headers:    headers,
		Timeout:    time.Duration(c.Timeout),
		Rate:       vendors.RateLimit{PerSecond: c.Rate, Burst: c.Burst},
		Retry:      vendors.RetryPolicy{Retries: c.Retries},
		HedgeDelay: time.Duration(c.Hedge),
		Breaker:    c.Breaker,
		Enabled:    c.Enabled == nil || *c.Enabled,
		Resources:  map[string]vendors.Resource{},
	}
	if c.Version != nil {
		cfg.Version = vendors.APIVersion{Path: c.Version.Path, Header: c.Version.Header, Value: c.Version.Value}
	}
	if c.Canary != nil {
		cfg.Canary = vendors.Canary{Percent: c.Canary.Percent, BaseURLs: c.Canary.BaseURLs}
	}
	for rn, r := range c.Resources {
		res := vendors.Resource{
			Get: r.Get, Upsert: r.Upsert, ID: r.ID, Version: r.Version,
			UpdatedAt: r.UpdatedAt, Fields: r.Fields, Tags: r.Tags,
		}
		res.Sensitive = r.Sensitive
		if l := r.List; l != nil {
			res.List = &vendors.ListSpec{
				Path: l.Path, Items: l.Items, PerPage: l.PerPage, HasMore: l.HasMore,
				NextPage: l.NextPage, EmptyPageEnds: l.EmptyPageEnds, Total: l.Total,
				SinceFormat: l.SinceFormat, Overlap: time.Duration(l.Overlap),
			}
		}
		cfg.Resources[rn] = res
	}
	return cfg
}

// unmarshalVendor parses one vendor block inside the global craftedge
// option (the dispenser is on the "vendor" token):
//
//	vendor <name> {
//	    base_url <url...>
//	    version  path <prefix> | header <field> <value>
//	    header   <field> <value>
//	    timeout  <duration>
//	    rate     <n>[/s|/m|/h] [burst <n>]
//	    retries  <n>
//	    hedge    <duration>
//	    breaker  off | { failures <n>  min_paths <n>  successes <n>  cooldown <duration> }
//	    enabled  on|off
//	    canary   <percent> [<url...>]
//	    webhook  { ... }          (see unmarshalWebhook)
//	    resource <name> {
//	        get    <path> [item <json path>]
//	        list   <path> [items <p>] [has_more <p>] [next_page <p>] [empty_page_ends]
//	               [per_page <n>] [since_format rfc3339|unix|unix_ms] [overlap <duration>]
//	        upsert [<method>] <path> [item <json path>]
//	        id      <json path>
//	        version <json path>
//	        updated <json path>
//	        field   <name> <json path> [required] [type <type>]
//	        tags    <template...>
//	        sync    every <duration>
//	        sensitive <field...>
//	        media     <field...>
//	        push      <vendor> [<preset> <index>] { ... }  (see unmarshalPush)
//	    }
//	}
func (a *App) unmarshalVendor(d *caddyfile.Dispenser) error {
	file, line := d.File(), d.Line()
	if !d.NextArg() {
		return d.Errf("vendor needs a name")
	}
	name := d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	if name == "outbox" || name == "media" {
		return d.Errf("vendor name %q is reserved (read-model API path)", name)
	}
	if _, dup := a.Vendors[name]; dup {
		return d.Errf("vendor %q is defined twice", name)
	}
	v := &VendorConfig{Resources: map[string]*VendorResource{}}
	webhookLine := 0
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch dir := d.Val(); dir {
		case "base_url":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("base_url needs at least one URL")
			}
			for _, u := range args {
				if err := checkVendorURL(u); err != nil {
					return d.Errf("base_url %q: %v", u, err)
				}
			}
			v.BaseURLs = append(v.BaseURLs, args...)
		case "version":
			args := d.RemainingArgs()
			switch {
			case len(args) == 2 && args[0] == "path":
				p := args[1]
				if !strings.HasPrefix(p, "/") {
					p = "/" + p
				}
				v.Version = &VendorVersion{Path: p}
			case len(args) == 3 && args[0] == "header":
				v.Version = &VendorVersion{Header: args[1], Value: args[2]}
			default:
				return d.Errf("version wants 'path <prefix>' or 'header <field> <value>'")
			}
		case "header":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("header wants <field> <value>")
			}
			if v.Headers == nil {
				v.Headers = map[string]string{}
			}
			v.Headers[args[0]] = args[1]
		case "timeout", "hedge":
			dur, err := parseDuration(d)
			if err != nil {
				return err
			}
			if dir == "timeout" {
				v.Timeout = dur
			} else {
				v.Hedge = dur
			}
		case "rate":
			if err := parseVendorRate(d, v); err != nil {
				return err
			}
		case "retries":
			n, err := parseIntArg(d, d.Val(), 0, math.MaxInt, "")
			if err != nil {
				return err
			}
			v.Retries = n
		case "breaker":
			cfg, err := parseBreaker(d, v.Breaker)
			if err != nil {
				return err
			}
			v.Breaker = cfg
		case "enabled":
			on, err := parseOnOff(d)
			if err != nil {
				return err
			}
			v.Enabled = &on
		case "canary":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("canary wants <percent> [<url...>]")
			}
			p, err := parseIntValue(d, "canary percent", strings.TrimSuffix(args[0], "%"), 0, 100, "")
			if err != nil {
				return err
			}
			for _, u := range args[1:] {
				if err := checkVendorURL(u); err != nil {
					return d.Errf("canary URL %q: %v", u, err)
				}
			}
			v.Canary = &VendorCanary{Percent: p, BaseURLs: args[1:]}
		case "resource":
			if err := v.unmarshalResource(d); err != nil {
				return err
			}
		case "webhook":
			webhookLine = d.Line()
			if err := v.unmarshalWebhook(d); err != nil {
				return err
			}
		default:
			return d.Errf("unknown vendor subdirective %q", dir)
		}
	}
	if len(v.BaseURLs) == 0 {
		return fmt.Errorf("%s:%d: vendor %q: base_url is required", file, line, name)
	}
	if v.Rate <= 0 {
		return fmt.Errorf("%s:%d: vendor %q: rate is required", file, line, name)
	}
	// Validate now, with placeholders unresolved, so mistakes name the
	// block; provisioning validates again with resolved values.
	if err := v.vendorsConfig(name, placeholderHeaders(v.Headers)).Validate(); err != nil {
		return fmt.Errorf("%s:%d: %v", file, line, err) // each error names the vendor
	}
	if err := v.checkWebhook(); err != nil {
		return fmt.Errorf("%s:%d: vendor %q: %v", file, webhookLine, name, err)
	}
	if a.Vendors == nil {
		a.Vendors = map[string]*VendorConfig{}
	}
	a.Vendors[name] = v
	return nil
}

// placeholderHeaders replaces header values by a neutral stand-in, for
// validation before placeholders are resolved.
func placeholderHeaders(h map[string]string) map[string]string {
	out := make(map[string]string, len(h))
	for k := range h {
		out[k] = "x"
	}
	return out
}

func (v *VendorConfig) unmarshalResource(d *caddyfile.Dispenser) error {
	file, line := d.File(), d.Line()
	if !d.NextArg() {
		return d.Errf("resource needs a name")
	}
	name := d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	if _, dup := v.Resources[name]; dup {
		return d.Errf("resource %q is defined twice", name)
	}
	r := &VendorResource{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch dir := d.Val(); dir {
		case "get":
			args := d.RemainingArgs()
			switch {
			case len(args) == 1:
				r.Get = &vendors.GetSpec{Path: args[0]}
			case len(args) == 3 && args[1] == "item":
				r.Get = &vendors.GetSpec{Path: args[0], Item: args[2]}
			default:
				return d.Errf("get wants <path> [item <json path>]")
			}
		case "list":
			l, err := parseVendorList(d)
			if err != nil {
				return err
			}
			r.List = l
		case "upsert":
			args := d.RemainingArgs()
			u := &vendors.UpsertSpec{}
			if len(args) > 0 && isHTTPMethod(args[0]) {
				u.Method, args = args[0], args[1:]
			}
			switch {
			case len(args) == 1:
				u.Path = args[0]
			case len(args) == 3 && args[1] == "item":
				u.Path, u.Item = args[0], args[2]
			default:
				return d.Errf("upsert wants [<method>] <path> [item <json path>]")
			}
			r.Upsert = u
		case "id", "version", "updated":
			val, err := oneArg(d)
			if err != nil {
				return err
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			switch dir {
			case "id":
				r.ID = val
			case "version":
				r.Version = val
			default:
				r.UpdatedAt = val
			}
		case "field":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.Errf("field wants <name> <json path> [required] [type <type>]")
			}
			f := vendors.Field{Path: args[1]}
			for i := 2; i < len(args); i++ {
				switch {
				case args[i] == "required":
					f.Required = true
				case args[i] == "type" && i+1 < len(args):
					i++
					f.Type = args[i]
				default:
					return d.Errf("field %q: unexpected %q", args[0], args[i])
				}
			}
			if r.Fields == nil {
				r.Fields = map[string]vendors.Field{}
			}
			r.Fields[args[0]] = f
		case "tags":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("tags needs at least one template")
			}
			r.Tags = append(r.Tags, args...)
		case "sync":
			if !d.NextArg() || d.Val() != "every" {
				return d.Errf("sync wants 'every <duration>'")
			}
			dur, err := parseDuration(d)
			if err != nil {
				return err
			}
			if dur <= 0 || d.NextArg() {
				return d.Errf("sync wants 'every <duration>' with a positive duration")
			}
			r.SyncEvery = dur
		case "public":
			if d.NextArg() {
				return d.ArgErr()
			}
			r.Public = true
		case "sensitive":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("sensitive needs at least one field name")
			}
			r.Sensitive = append(r.Sensitive, args...)
		case "media":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("media needs at least one field name")
			}
			r.Media = append(r.Media, args...)
		case "push":
			if err := r.unmarshalPush(d); err != nil {
				return err
			}
		default:
			return d.Errf("unknown resource subdirective %q", dir)
		}
	}
	if r.ID == "" {
		return fmt.Errorf("%s:%d: resource %q: id is required", file, line, name)
	}
	if r.SyncEvery > 0 && r.List == nil {
		return fmt.Errorf("%s:%d: resource %q: sync needs a list", file, line, name)
	}
	if err := checkMediaFields(name, r); err != nil {
		return fmt.Errorf("%s:%d: %v", file, line, err)
	}
	v.Resources[name] = r
	return nil
}

func parseVendorList(d *caddyfile.Dispenser) (*VendorList, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.Errf("list needs a path")
	}
	l := &VendorList{Path: args[0]}
	for i := 1; i < len(args); i++ {
		key := args[i]
		if key == "empty_page_ends" {
			l.EmptyPageEnds = true
			continue
		}
		if i+1 >= len(args) {
			return nil, d.Errf("list: %s needs a value", key)
		}
		i++
		val := args[i]
		switch key {
		case "items":
			l.Items = val
		case "has_more":
			l.HasMore = val
		case "next_page":
			l.NextPage = val
		case "since_format":
			l.SinceFormat = val
		case "total":
			l.Total = val
		case "per_page":
			n, err := parseIntValue(d, "list: per_page", val, 1, math.MaxInt, "")
			if err != nil {
				return nil, err
			}
			l.PerPage = n
		case "overlap":
			dur, err := caddy.ParseDuration(val)
			if err != nil {
				return nil, d.Errf("list: overlap: invalid duration %q: %v", val, err)
			}
			l.Overlap = caddy.Duration(dur)
		default:
			return nil, d.Errf("list: unknown option %q", key)
		}
	}
	return l, nil
}

// parseVendorRate parses "rate <n>[/s|/m|/h] [burst <n>]".
func parseVendorRate(d *caddyfile.Dispenser, v *VendorConfig) error {
	args := d.RemainingArgs()
	if len(args) != 1 && len(args) != 3 {
		return d.Errf("rate wants <n>[/s|/m|/h] [burst <n>]")
	}
	num, unit, _ := strings.Cut(args[0], "/")
	per := 1.0
	switch unit {
	case "", "s":
	case "m":
		per = 60
	case "h":
		per = 3600
	default:
		return d.Errf("rate: unknown unit %q (want s, m or h)", unit)
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n <= 0 || math.IsInf(n, 0) || math.IsNaN(n) {
		return d.Errf("rate must be a positive number of requests, got %q", args[0])
	}
	v.Rate = n / per
	if len(args) == 3 {
		if args[1] != "burst" {
			return d.Errf("rate: unexpected %q (want burst <n>)", args[1])
		}
		b, err := parseIntValue(d, "rate: burst", args[2], 1, math.MaxInt, "")
		if err != nil {
			return err
		}
		v.Burst = b
	}
	return nil
}

func checkVendorURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme must be http or https")
	}
	if u.Host == "" {
		return fmt.Errorf("missing host")
	}
	if u.User != nil {
		return fmt.Errorf("credentials in the URL are refused: use header")
	}
	return nil
}

func isHTTPMethod(s string) bool {
	switch s {
	case "PUT", "POST", "PATCH":
		return true
	}
	return false
}
