package status

import (
	"testing"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	// The craftedge directive of the harness's site.
	_ "github.com/craftedge/craftedge/caddymodule/cachehandler"
	// craftedge_purge, whose refusals the page lists.
	_ "github.com/craftedge/craftedge/caddymodule/webhookhandler"
)

func TestMain(m *testing.M) {
	e2e.Main(m, e2e.Seams{Running: caddymodule.Running, FlushSnapshots: caddymodule.FlushSnapshots})
}
