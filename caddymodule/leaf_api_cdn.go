package caddymodule

import (
	"net/http"
)

// The core's API for CDN provider modules (caddymodule/cdn, or a third
// party's package): the craftedge.cdn namespace and its contract.

// CDNNamespace is the Caddy module namespace of CDN providers: a provider
// named <name> is the module craftedge.cdn.<name>, chosen by the
// "name" field of the cdn block's provider object (JSON, as Caddy's dns.providers) or by
// `cdn <name> …` (Caddyfile).
const CDNNamespace = "craftedge.cdn"

// CDNProvider is a downstream CDN's purge API: a guest module in the
// craftedge.cdn namespace, as reverse_proxy's transports are guests in
// http.reverse_proxy.transport. It only translates purges into API
// requests. The core does the rest: the durable cdn.purge job (the purge
// caller never waits on the CDN), the HTTP client and its timeout,
// retries with backoff, Retry-After, dead letters, the purge-all
// bookkeeping, redaction, metrics and logs.
//
// A provider module also implements caddy.Provisioner (resolve its
// placeholders such as {env.TOKEN} with caddy.NewReplacer and fill its
// defaults), caddy.Validator, and caddyfile.Unmarshaler for
//
//	<name> <args…> {
//	    <subdirectives>
//	}
//
// which the core hands it with the provider line of the cdn block and
// every line of that block except the core's own (timeout). Check the
// config there, with placeholders unresolved, so a mistake is reported
// when the Caddyfile is adapted, naming its line.
type CDNProvider interface {
	// PurgeCalls translates one purge into the API requests that do it.
	// The order must be stable for a given purge: a job retried after
	// some calls went through resumes at the first call not yet sent
	// (add new kinds of call after the existing ones). Purges the API
	// cannot express are returned in skipped (logged as a warning; the
	// job is still done). An error is permanent: the job is
	// dead-lettered.
	PurgeCalls(p *PurgeRequest) (calls []CDNCall, skipped []string, err error)

	// Target identifies the purged CDN (a zone, a service, a URL) and
	// never holds a credential: a purge-all is remembered per provider
	// and target, so purges accepted before it are not sent again.
	Target() string

	// Secrets are the resolved credentials (after Provision): the CDN's
	// answers are redacted of them before a snippet goes into a job's
	// error, so a CDN echoing the token back cannot leak it.
	Secrets() []string
}

// CDNCall is one request to a CDN's API. The core sends it and maps the
// answer: 2xx done; 429 retried after its Retry-After; 408, 5xx and
// transport errors retried with backoff; any other answer is permanent.
type CDNCall struct {
	// Method and URL of the request.
	Method string
	URL    string
	// Header holds the request's headers, credentials included.
	Header http.Header
	// Body is the request body, or nil.
	Body []byte
	// What describes the call in errors and logs (method and path):
	// never a credential, never the body.
	What string
	// Check, if set, inspects the body of a 2xx answer: an error makes
	// the call retried (Cloudflare can answer 200 with "success": false).
	Check func(body []byte) error
}
