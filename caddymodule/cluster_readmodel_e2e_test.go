package caddymodule

import (
	"sync"
	"testing"
	"time"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/cluster"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendors"
)

// TestClusterReadModelReplicas: another node's record version is stored
// here (lineage source cluster), the record's pages are purged here, and
// no search push is enqueued for it (its node enqueued one); a change
// made here is published once, and a replica applied here is not
// published again.
func TestClusterReadModelReplicas(t *testing.T) {
	e2e.ResetClock()
	e := startPushGateway(t, 3, "push search meilisearch products")
	app := currentApp.Load()
	e.sync("s1", jobs.StateDone)
	e2e.WaitFor(t, "the first sync's pushes", func() bool { return pushesSettled(t) })
	pushJobs := func() int {
		st, err := app.jobs.Stats()
		if err != nil {
			t.Fatal(err)
		}
		k := st.Kinds[jobKindPush]
		return k.Ready + k.Running + k.Done + k.Dead
	}
	pushes0 := pushJobs()

	a, b := startClusterNodes(t)
	t.Cleanup(func() { _ = b.Close(); _ = a.Close() }) // after the read models
	rm := startAppReadModel(t, app, b)
	var mu sync.Mutex
	seenByA := map[string]string{} // id → version
	ra, err := cluster.NewReadModel(a, func(v cluster.RecordVersion) error {
		mu.Lock()
		seenByA[v.ID] = v.Version
		mu.Unlock()
		return nil
	}, cluster.ReadModelConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ra.Close)
	e2e.WaitFor(t, "both read models ready", func() bool { return rm.Ready() && ra.Ready() })

	// A page showing product 1, in the memory tier.
	const page = "http://shop.test/product-1"
	if err := app.memory.Set(page, []byte("page"), []string{"shop:product:1"}, app.memory.Epoch()); err != nil {
		t.Fatal(err)
	}
	// Node a publishes a newer version of product 1.
	rec, err := app.records.Get("shop", "product", "1")
	if err != nil {
		t.Fatal(err)
	}
	newer := rec
	newer.Version, newer.UpdatedAt = "from-a", rec.UpdatedAt.Add(time.Hour)
	newer.Fields = map[string]any{"title": "Replicated title", "price": rec.Fields["price"]}
	data, err := app.records.MarshalReplica(newer)
	if err != nil {
		t.Fatal(err)
	}
	ra.Publish(cluster.RecordVersion{Vendor: "shop", Resource: "product", ID: "1", Version: newer.Version,
		UpdatedAt: newer.UpdatedAt, Data: data})
	e2e.WaitFor(t, "a's version applied here", func() bool {
		r, err := app.records.Get("shop", "product", "1")
		return err == nil && r.Version == "from-a" && r.Fields["title"] == "Replicated title"
	})
	lin, err := app.records.Lineage("shop", "product", "1")
	if err != nil || len(lin) == 0 || lin[0].Source != vendors.SourceCluster { // newest first
		t.Fatalf("lineage %+v, %v: want the last change from the cluster", lin, err)
	}
	// The record is stored first, then its pages are purged.
	e2e.WaitFor(t, "the replicated record's page purged from the memory tier", func() bool {
		_, ok := app.memory.Get(page)
		return !ok
	})
	if n := pushJobs(); n != pushes0 {
		t.Fatalf("a replica enqueued %d push jobs here (its node pushes it)", n-pushes0)
	}

	// A change made here (a sync) is published, once; the replica is not.
	setTitle(t, e.Sim, "2", "Changed here")
	e.sync("s2", jobs.StateDone)
	r2, err := app.records.Get("shop", "product", "2")
	if err != nil {
		t.Fatal(err)
	}
	e2e.WaitFor(t, "this node's change seen by a", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seenByA["2"] == r2.Version
	})
	if st := rm.Stats(); st.Published != 1 || st.Applied != 1 || st.ApplyErrors != 0 {
		t.Fatalf("read model stats %+v: want 1 published (product 2), 1 applied (product 1)", st)
	}
	if n := pushJobs(); n != pushes0+1 {
		t.Fatalf("%d push jobs for this node's change, want 1", n-pushes0)
	}
}
