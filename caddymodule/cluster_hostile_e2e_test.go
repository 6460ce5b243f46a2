package caddymodule

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/cluster"
	"github.com/craftedge/craftedge/internal/natstest"
	"github.com/craftedge/craftedge/pagecache"
	"github.com/craftedge/craftedge/snapshot"
	"github.com/craftedge/craftedge/vendors"
)

// Hostile or malformed data on the cluster's streams and buckets, as a
// bug on one node or leaked credentials would put there, against the real
// gateway on a real NATS server: the gateway applies nothing it would not
// have stored itself, and pins nothing forever.

// startHostilePeer starts another node of the cluster on url.
func startHostilePeer(t *testing.T, url string) *cluster.Node {
	t.Helper()
	n, err := cluster.Start(cluster.Config{NodeName: "mallory", URLs: []string{url}, ReconnectWait: 20 * time.Millisecond},
		cluster.Handlers{}, cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	e2e.WaitFor(t, "the peer ready", func() bool { return n.State() == cluster.StateReady })
	return n
}

// startPublisherReadModel starts a read model on n that only publishes
// (it applies nothing), ready, closed at cleanup.
func startPublisherReadModel(t *testing.T, n *cluster.Node) *cluster.ReadModel {
	t.Helper()
	rm, err := cluster.NewReadModel(n, func(cluster.RecordVersion) error { return nil }, cluster.ReadModelConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rm.Close)
	e2e.WaitFor(t, n.Name()+"'s read model ready", rm.Ready)
	return rm
}

// startAppReadModel starts app's read model on n (as cluster mode does),
// stopped at cleanup.
func startAppReadModel(t *testing.T, app *App, n *cluster.Node) *cluster.ReadModel {
	t.Helper()
	rm, err := app.startReadModel(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		app.records.OnChange(nil)
		rm.Close()
	})
	return rm
}

// storedSnapshot returns the copy app's store holds for the page at path.
func storedSnapshot(t *testing.T, app *App, path string) (snapshot.Record, bool) {
	t.Helper()
	var found snapshot.Record
	ok := false
	if err := app.store.Newest(func(r snapshot.Record) bool {
		if strings.HasSuffix(pagecache.PathKeyOf(r.Key), path) {
			found, ok = r, true
			return false
		}
		return true
	}, nil); err != nil {
		t.Fatal(err)
	}
	return found, ok
}

