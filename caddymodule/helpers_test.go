package caddymodule

import (
	"encoding/json"
	"net/http"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// statusHit is the Cache-Status of a fresh hit, as the cache handler
// (caddymodule/cachehandler, registered for these tests by
// imports_test.go) sends it.
const statusHit = "craftedge; hit"

// health is GET /craftedge/health.
func health(g *e2e.Gateway) Health {
	g.T.Helper()
	r := g.Admin(http.MethodGet, "/craftedge/health", "")
	e2e.WantStatus(g.T, r, 200)
	var h Health
	if err := json.Unmarshal([]byte(r.Body), &h); err != nil {
		g.T.Fatalf("health is not JSON: %v: %s", err, r.Body)
	}
	return h
}
