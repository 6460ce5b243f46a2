package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/cluster"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/pagecache"
	"github.com/craftedge/craftedge/vendors"
	"github.com/craftedge/craftedge/vendorsim"
)

// A cluster node whose bbolt file fails: damaged pages found while it
// applies another node's data, a full disk. It keeps serving, says what
// happened (a log line naming the file, health, metrics), loses nothing
// it can apply later, and once it runs on a fresh file that file gets the
// cluster's records, snapshots (stale: it missed purges) and kill switch.

// clusterVendorCaddyfile is a vendor gateway's Caddyfile on NATS, its
// logs in logPath, with extra global lines.
func clusterVendorCaddyfile(o vendorOptions, natsBlock, logPath, extra string) string {
	return withLogFile(e2e.VendorCaddyfile(e2e.VendorConfig{Storage: o.storage, BaseURL: o.baseURL, Public: true,
		Site: "craftedge_records {\n\t\tallow_anonymous_writes\n\t}", Global: natsBlock + "\n\t\t" + extra}), logPath)
}

// peerVersion is a newer version of rec, as another node publishes it.
func peerVersion(t *testing.T, rec vendors.Record, version string) cluster.RecordVersion {
	t.Helper()
	return peerVersionTitled(t, rec, version, "From the peer")
}

// peerVersionTitled is peerVersion with the given title.
func peerVersionTitled(t *testing.T, rec vendors.Record, version, title string) cluster.RecordVersion {
	t.Helper()
	rec.Version, rec.UpdatedAt = version, rec.UpdatedAt.Add(time.Hour)
	rec.Fields = map[string]any{"title": title, "price": rec.Fields["price"]}
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return cluster.RecordVersion{Vendor: rec.Vendor, Resource: rec.Resource, ID: rec.ID, Version: rec.Version,
		UpdatedAt: rec.UpdatedAt, Data: data}
}

