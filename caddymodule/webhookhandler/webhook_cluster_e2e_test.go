package webhookhandler

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/cluster"
)

// In a cluster a webhook delivery is processed once cluster-wide: a
// delivery another node accepted is a duplicate here (no refetch), and one
// accepted here is a duplicate for the other nodes. A real NATS server
// with JetStream runs in the test; the other node is the cluster tier, as
// another craftedge uses it.
func TestWebhookDeliveryOnceAcrossCluster(t *testing.T) {
	nats := e2e.StartNATS(t)
	e := startWebhookGateway(t, webhookOptions{global: nats.ClusterBlock("gw")})
	e2e.WaitFor(t, "the gateway's node ready", func() bool {
		h := e2e.AdminJSON[caddymodule.Health](e.Gateway, "/craftedge/health").Cluster
		return h != nil && h.State == "ready"
	})
	peer, err := cluster.Start(cluster.Config{NodeName: "peer", URLs: []string{nats.URL()}, ReconnectWait: 20 * time.Millisecond},
		cluster.Handlers{}, cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	e2e.WaitFor(t, "the peer ready", func() bool { return peer.State() == cluster.StateReady })
	ctx := context.Background()

	// Accepted by the peer first (the vendor's first try went there): a
	// retry delivered here is acknowledged as a duplicate, not refetched.
	if err := peer.RememberDelivery(ctx, "shop", "msg_elsewhere", nowFunc(), time.Hour); err != nil {
		t.Fatal(err)
	}
	r := e.event(hookCfgNew, "msg_elsewhere", productEvent("3", 1))
	e2e.WantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.Body, "duplicate") {
		t.Fatalf("delivery accepted by another node: %s", r.Body)
	}
	if n := len(e.refetchJobs()); n != 0 {
		t.Fatalf("%d refetch jobs for a delivery another node accepted", n)
	}

	// Accepted here: the other nodes see it as a replay.
	e2e.WantStatus(t, e.event(hookCfgNew, "msg_here", productEvent("4", 1)), http.StatusAccepted)
	e.waitRefetchesDone(1)
	if seen, err := peer.DeliverySeen(ctx, "shop", "msg_here", nowFunc()); !seen || err != nil {
		t.Fatalf("the peer's view of a delivery accepted here: %v %v, want seen", seen, err)
	}
	if seen, _ := peer.DeliverySeen(ctx, "shop", "msg_never", nowFunc()); seen {
		t.Fatal("a delivery nobody accepted counted as seen")
	}

	// NATS gone: deliveries are still processed (each node decides alone).
	nats.Stop()
	e2e.WantStatus(t, e.event(hookCfgNew, "msg_alone", productEvent("5", 1)), http.StatusAccepted)
	e.waitRefetchesDone(2)
}
