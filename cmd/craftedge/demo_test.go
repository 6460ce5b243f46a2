package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/craftedge/craftedge/demoorigin"
	"github.com/craftedge/craftedge/vendorsim"
)

// The demo tests run the real gateway (Caddy with the craftedge modules,
// in process) in front of the demo origin, on free loopback ports, with
// the admin endpoint on a free port too (never 2019, nor caddytest's 2999)
// and the snapshots in a temp dir. Caddy runs one config per process, so
// these tests do not run in parallel.

// freeAddr returns a loopback address with a port that was free a moment
// ago, chosen below the kernel's ephemeral range: the servers other test
// packages start meanwhile (on port 0: NATS, httptest) are given ports in
// that range, and one of them taking an address a test expects to be
// unused (a Caddyfile's admin endpoint the backfill command asks) made
// the test fail now and then.
func freeAddr(t testing.TB) string {
	t.Helper()
	low := ephemeralLow()
	for range 200 {
		port := 10000 + rand.IntN(low-10000)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		return addr
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux:
// /proc/sys/net/ipv4/ip_local_port_range; 32768 when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low <= 11000 {
		return 32768
	}
	return low
}

func testDemoOptions(t *testing.T, storage string, out io.Writer) demoOptions {
	if storage == "" {
		storage = filepath.Join(t.TempDir(), "craftedge.db")
	}
	return demoOptions{
		Listen:  freeAddr(t),
		Origin:  "127.0.0.1:0",
		Vendor:  "127.0.0.1:0",
		Admin:   freeAddr(t),
		Storage: storage,
		Out:     out,
	}
}

func startTestDemo(t *testing.T, opts demoOptions) *demo {
	t.Helper()
	d, err := startDemo(opts)
	if err != nil {
		t.Fatalf("startDemo: %v", err)
	}
	t.Cleanup(func() { _ = d.stop() })
	return d
}

type demoClient struct {
	t      *testing.T
	client *http.Client
}

