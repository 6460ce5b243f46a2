// Package craftedge registers craftedge's Caddy modules. Import it (as
// xcaddy does with `--with github.com/craftedge/craftedge`) to build a Caddy
// with the craftedge app, handler and admin routes; cmd/craftedge is the
// ready-made binary.
package craftedge

import (
	// The core: app, global option, admin API, and the directives not yet
	// in a package of their own.
	_ "github.com/craftedge/craftedge/caddymodule"
	// One package per module family, as Caddy's modules/standard does.
	_ "github.com/craftedge/craftedge/caddymodule/cachehandler"
	// CDN providers: guest modules of the craftedge.cdn namespace.
	_ "github.com/craftedge/craftedge/caddymodule/cdn"
	_ "github.com/craftedge/craftedge/caddymodule/records"
	_ "github.com/craftedge/craftedge/caddymodule/status"
	_ "github.com/craftedge/craftedge/caddymodule/webhookhandler"
	// The backfill and reencrypt subcommands (as caddypki registers trust).
	_ "github.com/craftedge/craftedge/caddymodule/commands"
)