// Shared snapshots this node would never have stored (a Set-Cookie, in
// any case; private; a 500; a response split across headers; dated in the
// future; not an entry) are refused, counted and never served; a copy
// published without its tags gets them back, so purges still cover it.
func TestClusterHostileSharedSnapshotsRefused(t *testing.T) {
	nats := e2e.StartNATS(t)
	o := e2e.NewOrigin(t)
	o.Handle("/probe", e2e.PageHandler("probe", "post-1"))
	opts := e2e.Options{GlobalExtra: nats.ClusterBlock("gw"), HandlerExtra: damageFallback}
	g := e2e.StartGateway(t, o, opts)
	waitClusterReadyHere(t, g)
	// Its own import (of an empty stream) done before the hostile copies
	// are there: the node that joins later is the one importing them.
	e2e.WaitFor(t, "the first import done", func() bool {
		h := clusterHealth(g)
		return h.Data != nil && h.Data.Snapshots != nil && h.Data.Snapshots.ImportDone
	})
	e2e.WantCacheStatus(t, g.Get("/probe"), "craftedge; fwd=miss; stored")

	peer := startHostilePeer(t, nats.URL())
	ss, err := cluster.NewSharedSnapshots(peer, cluster.SharedSnapshotsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	e2e.WaitFor(t, "the peer's shared snapshots", ss.Ready)
	var probe cluster.SharedSnapshot
	e2e.WaitFor(t, "the gateway's copy of /probe shared", func() bool {
		_ = ss.Each(context.Background(), func(sn cluster.SharedSnapshot) bool {
			if strings.HasSuffix(pagecache.PathKeyOf(sn.Key), "/probe") {
				probe = sn
			}
			return true
		})
		return probe.Key != ""
	})
	var entry pagecache.Entry
	if err := entry.Decode(probe.Value); err != nil {
		t.Fatal(err)
	}
	variant := func(path string, edit func(*pagecache.Entry, *cluster.SharedSnapshot)) {
		e := entry
		e.Header = slices.Clone(entry.Header)
		sh := cluster.SharedSnapshot{Key: strings.Replace(probe.Key, "/probe", path, 1), StoredAt: probe.StoredAt}
		edit(&e, &sh)
		if sh.Value == nil {
			sh.Value = e.Encode()
		}
		if !ss.Put(sh) {
			t.Fatalf("put %s refused", path)
		}
	}
	// No tags (the entry's and the key's are added) and fresh for ten
	// years: imported stale, so the warm start never refills it as fresh.
	variant("/h-good", func(e *pagecache.Entry, _ *cluster.SharedSnapshot) { e.FreshFor = 10 * 365 * 24 * time.Hour })
	variant("/h-cookie", func(e *pagecache.Entry, _ *cluster.SharedSnapshot) {
		e.Header = append(e.Header, pagecache.HeaderField{Name: "Set-Cookie", Value: "session=mallory"})
	})
	variant("/h-lower-cookie", func(e *pagecache.Entry, _ *cluster.SharedSnapshot) {
		e.Header = append(e.Header, pagecache.HeaderField{Name: "set-cookie", Value: "session=mallory"})
	})
	variant("/h-private", func(e *pagecache.Entry, _ *cluster.SharedSnapshot) {
		e.Header = append(e.Header, pagecache.HeaderField{Name: "cache-control", Value: "private, max-age=600"})
	})
	variant("/h-error", func(e *pagecache.Entry, _ *cluster.SharedSnapshot) { e.Status = http.StatusInternalServerError })
	variant("/h-split", func(e *pagecache.Entry, _ *cluster.SharedSnapshot) {
		e.Header = append(e.Header, pagecache.HeaderField{Name: "X-Note", Value: "a\r\nSet-Cookie: session=mallory"})
	})
	variant("/h-future", func(_ *pagecache.Entry, sh *cluster.SharedSnapshot) { sh.StoredAt = time.Now().AddDate(10, 0, 0) })
	variant("/h-future-entry", func(e *pagecache.Entry, _ *cluster.SharedSnapshot) { e.StoredAt = time.Now().AddDate(10, 0, 0) })
	variant("/h-garbage", func(_ *pagecache.Entry, sh *cluster.SharedSnapshot) { sh.Value = []byte("\x02 not an entry") })
	const refused = 8
	if err := ss.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	// A node that joins (a changed cluster block makes a new node, which
	// imports the stream).
	opts.Storage = g.Storage
	opts.GlobalExtra = nats.ClusterBlock("gw2")
	g.Reload(opts)
	app := currentApp.Load()
	e2e.WaitFor(t, "the import done", func() bool {
		h := clusterHealth(g)
		return h != nil && h.Data != nil && h.Data.Snapshots != nil && h.Data.Snapshots.ImportDone
	})
	sh := clusterHealth(g).Data.Snapshots
	if sh.Refused != refused || sh.Imported != 1 {
		t.Fatalf("snapshots health %+v: want %d refused, 1 imported (/h-good)", sh, refused)
	}
	if v := e2e.Scrape(g, `craftedge_cluster_data_applied_total{outcome="refused",part="snapshots"}`); v < refused {
		t.Fatalf("refused snapshots metric = %v", v)
	}
	rec, ok := storedSnapshot(t, app, "/h-good")
	if !ok {
		t.Fatal("/h-good not imported")
	}
	for _, tag := range []string{"post-1", pagecache.URLTag(pagecache.PathKeyOf(rec.Key)), pagecache.HostTag(pagecache.HostOf(rec.Key))} {
		if !slices.Contains(rec.Tags, tag) {
			t.Fatalf("imported tags %v lack %q", rec.Tags, tag)
		}
	}

	var imported pagecache.Entry
	if err := imported.Decode(rec.Value); err != nil || imported.Fresh(time.Now()) {
		t.Fatalf("/h-good imported fresh (%v, fresh for %s): another node's word on freshness is not taken", err, imported.FreshFor)
	}

	o.Stop()
	if r := g.Get("/h-good"); r.Status != http.StatusOK || !strings.Contains(r.Body, "probe") {
		t.Fatalf("/h-good with the origin down: %d %.80q", r.Status, r.Body)
	}
	for _, p := range []string{"/h-cookie", "/h-lower-cookie", "/h-private", "/h-error", "/h-split", "/h-future", "/h-future-entry", "/h-garbage"} {
		r := g.Get(p)
		if r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Body, "Back soon") || r.Header.Get("Set-Cookie") != "" {
			t.Fatalf("%s with the origin down: %d %v %.80q: want the fallback", p, r.Status, r.Header, r.Body)
		}
	}
}

