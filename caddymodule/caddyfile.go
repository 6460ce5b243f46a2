package caddymodule

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("craftedge", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("craftedge", parseHandlerDirective)
	// Ordered in directives.go.
}

func parseGlobalOption(d *caddyfile.Dispenser, _ any) (any, error) {
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "craftedge", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from the global option block:
//
//	craftedge {
//	    storage           <path>
//	    storage_check_max_size <size>|off
//	    memory            <size>
//	    snapshot_only     [on|off]
//	    snapshot_max_size <size>
//	    snapshot_max_age  <duration>
//	    jobs {
//	        retention <duration>
//	        lease     <duration>
//	        kind <name> {
//	            concurrency  <n>
//	            batch        <n>
//	            backoff      <base> <max>
//	            max_attempts <n>
//	            timeout      <duration>
//	        }
//	    }
//	    vendor <name> { … }   (vendor_caddyfile.go)
//	    cdn { … }             (cdn_caddyfile.go)
//	}
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "storage":
			if !d.NextArg() {
				return d.ArgErr()
			}
			a.Storage = d.Val()
		case "storage_check_max_size":
			if !d.NextArg() {
				return d.Errf("storage_check_max_size needs a size (e.g. 256MiB) or off")
			}
			if d.Val() == "off" {
				a.StorageCheckMaxSize = -1
				break
			}
			d.Prev()
			n, err := parseSize(d)
			if err != nil {
				return err
			}
			a.StorageCheckMaxSize = n
		case "memory":
			n, err := parseSize(d)
			if err != nil {
				return err
			}
			if err := checkMemoryBound(n); err != nil {
				return d.Errf("%v", err)
			}
			a.Memory = n
		case "snapshot_only":
			on, err := parseOnOff(d)
			if err != nil {
				return err
			}
			a.SnapshotOnly = on
		case "snapshot_max_size":
			n, err := parseSize(d)
			if err != nil {
				return err
			}
			a.SnapshotMaxSize = n
		case "snapshot_max_age":
			dur, err := parseDuration(d)
			if err != nil {
				return err
			}
			a.SnapshotMaxAge = dur
		case "jobs":
			if d.NextArg() {
				return d.ArgErr()
			}
			if a.Jobs == nil {
				a.Jobs = &JobsConfig{}
			}
			if err := a.Jobs.unmarshalCaddyfile(d); err != nil {
				return err
			}
			continue
		case "vendor":
			if err := a.unmarshalVendor(d); err != nil {
				return err
			}
			continue
		case "cdn":
			if err := a.unmarshalCDN(d); err != nil {
				return err
			}
			continue
		case "encryption_key":
			if err := a.unmarshalEncryptionKey(d); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized craftedge global option %q", d.Val())
		}
		if d.NextArg() {
			return d.Errf("too many arguments to %q", d.Val())
		}
	}
	return nil
}

// unmarshalCaddyfile parses the jobs block of the global option.
func (c *JobsConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "retention", "lease":
			dur, err := parseDuration(d)
			if err != nil {
				return err
			}
			if opt == "retention" {
				c.Retention = dur
			} else {
				c.Lease = dur
			}
			if d.NextArg() {
				return d.Errf("too many arguments to %q", opt)
			}
		case "kind":
			name, err := oneArg(d)
			if err != nil {
				return err
			}
			if d.NextArg() {
				return d.Errf("too many arguments to kind %q", name)
			}
			var k JobKindConfig
			for kn := d.Nesting(); d.NextBlock(kn); {
				switch sub := d.Val(); sub {
				case "concurrency", "batch", "max_attempts":
					n, err := parseIntArg(d, sub, 1, math.MaxInt, "")
					if err != nil {
						return err
					}
					switch sub {
					case "concurrency":
						k.Concurrency = n
					case "batch":
						k.BatchSize = n
					default:
						k.MaxAttempts = n
					}
				case "backoff":
					base, err := parseDuration(d)
					if err != nil {
						return err
					}
					maxd, err := parseDuration(d)
					if err != nil {
						return d.Errf("backoff wants <base> <max>: %v", err)
					}
					if maxd < base {
						return d.Errf("backoff max %s is below base %s", time.Duration(maxd), time.Duration(base))
					}
					k.BaseBackoff, k.MaxBackoff = base, maxd
				case "timeout":
					dur, err := parseDuration(d)
					if err != nil {
						return err
					}
					k.Timeout = dur
				default:
					return d.Errf("unrecognized job kind option %q", sub)
				}
				if d.NextArg() {
					return d.Errf("too many arguments to %q", d.Val())
				}
			}
			if c.Kinds == nil {
				c.Kinds = map[string]JobKindConfig{}
			}
			c.Kinds[name] = k
		default:
			return d.Errf("unrecognized jobs option %q", opt)
		}
	}
	return nil
}

func parseHandlerDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	if err := handler.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return handler, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	craftedge [<matcher>] {
//	    upstream       <name>
//	    vendor         <name> [<path...>]
//	    ttl            <duration>|off
//	    stale          <duration>|off
//	    timeout        <duration>
//	    serve_stale_despite_origin [on|off]
//	    breaker off | {
//	        failures  <n>
//	        min_paths <n>
//	        successes <n>
//	        cooldown  <duration>
//	    }
//	    snapshot_only         [on|off]
//	    snapshot_only_editors pass|block
//	    cp_trigger     <segment>
//	    bypass_path    <path...>
//	    bypass_cookie  <name...>
//	    bypass_query   <param...>
//	    bypass_header  <field...>
//	    ignore_query   <param...>
//	    tag_header     <field...>
//	    expose_tags
//	    fallback       <status> [<body> | file <path>]
//	    max_entry_size <size>
//	    graphql        <path>
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Errf("craftedge takes no arguments on its first line, got %q (use a block)", d.Val())
	}
	for d.NextBlock(0) {
		sub := d.Val()
		switch sub {
		case "upstream":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			h.Upstream = v
		case "vendor":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.Vendor = args[0]
			for _, p := range args[1:] {
				if !strings.HasPrefix(p, "/") {
					return d.Errf("vendor %s: path %q must start with /", args[0], p)
				}
			}
			h.VendorPaths = append(h.VendorPaths, args[1:]...)
		case "ttl", "stale":
			// 0 and off are meaningful: no heuristic freshness, no stale
			// memory copies on errors.
			if !d.NextArg() {
				return d.Errf("%s needs a duration or off", sub)
			}
			var dur caddy.Duration
			if d.Val() != "off" {
				d.Prev()
				var err error
				if dur, err = parseDuration(d); err != nil {
					return err
				}
			}
			if sub == "ttl" {
				h.TTL = &dur
			} else {
				h.Stale = &dur
			}
		case "timeout":
			dur, err := parseDuration(d)
			if err != nil {
				return err
			}
			if dur == 0 {
				return d.Errf("timeout must be positive, got %q (omit it for the default %s)", d.Val(), defaultTimeout)
			}
			h.Timeout = dur
		case "serve_stale_despite_origin":
			on, err := parseOnOff(d)
			if err != nil {
				return err
			}
			h.ServeStaleDespiteOrigin = on
		case "breaker":
			cfg, err := parseBreaker(d, h.Breaker)
			if err != nil {
				return err
			}
			h.Breaker = cfg
			continue
		case "snapshot_only":
			on, err := parseOnOff(d)
			if err != nil {
				return err
			}
			h.SnapshotOnly = on
		case "snapshot_only_editors":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			switch v {
			case "pass":
				h.BlockBypassWhenSnapshotOnly = false
			case "block":
				h.BlockBypassWhenSnapshotOnly = true
			default:
				return d.Errf("snapshot_only_editors must be pass or block, got %q", v)
			}
		case "cp_trigger":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			h.CPTrigger = v
		case "bypass_path", "bypass_cookie", "bypass_query", "bypass_header", "ignore_query", "tag_header", "key_header", "key_cookie":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("%s needs at least one value", sub)
			}
			switch sub {
			case "bypass_path":
				h.BypassPaths = append(h.BypassPaths, args...)
			case "bypass_cookie":
				h.BypassCookies = append(h.BypassCookies, args...)
			case "bypass_query":
				h.BypassQuery = append(h.BypassQuery, args...)
			case "bypass_header":
				h.BypassHeaders = append(h.BypassHeaders, args...)
			case "ignore_query":
				h.IgnoreQuery = append(h.IgnoreQuery, args...)
			case "tag_header":
				h.TagHeaders = append(h.TagHeaders, args...)
			case "key_header":
				for _, name := range args {
					if err := keyHeaderError(name); err != nil {
						return d.Errf("%v", err)
					}
				}
				h.KeyHeaders = append(h.KeyHeaders, args...)
			case "key_cookie":
				for _, name := range args {
					if err := keyCookieError(name); err != nil {
						return d.Errf("%v", err)
					}
				}
				h.KeyCookies = append(h.KeyCookies, args...)
			}
			continue
		case "expose_tags":
			h.ExposeTags = true
		case "fallback":
			fb, err := parseFallback(d)
			if err != nil {
				return err
			}
			h.Fallback = fb
			continue
		case "max_entry_size":
			n, err := parseSize(d)
			if err != nil {
				return err
			}
			h.MaxEntrySize = n
		case "graphql":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			if !strings.HasPrefix(v, "/") {
				return d.Errf("graphql path must start with /, got %q", v)
			}
			h.GraphQL = v
		default:
			return d.Errf("unrecognized craftedge subdirective %q", sub)
		}
		if d.NextArg() {
			return d.Errf("too many arguments to %q: %q", sub, d.Val())
		}
	}
	return nil
}

