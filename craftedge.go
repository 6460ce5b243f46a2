// Package craftedge registers craftedge's Caddy modules. Import it (as
// xcaddy does with `--with github.com/craftedge/craftedge`) to build a Caddy
// with the craftedge app, handler and admin routes; cmd/craftedge is the
// ready-made binary.
package craftedge

import (
	// The Caddy glue: app, handler, admin API, Caddyfile directives.
	_ "github.com/craftedge/craftedge/caddymodule"
)