// The records bucket's pages are damaged (the check on open is off, so
// the damage is found in use): applying another node's version of a
// record walks into them. The node does not crash: the file is moved
// aside and named in an error log line, health says damaged, the read
// model retries the version (it is not lost). After a reload the node
// runs on a fresh file: the version is applied there, the cluster's kill
// switch and shared snapshots too, the snapshots stale (a gap:
// storage_replaced).
func TestClusterDamagedFileWhileApplyingRecords(t *testing.T) {
	var r1 vendors.Record
	sim, url, path := syncedThenDamagedRecords(t, func() {
		var err error
		if r1, err = currentApp.Load().records.Get("shop", "product", "1"); err != nil {
			t.Fatal(err)
		}
	})

	// The cluster holds a newer version of product 1, a kill-switch
	// override and another node's snapshot.
	nats := e2e.StartNATS(t)
	peer := startHostilePeer(t, nats.URL())
	ra := startPublisherReadModel(t, peer)
	ra.Publish(peerVersion(t, r1, "from-peer"))
	if err := ra.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := peer.SetSnapshotOnly(context.Background(), "other-upstream", true); err != nil {
		t.Fatal(err)
	}
	ss, err := cluster.NewSharedSnapshots(peer, cluster.SharedSnapshotsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	e2e.WaitFor(t, "the peer's shared snapshots", ss.Ready)
	page := pagecache.Entry{Status: http.StatusOK, StoredAt: time.Now().Add(-time.Minute), FreshFor: time.Hour,
		Header: []pagecache.HeaderField{{Name: "Content-Type", Value: "text/html"}}, Body: []byte("<p>from the peer</p>"), Tags: []string{"post-9"}}
	if !ss.Put(cluster.SharedSnapshot{Key: "https://peer.example/page", StoredAt: page.StoredAt, Value: page.Encode()}) {
		t.Fatal("shared snapshot refused")
	}
	if err := ss.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	logPath := filepath.Join(t.TempDir(), "caddy.log")
	damagedConfig := func(o vendorOptions) string {
		return clusterVendorCaddyfile(o, nats.ClusterBlock("gw"), logPath, "storage_check_max_size off\n\t\twarm_start off")
	}
	g := startVendorGatewayWith(t, sim, vendorOptions{baseURL: url, storage: path, caddyfile: damagedConfig})
	e2e.WaitFor(t, "the damage found", func() bool { return storageHealth(t, g.Gateway).Damaged })
	wantDamagedLogged(t, logPath, path)
	e2e.WaitFor(t, "the version retried", func() bool {
		h := clusterHealth(g.Gateway)
		return h != nil && h.Data != nil && h.Data.Records != nil && h.Data.Records.Retries > 0
	})
	if h := clusterHealth(g.Gateway).Data.Records; h.Ready || h.ApplyErrors != 0 {
		t.Fatalf("records health on the damaged file %+v: want not ready, nothing refused", h)
	}
	if v := e2e.Scrape(g.Gateway, `craftedge_cluster_data_applied_total{outcome="retry",part="records"}`); v < 1 {
		t.Fatalf("records retried metric = %v", v)
	}
	e2e.WantStatus(t, g.Admin(http.MethodGet, "/craftedge/health", ""), http.StatusOK)
	gaps := e2e.Scrape(g.Gateway, `craftedge_cluster_gaps_total{reason="storage_replaced"}`)
	healthGaps := clusterHealth(g.Gateway).Gaps

	// An outbox write another node accepted: this node cannot record the
	// vendor's answer, so it gives the job back (no attempt used up)
	// rather than run it.
	po, err := cluster.NewOutbox(peer, cluster.OutboxConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer po.Close()
	e2e.WaitFor(t, "the peer's outbox", po.Ready)
	payload := `{"vendor":"shop","resource":"product","id":"5","body":{"sku":"SKU-5","title":{"en":"Written while damaged"},"price":{"amount":5,"currency":"EUR"},"stock":5}}`
	job, _, err := po.Accept(context.Background(), cluster.OutboxRequest{Kind: jobKindOutbox, Key: "damaged-1",
		Entity: "shop/product/5", Payload: []byte(payload)})
	if err != nil {
		t.Fatal(err)
	}
	e2e.WaitFor(t, "the job given back", func() bool { return clusterHealth(g.Gateway).Data.Outbox.GivenBack > 0 })
	if n := len(sim.WritesFor(vendorsim.KindProduct, "5")); n != 0 {
		t.Fatalf("the damaged node sent %d writes", n)
	}
	// A write to this node's records API: accepted into the cluster's
	// outbox (JetStream holds it, not the damaged file).
	w := g.Do(http.MethodPut, "/vendors/v1/shop/product/6", map[string]string{"Content-Type": "application/json"},
		`{"sku":"SKU-6","title":{"en":"Accepted while damaged"},"price":{"amount":6,"currency":"EUR"},"stock":6}`)
	e2e.WantStatus(t, w, http.StatusAccepted)

	// A reload opens a fresh file at the path; the node (same cluster
	// block) is kept.
	r := loadCaddyfile(t, clusterVendorCaddyfile(vendorOptions{baseURL: url, storage: path}, nats.ClusterBlock("gw"), logPath,
		"storage_check_max_size off\n\t\twarm_start off\n\t\tsnapshot_max_age 24h"))
	e2e.WantStatus(t, r, http.StatusOK)
	app := currentApp.Load()
	if sh := storageHealth(t, g.Gateway); sh.Damaged {
		t.Fatalf("after the reload: storage health %+v", sh)
	}
	e2e.WaitFor(t, "the peer's version applied to the fresh file", func() bool {
		rec, err := app.records.Get("shop", "product", "1")
		return err == nil && rec.Version == "from-peer"
	})
	e2e.WaitFor(t, "the cluster's kill switch in the fresh file", func() bool {
		return app.store.SnapshotOnlyOverrides()["other-upstream"]
	})
	e2e.WaitFor(t, "the shared snapshot imported", func() bool {
		_, ok := storedSnapshot(t, app, "/page")
		return ok
	})
	if rec, _ := storedSnapshot(t, app, "/page"); !app.store.Stale(rec) {
		t.Fatal("a snapshot imported into the fresh file (which missed purges) is not stale")
	}
	if v := e2e.Scrape(g.Gateway, `craftedge_cluster_gaps_total{reason="storage_replaced"}`); v != gaps+1 {
		t.Fatalf("storage_replaced gaps = %v, want %v", v, gaps+1)
	}
	// Health counts it with the node's gaps; it is recorded (the fresh
	// file takes the marks).
	if h := clusterHealth(g.Gateway); h.State != "ready" || h.Gaps != healthGaps+1 || h.PendingGap != "" {
		t.Fatalf("cluster health after the reload %+v: want ready, %d gaps, none pending", h, healthGaps+1)
	}
	// The job, delivered once on its first counted attempt.
	e2e.WaitFor(t, "the outbox job done on the fresh file", func() bool {
		st, err := po.Get(context.Background(), job.ID)
		return err == nil && st.State == cluster.OutboxDone
	})
	if st, _ := po.Get(context.Background(), job.ID); st.Attempts != 1 {
		t.Fatalf("job %+v: want 1 attempt counted", st)
	}
	if n := len(sim.WritesFor(vendorsim.KindProduct, "5")); n != 1 {
		t.Fatalf("vendor saw %d writes, want 1", n)
	}
	e2e.WaitFor(t, "the write accepted while damaged delivered", func() bool {
		return len(sim.WritesFor(vendorsim.KindProduct, "6")) == 1
	})
}

// mountTinyFS mounts a tmpfs of size at a new directory and unmounts it at
// cleanup (after the gateway using it stopped). It needs root: the test
// is skipped elsewhere.
func mountTinyFS(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("a full disk is a small tmpfs, which needs root to mount: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fillFS writes a file in dir until the file system is full; the returned
// func removes it.
func fillFS(t *testing.T, dir string) func() {
	t.Helper()
	name := filepath.Join(dir, "filler")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	_ = f.Close()
	return func() {
		if err := os.Remove(name); err != nil {
			t.Fatal(err)
		}
	}
}

// The disk is full when other nodes' record versions and a purge arrive:
// bbolt's commits fail. The node keeps serving (the file is not damaged),
// logs the failure naming the file, counts it, stores nothing of the
// versions (one transaction each), catches up again (memory tier off)
// rather than pass the purge, and applies it all, in order, once space is
// back.
func TestClusterFullDiskRetriesRecordVersions(t *testing.T) {
	dir := mountTinyFS(t, "8m")
	path := filepath.Join(dir, "craftedge.db")
	nats := e2e.StartNATS(t)
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	sim, url := e2e.StartVendorSim(t, 3)
	g := startVendorGatewayWith(t, sim, vendorOptions{baseURL: url, storage: path, caddyfile: func(o vendorOptions) string {
		return clusterVendorCaddyfile(o, nats.ClusterBlock("gw"), logPath, "")
	}})
	g.sync("s1", jobs.StateDone)
	app := currentApp.Load()
	e2e.WaitFor(t, "the records replicated", func() bool {
		h := clusterHealth(g.Gateway)
		return h != nil && h.State == "ready" && h.Data != nil && h.Data.Records != nil && h.Data.Records.Ready
	})
	var before []vendors.Record
	for i := 1; i <= 3; i++ {
		rec, err := app.records.Get("shop", "product", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, rec)
	}

	peer := startHostilePeer(t, nats.URL())
	ra := startPublisherReadModel(t, peer)

	free := fillFS(t, dir)
	big := strings.Repeat("a long description ", 16<<10) // ~300 KiB: new pages
	for _, rec := range before {
		ra.Publish(peerVersionTitled(t, rec, "from-peer", big))
	}
	if err := ra.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// And a purge whose marks (~600 KiB of tags) cannot be written.
	var tags []string
	for i := range 200 {
		tags = append(tags, fmt.Sprintf("big-%03d-%s", i, strings.Repeat("t", 3000)))
	}
	peer.Publish(cluster.Purge{Tags: tags, Source: "test"})
	e2e.WaitFor(t, "a version retried", func() bool { return clusterHealth(g.Gateway).Data.Records.Retries > 0 })
	e2e.WaitFor(t, "the purge not recorded: catching up", func() bool {
		h := clusterHealth(g.Gateway)
		return h.ApplyFailures > 0 && h.State == "catching_up" && !h.MemoryServes
	})
	if v := e2e.Scrape(g.Gateway, `craftedge_cluster_purges_applied_total{outcome="error"}`); v < 1 {
		t.Fatalf("purges applied with errors = %v", v)
	}
	e2e.WaitFor(t, "an error log line naming the file and the cause", func() bool {
		for _, l := range e2e.LogLines(t, logPath) {
			msg, _ := l["msg"].(string)
			cause, _ := l["error"].(string)
			if l["level"] == "error" && strings.Contains(msg, "could not be stored here") &&
				strings.Contains(cause, path) && strings.Contains(cause, "no space left on device") {
				return true
			}
		}
		return false
	})
	if sh := storageHealth(t, g.Gateway); sh.Damaged {
		t.Fatalf("a full disk is not damage: %+v", sh)
	}
	if h := clusterHealth(g.Gateway).Data.Records; h.Ready || h.ApplyErrors != 0 {
		t.Fatalf("records health while the disk is full %+v: want not ready, nothing refused", h)
	}
	if rec, err := app.records.Get("shop", "product", "1"); err != nil || rec.Version != before[0].Version {
		t.Fatalf("product 1 while the disk is full: %q (%v), want %q", rec.Version, err, before[0].Version)
	}
	e2e.WantStatus(t, g.Admin(http.MethodGet, "/craftedge/health", ""), http.StatusOK)

	free()
	e2e.WaitFor(t, "every version applied once space is back", func() bool {
		for _, rec := range before {
			r, err := app.records.Get(rec.Vendor, rec.Resource, rec.ID)
			if err != nil || r.Version != "from-peer" || r.Fields["title"] != big {
				return false
			}
		}
		return true
	})
	e2e.WaitFor(t, "the read model ready again", func() bool { return clusterHealth(g.Gateway).Data.Records.Ready })
	e2e.WaitFor(t, "the purge applied, the node ready", func() bool {
		h := clusterHealth(g.Gateway)
		return h.State == "ready" && h.MemoryServes && h.Lag != nil && *h.Lag == 0
	})
}

// The storage file is damaged (found on open) and NATS is away: a
// kill-switch change made here is in force at once and pending (in memory
// only: the file cannot keep it), and it reaches the cluster when NATS
// returns. Nothing crashes on the cursor or the pending changes the node
// keeps in that file.
func TestClusterKillSwitchPendingOnADamagedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "craftedge.db")
	populateStorage(t, path, 300)
	truncateStorage(t, path)
	nats := e2e.StartNATS(t)
	peer := startHostilePeer(t, nats.URL())
	nats.Stop()

	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{Storage: path, GlobalExtra: nats.ClusterBlock("gw"), HandlerExtra: damageFallback})
	if sh := storageHealth(t, g); !sh.Damaged {
		t.Fatalf("storage health %+v: want damaged", sh)
	}
	r := g.Admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":true,"upstream":"craft"}`)
	e2e.WantStatus(t, r, http.StatusOK)
	ks := e2e.DecodeJSON[KillSwitchStatus](t, r)
	if !ks.Overrides["craft"] || !ks.ClusterPending["craft"] {
		t.Fatalf("kill switch %+v, want craft on and pending", ks)
	}

	nats.Start()
	e2e.WaitFor(t, "the pending change in the cluster", func() bool { return peer.SnapshotOnlyOverrides()["craft"] })
	e2e.WaitFor(t, "nothing pending", func() bool {
		return len(e2e.AdminJSON[Health](g, "/craftedge/health").KillSwitch.ClusterPending) == 0
	})
	if !e2e.AdminJSON[Health](g, "/craftedge/health").KillSwitch.Overrides["craft"] {
		t.Fatal("the override was lost when the cluster's set arrived")
	}
	waitClusterReadyHere(t, g)
}

// The records bucket's pages are damaged (the check on open is off) and
// the first thing to walk into them is an outbox job of the cluster:
// recording the vendor's answer makes bbolt panic. The node marks the file
// damaged (moved aside, named in an error log line, health) as it does
// everywhere else, and gives the job back: the attempt is not counted,
// so a damaged node does not use up the cluster's attempts.
func TestClusterOutboxPanicOnADamagedFileGivesTheJobBack(t *testing.T) {
	sim, url, path := syncedThenDamagedRecords(t, nil)

	nats := e2e.StartNATS(t)
	peer := startHostilePeer(t, nats.URL())
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	g := startVendorGatewayWith(t, sim, vendorOptions{baseURL: url, storage: path, caddyfile: func(o vendorOptions) string {
		return clusterVendorCaddyfile(o, nats.ClusterBlock("gw"), logPath, "storage_check_max_size off\n\t\twarm_start off")
	}})
	waitClusterReadyHere(t, g.Gateway)
	if sh := storageHealth(t, g.Gateway); sh.Damaged {
		t.Fatalf("the damage found before the outbox job ran: %+v", sh)
	}

	po, err := cluster.NewOutbox(peer, cluster.OutboxConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer po.Close()
	e2e.WaitFor(t, "the peer's outbox", po.Ready)
	payload := `{"vendor":"shop","resource":"product","id":"5","body":{"sku":"SKU-5","title":{"en":"Written into damage"},"price":{"amount":5,"currency":"EUR"},"stock":5}}`
	job, _, err := po.Accept(context.Background(), cluster.OutboxRequest{Kind: jobKindOutbox, Key: "panic-1",
		Entity: "shop/product/5", Payload: []byte(payload)})
	if err != nil {
		t.Fatal(err)
	}
	e2e.WaitFor(t, "the damage found by the outbox job", func() bool { return storageHealth(t, g.Gateway).Damaged })
	wantDamagedLogged(t, logPath, path)
	e2e.WaitFor(t, "the job given back", func() bool { return clusterHealth(g.Gateway).Data.Outbox.GivenBack > 0 })
	st, err := po.Get(context.Background(), job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Attempts != 0 || st.State != cluster.OutboxReady || !strings.Contains(st.LastError, "given back by gw") {
		t.Fatalf("job %+v: want ready, given back, no attempt counted", st)
	}
	if h := clusterHealth(g.Gateway).Data.Outbox; h.Retried != 0 || h.Dead != 0 {
		t.Fatalf("outbox health %+v: want no attempt retried or dead", h)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the damaged file is still at %s: %v", path, err)
	}
}

// A vendor.sync job of a cluster node runs under its lease, in a
// goroutine of the lease's own (cluster.Node.TryLead), not the queue
// worker's: the records bucket's pages are damaged and the sync walks
// into them. bbolt's panic there must still mark the file damaged (as a
// local job's does, TestStorageJobPanicOnADamagedFileMarksIt), not kill
// the process from a goroutine nothing recovers in.
func TestClusterLeasedJobPanicOnADamagedFileMarksIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "craftedge.db")
	sim, url := e2e.StartVendorSim(t, 300) // enough records for pages of their own
	e := startVendorGatewayWith(t, sim, vendorOptions{baseURL: url, storage: path})
	e.sync("s1", jobs.StateDone)
	e2e.StopGateway(t)
	damageBucketLeaves(t, path, "records")

	nats := e2e.StartNATS(t)
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	g := startVendorGatewayWith(t, sim, vendorOptions{baseURL: url, storage: path, caddyfile: func(o vendorOptions) string {
		return clusterVendorCaddyfile(o, nats.ClusterBlock("gw"), logPath, "storage_check_max_size off\n\t\twarm_start off")
	}})
	waitClusterReadyHere(t, g.Gateway)
	if sh := storageHealth(t, g.Gateway); sh.Damaged {
		t.Fatalf("the damage found before the sync job ran: %+v", sh)
	}
	if _, err := sim.Update(vendorsim.KindProduct, "5", func(f map[string]any) { f["title"] = map[string]any{"en": "Changed on the vendor"} }); err != nil {
		t.Fatal(err)
	}
	app := currentApp.Load()
	if _, _, err := app.jobs.Enqueue(context.Background(), jobs.EnqueueRequest{
		Kind: jobKindVendorSync, Key: "s2", Payload: []byte(`{"vendor":"shop","resource":"product"}`),
	}); err != nil {
		t.Fatal(err)
	}
	e2e.WaitFor(t, "the damage found by the leased sync job", func() bool { return storageHealth(t, g.Gateway).Damaged })
	wantDamagedLogged(t, logPath, path)
	logged, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(logged), "job handler panicked") {
		t.Fatal("bbolt's panic was logged as the job handler's own")
	}
}
