package caddymodule

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
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
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(context.Background(), "craftedge_purges"); err != nil {
		t.Fatal(err)
	}
}
