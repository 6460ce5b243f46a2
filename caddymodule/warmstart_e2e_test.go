package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// warmHealth reads the warm start's part of /craftedge/health.
func warmHealth(t *testing.T, g *e2e.Gateway) WarmStartHealth {
	t.Helper()
	var h struct {
		WarmStart WarmStartHealth `json:"warm_start"`
	}
	r := g.Admin(http.MethodGet, "/craftedge/health", "")
	e2e.WantStatus(t, r, http.StatusOK)
	if err := json.Unmarshal([]byte(r.Body), &h); err != nil {
		t.Fatalf("health: %v", err)
	}
	return h.WarmStart
}

func waitWarmDone(t *testing.T, g *e2e.Gateway) WarmStartHealth {
	t.Helper()
	var w WarmStartHealth
	e2e.WaitFor(t, "the warm start to finish", func() bool {
		w = warmHealth(t, g)
		return w.State == "done"
	})
	return w
}

// startLogged loads the gateway's config again on the same bbolt file,
// with Caddy's logs in logPath.
func startLogged(t *testing.T, g *e2e.Gateway, opts e2e.Options, logPath string) {
	t.Helper()
	opts.Storage = g.Storage
	g.Tester.InitServer(withLogFile(e2e.CaddyfileFor(g.Origin, opts), logPath), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
}

// After a restart the memory tier is refilled from the snapshots: the
// first request for a page is a hit, without calling the origin; a page
// purged before the restart is not refilled; a page whose copy expired
// before the restart is stale, not fresh; a damaged record is skipped
// with a log line.
func TestWarmStartRefillsMemoryTier(t *testing.T) {
	o := e2e.NewOrigin(t)
	for _, p := range []struct{ path, tag string }{
		{"/old", "entry:0"}, {"/a", "entry:1"}, {"/b", "entry:2"}, {"/c", "entry:3"},
	} {
		o.Handle(p.path, e2e.PageHandler("page "+p.path, p.tag))
	}
	g := e2e.StartGateway(t, o, e2e.Options{})
	e2e.WantCacheStatus(t, g.Get("/old"), "craftedge; fwd=miss; stored")
	e2e.Advance(2 * time.Minute) // /old is past its 1m ttl from now on
	for _, p := range []string{"/a", "/b", "/c"} {
		e2e.WantCacheStatus(t, g.Get(p), "craftedge; fwd=miss; stored")
	}
	g.FlushSnapshots()
	e2e.Advance(time.Second)
	e2e.WantStatus(t, g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["entry:2"]}`), http.StatusOK)

	// Stop, damage /c's record in the file, start again.
	e2e.StopGateway(t)
	cKey := "http://" + e2e.SiteHost + "/c"
	damageSnapshot(t, g.Storage, cKey)
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	startLogged(t, g, e2e.Options{}, logPath)

	w := waitWarmDone(t, g)
	if w.Refilled != 2 || w.SkippedPurged != 1 || w.SkippedDamaged != 1 {
		t.Fatalf("warm start %+v: want /a and /old refilled, /b skipped as purged, /c as damaged", w)
	}
	wantRefilledHit(t, g, o, "/a")
	// Purged before the restart: fetched again.
	e2e.WantCacheStatus(t, g.Get("/b"), "craftedge; fwd=miss; stored")
	// Damaged: fetched again.
	e2e.WantCacheStatus(t, g.Get("/c"), "craftedge; fwd=miss; stored")
	// Expired before the restart: stale, so the origin is asked.
	e2e.WantCacheStatusPrefix(t, g.Get("/old"), "craftedge; fwd=stale")
	if o.Count("/b") != 2 || o.Count("/c") != 2 || o.Count("/old") != 2 {
		t.Fatalf("origin calls /b %d, /c %d, /old %d; want 2 each", o.Count("/b"), o.Count("/c"), o.Count("/old"))
	}
	found := false
	for _, l := range e2e.LogLines(t, logPath) {
		if l["msg"] == "warm start: skipping a damaged snapshot record" && l["key"] == cKey {
			found = true
		}
	}
	if !found {
		t.Fatal("no log line for the damaged record")
	}
}

// The refill runs in the background: the config is loaded and requests
// are answered while it is held up. A purge arriving during the refill
// wins over it: the purged page is not refilled after the purge returned.
func TestWarmStartPurgeDuringRefillWins(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/a", e2e.PageHandler("page a", "entry:1"))
	o.Handle("/b", e2e.PageHandler("page b", "entry:2"))
	o.Handle("/c", e2e.PageHandler("page c", "entry:3"))
	g := e2e.StartGateway(t, o, e2e.Options{})
	g.Get("/a")
	e2e.Advance(time.Second)
	g.Get("/b") // the newest: refilled first
	g.FlushSnapshots()

	reached, release := make(chan string, 4), make(chan struct{})
	warmStartHook = func(key string) {
		reached <- key
		<-release
	}
	t.Cleanup(func() { warmStartHook = nil })
	g.Restart(e2e.Options{})
	// Restart returned with the refill held up at its first record.
	if k := <-reached; k != "http://"+e2e.SiteHost+"/b" {
		t.Fatalf("refill began with %q, want the newest, /b", k)
	}
	if w := warmHealth(t, g); w.State != "running" || w.Refilled != 0 {
		t.Fatalf("warm start %+v while held up: want running, nothing refilled", w)
	}
	e2e.WantCacheStatus(t, g.Get("/c"), "craftedge; fwd=miss; stored")
	e2e.Advance(time.Second)
	e2e.WantStatus(t, g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["entry:1","entry:2"]}`), http.StatusOK)
	close(release)
	w := waitWarmDone(t, g)
	if w.Refilled != 0 || w.SkippedPurged != 2 {
		t.Fatalf("warm start %+v: want both pages skipped as purged", w)
	}
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; fwd=miss; stored")
	e2e.WantCacheStatus(t, g.Get("/b"), "craftedge; fwd=miss; stored")
}

