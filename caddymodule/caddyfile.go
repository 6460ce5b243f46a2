package caddymodule

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("craftedge", parseGlobalOption)
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
//	    purge_mode        soft|hard
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
//	    media { … }           (media_config.go)
//	    cluster { … }         (cluster_config.go)
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
		case "warm_start":
			on, err := parseOnOff(d)
			if err != nil {
				return err
			}
			a.WarmStart = &on
		case "purge_mode":
			if !d.NextArg() {
				return d.Errf("purge_mode needs soft or hard")
			}
			if v := d.Val(); v != purgeModeSoft && v != purgeModeHard {
				return d.Errf("purge_mode must be soft or hard, got %q", v)
			}
			a.PurgeMode = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
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
		case "media":
			if err := a.unmarshalMedia(d); err != nil {
				return err
			}
			continue
		case "cluster":
			if err := a.unmarshalCluster(d); err != nil {
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
)
