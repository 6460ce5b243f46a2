package caddymodule

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/vendorsim"
)

// The tests below damage real bbolt files the way disks, full file systems
// and careless operators do, and check that craftedge keeps serving: the
// damaged file is moved aside, snapshots are off, health and metrics say
// so, and nothing panics, hangs or answers with an empty reply.

// populateStorage runs a gateway on path long enough to store pages
// snapshots (and the other stores' buckets), then unloads it so the file
// is closed.
func populateStorage(t *testing.T, path string, pages int) {
	t.Helper()
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{Storage: path})
	for i := range pages {
		e2e.WantStatus(t, g.Get(fmt.Sprintf("/p/%d", i)), http.StatusOK)
	}
	g.FlushSnapshots()
	e2e.StopGateway(t)
}

// damageSnapshotLeaves writes random bytes (fixed seed) over every page
// below the root of the snapshots bucket, leaving the meta pages, the
// freelist and every other bucket intact: the file opens and the first
// snapshot read or write walks into garbage.
func damageSnapshotLeaves(t *testing.T, path string) int {
	t.Helper()
	return damageBucketLeaves(t, path, "snapshots")
}

// damageBucketLeaves is damageSnapshotLeaves for the top-level bucket
// named bucket.
func damageBucketLeaves(t *testing.T, path, bucket string) int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	pageSize := db.Info().PageSize
	var root uint64
	if err := db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return fmt.Errorf("no %s bucket", bucket)
		}
		root = uint64(b.Root())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	page := make([]byte, pageSize)
	if _, err := f.ReadAt(page, int64(root)*int64(pageSize)); err != nil {
		t.Fatal(err)
	}
	// Page header: id u64, flags u16, count u16, overflow u32; a branch
	// page (flag 0x01) lists count elements of pos u32, ksize u32, pgid u64.
	if flags := binary.LittleEndian.Uint16(page[8:10]); flags&0x01 == 0 {
		t.Fatalf("%s root page %d is not a branch page (flags %#x): store more pages", bucket, root, flags)
	}
	count := int(binary.LittleEndian.Uint16(page[10:12]))
	rng := rand.New(rand.NewPCG(11, 11))
	junk := make([]byte, pageSize)
	for i := range count {
		child := binary.LittleEndian.Uint64(page[16+i*16+8 : 16+i*16+16])
		for j := range junk {
			junk[j] = byte(rng.Uint32())
		}
		if _, err := f.WriteAt(junk, int64(child)*int64(pageSize)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return count
}

// truncateStorage cuts the file to half its size (whole pages).
func truncateStorage(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	size := fi.Size() / 2 / 4096 * 4096
	if size < 4*4096 {
		t.Fatalf("file of %d bytes is too small to truncate meaningfully", fi.Size())
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

// damagedCopies lists the files the damaged file at path was moved to.
func damagedCopies(t *testing.T, path string) []string {
	t.Helper()
	m, err := filepath.Glob(path + ".damaged-*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// withLogFile makes the Caddyfile write Caddy's logs as JSON to logPath.
func withLogFile(caddyfile, logPath string) string {
	return strings.Replace(caddyfile, "{\n", "{\n\tlog {\n\t\toutput file "+logPath+"\n\t\tformat json\n\t}\n", 1)
}

// startGatewayLogging is startGateway with Caddy's logs in a file.
func startGatewayLogging(t *testing.T, o *e2e.Origin, opts e2e.Options, logPath string) *e2e.Gateway {
	t.Helper()
	e2e.ResetClock()
	t.Cleanup(e2e.ResetClock)
	g := &e2e.Gateway{
		T: t, Origin: o, Storage: opts.Storage,
		Client: &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 10 * time.Second},
	}
	// Load through the admin API, so a failed load is an answer, not a
	// test failure inside caddytest.
	r := loadCaddyfile(t, withLogFile(e2e.CaddyfileFor(o, opts), logPath))
	if r.Status != http.StatusOK {
		t.Fatalf("loading the config: status %d: %s", r.Status, r.Body)
	}
	t.Cleanup(func() { e2e.StopGateway(t) })
	return g
}

// loadCaddyfile is `caddy reload`: POST /load with a Caddyfile. It fails
// the test if the admin endpoint does not answer (EOF, hang).
func loadCaddyfile(t *testing.T, caddyfile string) e2e.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+e2e.AdminAddr+"/load", strings.NewReader(caddyfile))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("POST /load: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return e2e.Response{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

// storageHealth reads the storage part of /craftedge/health.
func storageHealth(t *testing.T, g *e2e.Gateway) StorageHealth {
	t.Helper()
	r := g.Admin(http.MethodGet, "/craftedge/health", "")
	e2e.WantStatus(t, r, http.StatusOK)
	var h Health
	if err := json.Unmarshal([]byte(r.Body), &h); err != nil {
		t.Fatalf("health: %v: %s", err, r.Body)
	}
	return h.Storage
}

// wantDamagedLogged checks that Caddy's log has an error naming path.
func wantDamagedLogged(t *testing.T, logPath, path string) {
	t.Helper()
	e2e.WaitFor(t, "an error log line naming "+path, func() bool {
		b, _ := os.ReadFile(logPath)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, `"level":"error"`) && strings.Contains(line, path) && strings.Contains(line, "damaged") {
				return true
			}
		}
		return false
	})
}

// checkDegradedServing checks a gateway whose storage is damaged: a miss
// is served and kept in memory, and with the origin down a page never
// seen since the start gets the fallback page (not an empty reply).
func checkDegradedServing(t *testing.T, g *e2e.Gateway, o *e2e.Origin) {
	t.Helper()
	r := g.Get("/fresh-miss")
	e2e.WantStatus(t, r, http.StatusOK)
	e2e.WantCacheStatusPrefix(t, r, "craftedge; fwd=miss")
	r = g.Get("/fresh-miss")
	e2e.WantStatus(t, r, http.StatusOK)
	e2e.WantCacheStatusPrefix(t, r, "craftedge; hit")
	o.Stop()
	r = g.Get("/p/7")
	e2e.WantStatus(t, r, http.StatusServiceUnavailable)
	if !strings.Contains(r.Body, "Back soon") {
		t.Fatalf("fallback body = %q", r.Body)
	}
}

const damageFallback = `fallback 503 "<h1>Back soon</h1>"`

// A file whose snapshot pages were overwritten with random bytes: the
// consistency check on open finds it, moves it aside and the gateway
// serves without snapshots.
func TestStorageDamagedPagesCheckedOnOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "craftedge.db")
	populateStorage(t, path, 300)
	damageSnapshotLeaves(t, path)

	logPath := filepath.Join(t.TempDir(), "caddy.log")
	o := e2e.NewOrigin(t)
	g := startGatewayLogging(t, o, e2e.Options{Storage: path, HandlerExtra: damageFallback}, logPath)
	wantDamagedLogged(t, logPath, path)
	sh := storageHealth(t, g)
	if !sh.Damaged || sh.Path != path || !strings.HasPrefix(sh.MovedTo, path+".damaged-") || sh.Error == "" {
		t.Fatalf("storage health = %+v", sh)
	}
	if got := damagedCopies(t, path); len(got) != 1 || got[0] != sh.MovedTo {
		t.Fatalf("damaged copies = %v, health says %q", got, sh.MovedTo)
	}
	checkDegradedServing(t, g, o)
	m := g.Admin(http.MethodGet, "/metrics", "")
	if !strings.Contains(m.Body, "craftedge_storage_damaged 1") {
		t.Fatalf("metrics lack craftedge_storage_damaged 1")
	}
}

