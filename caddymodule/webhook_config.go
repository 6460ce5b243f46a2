package caddymodule

import (
	"encoding/base64"
	"fmt"
	"mime"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/craftedge/craftedge/webhook"
)

// Defaults of signed deliveries (vendor webhooks and remote purges).
const (
	defaultWebhookMaxBody   = 256 << 10
	defaultWebhookReplayTTL = 24 * time.Hour
	defaultWebhookType      = "type"
)

// WebhookAuth says how signed requests (vendor webhooks, remote purges)
// are authenticated and bounded. It is shared by a vendor's webhook block
// and the craftedge_purge handler.
type WebhookAuth struct {
	// Scheme is how the sender signs: standard (Standard Webhooks),
	// shopify, stripe, hubspot, hmac (a generic HMAC-SHA256 header) or
	// static (a shared secret in a header). Required in a vendor's
	// webhook block; craftedge_purge defaults to standard.
	Scheme string `json:"scheme,omitempty"`

	// Secrets are the shared secrets; a request signed with any of them
	// is accepted, so a new secret is added before the old one is
	// removed. Use placeholders ({env.SHOP_WEBHOOK_SECRET}): they are
	// resolved when the config is loaded and never logged. A placeholder
	// that resolves to nothing is skipped (with a warning), so a retired
	// secret's variable can simply be unset.
	Secrets []string `json:"secrets,omitempty"`

	// Header is the header carrying the signature (hmac) or the secret
	// (static).
	Header string `json:"header,omitempty"`

	// Encoding is how the hmac scheme writes its MAC: hex (default) or
	// base64.
	Encoding string `json:"encoding,omitempty"`

	// Prefix is a literal in front of the hmac MAC, such as "sha256=".
	Prefix string `json:"prefix,omitempty"`

	// TimestampHeader names a header with unix seconds that the hmac
	// scheme signs as "{timestamp}.{body}"; the window then applies.
	TimestampHeader string `json:"timestamp_header,omitempty"`

	// Window is the accepted distance between a signed timestamp and now,
	// both ways. Default 5m.
	Window caddy.Duration `json:"window,omitempty"`

	// ReplayTTL is how long a delivery id (or body hash) is remembered
	// to refuse replays; it must exceed Window. Default 24h.
	ReplayTTL caddy.Duration `json:"replay_ttl,omitempty"`

	// MaxBodySize bounds the request body (413 above it). Default 256KiB.
	MaxBodySize int64 `json:"max_body_size,omitempty"`

	// ContentTypes are the accepted media types (415 for others).
	// Default application/json (and any type ending in +json).
	ContentTypes []string `json:"content_types,omitempty"`

	// PublicURL is the scheme and host the sender calls, for the hubspot
	// scheme, which signs the full URL ("https://www.example.com"). By
	// default it is built from the request (behind another proxy, set it).
	PublicURL string `json:"public_url,omitempty"`
}

// VendorWebhook configures a vendor's webhooks: how they are signed and
// how a delivery names the record to refetch.
type VendorWebhook struct {
	WebhookAuth

	// Resource is the resource every delivery refers to. Either it or
	// Events is required unless the vendor has a single resource.
	Resource string `json:"resource,omitempty"`

	// Type is the JSON dot path of the event type in the payload, matched
	// against Events. Default "type".
	Type string `json:"type,omitempty"`

	// Events map event types to resources, first match wins; a pattern
	// ending in * is a prefix ("product.*"). Deliveries of other types
	// are acknowledged and ignored.
	Events []WebhookEvent `json:"events,omitempty"`

	// ID is the JSON dot path of the record id in the payload. Default:
	// the resource's id path.
	ID string `json:"id,omitempty"`

	// Version is the JSON dot path of the record version in the payload.
	// Default: the resource's version path. Deliveries naming the same
	// version of a record coalesce into one refetch.
	Version string `json:"version,omitempty"`
}

// WebhookEvent maps event types to a resource.
type WebhookEvent struct {
	// Match is an event type, or a prefix ending in *.
	Match string `json:"match"`
	// Resource is the vendor resource to refetch.
	Resource string `json:"resource"`
}

