package records

import (
	"testing"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/caddymodule/internal/e2e"

	// The harness's site puts the craftedge cache handler in front of
	// every origin: the test binary registers it (a leaf may import
	// another leaf in its tests; the core never does).
	_ "github.com/craftedge/craftedge/caddymodule/cachehandler"
)

func TestMain(m *testing.M) {
	e2e.Main(m, e2e.Seams{Running: caddymodule.Running, FlushSnapshots: caddymodule.FlushSnapshots})
}