// The same damage with the consistency check off (a file too large to
// check on open): the first snapshot write or read that touches the
// garbage is caught at the storage boundary, the file is moved aside and
// the process keeps serving.
func TestStorageDamagedPagesFoundWhileServing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "craftedge.db")
	populateStorage(t, path, 300)
	damageSnapshotLeaves(t, path)

	logPath := filepath.Join(t.TempDir(), "caddy.log")
	o := e2e.NewOrigin(t)
	g := startGatewayLogging(t, o, e2e.Options{
		// The warm start would read the damaged pages at start.
		Storage: path, HandlerExtra: damageFallback, GlobalExtra: "storage_check_max_size off\n\t\twarm_start off",
	}, logPath)
	if sh := storageHealth(t, g); sh.Damaged {
		t.Fatalf("damage found on open although the check is off: %+v", sh)
	}
	// A miss queues a write-behind snapshot; committing it walks into the
	// damaged pages.
	e2e.WantStatus(t, g.Get("/first-miss"), http.StatusOK)
	e2e.WaitFor(t, "the damage to be detected", func() bool { return storageHealth(t, g).Damaged })
	wantDamagedLogged(t, logPath, path)
	if got := damagedCopies(t, path); len(got) != 1 {
		t.Fatalf("damaged copies = %v", got)
	}
	checkDegradedServing(t, g, o)
}

