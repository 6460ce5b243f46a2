package caddymodule

import (
	"encoding/binary"
	"encoding/json"
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
	o := newTestOrigin(t)
	g := startGateway(t, o, gatewayOptions{storage: path})
	for i := range pages {
		wantStatus(t, g.get(fmt.Sprintf("/p/%d", i)), http.StatusOK)
	}
	g.flushSnapshots()
	stopGateway(t)
}

// damageSnapshotLeaves writes random bytes (fixed seed) over every page
// below the root of the snapshots bucket, leaving the meta pages, the
// freelist and every other bucket intact: the file opens and the first
// snapshot read or write walks into garbage.
func damageSnapshotLeaves(t *testing.T, path string) int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	pageSize := db.Info().PageSize
	var root uint64
	if err := db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("snapshots"))
		if b == nil {
			return fmt.Errorf("no snapshots bucket")
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
		t.Fatalf("snapshots root page %d is not a branch page (flags %#x): store more pages", root, flags)
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
func startGatewayLogging(t *testing.T, o *testOrigin, opts gatewayOptions, logPath string) *gateway {
	t.Helper()
	clockOffset.Store(0)
	t.Cleanup(func() { clockOffset.Store(0) })
	g := &gateway{
		t: t, origin: o, storage: opts.storage,
		client: &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 10 * time.Second},
	}
	// Load through the admin API, so a failed load is an answer, not a
	// test failure inside caddytest.
	r := loadCaddyfile(t, withLogFile(caddyfileFor(o, opts), logPath))
	if r.status != http.StatusOK {
		t.Fatalf("loading the config: status %d: %s", r.status, r.body)
	}
	t.Cleanup(func() { stopGateway(t) })
	return g
}

// loadCaddyfile is `caddy reload`: POST /load with a Caddyfile. It fails
// the test if the admin endpoint does not answer (EOF, hang).
func loadCaddyfile(t *testing.T, caddyfile string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+adminAddr+"/load", strings.NewReader(caddyfile))
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
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// storageHealth reads the storage part of /craftedge/health.
func storageHealth(t *testing.T, g *gateway) StorageHealth {
	t.Helper()
	r := g.admin(http.MethodGet, "/craftedge/health", "")
	wantStatus(t, r, http.StatusOK)
	var h Health
	if err := json.Unmarshal([]byte(r.body), &h); err != nil {
		t.Fatalf("health: %v: %s", err, r.body)
	}
	return h.Storage
}

