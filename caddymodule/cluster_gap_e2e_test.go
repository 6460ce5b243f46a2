package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/cluster"
	"github.com/craftedge/craftedge/internal/natstest"
	"github.com/craftedge/craftedge/pagecache"
)

// pinFreePages leaves db with no free page to reuse, so the next commit
// needs new pages at the end of the file (which a full disk refuses): bbolt
// reuses the pages earlier commits freed, so a small commit on a full
// disk only fails once those are used up. It uses them up with a scratch
// bucket, then holds a read transaction, as a hot backup would, which
// keeps the pages freed since from being reused. The returned func ends
// the read transaction.
func pinFreePages(t *testing.T, db *bolt.DB, path string) func() {
	t.Helper()
	pageSize := db.Info().PageSize
	value := make([]byte, pageSize/2)
	for round := range 20 {
		var wrote uint64
		if err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("test-scratch"))
			if err != nil {
				return err
			}
			st := db.Stats()
			for i := range 2 * (st.FreePageN + st.PendingPageN + 64) {
				if err := b.Put(fmt.Appendf(nil, "%03d-%06d", round, i), value); err != nil {
					return err
				}
			}
			wrote = uint64(tx.ID())
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		reader, err := db.Begin(false)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		// No other commit came between; none of the pages is free; the
		// file (its memory map) has room for the next commits' new pages
		// without being mapped again, which would wait for the reader.
		if uint64(reader.ID()) == wrote && db.Stats().FreePageN == 0 && fi.Size()-reader.Size() >= int64(256*pageSize) {
			return func() { _ = reader.Rollback() }
		}
		_ = reader.Rollback()
	}
	t.Fatal("could not leave the file without free pages")
	return nil
}

// The disk is full when the node finds a gap (the purge stream was
// deleted and created again): the marks that make every snapshot stale
// cannot be written. The node does not pass the gap: it stays catching up
// (memory tier off), says so in health (pending_gap, gap_failures) and in
// an error log line naming the file, counts the gap once, and records it
// once space is back: the snapshot stored before the gap is then stale
// and the node ready.
func TestClusterFullDiskGapRetried(t *testing.T) {
	dir := mountTinyFS(t, "8m")
	path := filepath.Join(dir, "craftedge.db")
	nats := e2e.StartNATS(t)
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	o := e2e.NewOrigin(t)
	o.Handle("/a", e2e.PageHandler("a", "post-1"))
	o.Handle("/b", e2e.PageHandler("b", "post-2"))
	g := e2e.StartConfig(t, o, withLogFile(e2e.CaddyfileFor(o, e2e.Options{Storage: path, GlobalExtra: nats.ClusterBlock("gw")}), logPath), path)
	app := currentApp.Load()
	waitClusterReadyHere(t, g)
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; fwd=miss; stored")
	e2e.WaitFor(t, "the snapshot of /a written", func() bool {
		_, ok := storedSnapshot(t, app, "/a")
		return ok
	})
	if rec, _ := storedSnapshot(t, app, "/a"); app.store.Stale(rec) {
		t.Fatal("the snapshot of /a is stale before any gap")
	}
	before := clusterHealth(g)
	gapsMetric := e2e.Scrape(g, `craftedge_cluster_gaps_total{reason="stream_recreated"}`)

	release := pinFreePages(t, app.store.DB(), path)
	defer release()
	free := fillFS(t, dir)
	deletePurgeStream(t, nats.URL())

	e2e.WaitFor(t, "the gap not recorded, pending", func() bool {
		h := clusterHealth(g)
		return h.PendingGap == "stream_recreated" && h.GapFailures >= 2
	})
	h := clusterHealth(g)
	if h.State != "catching_up" || h.MemoryServes || h.Gaps != before.Gaps+1 {
		t.Fatalf("cluster health while the gap is not recorded %+v (before: %d gaps)", h, before.Gaps)
	}
	e2e.WaitFor(t, "an error log line naming the file and the cause", func() bool {
		for _, l := range e2e.LogLines(t, logPath) {
			msg, _ := l["msg"].(string)
			cause, _ := l["error"].(string)
			if l["level"] == "error" && strings.Contains(msg, "cluster gap: marking snapshots stale failed") &&
				l["storage"] == path && strings.Contains(cause, "no space left on device") {
				return true
			}
		}
		return false
	})
	// The memory tier does not serve meanwhile.
	e2e.WantCacheStatus(t, g.Get("/b"), "craftedge; fwd=miss; stored")
	e2e.WantCacheStatus(t, g.Get("/b"), "craftedge; fwd=miss; stored")

	release()
	free()
	e2e.WaitFor(t, "the gap recorded, the node ready", func() bool {
		h := clusterHealth(g)
		return h.PendingGap == "" && h.State == "ready" && h.MemoryServes
	})
	rec, ok := storedSnapshot(t, app, "/a")
	if !ok {
		t.Fatal("no snapshot of /a")
	}
	if !app.store.Stale(rec) {
		t.Fatalf("the snapshot of /a stored before the gap (at %s) is not stale", rec.StoredAt)
	}
	if h := clusterHealth(g); h.Gaps != before.Gaps+1 {
		t.Fatalf("gaps %d, want %d (one gap, however often retried)", h.Gaps, before.Gaps+1)
	}
	if v := e2e.Scrape(g, `craftedge_cluster_gaps_total{reason="stream_recreated"}`); v != gapsMetric+1 {
		t.Fatalf("stream_recreated gaps = %v, want %v", v, gapsMetric+1)
	}
}