// With the origin down, reading a snapshot from a damaged page gives the
// fallback page, not an empty reply.
func TestStorageDamagedSnapshotReadGivesFallback(t *testing.T) {
	path := filepath.Join(t.TempDir(), "craftedge.db")
	populateStorage(t, path, 300)
	damageSnapshotLeaves(t, path)

	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{
		Storage: path, HandlerExtra: damageFallback, GlobalExtra: "storage_check_max_size off",
	})
	o.Stop()
	for i := range 3 {
		r := g.Get(fmt.Sprintf("/p/%d", i*50))
		e2e.WantStatus(t, r, http.StatusServiceUnavailable)
		if !strings.Contains(r.Body, "Back soon") {
			t.Fatalf("body = %q", r.Body)
		}
	}
	if sh := storageHealth(t, g); !sh.Damaged {
		t.Fatalf("storage health = %+v", sh)
	}
}

// A truncated file starts serving; the error names the file, which is
// moved aside.
func TestStorageTruncatedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "craftedge.db")
	populateStorage(t, path, 300)
	truncateStorage(t, path)

	logPath := filepath.Join(t.TempDir(), "caddy.log")
	o := e2e.NewOrigin(t)
	g := startGatewayLogging(t, o, e2e.Options{Storage: path, HandlerExtra: damageFallback}, logPath)
	wantDamagedLogged(t, logPath, path)
	sh := storageHealth(t, g)
	if !sh.Damaged || !strings.Contains(sh.Error, "truncated") {
		t.Fatalf("storage health = %+v", sh)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("damaged file still at %s (stat: %v)", path, err)
	}
	if got := damagedCopies(t, path); len(got) != 1 {
		t.Fatalf("damaged copies = %v", got)
	}
	checkDegradedServing(t, g, o)
}

// `caddy reload` onto a damaged file answers (degraded), and later reloads
// and GET /config/ keep answering; a reload then opens a fresh file.
func TestStorageReloadOntoDamagedFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	bad := filepath.Join(dir, "bad.db")
	populateStorage(t, bad, 300)
	truncateStorage(t, bad)

	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{Storage: good})
	e2e.WantStatus(t, g.Get("/a"), http.StatusOK)

	r := loadCaddyfile(t, e2e.CaddyfileFor(o, e2e.Options{Storage: bad}))
	if r.Status != http.StatusOK {
		t.Logf("reload onto the damaged file refused: %d %s", r.Status, r.Body)
	} else if sh := storageHealth(t, g); !sh.Damaged || sh.Path != bad {
		t.Fatalf("reload onto the damaged file: storage health = %+v", sh)
	}
	cfg := g.Admin(http.MethodGet, "/config/", "")
	e2e.WantStatus(t, cfg, http.StatusOK)
	e2e.WantStatus(t, g.Get("/a"), http.StatusOK)

	// A second reload on the same path retries it: the damaged file was
	// moved aside, so a fresh one is created.
	r = loadCaddyfile(t, e2e.CaddyfileFor(o, e2e.Options{Storage: bad, GlobalExtra: "snapshot_max_age 24h"}))
	e2e.WantStatus(t, r, http.StatusOK)
	if sh := storageHealth(t, g); sh.Damaged || sh.Path != bad {
		t.Fatalf("after a reload the storage should be a fresh file: %+v", sh)
	}
	r = loadCaddyfile(t, e2e.CaddyfileFor(o, e2e.Options{Storage: good}))
	e2e.WantStatus(t, r, http.StatusOK)
	e2e.WantStatus(t, g.Admin(http.MethodGet, "/config/", ""), http.StatusOK)
	e2e.WantStatus(t, g.Get("/a"), http.StatusOK)
}

