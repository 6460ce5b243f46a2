package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/pagecache"
)

// The App's API for the module packages (caddymodule/<leaf>), which get
// the app with ctx.App("craftedge"): what the status page reads and does.

// Health is the report of GET /craftedge/health.
func (a *App) Health() Health { return a.health() }

// JobQueue is the app's durable job queue.
func (a *App) JobQueue() *jobs.Queue { return a.jobs }

// MemoryStats reports the memory tier's use.
func (a *App) MemoryStats() pagecache.Stats { return a.memory.Stats() }

// HandlerSnapshotOnly reports, per upstream, whether a handler of it has
// snapshot_only on.
func (a *App) HandlerSnapshotOnly() map[string]bool {
	on := map[string]bool{}
	for _, u := range a.upstreamList() {
		on[u.name] = u.handlerSnapshotOnly
	}
	return on
}

// CheckSnapshotOnlyOverride reports why an admin override of the kill
// switch for an upstream ("" for all) would be refused.
func (a *App) CheckSnapshotOnlyOverride(upstream string, enabled bool) error {
	return a.checkOverrideUpstream(upstream, enabled)
}

// SetSnapshotOnlyOverride stores the kill switch's admin override for an
// upstream ("" for all), as POST /craftedge/snapshot-only does.
func (a *App) SetSnapshotOnlyOverride(upstream string, enabled bool) error {
	return a.setOverride(upstream, enabled)
}

// KillSwitchStatus is the kill switch's configured state and overrides.
func (a *App) KillSwitchStatus() KillSwitchStatus { return a.killSwitchStatus() }

// Helpers shared by the module packages.

// AuthUser is the user an authentication handler (basic_auth,
// forward_auth) identified for the request, or "".
func AuthUser(r *http.Request) string { return authUser(r) }

// DecodeJSONBody decodes a request's JSON body strictly, refusing unknown
// fields and trailing data, with a caddy.APIError naming the problem.
func DecodeJSONBody(r *http.Request, v any) error { return decodeJSONBody(r, v) }

// JobsAPIError maps the job queue's errors to caddy.APIErrors with the
// admin API's statuses.
func JobsAPIError(err error) error { return jobsAPIError(err) }

// OneArg reads exactly one argument of a Caddyfile subdirective.
func OneArg(d *caddyfile.Dispenser) (string, error) { return oneArg(d) }

// ParseDuration reads one Caddyfile duration argument.
func ParseDuration(d *caddyfile.Dispenser) (caddy.Duration, error) { return parseDuration(d) }

// RegisterJobKind registers a durable job kind: its defaults (which the
// Caddyfile's jobs { kind <name> { ... } } overrides) and the handler
// built for each loaded app. Call it from an init function.
func RegisterJobKind(name string, defaults jobs.KindConfig, handler func(a *App) jobs.Handler) {
	registerJobKind(name, defaults, handler)
}

// ActiveApp is the running craftedge app, or nil, for tests and tools.
// Modules get their app with ctx.App("craftedge").
func ActiveApp() *App { return currentApp.Load() }