// warm_start off leaves the memory tier empty after a restart.
func TestWarmStartOff(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/a", e2e.PageHandler("page a", "entry:1"))
	off := e2e.Options{GlobalExtra: "warm_start off"}
	g := e2e.StartGateway(t, o, off)
	g.Get("/a")
	g.FlushSnapshots()
	g.Restart(off)
	if w := warmHealth(t, g); w.State != "off" {
		t.Fatalf("warm start %+v with warm_start off", w)
	}
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; fwd=miss; stored")
}

// warm_start takes on or off; anything else is an error naming its line.
func TestWarmStartOptionErrors(t *testing.T) {
	o := e2e.NewOrigin(t)
	storage := filepath.Join(t.TempDir(), "craftedge.db")
	e2e.WantGlobalError(t, o, storage, "warm_start maybe", `warm_start wants on or off, got "maybe"`, 0)
}

// refillOrder restarts the gateway and returns the keys the refill took
// up, in order, with the warm start's report once done.
func refillOrder(t *testing.T, g *e2e.Gateway, restart func()) ([]string, WarmStartHealth) {
	t.Helper()
	var mu sync.Mutex
	var order []string
	warmStartHook = func(key string) {
		mu.Lock()
		order = append(order, strings.TrimPrefix(key, "http://"+e2e.SiteHost))
		mu.Unlock()
	}
	t.Cleanup(func() { warmStartHook = nil })
	restart()
	w := waitWarmDone(t, g)
	mu.Lock()
	defer mu.Unlock()
	return append([]string(nil), order...), w
}

