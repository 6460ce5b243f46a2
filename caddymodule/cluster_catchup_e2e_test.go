package caddymodule

import (
	"testing"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/cluster"
)

// While the node catches up on purges it missed, the memory tier does not
// serve: a copy that was a hit is fetched again (and stored), and health
// says so; once ready, hits are served again. The node's state change is
// given to the app as the node gives it (its State handler): holding a
// real node in catching-up long enough to look is not deterministic.
func TestClusterCatchingUpBypassesMemory(t *testing.T) {
	nats := e2e.StartNATS(t)
	o := e2e.NewOrigin(t)
	o.Handle("/a", e2e.PageHandler("a", "post-1"))
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: nats.ClusterBlock("gw")})
	app := currentApp.Load()
	e2e.WaitFor(t, "the node ready", func() bool { return app.cluster.node.State() == cluster.StateReady })

	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; fwd=miss; stored")
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; hit")

	app.cluster.onState(cluster.StateCatchingUp)
	if h := app.health().Cluster; h.MemoryServes {
		t.Fatalf("health while catching up: %+v", h)
	}
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; fwd=miss; stored")
	if n := o.Count("/a"); n != 2 {
		t.Fatalf("origin saw /a %d times, want 2", n)
	}

	app.cluster.onState(cluster.StateReady)
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; hit")

	// Disconnected: the memory tier keeps serving (nothing to wait for).
	app.cluster.onState(cluster.StateDisconnected)
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; hit")
	app.cluster.onState(app.cluster.node.State())
}