// waitClusterReadyHere waits for the gateway's node to be ready.
func waitClusterReadyHere(t *testing.T, g *e2e.Gateway) {
	t.Helper()
	e2e.WaitFor(t, "the gateway's node ready", func() bool {
		h := clusterHealth(g)
		return h != nil && h.State == "ready"
	})
}

func clusterHealth(g *e2e.Gateway) *ClusterHealth {
	g.T.Helper()
	return e2e.AdminJSON[Health](g, "/craftedge/health").Cluster
}

// publishRawPurge publishes data on the purge stream as another writer
// would, bypassing the tier.
func publishRawPurge(t *testing.T, url, data string) {
	t.Helper()
	js := natstest.JetStream(t, url)
	msg := nats.NewMsg(cluster.DefaultNamespace + ".purges")
	msg.Header.Set("Craftedge-Node", "mallory")
	msg.Data = []byte(data)
	if _, err := js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
}

// Purges no node makes: a tag "*" is a tag (not everything), an empty tag
// is refused, a purge dated ten years ahead marks with this node's time
// (else every copy stored in the next ten years would be stale at once),
// a purge without a time marks with this node's time (else it would mark
// nothing).
func TestClusterHostilePurges(t *testing.T) {
	nats := e2e.StartNATS(t)
	o := e2e.NewOrigin(t)
	o.Handle("/a", e2e.PageHandler("a", "post-1"))
	o.Handle("/b", e2e.PageHandler("b", "post-2"))
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: nats.ClusterBlock("gw")})
	waitClusterReadyHere(t, g)
	app := currentApp.Load()
	peer := startHostilePeer(t, nats.URL())
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; fwd=miss; stored")
	e2e.WantCacheStatus(t, g.Get("/b"), "craftedge; fwd=miss; stored")
	g.FlushSnapshots()
	applied := func() uint64 { return clusterHealth(g).Applied }

	refused := e2e.Scrape(g, `craftedge_cluster_purges_applied_total{outcome="refused"}`)
	peer.Publish(cluster.Purge{Tags: []string{"*"}})
	peer.Publish(cluster.Purge{Tags: []string{""}})
	e2e.WaitFor(t, "two purges handed over", func() bool { return applied() == 2 })
	e2e.WaitFor(t, "the cursor past them", func() bool { h := clusterHealth(g); return h.Lag != nil && *h.Lag == 0 })
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; hit")
	e2e.WantCacheStatus(t, g.Get("/b"), "craftedge; hit")
	if v := e2e.Scrape(g, `craftedge_cluster_purges_applied_total{outcome="refused"}`); v != refused+1 {
		t.Fatalf("refused purges = %v, want %v", v, refused+1)
	}

	// Without a time: /b's copy (stored before) is stale.
	publishRawPurge(t, nats.URL(), `{"tags":["post-2"]}`)
	e2e.WaitFor(t, "the purge without a time applied", func() bool { return applied() == 3 })
	e2e.WaitFor(t, "the cursor past it", func() bool { h := clusterHealth(g); return h.Lag != nil && *h.Lag == 0 })
	if rec, ok := storedSnapshot(t, app, "/b"); !ok || !app.store.Stale(rec) {
		t.Fatalf("/b's snapshot (found %v) not stale after a purge of its tag without a time", ok)
	}

	// From the future: the page fetched again after it is not stale.
	peer.Publish(cluster.Purge{All: true, At: time.Now().AddDate(10, 0, 0)})
	e2e.WaitFor(t, "the purge from the future applied", func() bool { return applied() == 4 })
	e2e.WaitFor(t, "the cursor past it", func() bool { h := clusterHealth(g); return h.Lag != nil && *h.Lag == 0 })
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; fwd=miss; stored")
	g.FlushSnapshots()
	rec, ok := storedSnapshot(t, app, "/a")
	if !ok || rec.StoredAt.Before(time.Now().Add(-time.Minute)) {
		t.Fatalf("/a's new snapshot: %v %+v", ok, rec.StoredAt)
	}
	if app.store.Stale(rec) {
		t.Fatal("a copy stored after a purge dated ten years ahead is stale: the purge pinned every copy")
	}
}