func newDemoClient(t *testing.T) *demoClient {
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &demoClient{t: t, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

type demoResponse struct {
	status int
	header http.Header
	body   string
}

func (r demoResponse) cacheStatus() string { return r.header.Get("Cache-Status") }

func (c *demoClient) do(method, url, body string, hdr ...string) demoResponse {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.client.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return demoResponse{status: res.StatusCode, header: res.Header, body: string(b)}
}

func (c *demoClient) get(url string, hdr ...string) demoResponse {
	c.t.Helper()
	return c.do(http.MethodGet, url, "", hdr...)
}

// The same requests as the printed curl commands.

func (c *demoClient) purge(d *demo, tags string) demoResponse {
	c.t.Helper()
	return c.do(http.MethodPost, "http://"+d.admin+"/craftedge/purge", `{"tags":[`+tags+`]}`,
		"Content-Type", "application/json")
}

func (c *demoClient) snapshotOnly(d *demo, on bool) demoResponse {
	c.t.Helper()
	body := `{"enabled":false}`
	if on {
		body = `{"enabled":true}`
	}
	// curl -d sends a form content type.
	return c.do(http.MethodPut, "http://"+d.admin+"/craftedge/snapshot-only", body,
		"Content-Type", "application/x-www-form-urlencoded")
}

func (c *demoClient) setMode(d *demo, mode string) {
	c.t.Helper()
	r := c.do(http.MethodPost, "http://"+d.origin+demoorigin.ControlPath+"?set="+mode, "")
	if r.status != http.StatusOK || !strings.Contains(r.body, `"`+mode+`"`) {
		c.t.Fatalf("set origin mode %s: %d %s", mode, r.status, r.body)
	}
}

var renderLine = regexp.MustCompile(`rendered at [^,]+, revision (\d+) \(render #\d+\)`)

func renderOf(t *testing.T, r demoResponse) (line, revision string) {
	t.Helper()
	m := renderLine.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("no rendered-at line in a %d response (Cache-Status %q): %.300s", r.status, r.cacheStatus(), r.body)
	}
	return m[0], m[1]
}

func TestDemoCaddyfile(t *testing.T) {
	storage := filepath.Join(t.TempDir(), "dir with spaces", `back\slash`, "craftedge.db")
	cases := []struct {
		listen     string
		wantListen string
	}{
		{"127.0.0.1:8080", `"listen":["127.0.0.1:8080"]`},
		{"[::1]:8080", `"listen":["[::1]:8080"]`},
		{":8080", `"listen":[":8080"]`},
	}
	for _, c := range cases {
		t.Run(c.listen, func(t *testing.T) {
			d := &demo{listen: c.listen, origin: "127.0.0.1:8081", vendor: "http://127.0.0.1:8082", admin: "localhost:2019", storage: storage}
			env, err := d.caddyfileEnv()
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range env {
				t.Setenv(k, v)
			}
			body := demoCaddyfile
			if formatted := caddyfile.Format(body); !bytes.Equal(formatted, body) {
				t.Errorf("the demo Caddyfile is not formatted (Caddy would warn):\n%s", body)
			}
			cfgJSON, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(body, map[string]any{"filename": "demo.Caddyfile"})
			if err != nil {
				t.Fatalf("adapt: %v\n%s", err, body)
			}
			if len(warnings) > 0 {
				t.Errorf("warnings: %v", warnings)
			}
			var cfg struct {
				Admin struct {
					Listen string `json:"listen"`
				} `json:"admin"`
				Apps struct {
					Craftedge struct {
						Storage string `json:"storage"`
						Memory  int64  `json:"memory"`
					} `json:"craftedge"`
					HTTP struct {
						Servers map[string]json.RawMessage `json:"servers"`
					} `json:"http"`
				} `json:"apps"`
			}
			if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.Admin.Listen != "localhost:2019" {
				t.Errorf("admin listen %q", cfg.Admin.Listen)
			}
			if cfg.Apps.Craftedge.Storage != storage {
				t.Errorf("storage %q, want %q", cfg.Apps.Craftedge.Storage, storage)
			}
			if cfg.Apps.Craftedge.Memory != 64<<20 {
				t.Errorf("memory %d", cfg.Apps.Craftedge.Memory)
			}
			if len(cfg.Apps.HTTP.Servers) != 1 {
				t.Fatalf("servers: %s", cfgJSON)
			}
			for _, srv := range cfg.Apps.HTTP.Servers {
				s := string(srv)
				for _, want := range []string{c.wantListen, `"handler":"craftedge"`, `"upstream":"craft"`, `"dial":"127.0.0.1:8081"`, "Back soon"} {
					if !strings.Contains(s, want) {
						t.Errorf("server lacks %s: %s", want, s)
					}
				}
				if !strings.Contains(s, `"automatic_https":{"disable":true}`) {
					t.Errorf("automatic HTTPS is not off: %s", s)
				}
			}
		})
	}
}

func TestDemoFlagsErrors(t *testing.T) {
	for _, opts := range []demoOptions{
		{Listen: "8080"},
		{Listen: "127.0.0.1:0"},
		{Admin: "nowhere"},
		{Origin: "127.0.0.1:http"},
	} {
		opts.Storage = filepath.Join(t.TempDir(), "craftedge.db")
		if d, err := startDemo(opts); err == nil {
			_ = d.stop()
			t.Errorf("startDemo(%+v) accepted bad flags", opts)
		}
	}
}

func TestDemo(t *testing.T) {
	var out bytes.Buffer
	opts := testDemoOptions(t, "", &out)
	d := startTestDemo(t, opts)
	d.printInstructions(&out)
	c := newDemoClient(t)
	site := "http://" + opts.Listen
	page := site + "/blog/hello-world"
	// The first shop sync purges the products' tags; a purge during a
	// miss keeps that miss from being stored fresh. Let it finish first.
	waitDemoSynced(t, c, d)

	t.Run("instructions", func(t *testing.T) {
		for _, want := range []string{
			"curl -si " + page + " | grep -i cache-status",
			"curl -s -X POST http://" + opts.Admin + "/craftedge/purge -H 'Content-Type: application/json' -d '{\"tags\":[\"el:1\"]}'",
			"curl -si -X POST " + site + "/admin/entries/1",
			"curl -s -X POST 'http://" + d.origin + "/__origin/mode?set=down'",
			"curl -s -X PUT http://" + opts.Admin + "/craftedge/snapshot-only -d '{\"enabled\":true}'",
			"curl -s http://" + opts.Admin + "/craftedge/health",
			"curl -si -b CraftSessionId=x " + page,
			d.storage,
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("instructions lack %q:\n%s", want, out.String())
			}
		}
	})

	// 1. A miss, then a hit.
	before := d.site.Requests()
	miss := c.get(page)
	hit := c.get(page)
	if miss.status != http.StatusOK || hit.status != http.StatusOK {
		t.Fatalf("statuses %d, %d", miss.status, hit.status)
	}
	if cs := miss.cacheStatus(); !strings.Contains(cs, "fwd=miss") {
		t.Errorf("first request Cache-Status %q, want a miss", cs)
	}
	if cs := hit.cacheStatus(); !strings.Contains(cs, "hit") || strings.Contains(cs, "fwd=") {
		t.Errorf("second request Cache-Status %q, want a hit", cs)
	}
	missLine, rev := renderOf(t, miss)
	if hitLine, _ := renderOf(t, hit); hitLine != missLine {
		t.Errorf("the hit shows another render: %q vs %q", hitLine, missLine)
	}
	if rev != "1" {
		t.Errorf("revision %s, want 1", rev)
	}
	if n := d.site.Requests() - before; n != 1 {
		t.Errorf("the origin saw %d requests for a miss and a hit, want 1", n)
	}
	if tags := hit.header.Get("Cache-Tag"); tags != "" {
		t.Logf("Cache-Tag reaches clients: %q", tags)
	}

	// 2. Purge by tag through the admin API.
	r := c.purge(d, `"el:1"`)
	var purged struct {
		Purged int `json:"purged"`
	}
	if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &purged) != nil || purged.Purged < 1 {
		t.Fatalf("purge: %d %s", r.status, r.body)
	}
	after := c.get(page)
	if cs := after.cacheStatus(); !fetchedAgain(cs) {
		t.Errorf("after the purge Cache-Status %q, want the page fetched again", cs)
	}
	if line, _ := renderOf(t, after); line == missLine {
		t.Error("after the purge the page was not rendered again")
	}

	// 3. Saving in the control panel purges through Cache-Purge-Tag.
	c.get(site + "/") // the home page lists the entry: cache it too
	if cs := c.get(site + "/").cacheStatus(); !strings.Contains(cs, "hit") {
		t.Errorf("home page not cached: %q", cs)
	}
	r = c.do(http.MethodPost, site+"/admin/entries/1", "")
	if r.status != http.StatusOK || !strings.Contains(r.body, "revision 2") {
		t.Fatalf("save: %d %s", r.status, r.body)
	}
	if cs := r.cacheStatus(); !strings.Contains(cs, "bypass") {
		t.Errorf("save Cache-Status %q, want a bypass", cs)
	}
	saved := c.get(page)
	if _, rev := renderOf(t, saved); rev != "2" || !fetchedAgain(saved.cacheStatus()) {
		t.Errorf("after the save: revision %s, Cache-Status %q; want revision 2 from the origin", rev, saved.cacheStatus())
	}
	if home := c.get(site + "/"); !fetchedAgain(home.cacheStatus()) {
		t.Errorf("home page after the save: Cache-Status %q, want it fetched again (it carries el:entry:section:1)", home.cacheStatus())
	}

	// 7. Logged-in visitors and the control panel bypass the cache.
	for _, req := range []struct {
		url string
		hdr []string
	}{
		{page, []string{"Cookie", "CraftSessionId=x"}},
		{site + "/admin", nil},
		{site + "/actions/users/session-info", nil},
	} {
		before := d.site.Requests()
		r := c.get(req.url, req.hdr...)
		if r.status != http.StatusOK || !strings.Contains(r.cacheStatus(), "bypass") || d.site.Requests() != before+1 {
			t.Errorf("GET %s %v: status %d, Cache-Status %q, origin requests +%d; want a bypass",
				req.url, req.hdr, r.status, r.cacheStatus(), d.site.Requests()-before)
		}
	}

	// 6. Health.
	if r := c.get("http://" + opts.Admin + "/craftedge/health"); r.status != http.StatusOK || !strings.Contains(r.body, "craft") {
		t.Errorf("health: %d %s", r.status, r.body)
	}

	// Let the write-behind store the snapshots of what was served so far.
	waitSnapshots(t, c, d)

	// 5. The kill switch: no origin requests, copies only.
	if r := c.snapshotOnly(d, true); r.status != http.StatusOK {
		t.Fatalf("kill switch on: %d %s", r.status, r.body)
	}
	c.purge(d, `"el:1"`)
	before = d.site.Requests()
	r = c.get(page)
	if r.status != http.StatusOK || d.site.Requests() != before {
		t.Errorf("kill switch: status %d, Cache-Status %q, origin requests +%d; want a copy and no origin request",
			r.status, r.cacheStatus(), d.site.Requests()-before)
	} else if _, rev := renderOf(t, r); rev != "2" {
		t.Errorf("kill switch served revision %s, want 2", rev)
	}
	if r := c.snapshotOnly(d, false); r.status != http.StatusOK {
		t.Fatalf("kill switch off: %d %s", r.status, r.body)
	}

	// 4. The origin goes down: the snapshot, then the fallback page.
	c.setMode(d, "down")
	c.purge(d, `"el:1"`)
	r = c.get(page)
	if cs := r.cacheStatus(); r.status != http.StatusOK || !(strings.Contains(cs, "detail=snapshot") || strings.Contains(cs, "detail=stale")) {
		t.Errorf("origin down: status %d, Cache-Status %q; want the snapshot", r.status, cs)
	} else if _, rev := renderOf(t, r); rev != "2" {
		t.Errorf("origin down: revision %s, want 2", rev)
	}
	r = c.get(site + "/products/9")
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "Back soon") {
		t.Errorf("uncached page with the origin down: %d %q; want the 503 fallback", r.status, r.body)
	}
	c.setMode(d, "ok")

	// Stopping frees the ports and the snapshot file.
	if err := d.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	for _, addr := range []string{opts.Listen, d.origin, opts.Admin} {
		waitClosed(t, addr)
	}

	// A restarted demo on the same storage (and site address: cache keys
	// include the host) serves the snapshots at once.
	opts.Out = io.Discard
	d2 := startTestDemo(t, opts)
	c.setMode(d2, "down")
	r = c.get(page)
	if cs := r.cacheStatus(); r.status != http.StatusOK || !strings.Contains(cs, "detail=snapshot") {
		t.Errorf("restarted demo, origin down: status %d, Cache-Status %q; want the snapshot", r.status, cs)
	}
}