// Durable writes on a damaged file fail loudly: the outbox API answers 503
// with a body saying why, and nothing is accepted.
func TestStorageDamagedOutboxWriteFailsLoudly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "craftedge.db")
	populateStorage(t, path, 300)
	truncateStorage(t, path)

	e := startVendorGateway(t, 5, vendorOptions{storage: path})
	r := e.Do(http.MethodPut, "/vendors/v1/shop/product/3", map[string]string{"Content-Type": "application/json"},
		`{"sku":"SKU-3","title":{"en":"x"},"price":{"amount":1,"currency":"EUR"},"stock":3}`)
	e2e.WantStatus(t, r, http.StatusServiceUnavailable)
	if !strings.Contains(r.Body, "damaged") || !strings.Contains(r.Body, "storage") {
		t.Fatalf("503 body does not say why: %q", r.Body)
	}
	if n := len(e.Sim.WritesFor(vendorsim.KindProduct, "3")); n != 0 {
		t.Fatalf("vendor saw %d writes", n)
	}
}

// storage_check_max_size takes a size or off; anything else is a load
// error naming the line.
func TestStorageCheckMaxSizeOption(t *testing.T) {
	o := e2e.NewOrigin(t)
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: "storage_check_max_size 1GiB"})
	if app := currentApp.Load(); app == nil || app.StorageCheckMaxSize != 1<<30 {
		t.Fatalf("storage_check_max_size 1GiB not applied")
	}
	for _, bad := range []string{"storage_check_max_size", "storage_check_max_size lots"} {
		r := loadCaddyfile(t, e2e.CaddyfileFor(o, e2e.Options{Storage: g.Storage, GlobalExtra: bad}))
		if r.Status != http.StatusBadRequest || !strings.Contains(r.Body, "storage_check_max_size") || !strings.Contains(r.Body, "Caddyfile:") {
			t.Fatalf("%q: %d %s", bad, r.Status, r.Body)
		}
	}
	e2e.WantStatus(t, g.Get("/"), http.StatusOK)
}

// The records bucket's pages are damaged (the check on open is off) and
// the first thing to walk into them is a local outbox job: recording the
// vendor's answer makes bbolt panic inside the job's handler. The file is
// marked damaged (moved aside, named in an error log line, health) as
// everywhere else, not counted as the handler's own panic with the file
// left in use.
func TestStorageJobPanicOnADamagedFileMarksIt(t *testing.T) {
	sim, url, path := syncedThenDamagedRecords(t, nil)
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	g := startVendorGatewayWith(t, sim, vendorOptions{baseURL: url, storage: path, caddyfile: func(o vendorOptions) string {
		return withLogFile(e2e.VendorCaddyfile(e2e.VendorConfig{Storage: o.storage, BaseURL: o.baseURL, Public: true,
			Global: "storage_check_max_size off\n\t\twarm_start off"}), logPath)
	}})
	if sh := storageHealth(t, g.Gateway); sh.Damaged {
		t.Fatalf("the damage found before the outbox job ran: %+v", sh)
	}
	app := currentApp.Load()
	req, err := app.OutboxWrite("shop", "product", "5", []byte(`{"sku":"SKU-5","title":{"en":"Written into damage"},"price":{"amount":5,"currency":"EUR"},"stock":5}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Key = "panic-1"
	if _, _, err := app.jobs.Enqueue(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	e2e.WaitFor(t, "the damage found by the outbox job", func() bool { return storageHealth(t, g.Gateway).Damaged })
	wantDamagedLogged(t, logPath, path)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the damaged file is still at %s: %v", path, err)
	}
	logged, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(logged), "job handler panicked") {
		t.Fatal("bbolt's panic was logged as the job handler's own")
	}
}

// syncedThenDamagedRecords syncs the vendor simulator's 300 products
// (enough records for pages of their own) into a new bbolt file through a
// gateway, calls beforeStop (if not nil) while that gateway runs, stops it
// and damages the records bucket's leaf pages. It returns the simulator,
// its URL and the file's path.
func syncedThenDamagedRecords(t *testing.T, beforeStop func()) (*vendorsim.Sim, string, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "craftedge.db")
	sim, url := e2e.StartVendorSim(t, 300)
	e := startVendorGatewayWith(t, sim, vendorOptions{baseURL: url, storage: path})
	e.sync("s1", jobs.StateDone)
	if beforeStop != nil {
		beforeStop()
	}
	e2e.StopGateway(t)
	damageBucketLeaves(t, path, "records")
	return sim, url, path
}
