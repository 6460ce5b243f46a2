// Command craftedge is Caddy with the craftedge modules built in: an edge
// gateway and cache for Craft CMS. Every Caddy subcommand works as usual
// (run, reload, adapt, validate, list-modules...), plus craftedge's own
// (demo, backfill, reencrypt).
package main

import (
	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// craftedge's modules (the root package imports every one).
	_ "github.com/craftedge/craftedge"
)

func main() {
	// Help and usage name the binary users run (only the command line's
	// texts; data and config directories stay Caddy's).
	caddy.CustomBinaryName = "craftedge"
	caddy.CustomLongDescription = `craftedge is Caddy with the craftedge modules built in: the edge gateway
and cache for Craft CMS and the vendor APIs it depends on.

Every Caddy subcommand works as usual ('craftedge run --config Caddyfile',
reload, adapt, validate, list-modules...), plus craftedge's own: 'demo'
(a Craft-like site and a simulated shop behind the gateway, no setup) and
'backfill' (a full sync pass of one vendor resource) and 'reencrypt'
(sensitive vendor values sealed again with the current key).`
	caddycmd.Main()
}