// waitSnapshots waits until the snapshot write-behind has caught up, as
// reported by the health endpoint.
func waitSnapshots(t *testing.T, c *demoClient, d *demo) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var h struct {
			Snapshots struct {
				Count   int64 `json:"count"`
				Pending int   `json:"pending"`
			} `json:"snapshots"`
		}
		r := c.get("http://" + d.admin + "/craftedge/health")
		if err := json.Unmarshal([]byte(r.body), &h); err == nil && h.Snapshots.Count > 0 && h.Snapshots.Pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshots not written after 5s: %s", r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitClosed waits until nothing accepts connections on addr.
func waitClosed(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		_ = conn.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections after stop", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRunDemoStopsOnCancel(t *testing.T) {
	var out syncBuffer
	opts := testDemoOptions(t, "", &out)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runDemo(ctx, opts, nil) }()

	c := newDemoClient(t)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "Things to try") {
		select {
		case err := <-done:
			t.Fatalf("runDemo returned early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("runDemo printed no instructions")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := c.get("http://" + opts.Listen + "/"); r.status != http.StatusOK {
		t.Errorf("home page: %d", r.status)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("runDemo: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("runDemo did not return after cancel")
	}
	waitClosed(t, opts.Listen)
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The Caddyfile at the root of the repository (the real config for
// fronting Craft) must stay valid and formatted.
func TestRootCaddyfileAdapts(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("..", "..", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	if formatted := caddyfile.Format(body); !bytes.Equal(formatted, body) {
		t.Error("the root Caddyfile is not formatted: run craftedge fmt --overwrite Caddyfile")
	}
	cfgJSON, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(body, map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	if len(warnings) > 0 {
		t.Errorf("warnings: %v", warnings)
	}
	for _, want := range []string{`"handler":"craftedge"`, `"upstream":"craft"`, `"root":"/var/www/craft/web"`,
		`"handler":"file_server"`, `"transport":{"protocol":"fastcgi"`, `"handler":"encode"`, `"craft.example.com"`} {
		if !bytes.Contains(cfgJSON, []byte(want)) {
			t.Errorf("adapted root Caddyfile lacks %s", want)
		}
	}
}

// TestDemoVendors: the demo's simulated shop is synced into records at
// start; the read model and the live route keep answering while the
// simulator is down.
func TestDemoVendors(t *testing.T) {
	var out syncBuffer
	opts := testDemoOptions(t, "", &out)
	d := startTestDemo(t, opts)
	d.printInstructions(&out)
	c := newDemoClient(t)
	site := "http://" + opts.Listen

	waitDemoSynced(t, c, d)
	rec := c.get(site + "/vendors/v1/shop/product/3")
	if rec.status != 200 || !strings.Contains(rec.body, `"title"`) {
		t.Fatalf("read model: %d %.200s", rec.status, rec.body)
	}
	live := c.get(site + "/shop-api/products/3")
	if live.status != 200 || !strings.Contains(live.cacheStatus(), "fwd=miss; stored") {
		t.Fatalf("live read: %d %q", live.status, live.cacheStatus())
	}

	// A change at the shop: its signed webhook makes craftedge refetch the
	// product, so the read model shows it at once.
	shopPut := func(id, title string) {
		t.Helper()
		r := c.do(http.MethodPut, d.vendor+"/v2/products/"+id,
			`{"sku":"SKU-`+id+`","title":{"en":"`+title+`"},"price":{"amount":990,"currency":"EUR"},"stock":2}`,
			"Authorization", "Bearer "+vendorsim.DefaultCommerceToken, "Content-Type", "application/json")
		if r.status != 200 && r.status != 201 {
			t.Fatalf("PUT at the shop: %d %s", r.status, r.body)
		}
		d.sim.WaitWebhooks()
	}
	shopPut("4", "Renamed")
	waitFor(t, "the webhook's refetch", func() bool {
		return strings.Contains(c.get(site+"/vendors/v1/shop/product/4").body, `"Renamed"`)
	})

	// A dropped webhook: the record stays old until a sync pass heals it
	// (the demo's runs every minute; a backfill here, not to wait).
	if err := d.sim.SetWebhookDropRate(1); err != nil {
		t.Fatal(err)
	}
	shopPut("5", "Healed")
	if hooks := d.sim.Webhooks(); !hooks[len(hooks)-1].Dropped {
		t.Fatalf("last webhook not dropped: %+v", hooks[len(hooks)-1])
	}
	if strings.Contains(c.get(site+"/vendors/v1/shop/product/5").body, `"Healed"`) {
		t.Fatal("the record changed without its webhook")
	}
	if r := c.do(http.MethodPost, "http://"+d.admin+"/craftedge/backfill", `{"vendor":"shop","resource":"product"}`,
		"Content-Type", "application/json"); r.status != http.StatusAccepted {
		t.Fatalf("backfill: %d %s", r.status, r.body)
	}
	waitFor(t, "the sync to heal the dropped webhook", func() bool {
		return strings.Contains(c.get(site+"/vendors/v1/shop/product/5").body, `"Healed"`)
	})
	_ = d.sim.SetWebhookDropRate(0)

	// Step 10: writes through the outbox need the demo's write token; the
	// product resource is public, so its records are read anonymously.
	written := `{"sku":"SKU-6","title":{"en":"Written"},"price":{"amount":1200,"currency":"EUR"},"stock":1}`
	if r := c.do(http.MethodPut, site+"/vendors/v1/shop/product/6", written, "Content-Type", "application/json"); r.status != http.StatusUnauthorized {
		t.Fatalf("anonymous outbox write: %d %s, want 401", r.status, r.body)
	}
	w := c.do(http.MethodPut, site+"/vendors/v1/shop/product/6", written,
		"Content-Type", "application/json", "Authorization", "Bearer "+recordsToken())
	if w.status != http.StatusAccepted {
		t.Fatalf("outbox write with the demo token: %d %s", w.status, w.body)
	}
	if !strings.Contains(out.String(), "-H 'Authorization: Bearer "+recordsToken()+"'") {
		t.Errorf("instructions lack the write with the demo token:\n%s", out.String())
	}
	waitFor(t, "the outbox write to reach the record", func() bool {
		return strings.Contains(c.get(site+"/vendors/v1/shop/product/6").body, `"Written"`)
	})

	// The shop goes down: nothing a visitor sees changes.
	rec = c.get(site + "/vendors/v1/shop/product/3")
	waitSnapshots(t, c, d)
	if err := d.sim.Chaos().Set(vendorsim.ChaosConfig{Outage: vendorsim.OutageClose}); err != nil {
		t.Fatal(err)
	}
	c.purge(d, `"vendor:shop","shop:product:3"`)
	if r := c.get(site + "/vendors/v1/shop/product/3"); r.status != 200 || r.body != rec.body {
		t.Fatalf("read model with the shop down: %d %.200s", r.status, r.body)
	}
	r := c.get(site + "/shop-api/products/3")
	// The soft-purged memory copy, or the snapshot once it is gone.
	if r.status != 200 || !(strings.Contains(r.cacheStatus(), "detail=snapshot") || strings.Contains(r.cacheStatus(), "detail=stale")) {
		t.Fatalf("live read with the shop down: %d %q", r.status, r.cacheStatus())
	}
	if !strings.Contains(out.String(), "/shop-api/products/3") || !strings.Contains(out.String(), vendorsim.ControlChaosPath) {
		t.Fatalf("instructions do not show the vendor steps:\n%s", out.String())
	}
}

// waitDemoSynced waits for the demo's first shop sync to complete.
func waitDemoSynced(t *testing.T, c *demoClient, d *demo) {
	t.Helper()
	waitFor(t, "the first shop sync", func() bool {
		return strings.Contains(c.get("http://"+d.admin+"/craftedge/health").body, `"last_sync"`)
	})
}