// parseFallback parses `fallback <status> [<body> | file <path>]`.
func parseFallback(d *caddyfile.Dispenser) (*Fallback, error) {
	args := d.RemainingArgs()
	if len(args) == 0 || len(args) > 3 {
		return nil, d.Errf("fallback wants <status> [<body> | file <path>], got %d arguments", len(args))
	}
	status, err := strconv.Atoi(args[0])
	if err != nil || status < 200 || status > 599 {
		return nil, d.Errf("fallback status must be an HTTP status (200-599), got %q", args[0])
	}
	fb := &Fallback{Status: status}
	switch {
	case len(args) == 3 && args[1] == "file":
		fb.File = args[2]
	case len(args) == 2:
		fb.Body = args[1]
	case len(args) == 3:
		return nil, d.Errf("fallback wants <status> [<body> | file <path>], got %q", strings.Join(args, " "))
	}
	return fb, nil
}

func oneArg(d *caddyfile.Dispenser) (string, error) {
	name := d.Val()
	if !d.NextArg() {
		return "", d.Errf("%s needs a value", name)
	}
	return d.Val(), nil
}

// parseIntArg reads the one argument of the Caddyfile option the dispenser
// is on (`<option> <n>`) as an integer from least to most, inclusive (most
// math.MaxInt for no upper bound). name is the option as errors call it
// ("retries", "breaker failures"); a missing value, a bad one and a second
// argument are errors naming the Caddyfile line. hint, if not empty, ends a
// bad value's error (e.g. how to turn the feature off instead).
func parseIntArg(d *caddyfile.Dispenser, name string, least, most int, hint string) (int, error) {
	if !d.NextArg() {
		return 0, d.Errf("%s needs a value", name)
	}
	n, err := parseIntValue(d, name, d.Val(), least, most, hint)
	if err != nil {
		return 0, err
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return n, nil
}

// parseIntValue parses v, the value given to the Caddyfile option name, as
// a decimal integer from least to most, inclusive (most math.MaxInt for no
// upper bound). It is the one integer parser of the Caddyfile: its error
// names the option, the allowed range, the value given and (through
// d.Errf) the Caddyfile line, followed by hint if not empty.
func parseIntValue(d *caddyfile.Dispenser, name, v string, least, most int, hint string) (int, error) {
	n, err := strconv.Atoi(v)
	if err == nil && n >= least && n <= most {
		return n, nil
	}
	var want string
	switch {
	case least == 1 && most == math.MaxInt:
		want = "a positive integer"
	case least == 1:
		want = fmt.Sprintf("a positive integer up to %d", most)
	case most == math.MaxInt:
		want = fmt.Sprintf("an integer ≥ %d", least)
	default:
		want = fmt.Sprintf("an integer from %d to %d", least, most)
	}
	return 0, d.Errf("%s must be %s, got %q%s", name, want, v, hint)
}

func parseOnOff(d *caddyfile.Dispenser) (bool, error) {
	name := d.Val()
	if !d.NextArg() {
		return true, nil
	}
	switch d.Val() {
	case "on", "true":
		return true, nil
	case "off", "false":
		return false, nil
	}
	return false, d.Errf("%s wants on or off, got %q", name, d.Val())
}

func parseDuration(d *caddyfile.Dispenser) (caddy.Duration, error) {
	name := d.Val()
	if !d.NextArg() {
		return 0, d.Errf("%s needs a duration", name)
	}
	dur, err := caddy.ParseDuration(d.Val())
	if err != nil {
		return 0, d.Errf("%s: invalid duration %q: %v", name, d.Val(), err)
	}
	if dur < 0 {
		return 0, d.Errf("%s must not be negative, got %q", name, d.Val())
	}
	return caddy.Duration(dur), nil
}

func parseSize(d *caddyfile.Dispenser) (int64, error) {
	name := d.Val()
	if !d.NextArg() {
		return 0, d.Errf("%s needs a size (e.g. 256MiB)", name)
	}
	n, err := humanize.ParseBytes(d.Val())
	if err != nil {
		return 0, d.Errf("%s: invalid size %q: %v", name, d.Val(), err)
	}
	if n == 0 || n > 1<<50 {
		return 0, d.Errf("%s: size %q out of range", name, d.Val())
	}
	return int64(n), nil
}

// Interface guards.
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Handler)(nil)
)
