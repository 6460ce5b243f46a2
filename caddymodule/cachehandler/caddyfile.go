package cachehandler

import (
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/httpcache"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("craftedge", parseHandlerDirective)
	// Ordered in the core's directives.go.
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
//	    stale_after    <duration>|off
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
//	    action_trigger <segment>
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
//	    esi [off] | {
//	        max_depth           <n>
//	        max_includes        <n>
//	        max_fetches         <n>
//	        time_budget         <duration>
//	        private_placeholder <html>
//	        private_path        <path[*]...>
//	    }
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
			v, err := caddymodule.OneArg(d)
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
		case "ttl", "stale", "stale_after":
			// 0 and off are meaningful: no heuristic freshness, no stale
			// memory copies on errors, never answering before the upstream.
			if !d.NextArg() {
				return d.Errf("%s needs a duration or off", sub)
			}
			var dur caddy.Duration
			if d.Val() != "off" {
				d.Prev()
				var err error
				if dur, err = caddymodule.ParseDuration(d); err != nil {
					return err // negative durations included
				}
			}
			switch sub {
			case "ttl":
				h.TTL = &dur
			case "stale":
				h.Stale = &dur
			default:
				h.StaleAfter = &dur
			}
		case "timeout":
			dur, err := caddymodule.ParseDuration(d)
			if err != nil {
				return err
			}
			if dur == 0 {
				return d.Errf("timeout must be positive, got %q (omit it for the default %s)", d.Val(), defaultTimeout)
			}
			h.Timeout = dur
		case "serve_stale_despite_origin":
			on, err := caddymodule.ParseOnOff(d)
			if err != nil {
				return err
			}
			h.ServeStaleDespiteOrigin = on
		case "breaker":
			cfg, err := caddymodule.ParseBreaker(d, h.Breaker)
			if err != nil {
				return err
			}
			h.Breaker = cfg
			continue
		case "snapshot_only":
			on, err := caddymodule.ParseOnOff(d)
			if err != nil {
				return err
			}
			h.SnapshotOnly = on
		case "snapshot_only_editors":
			v, err := caddymodule.OneArg(d)
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
			v, err := caddymodule.OneArg(d)
			if err != nil {
				return err
			}
			if _, err := httpcache.CheckTrigger(v); err != nil {
				return d.Errf("cp_trigger %v", err)
			}
			h.CPTrigger = v
		case "action_trigger":
			v, err := caddymodule.OneArg(d)
			if err != nil {
				return err
			}
			seg, err := httpcache.CheckTrigger(v)
			if err != nil {
				return d.Errf("action_trigger %v", err)
			}
			cp := httpcache.DefaultCPTrigger
			if h.CPTrigger != "" {
				cp = strings.TrimLeft(h.CPTrigger, "/")
			}
			if strings.EqualFold(seg, cp) {
				return d.Errf("action_trigger %q: the same as the cp trigger", v)
			}
			h.ActionTrigger = v
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
			n, err := caddymodule.ParseSize(d)
			if err != nil {
				return err
			}
			h.MaxEntrySize = n
		case "graphql":
			v, err := caddymodule.OneArg(d)
			if err != nil {
				return err
			}
			if !strings.HasPrefix(v, "/") {
				return d.Errf("graphql path must start with /, got %q", v)
			}
			h.GraphQL = v
		case "esi":
			cfg, err := parseESI(d)
			if err != nil {
				return err
			}
			h.ESI = cfg
			continue
		default:
			return d.Errf("unrecognized craftedge subdirective %q", sub)
		}
		if d.NextArg() {
			return d.Errf("too many arguments to %q: %q", sub, d.Val())
		}
	}
	if h.StaleAfter != nil && *h.StaleAfter > 0 {
		timeout := time.Duration(h.Timeout)
		if timeout == 0 {
			timeout = defaultTimeout
		}
		if time.Duration(*h.StaleAfter) >= timeout {
			return d.Errf("stale_after (%s) must be shorter than timeout (%s): the timeout would always answer first",
				time.Duration(*h.StaleAfter), timeout)
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

// parseESI parses `esi [off]` and its optional block; off (nil) turns
// edge-side includes off.
func parseESI(d *caddyfile.Dispenser) (*ESIConfig, error) {
	cfg := new(ESIConfig)
	if d.NextArg() {
		switch d.Val() {
		case "off":
			cfg = nil
		case "on":
		default:
			return nil, d.Errf("esi takes on, off or a block, got %q", d.Val())
		}
		if d.NextArg() {
			return nil, d.Errf("too many arguments to esi: %q", d.Val())
		}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if cfg == nil {
			return nil, d.Errf("esi off takes no block")
		}
		sub := d.Val()
		switch sub {
		case "max_depth", "max_includes", "max_fetches":
			v, err := caddymodule.OneArg(d)
			if err != nil {
				return nil, err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 1000 {
				return nil, d.Errf("esi %s must be a whole number from 0 to 1000, got %q", sub, v)
			}
			switch sub {
			case "max_depth":
				cfg.MaxDepth = &n
			case "max_includes":
				cfg.MaxIncludes = &n
			default:
				cfg.MaxFetches = &n
			}
		case "time_budget":
			dur, err := caddymodule.ParseDuration(d)
			if err != nil {
				return nil, err
			}
			if dur <= 0 {
				return nil, d.Errf("esi time_budget must be positive, got %q (omit it for the default %s)", d.Val(), defaultESIBudget)
			}
			cfg.TimeBudget = dur
		case "private_placeholder":
			v, err := caddymodule.OneArg(d)
			if err != nil {
				return nil, err
			}
			cfg.PrivatePlaceholder = v
		case "private_path":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.Errf("esi private_path needs at least one path")
			}
			for _, p := range args {
				if err := privatePathError(p); err != nil {
					return nil, d.Errf("esi private_path: %v", err)
				}
			}
			cfg.PrivatePaths = append(cfg.PrivatePaths, args...)
			continue
		default:
			return nil, d.Errf("unrecognized esi subdirective %q", sub)
		}
		if d.NextArg() {
			return nil, d.Errf("too many arguments to esi %s: %q", sub, d.Val())
		}
	}
	return cfg, nil
}

// Interface guard.
var _ caddyfile.Unmarshaler = (*Handler)(nil)
