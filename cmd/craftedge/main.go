// Command craftedge is Caddy with the craftedge modules built in: an edge
// gateway and cache for Craft CMS. Every Caddy subcommand works as usual
// (run, reload, adapt, validate, list-modules...), plus craftedge's own
// (demo).
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// craftedge's modules.
	_ "github.com/craftedge/craftedge/caddymodule"
)

func main() {
	caddycmd.Main()
}