// deletePurgeStream deletes the cluster's purge stream, as an operator's
// mistake or NATS losing its storage would: the nodes find a stream their
// cursor does not refer to (a gap).
func deletePurgeStream(t *testing.T, url string) {
	t.Helper()
	if err := natstest.JetStream(t, url).DeleteStream(context.Background(), "craftedge_purges"); err != nil {
		t.Fatal(err)
	}
}

// The disk is full when the node imports the cluster's shared snapshots
// (it joins while other nodes' copies wait in the stream): the import
// stops short. Health says so (import_done false, import_failures,
// import_error with the cause), and the import runs again by itself, with
// no reload, once space is back: every copy is imported, stale.
func TestClusterFullDiskSnapshotImportRetried(t *testing.T) {
	dir := mountTinyFS(t, "8m")
	path := filepath.Join(dir, "craftedge.db")
	nats := e2e.StartNATS(t)
	peer := startHostilePeer(t, nats.URL())
	ss, err := cluster.NewSharedSnapshots(peer, cluster.SharedSnapshotsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	e2e.WaitFor(t, "the peer's shared snapshots", ss.Ready)
	body := []byte(strings.Repeat("<p>a long page from the peer</p>", 10<<10)) // ~320 KiB: new pages
	for i := range 3 {
		page := pagecache.Entry{Status: http.StatusOK, StoredAt: time.Now().Add(-time.Minute), FreshFor: time.Hour,
			Header: []pagecache.HeaderField{{Name: "Content-Type", Value: "text/html"}}, Body: body, Tags: []string{"post-9"}}
		if !ss.Put(cluster.SharedSnapshot{Key: fmt.Sprintf("https://peer.example/page-%d", i), StoredAt: page.StoredAt, Value: page.Encode()}) {
			t.Fatal("shared snapshot refused")
		}
	}
	if err := ss.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	// The node starts without NATS; the disk fills before it connects.
	nats.Stop()
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	o := e2e.NewOrigin(t)
	g := e2e.StartConfig(t, o, withLogFile(e2e.CaddyfileFor(o, e2e.Options{Storage: path, GlobalExtra: nats.ClusterBlock("gw")}), logPath), path)
	app := currentApp.Load()
	free := fillFS(t, dir)
	nats.Start()

	importHealth := func() ClusterSnapshotsHealth {
		h := clusterHealth(g)
		if h == nil || h.Data == nil || h.Data.Snapshots == nil {
			t.Fatalf("no shared snapshots in health: %+v", h)
		}
		return *h.Data.Snapshots
	}
	e2e.WaitFor(t, "the import failed twice", func() bool { return importHealth().ImportFailures >= 2 })
	if h := importHealth(); h.ImportDone || !strings.Contains(h.ImportError, "no space left on device") {
		t.Fatalf("shared snapshots health while the disk is full %+v", h)
	}
	if sh := storageHealth(t, g); sh.Damaged {
		t.Fatalf("a full disk is not damage: %+v", sh)
	}

	free()
	e2e.WaitFor(t, "the import done once space is back", func() bool { return importHealth().ImportDone })
	if h := importHealth(); h.ImportError != "" || h.Refused != 0 {
		t.Fatalf("shared snapshots health after the import %+v", h)
	}
	for i := range 3 {
		rec, ok := storedSnapshot(t, app, fmt.Sprintf("/page-%d", i))
		if !ok {
			t.Fatalf("page-%d not imported", i)
		}
		if !app.store.Stale(rec) {
			t.Fatalf("page-%d imported fresh", i)
		}
	}
}

// A storage_replaced gap whose marks cannot be written (the node, kept by
// a reload, runs on another file, and that file's disk is full): the app
// retries it until they are, and health says so meanwhile. The reload
// itself is TestClusterDamagedFileWhileApplyingRecords's; here the gap is
// handed to the app's retry as adoptStore hands it, on a full disk.
func TestClusterFullDiskStorageReplacedGapRetried(t *testing.T) {
	dir := mountTinyFS(t, "8m")
	path := filepath.Join(dir, "craftedge.db")
	nats := e2e.StartNATS(t)
	o := e2e.NewOrigin(t)
	o.Handle("/a", e2e.PageHandler("a", "post-1"))
	g := e2e.StartGateway(t, o, e2e.Options{Storage: path, GlobalExtra: nats.ClusterBlock("gw")})
	app := currentApp.Load()
	waitClusterReadyHere(t, g)
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; fwd=miss; stored")
	e2e.WaitFor(t, "the snapshot of /a written", func() bool {
		_, ok := storedSnapshot(t, app, "/a")
		return ok
	})

	release := pinFreePages(t, app.store.DB(), path)
	defer release()
	free := fillFS(t, dir)
	c := app.cluster
	at := nowFunc()
	if err := app.store.MarkPurgedAll(at); err == nil {
		t.Fatal("marking on the full disk succeeded: the test does not fill it")
	}
	c.storageGap.Store(&storageGap{store: app.store, at: at})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		app.retryStorageGap(ctx, c)
	}()
	e2e.WaitFor(t, "the storage_replaced gap pending, retried", func() bool {
		h := clusterHealth(g)
		return h.PendingGap == gapStorageReplaced && h.GapFailures >= 2
	})
	if h := clusterHealth(g); h.State != "ready" || !h.MemoryServes {
		t.Fatalf("cluster health %+v: the memory tier, which saw every purge, keeps serving", h)
	}

	release()
	free()
	<-done
	if h := clusterHealth(g); h.PendingGap != "" {
		t.Fatalf("cluster health once recorded %+v", h)
	}
	if rec, _ := storedSnapshot(t, app, "/a"); !app.store.Stale(rec) {
		t.Fatal("the snapshot of /a stored before the gap is not stale")
	}
}
