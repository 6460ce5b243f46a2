package caddymodule

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/cluster"
	"github.com/craftedge/craftedge/jobs"
)

// A sync pass runs under its lease: while another node holds
// vendor.sync:shop:product the job waits (running, the vendor not called),
// and runs once it is released. The schedule's lease sync:shop is held by
// this node (the only one with a schedule), as health says.
func TestClusterSyncJobWaitsForItsLease(t *testing.T) {
	nats := e2e.StartNATS(t)
	sim, simURL := e2e.StartVendorSim(t, 5)
	storage := filepath.Join(t.TempDir(), "craftedge.db")
	e := e2e.StartVendorEnv(t, sim, simURL, e2e.VendorCaddyfile(e2e.VendorConfig{
		Storage: storage, BaseURL: simURL, Resource: "sync every 24h", Public: true,
		Site: "craftedge_records", Global: nats.ClusterBlock("gw"),
	}), storage)
	app := currentApp.Load()
	e2e.WaitFor(t, "this node holding sync:shop", func() bool {
		h := app.health().Cluster
		return h.State == "ready" && len(h.Leases) == 1 && h.Leases[0].Name == "sync:shop" && h.Leases[0].Here
	})
	e2e.WaitFor(t, "the scheduled pass done", func() bool {
		st, err := app.jobs.Stats()
		return err == nil && st.Kinds[jobKindVendorSync].Done == 1
	})

	// The peer holds the pass's lease (renewing it) until release.
	peer, err := cluster.Start(cluster.Config{NodeName: "peer", URLs: []string{nats.URL()}, LeaseTTL: time.Second}, cluster.Handlers{}, cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	e2e.WaitFor(t, "the peer ready", func() bool { return peer.State() == cluster.StateReady })
	holding, release, peerDone := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		peerDone <- peer.TryLead(context.Background(), "vendor.sync:shop:product", func(context.Context) {
			close(holding)
			<-release
		})
	}()
	select {
	case <-holding:
	case err := <-peerDone:
		t.Fatalf("the peer could not take the lease: %v", err)
	}

	before := sim.Requests().Total
	job, _, err := app.jobs.Enqueue(context.Background(), jobs.EnqueueRequest{
		Kind: jobKindVendorSync, Key: "manual", Payload: []byte(`{"vendor":"shop","resource":"product","full":true}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	e2e.WaitJobState(e.Gateway, job.ID, jobs.StateRunning)
	// Running while the peer holds the lease: waiting for it, the vendor
	// not called.
	if got := sim.Requests().Total; got != before {
		t.Fatalf("the vendor got %d requests while the lease was held elsewhere", got-before)
	}
	close(release)
	if err := <-peerDone; err != nil {
		t.Fatalf("the peer's hold: %v", err)
	}
	e2e.WaitJobState(e.Gateway, job.ID, jobs.StateDone)
	if sim.Requests().Total == before {
		t.Fatal("the pass did not call the vendor once the lease was free")
	}
}