// Record versions this node would not store: data of another record than
// its key names, a vendor not configured here, an updated_at ten years
// ahead (it would refuse every later version, here and in the bucket).
// Each is refused and counted; the records they name are unchanged; good
// versions after them are applied.
func TestClusterHostileRecordVersions(t *testing.T) {
	e2e.ResetClock()
	e := startVendorGateway(t, 3, vendorOptions{})
	e.sync("s1", "done")
	app := currentApp.Load()
	a, b := startClusterNodes(t)
	t.Cleanup(func() { _ = b.Close(); _ = a.Close() }) // after the read models (cleanups run last first)
	rm := startAppReadModel(t, app, b)
	ra := startPublisherReadModel(t, a)
	e2e.WaitFor(t, "this node's read model ready", rm.Ready)
	r1, err := app.records.Get("shop", "product", "1")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := app.records.Get("shop", "product", "2")
	if err != nil {
		t.Fatal(err)
	}
	publish := func(key vendors.Record, data vendors.Record) {
		raw, err := json.Marshal(data)
		if err != nil {
			t.Fatal(err)
		}
		ra.Publish(cluster.RecordVersion{Vendor: key.Vendor, Resource: key.Resource, ID: key.ID, Version: key.Version,
			UpdatedAt: key.UpdatedAt, Deleted: key.Deleted, Data: raw})
		// One at a time: a record's next version would replace this one
		// while it waits to be published.
		if err := ra.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// Product 1's key, product 2's data (a newer version of it).
	evil := r2
	evil.Version, evil.UpdatedAt = "evil", r2.UpdatedAt.Add(time.Hour)
	evil.Fields = map[string]any{"title": "Evil"}
	key1 := r1
	key1.Version, key1.UpdatedAt = evil.Version, evil.UpdatedAt
	publish(key1, evil)
	// A vendor this node does not have.
	other := r1
	other.Vendor, other.Version = "mallory", "x"
	publish(other, other)
	// Ten years ahead.
	future := r1
	future.Version, future.UpdatedAt = "future", time.Now().AddDate(10, 0, 0)
	publish(future, future)
	// A good version of product 3, last.
	r3, err := app.records.Get("shop", "product", "3")
	if err != nil {
		t.Fatal(err)
	}
	good := r3
	good.Version, good.UpdatedAt = "good", r3.UpdatedAt.Add(time.Hour)
	publish(good, good)

	e2e.WaitFor(t, "the good version applied", func() bool {
		r, err := app.records.Get("shop", "product", "3")
		return err == nil && r.Version == "good"
	})
	e2e.WaitFor(t, "3 versions refused, 1 applied", func() bool {
		st := rm.Stats()
		return st.ApplyErrors == 3 && st.Applied == 1
	})
	for id, want := range map[string]string{"1": r1.Version, "2": r2.Version} {
		if r, err := app.records.Get("shop", "product", id); err != nil || r.Version != want {
			t.Fatalf("product %s: version %q (%v), want %q unchanged", id, r.Version, err, want)
		}
	}
	if _, err := app.records.Get("mallory", "product", "1"); err == nil {
		t.Fatal("a record of an unconfigured vendor was stored")
	}
	// A later version of product 1 at a normal time still applies: the
	// one ten years ahead (still in the bucket) pinned nothing.
	later := r1
	later.Version, later.UpdatedAt = "later", r1.UpdatedAt.Add(2*time.Hour)
	publish(later, later)
	e2e.WaitFor(t, "product 1's later version applied", func() bool {
		r, err := app.records.Get("shop", "product", "1")
		return err == nil && r.Version == "later"
	})
}
