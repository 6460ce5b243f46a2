package caddymodule

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// The disk is full when a page is taken down while the warm start runs:
// the purge's marks cannot be written to the bbolt file (the purge answers
// an error, the memory tier is purged). A request for the page before the
// refill reaches it must not put its snapshot back in the memory tier
// (RefillOnMiss) and serve it as a hit: the purge holds in this process
// whether or not its marks reached the disk.
func TestWarmStartRefillOnMissAfterPurgeOnAFullDisk(t *testing.T) {
	dir := mountTinyFS(t, "8m")
	path := filepath.Join(dir, "craftedge.db")
	o := e2e.NewOrigin(t)
	for _, p := range []string{"/a", "/held"} {
		o.Handle(p, e2e.PageHandler("page "+p, "entry:"+p[1:]))
	}
	g := e2e.StartGateway(t, o, e2e.Options{Storage: path})
	for _, p := range []string{"/a", "/held"} { // /held the newest
		e2e.WantCacheStatus(t, g.Get(p), "craftedge; fwd=miss; stored")
		e2e.Advance(time.Second)
	}
	g.FlushSnapshots()

	reached, release := make(chan string, 8), make(chan struct{})
	warmStartHook = func(key string) {
		reached <- key
		<-release
	}
	t.Cleanup(func() { warmStartHook = nil })
	defer close(release)
	g.Restart(e2e.Options{Storage: path})
	if k := <-reached; k != "http://"+e2e.SiteHost+"/held" {
		t.Fatalf("refill began with %q, want the newest, /held", k)
	}
	app := currentApp.Load()
	unpin := pinFreePages(t, app.store.DB(), path)
	defer unpin()
	free := fillFS(t, dir)
	defer free()

	e2e.Advance(time.Second)
	r := g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["entry:a"],"mode":"hard"}`)
	t.Logf("purge on a full disk: %d %s", r.Status, r.Body)
	got := g.Get("/a")
	if cs := got.Header.Get("Cache-Status"); cs == "craftedge; hit" || o.Count("/a") != 2 {
		t.Fatalf("/a after its purge (marks not written: full disk): Cache-Status %q, origin called %d times, want a miss fetched again (2)", cs, o.Count("/a"))
	}
}