// The pages served most before a restart are refilled first, most served
// first, whenever they were stored; the rest follow most recently stored
// first. The scores survive the restart in the bbolt file. A page served
// most but purged before the restart is still not refilled.
func TestWarmStartServedMostFirst(t *testing.T) {
	o := e2e.NewOrigin(t)
	for i, p := range []string{"/a", "/b", "/c", "/d", "/e"} {
		o.Handle(p, e2e.PageHandler("page "+p, fmt.Sprintf("entry:%d", i)))
	}
	g := e2e.StartGateway(t, o, e2e.Options{})
	for _, p := range []string{"/a", "/b", "/c", "/d", "/e"} { // /e stored last
		e2e.WantCacheStatus(t, g.Get(p), "craftedge; fwd=miss; stored")
		e2e.Advance(time.Second)
	}
	for p, n := range map[string]int{"/a": 2, "/c": 4, "/d": 3} {
		for range n {
			e2e.WantCacheStatus(t, g.Get(p), "craftedge; hit")
		}
	}
	g.FlushSnapshots()
	e2e.WantStatus(t, g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["entry:3"]}`), http.StatusOK) // /d

	order, w := refillOrder(t, g, func() { g.Restart(e2e.Options{}) })
	want := []string{"/c", "/d", "/a", "/e", "/b"}
	if !slices.Equal(order, want) {
		t.Fatalf("refill order %v, want %v (served most first, then newest first)", order, want)
	}
	if w.Refilled != 4 || w.ServedFirst != 2 || w.SkippedPurged != 1 {
		t.Fatalf("warm start %+v: want 4 refilled, 2 of them served first (/c, /a), /d skipped as purged", w)
	}
	e2e.WantCacheStatus(t, g.Get("/c"), "craftedge; hit")
	e2e.WantCacheStatus(t, g.Get("/d"), "craftedge; fwd=miss; stored")
}

// Scores that do not decode are logged and ignored: the refill goes
// newest first.
func TestWarmStartServedScoresDamaged(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/a", e2e.PageHandler("page a", "entry:1"))
	o.Handle("/b", e2e.PageHandler("page b", "entry:2"))
	g := e2e.StartGateway(t, o, e2e.Options{})
	g.Get("/a")
	e2e.Advance(time.Second)
	g.Get("/b")
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; hit")
	g.FlushSnapshots()
	e2e.StopGateway(t)
	db, err := bolt.Open(g.Storage, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketWarmServed)
		if b == nil || b.Get(servedScoresKey) == nil {
			t.Error("no served pages' scores stored at stop")
			return nil
		}
		return b.Put(servedScoresKey, []byte{1, 2, 3})
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	order, w := refillOrder(t, g, func() { startLogged(t, g, e2e.Options{}, logPath) })
	if !slices.Equal(order, []string{"/b", "/a"}) || w.ServedFirst != 0 {
		t.Fatalf("refill order %v, served first %d: want newest first, [/b /a], none served first", order, w.ServedFirst)
	}
	found := false
	for _, l := range e2e.LogLines(t, logPath) {
		if strings.Contains(fmt.Sprint(l["msg"]), "served pages' scores are damaged") {
			found = true
		}
	}
	if !found {
		t.Fatal("no log line for the damaged scores")
	}
}

// The refill pauses between batches of work to leave the CPU to requests
// (here after every entry), except for the pages served most, refilled
// at once first: at each pause the entries so far are in the memory tier
// and served, the rest are not yet, and requests are answered; health
// reports the progress and the time paused.
func TestWarmStartPaced(t *testing.T) {
	o := e2e.NewOrigin(t)
	for _, p := range []string{"/a", "/b", "/c"} {
		o.Handle(p, e2e.PageHandler("page "+p, "entry:"+p[1:]))
	}
	g := e2e.StartGateway(t, o, e2e.Options{})
	for _, p := range []string{"/a", "/b", "/c"} {
		g.Get(p)
		e2e.Advance(time.Second)
	}
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; hit") // served most: /a alone
	g.FlushSnapshots()

	paused, release := make(chan int64), make(chan struct{})
	warmBatchWork, warmStartPause = 0, func(n int64) {
		paused <- n
		<-release
	}
	t.Cleanup(func() { warmBatchWork, warmStartPause = 2*time.Millisecond, nil })
	g.Restart(e2e.Options{})
	if n := <-paused; n != 2 {
		t.Fatalf("first pause after %d entries, want 2: /a at once (served most), then /c (the newest)", n)
	}
	if w := warmHealth(t, g); w.State != "running" || w.Refilled != 2 || w.ServedFirst != 1 {
		t.Fatalf("warm start %+v at the first pause: want running, 2 refilled, 1 of them served first", w)
	}
	e2e.WantCacheStatus(t, g.Get("/c"), "craftedge; hit")
	// Not refilled yet: put in for the request (RefillOnMiss), a hit.
	e2e.WantCacheStatus(t, g.Get("/b"), "craftedge; hit")
	if o.Count("/b") != 1 {
		t.Fatalf("origin called %d times for /b, want once (before the restart)", o.Count("/b"))
	}
	release <- struct{}{}
	if n := <-paused; n != 2 {
		t.Fatalf("second pause after %d entries, want 2 (/b was put in for the request)", n)
	}
	close(release)
	w := waitWarmDone(t, g)
	if w.Refilled != 2 || w.OnRequest != 1 || w.SkippedPresent != 1 || w.PausedMS < 0 {
		t.Fatalf("warm start %+v: want /a and /c refilled, /b put in for its request and skipped as present", w)
	}
}

// A request for a page the refill has not reached yet is answered from
// its snapshot, by the refill's rules: a fresh copy is a hit without
// calling the origin; a copy that expired before the restart is stale
// (the origin is asked); a page purged before the restart, or while the
// refill runs, is fetched; a damaged record is skipped with a log line and
// fetched; a page with no snapshot is a plain miss.
func TestWarmStartRefillsOnMiss(t *testing.T) {
	o := e2e.NewOrigin(t)
	for _, p := range []string{"/held", "/old", "/a", "/p", "/c", "/e", "/n"} {
		o.Handle(p, e2e.PageHandler("page "+p, "entry:"+p[1:]))
	}
	g := e2e.StartGateway(t, o, e2e.Options{})
	e2e.WantCacheStatus(t, g.Get("/old"), "craftedge; fwd=miss; stored")
	e2e.Advance(2 * time.Minute)                                  // /old is past its 1m ttl from now on
	for _, p := range []string{"/a", "/p", "/c", "/e", "/held"} { // /held the newest
		e2e.WantCacheStatus(t, g.Get(p), "craftedge; fwd=miss; stored")
		e2e.Advance(time.Second)
	}
	g.FlushSnapshots()
	e2e.WantStatus(t, g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["entry:p"]}`), http.StatusOK)
	e2e.StopGateway(t)
	damageSnapshot(t, g.Storage, "http://"+e2e.SiteHost+"/c")

	reached, release := make(chan string, 8), make(chan struct{})
	warmStartHook = func(key string) {
		reached <- key
		<-release
	}
	t.Cleanup(func() { warmStartHook = nil })
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	startLogged(t, g, e2e.Options{}, logPath)
	if k := <-reached; k != "http://"+e2e.SiteHost+"/held" {
		t.Fatalf("refill began with %q, want the newest, /held", k)
	}
	// The refill is held up at /held: every other page is ahead of it.
	wantRefilledHit(t, g, o, "/a")
	e2e.WantCacheStatusPrefix(t, g.Get("/old"), "craftedge; fwd=stale")
	e2e.WantCacheStatus(t, g.Get("/p"), "craftedge; fwd=miss; stored")
	e2e.WantCacheStatus(t, g.Get("/c"), "craftedge; fwd=miss; stored")
	e2e.WantCacheStatus(t, g.Get("/n"), "craftedge; fwd=miss; stored")
	e2e.Advance(time.Second)
	e2e.WantStatus(t, g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["entry:e"]}`), http.StatusOK)
	e2e.WantCacheStatus(t, g.Get("/e"), "craftedge; fwd=miss; stored")
	for p, want := range map[string]int{"/old": 2, "/p": 2, "/c": 2, "/n": 1, "/e": 2} {
		if n := o.Count(p); n != want {
			t.Errorf("origin called %d times for %s, want %d", n, p, want)
		}
	}
	if w := warmHealth(t, g); w.State != "running" || w.Refilled != 0 || w.OnRequest != 2 ||
		w.SkippedPurged != 2 || w.SkippedDamaged != 1 {
		t.Fatalf("warm start %+v while held up: want /a and /old put in for requests, /p and /e skipped as purged, /c as damaged", w)
	}
	for m, want := range map[string]float64{
		"craftedge_warm_start_running": 1, `craftedge_warm_start_entries_total{source="request"}`: 2,
		`craftedge_warm_start_entries_total{source="refill"}`: 0, `craftedge_warm_start_skipped_total{reason="purged"}`: 2,
		`craftedge_warm_start_skipped_total{reason="damaged"}`: 1,
	} {
		if v := scrape(g, m); v != want {
			t.Errorf("%s = %v while held up, want %v", m, v, want)
		}
	}
	close(release)
	w := waitWarmDone(t, g)
	if w.Refilled != 1 || w.OnRequest != 2 {
		t.Fatalf("warm start %+v: want /held refilled, /a and /old put in for requests", w)
	}
	if v := scrape(g, "craftedge_warm_start_running"); v != 0 {
		t.Errorf("craftedge_warm_start_running = %v once done, want 0", v)
	}
	found := false
	for _, l := range e2e.LogLines(t, logPath) {
		if l["msg"] == "warm start: skipping a damaged snapshot record" && l["key"] == "http://"+e2e.SiteHost+"/c" {
			found = true
		}
	}
	if !found {
		t.Fatal("no log line for the damaged record")
	}
	// With warm_start off, a miss is fetched, not read from the snapshots.
	g.Restart(e2e.Options{GlobalExtra: "warm_start off"})
	e2e.WantCacheStatus(t, g.Get("/held"), "craftedge; fwd=miss; stored")
}

// wantRefilledHit checks that path, stored once before the restart
// (PageHandler "page "+path), is a hit from the refilled copy for an
// identity and a gzip client, without calling the origin again.
func wantRefilledHit(t *testing.T, g *e2e.Gateway, o *e2e.Origin, path string) {
	t.Helper()
	r := g.Get(path)
	e2e.WantCacheStatus(t, r, "craftedge; hit")
	if r.Body != e2e.HTMLPage("page "+path) || o.Count(path) != 1 {
		t.Fatalf("%s after the restart: origin called %d times, body %q", path, o.Count(path), r.Body)
	}
	gz := g.Get(path, "Accept-Encoding", "gzip")
	if gz.Header.Get("Content-Encoding") != "gzip" || e2e.Gunzip(t, gz.Body) != e2e.HTMLPage("page "+path) {
		t.Fatalf("refilled %s not served gzip to a gzip client: %q", path, gz.Header.Get("Content-Encoding"))
	}
}

// damageSnapshot overwrites key's record in the (closed) bbolt file at
// path with bytes that do not decode.
func damageSnapshot(t *testing.T, path, key string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("snapshots"))
		if b.Get([]byte(key)) == nil {
			t.Errorf("no snapshot under %q", key)
		}
		return b.Put([]byte(key), []byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff})
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}