// webhookConfig converts a to the webhook package's config with the given
// (resolved) secrets and a default scheme.
func (a *WebhookAuth) webhookConfig(secrets []string, defaultScheme webhook.Scheme) webhook.Config {
	scheme := webhook.Scheme(a.Scheme)
	if scheme == "" {
		scheme = defaultScheme
	}
	return webhook.Config{
		Scheme: scheme, Secrets: secrets, Tolerance: time.Duration(a.Window),
		Header: a.Header, Encoding: a.Encoding, Prefix: a.Prefix, TimestampHeader: a.TimestampHeader,
	}
}

// window is the timestamp window in force.
func (a *WebhookAuth) window() time.Duration {
	if a.Window > 0 {
		return time.Duration(a.Window)
	}
	return webhook.DefaultTolerance
}

// placeholderSecret is a valid stand-in for a secret given as a
// placeholder, to validate a config before placeholders are resolved.
func placeholderSecret(scheme webhook.Scheme) string {
	if scheme == webhook.SchemeStandard {
		return "whsec_" + base64.StdEncoding.EncodeToString([]byte("placeholder-secret"))
	}
	return "placeholder-secret"
}

// check validates a, with placeholder secrets replaced by stand-ins.
func (a *WebhookAuth) check(defaultScheme webhook.Scheme) error {
	if a.Scheme == "" && defaultScheme == "" {
		return fmt.Errorf("scheme is required (standard, shopify, stripe, hubspot, hmac or static)")
	}
	cfg := a.webhookConfig(nil, defaultScheme)
	for _, s := range a.Secrets {
		if strings.Contains(s, "{") {
			s = placeholderSecret(cfg.Scheme)
		}
		cfg.Secrets = append(cfg.Secrets, s)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if window := a.window(); a.ReplayTTL != 0 && time.Duration(a.ReplayTTL) <= window {
		return fmt.Errorf("replay_ttl %v must be longer than the window (%v)", time.Duration(a.ReplayTTL), window)
	}
	for _, ct := range a.ContentTypes {
		if _, _, err := mime.ParseMediaType(ct); err != nil {
			return fmt.Errorf("content_type %q: %v", ct, err)
		}
	}
	if a.PublicURL != "" {
		u, err := url.Parse(a.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("public_url %q: want scheme://host", a.PublicURL)
		}
	}
	return nil
}

// unmarshalAuthOption parses one WebhookAuth subdirective (the dispenser
// is on its name). It reports false for a name that is not one.
func (a *WebhookAuth) unmarshalAuthOption(d *caddyfile.Dispenser) (bool, error) {
	switch sub := d.Val(); sub {
	case "scheme", "header", "encoding", "prefix", "timestamp_header", "public_url":
		v, err := oneArg(d)
		if err != nil {
			return true, err
		}
		if d.NextArg() {
			return true, d.ArgErr()
		}
		switch sub {
		case "scheme":
			a.Scheme = v
		case "header":
			a.Header = v
		case "encoding":
			a.Encoding = v
		case "prefix":
			a.Prefix = v
		case "timestamp_header":
			a.TimestampHeader = v
		default:
			a.PublicURL = strings.TrimSuffix(v, "/")
		}
	case "secret":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return true, d.Errf("secret needs at least one value (use {env.NAME})")
		}
		a.Secrets = append(a.Secrets, args...)
	case "window", "replay_ttl":
		dur, err := parseDuration(d)
		if err != nil {
			return true, err
		}
		if dur <= 0 || d.NextArg() {
			return true, d.Errf("%s wants one positive duration", sub)
		}
		if sub == "window" {
			a.Window = dur
		} else {
			a.ReplayTTL = dur
		}
	case "max_body_size":
		n, err := parseSize(d)
		if err != nil {
			return true, err
		}
		if d.NextArg() {
			return true, d.ArgErr()
		}
		a.MaxBodySize = n
	case "content_type":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return true, d.Errf("content_type needs at least one media type")
		}
		for _, ct := range args {
			if _, _, err := mime.ParseMediaType(ct); err != nil {
				return true, d.Errf("content_type %q: %v", ct, err)
			}
		}
		a.ContentTypes = append(a.ContentTypes, args...)
	default:
		return false, nil
	}
	return true, nil
}