// wantDamagedLogged checks that Caddy's log has an error naming path.
func wantDamagedLogged(t *testing.T, logPath, path string) {
	t.Helper()
	waitFor(t, "an error log line naming "+path, func() bool {
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
func checkDegradedServing(t *testing.T, g *gateway, o *testOrigin) {
	t.Helper()
	r := g.get("/fresh-miss")
	wantStatus(t, r, http.StatusOK)
	wantCacheStatusPrefix(t, r, "craftedge; fwd=miss")
	r = g.get("/fresh-miss")
	wantStatus(t, r, http.StatusOK)
	wantCacheStatusPrefix(t, r, "craftedge; hit")
	o.stop()
	r = g.get("/p/7")
	wantStatus(t, r, http.StatusServiceUnavailable)
	if !strings.Contains(r.body, "Back soon") {
		t.Fatalf("fallback body = %q", r.body)
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
	o := newTestOrigin(t)
	g := startGatewayLogging(t, o, gatewayOptions{storage: path, handlerExtra: damageFallback}, logPath)
	wantDamagedLogged(t, logPath, path)
	sh := storageHealth(t, g)
	if !sh.Damaged || sh.Path != path || !strings.HasPrefix(sh.MovedTo, path+".damaged-") || sh.Error == "" {
		t.Fatalf("storage health = %+v", sh)
	}
	if got := damagedCopies(t, path); len(got) != 1 || got[0] != sh.MovedTo {
		t.Fatalf("damaged copies = %v, health says %q", got, sh.MovedTo)
	}
	checkDegradedServing(t, g, o)
	m := g.admin(http.MethodGet, "/metrics", "")
	if !strings.Contains(m.body, "craftedge_storage_damaged 1") {
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
	o := newTestOrigin(t)
	g := startGatewayLogging(t, o, gatewayOptions{
		storage: path, handlerExtra: damageFallback, globalExtra: "storage_check_max_size off",
	}, logPath)
	if sh := storageHealth(t, g); sh.Damaged {
		t.Fatalf("damage found on open although the check is off: %+v", sh)
	}
	// A miss queues a write-behind snapshot; committing it walks into the
	// damaged pages.
	wantStatus(t, g.get("/first-miss"), http.StatusOK)
	waitFor(t, "the damage to be detected", func() bool { return storageHealth(t, g).Damaged })
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

	o := newTestOrigin(t)
	g := startGateway(t, o, gatewayOptions{
		storage: path, handlerExtra: damageFallback, globalExtra: "storage_check_max_size off",
	})
	o.stop()
	for i := range 3 {
		r := g.get(fmt.Sprintf("/p/%d", i*50))
		wantStatus(t, r, http.StatusServiceUnavailable)
		if !strings.Contains(r.body, "Back soon") {
			t.Fatalf("body = %q", r.body)
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
	o := newTestOrigin(t)
	g := startGatewayLogging(t, o, gatewayOptions{storage: path, handlerExtra: damageFallback}, logPath)
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

	o := newTestOrigin(t)
	g := startGateway(t, o, gatewayOptions{storage: good})
	wantStatus(t, g.get("/a"), http.StatusOK)

	r := loadCaddyfile(t, caddyfileFor(o, gatewayOptions{storage: bad}))
	if r.status != http.StatusOK {
		t.Logf("reload onto the damaged file refused: %d %s", r.status, r.body)
	} else if sh := storageHealth(t, g); !sh.Damaged || sh.Path != bad {
		t.Fatalf("reload onto the damaged file: storage health = %+v", sh)
	}
	cfg := g.admin(http.MethodGet, "/config/", "")
	wantStatus(t, cfg, http.StatusOK)
	wantStatus(t, g.get("/a"), http.StatusOK)

	// A second reload on the same path retries it: the damaged file was
	// moved aside, so a fresh one is created.
	r = loadCaddyfile(t, caddyfileFor(o, gatewayOptions{storage: bad, globalExtra: "snapshot_max_age 24h"}))
	wantStatus(t, r, http.StatusOK)
	if sh := storageHealth(t, g); sh.Damaged || sh.Path != bad {
		t.Fatalf("after a reload the storage should be a fresh file: %+v", sh)
	}
	r = loadCaddyfile(t, caddyfileFor(o, gatewayOptions{storage: good}))
	wantStatus(t, r, http.StatusOK)
	wantStatus(t, g.admin(http.MethodGet, "/config/", ""), http.StatusOK)
	wantStatus(t, g.get("/a"), http.StatusOK)
}

// Durable writes on a damaged file fail loudly: the outbox API answers 503
// with a body saying why, and nothing is accepted.
func TestStorageDamagedOutboxWriteFailsLoudly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "craftedge.db")
	populateStorage(t, path, 300)
	truncateStorage(t, path)

	e := startVendorGateway(t, 5, vendorOptions{storage: path})
	r := e.do(http.MethodPut, "/vendors/v1/shop/product/3", map[string]string{"Content-Type": "application/json"},
		`{"sku":"SKU-3","title":{"en":"x"},"price":{"amount":1,"currency":"EUR"},"stock":3}`)
	wantStatus(t, r, http.StatusServiceUnavailable)
	if !strings.Contains(r.body, "damaged") || !strings.Contains(r.body, "storage") {
		t.Fatalf("503 body does not say why: %q", r.body)
	}
	if n := len(e.sim.WritesFor(vendorsim.KindProduct, "3")); n != 0 {
		t.Fatalf("vendor saw %d writes", n)
	}
}

// storage_check_max_size takes a size or off; anything else is a load
// error naming the line.
func TestStorageCheckMaxSizeOption(t *testing.T) {
	o := newTestOrigin(t)
	g := startGateway(t, o, gatewayOptions{globalExtra: "storage_check_max_size 1GiB"})
	if app := currentApp.Load(); app == nil || app.StorageCheckMaxSize != 1<<30 {
		t.Fatalf("storage_check_max_size 1GiB not applied")
	}
	for _, bad := range []string{"storage_check_max_size", "storage_check_max_size lots"} {
		r := loadCaddyfile(t, caddyfileFor(o, gatewayOptions{storage: g.storage, globalExtra: bad}))
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "storage_check_max_size") || !strings.Contains(r.body, "Caddyfile:") {
			t.Fatalf("%q: %d %s", bad, r.status, r.body)
		}
	}
	wantStatus(t, g.get("/"), http.StatusOK)
}
