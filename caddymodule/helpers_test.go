package caddymodule

import (
	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// statusHit is the Cache-Status of a fresh hit, as the cache handler
// (caddymodule/cachehandler, registered for these tests by
// imports_test.go) sends it.
const statusHit = "craftedge; hit"

// health is GET /craftedge/health.
func health(g *e2e.Gateway) Health {
	return e2e.AdminJSON[Health](g, "/craftedge/health")
}
