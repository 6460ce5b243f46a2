package caddymodule

import (
	"fmt"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// unmarshalCDN parses the cdn block of the global option:
//
//	cdn [<provider> <args…>] {
//	    <provider> <args…>        # if not on the cdn line
//	    timeout <duration>        # per API request; default 10s
//	    <provider's subdirectives>
//	}
//
// The provider is a module craftedge.cdn.<provider> (caddymodule/cdn has
// cloudflare, fastly and generic). The block's own subdirective is
// timeout; every other line is the provider's: the provider line and
// those lines are handed to the module's UnmarshalCaddyfile as
// `<provider> <args…> { <lines> }`, with their Caddyfile positions, so
// its errors name the line. The provider may also bring its own block
// (cdn { fastly <id> { … } }), but not both.
func (a *App) unmarshalCDN(d *caddyfile.Dispenser) error {
	if a.CDN != nil {
		return d.Errf("cdn is configured twice")
	}
	seg := d.NextSegment()
	sub := caddyfile.NewDispenser(seg)
	sub.Next() // cdn
	file, line := sub.File(), sub.Line()
	cfg := &CDNConfig{}
	var provider, rest []caddyfile.Token
	var providerName string
	var passed []string // subdirectives handed to the provider, for errors
	nargs := 0
	for sub.NextArg() {
		nargs++
	}
	if nargs > 0 {
		providerName = seg[1].Text
		if !isCDNProvider(providerName) {
			return fmt.Errorf("%s:%d: cdn: unknown provider %q (%s)", file, line, providerName, cdnProvidersHint())
		}
		provider = seg[1 : 1+nargs]
	}
	for sub.NextBlock(0) {
		name := sub.Val()
		s := sub.NextSegment()
		switch {
		case name == "timeout":
			td := caddyfile.NewDispenser(s)
			td.Next()
			dur, err := parseDuration(td)
			if err != nil {
				return err
			}
			if td.NextArg() {
				return td.Errf("cdn: too many arguments to timeout: %q", td.Val())
			}
			cfg.Timeout = dur
		case isCDNProvider(name):
			if provider != nil {
				pd := caddyfile.NewDispenser(s)
				pd.Next()
				return pd.Errf("cdn: provider given twice (%s and %s)", providerName, name)
			}
			providerName, provider = name, s
		default:
			passed = append(passed, name)
			rest = append(rest, s...)
		}
	}
	if provider == nil {
		msg := fmt.Sprintf("cdn: no provider: name one on the cdn line or in its block (%s)", cdnProvidersHint())
		if len(passed) > 0 {
			msg += fmt.Sprintf("; %q is not a provider", passed[0])
		}
		return fmt.Errorf("%s:%d: %s", file, line, msg)
	}
	tokens := slices.Clone(provider)
	pd := caddyfile.NewDispenser(provider)
	pd.Next()
	for pd.NextArg() {
	}
	for nesting := pd.Nesting(); pd.NextBlock(nesting); {
		if len(rest) > 0 {
			return pd.Errf("cdn: %s has a block of its own and lines in the cdn block (%s): give them in one place",
				providerName, strings.Join(passed, ", "))
		}
		if pd.Val() == "timeout" {
			return pd.Errf("cdn: timeout belongs to the cdn block, not to %s's", providerName)
		}
		pd.NextSegment()
	}
	if len(rest) > 0 {
		// The cdn block's own braces (seg[1+nargs] and the last token)
		// enclose the lines handed over; the opening one moves to the
		// provider line, so the module sees `<provider> <args> {`.
		last := provider[len(provider)-1]
		open := seg[1+nargs]
		open.File, open.Line = last.File, last.Line+last.NumLineBreaks()
		tokens = append(tokens, open)
		tokens = append(tokens, rest...)
		tokens = append(tokens, seg[len(seg)-1])
	}
	md := caddyfile.NewDispenser(tokens)
	md.Next()
	unm, err := caddyfile.UnmarshalModule(md, CDNNamespace+"."+providerName)
	if err != nil {
		return err
	}
	var warnings []caddyconfig.Warning
	cfg.ProviderRaw = caddyconfig.JSONModuleObject(unm, "name", providerName, &warnings)
	if len(warnings) > 0 {
		return fmt.Errorf("%s:%d: cdn: encoding %s: %s", file, line, providerName, warnings[0].Message)
	}
	a.CDN = cfg
	return nil
}

// isCDNProvider reports whether name is a registered provider module.
func isCDNProvider(name string) bool {
	if name == "" || strings.Contains(name, ".") {
		return false
	}
	_, err := caddy.GetModule(CDNNamespace + "." + name)
	return err == nil
}

// cdnProvidersHint names the registered provider modules for errors.
func cdnProvidersHint() string {
	var names []string
	for _, m := range caddy.GetModules(CDNNamespace) {
		if m.ID.Namespace() == CDNNamespace {
			names = append(names, m.ID.Name())
		}
	}
	if len(names) == 0 {
		return "no provider module is registered in " + CDNNamespace + "; import github.com/craftedge/craftedge/caddymodule/cdn"
	}
	slices.Sort(names)
	return "registered: " + strings.Join(names, ", ")
}