// unmarshalWebhook parses a vendor's webhook block (the dispenser is on
// the "webhook" token):
//
//	webhook {
//	    scheme           standard|shopify|stripe|hubspot|hmac|static
//	    secret           <secret...>          # repeatable; {env.*}
//	    header           <field>              # hmac, static
//	    encoding         hex|base64           # hmac
//	    prefix           <literal>            # hmac, e.g. sha256=
//	    timestamp_header <field>              # hmac
//	    window           <duration>           # default 5m
//	    replay_ttl       <duration>           # default 24h
//	    max_body_size    <size>               # default 256KiB
//	    content_type     <media type...>      # default application/json
//	    public_url       <scheme://host>      # hubspot
//	    resource         <name>
//	    type             <json path>          # default type
//	    event            <type or prefix*> <resource>
//	    id               <json path>          # default: the resource's id
//	    version          <json path>          # default: the resource's version
//	}
//
// It is checked against the vendor's resources by checkWebhook once the
// whole vendor block is read.
func (v *VendorConfig) unmarshalWebhook(d *caddyfile.Dispenser) error {
	if v.Webhook != nil {
		return d.Errf("webhook is defined twice")
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	w := &VendorWebhook{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		ok, err := w.unmarshalAuthOption(d)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		switch sub := d.Val(); sub {
		case "resource", "type", "id", "version":
			val, err := oneArg(d)
			if err != nil {
				return err
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			switch sub {
			case "resource":
				w.Resource = val
			case "type":
				w.Type = val
			case "id":
				w.ID = val
			default:
				w.Version = val
			}
		case "event":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("event wants <type or prefix*> <resource>")
			}
			if i := strings.IndexByte(args[0], '*'); i >= 0 && i != len(args[0])-1 {
				return d.Errf("event %q: * is only allowed at the end", args[0])
			}
			w.Events = append(w.Events, WebhookEvent{Match: args[0], Resource: args[1]})
		default:
			return d.Errf("unknown webhook subdirective %q", sub)
		}
	}
	if err := w.check(""); err != nil {
		return d.Errf("webhook: %v", err)
	}
	v.Webhook = w
	return nil
}

// checkWebhook checks the webhook block against the vendor's resources.
func (v *VendorConfig) checkWebhook() error {
	w := v.Webhook
	if w == nil {
		return nil
	}
	if w.Resource != "" && len(w.Events) > 0 {
		return fmt.Errorf("webhook: give resource or event lines, not both")
	}
	if w.Resource == "" && len(w.Events) == 0 && len(v.Resources) != 1 {
		return fmt.Errorf("webhook: resource or event is required (the vendor has %d resources)", len(v.Resources))
	}
	for _, rn := range w.resources(v) {
		r, ok := v.Resources[rn]
		if !ok {
			return fmt.Errorf("webhook: unknown resource %q", rn)
		}
		if r.Get == nil {
			return fmt.Errorf("webhook: resource %q has no get (a webhook refetches the record by id)", rn)
		}
	}
	return nil
}

// resources lists the resources the webhook can refer to.
func (w *VendorWebhook) resources(v *VendorConfig) []string {
	switch {
	case w.Resource != "":
		return []string{w.Resource}
	case len(w.Events) > 0:
		out := make([]string, 0, len(w.Events))
		for _, e := range w.Events {
			out = append(out, e.Resource)
		}
		return out
	}
	return sortedKeys(v.Resources)
}

// resourceFor returns the resource an event type refers to, or false when
// the delivery is of no interest.
func (w *VendorWebhook) resourceFor(v *VendorConfig, eventType string) (string, bool) {
	if w.Resource != "" {
		return w.Resource, true
	}
	if len(w.Events) == 0 {
		for name := range v.Resources {
			return name, true // checkWebhook: exactly one
		}
		return "", false
	}
	for _, e := range w.Events {
		if p, ok := strings.CutSuffix(e.Match, "*"); ok {
			if strings.HasPrefix(eventType, p) {
				return e.Resource, true
			}
		} else if eventType == e.Match {
			return e.Resource, true
		}
	}
	return "", false
}
