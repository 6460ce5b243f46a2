package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/craftedge/craftedge/vendorsim"
)

// The backfill tests run the real command: the test binary re-executes
// itself as craftedge (TestMain) with the backfill arguments, against a
// vendor simulator behind a gate that can hold list pages, so an
// interruption lands on a known page.

func TestMain(m *testing.M) {
	if os.Getenv("CRAFTEDGE_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// pageGate forwards to the simulator and holds list requests for pages at
// or after holdFrom until released.
type pageGate struct {
	next     http.Handler
	mu       sync.Mutex
	holdFrom int
	release  chan struct{}
	held     chan int // receives the page number of each held request
	pages    []int    // pages requested, in order
}

func newPageGate(next http.Handler, holdFrom int) *pageGate {
	return &pageGate{next: next, holdFrom: holdFrom, release: make(chan struct{}), held: make(chan int, 16)}
}

func (g *pageGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p, err := strconv.Atoi(r.URL.Query().Get("page")); err == nil {
		g.mu.Lock()
		g.pages = append(g.pages, p)
		hold := g.holdFrom > 0 && p >= g.holdFrom
		release := g.release
		g.mu.Unlock()
		if hold {
			g.held <- p
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
	}
	g.next.ServeHTTP(w, r)
}

func (g *pageGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.holdFrom > 0 {
		g.holdFrom = 0
		close(g.release)
	}
}

func (g *pageGate) requested() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]int(nil), g.pages...)
}

func startGatedSim(t *testing.T, products, holdFrom int) (*vendorsim.Sim, *pageGate, string) {
	t.Helper()
	sim := vendorsim.New(vendorsim.Options{Products: products, Seed: 1})
	t.Cleanup(func() { _ = sim.Close() })
	gate := newPageGate(sim.Handler(), holdFrom)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: gate, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { gate.open(); _ = srv.Close() })
	return sim, gate, "http://" + ln.Addr().String()
}

func backfillCaddyfile(admin, storage, vendorURL, site string) string {
	return fmt.Sprintf(`{
	admin %s
	craftedge {
		storage %s
		%s
	}
}
http://%s {
	craftedge_records
}
`, admin, storage, shopVendorBlock(vendorURL, ""), site)
}

// shopVendorBlock is the global option's vendor block of the simulator's
// shop (its products), with resourceExtra added to the resource.
func shopVendorBlock(vendorURL, resourceExtra string) string {
	return fmt.Sprintf(`vendor shop {
			base_url %s
			version path v2
			header Authorization "Bearer {env.SHOP_TOKEN}"
			timeout 10s
			rate 1000/s burst 1000
			resource product {
				get /products/{id}
				list "/products?updated_since={since}&page={page}&per_page={per_page}" items data has_more has_more per_page 10 total total
				id id
				version version
				updated updated_at
				field title title.en required
				tags shop:product:{id}
				public
				%s
			}
		}`, vendorURL, resourceExtra)
}

// backfillRun is one run of the command in a subprocess.
type backfillRun struct {
	cmd *exec.Cmd
	out *syncBuffer
}

func startBackfill(t *testing.T, caddyfile string, args ...string) *backfillRun {
	t.Helper()
	return startCommand(t, caddyfile, "backfill", args...)
}

// startCommand runs a craftedge subcommand with --config caddyfile.
func startCommand(t *testing.T, caddyfile, name string, args ...string) *backfillRun {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], append([]string{name, "--config", cfgPath, "--adapter", "caddyfile"}, args...)...)
	cmd.Env = append(os.Environ(), "CRAFTEDGE_TEST_MAIN=1", "SHOP_TOKEN="+vendorsim.DefaultCommerceToken,
		"XDG_DATA_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	run := &backfillRun{cmd: cmd, out: out}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	return run
}

// wait returns the exit code; it fails the test after a generous deadline.
func (r *backfillRun) wait(t *testing.T) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(60 * time.Second):
		t.Fatalf("backfill did not exit; output:\n%s", r.out.String())
		return -1
	}
}

func waitHeld(t *testing.T, gate *pageGate, want int) {
	t.Helper()
	select {
	case p := <-gate.held:
		if p != want {
			t.Fatalf("held page %d, want %d", p, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("page %d was never requested (pages so far %v)", want, gate.requested())
	}
}

func TestBackfillLocalStopsCleanlyAndResumes(t *testing.T) {
	_, gate, simURL := startGatedSim(t, 55, 4)
	storage := filepath.Join(t.TempDir(), "craftedge.db")
	cfg := backfillCaddyfile(freeAddr(t), storage, simURL, freeAddr(t))

	// First run: pages 1-3 are stored, page 4 is held; Ctrl-C.
	run := startBackfill(t, cfg, "shop", "product")
	waitHeld(t, gate, 4)
	if err := run.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := run.wait(t); code != 0 {
		t.Fatalf("interrupted backfill exited %d:\n%s", code, run.out.String())
	}
	out := run.out.String()
	if !strings.Contains(out, "running the backfill of shop/product here") ||
		!strings.Contains(out, "stopped before page 4 (30 records so far); rerun to resume") {
		t.Fatalf("interrupted run output:\n%s", out)
	}
	if !strings.Contains(out, "records") || !regexp.MustCompile(`\d+/55`).MatchString(out) {
		t.Fatalf("no progress bar with the vendor's total in:\n%s", out)
	}

	// Rerun: resumes at page 4, never lists pages 1-3 again.
	gate.open()
	before := len(gate.requested())
	run = startBackfill(t, cfg, "shop", "product")
	if code := run.wait(t); code != 0 {
		t.Fatalf("resumed backfill exited %d:\n%s", code, run.out.String())
	}
	if got := gate.requested()[before:]; fmt.Sprint(got) != "[4 5 6]" {
		t.Fatalf("resumed run listed pages %v, want [4 5 6]", got)
	}
	if out := run.out.String(); !strings.Contains(out, "backfill of shop/product done: 55 records in 6 pages, 55 changed") {
		t.Fatalf("resumed run output:\n%s", out)
	}

	// A third run is a new full pass: everything listed, nothing changed.
	before = len(gate.requested())
	run = startBackfill(t, cfg, "shop", "product")
	if code := run.wait(t); code != 0 {
		t.Fatalf("second backfill exited %d:\n%s", code, run.out.String())
	}
	if got := gate.requested()[before:]; fmt.Sprint(got) != "[1 2 3 4 5 6]" {
		t.Fatalf("second backfill listed pages %v", got)
	}
	if out := run.out.String(); !strings.Contains(out, "55 records in 6 pages, 0 changed") {
		t.Fatalf("second backfill output:\n%s", out)
	}
}

func TestBackfillErrors(t *testing.T) {
	cfg := backfillCaddyfile(freeAddr(t), filepath.Join(t.TempDir(), "x.db"), "http://127.0.0.1:1", freeAddr(t))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"nosuch", "product"}, `is not configured in the craftedge app`},
		{[]string{"shop", "nosuch"}, `has no resource`},
		{[]string{"shop", "product"}, "failed"}, // the vendor is down
	} {
		run := startBackfill(t, cfg, tc.args...)
		if code := run.wait(t); code == 0 || !strings.Contains(run.out.String(), tc.want) {
			t.Fatalf("backfill %v: exit %d, output:\n%s\nwant an error with %q", tc.args, code, run.out.String(), tc.want)
		}
	}
}

func TestBackfillThroughRunningInstance(t *testing.T) {
	t.Setenv("SHOP_TOKEN", vendorsim.DefaultCommerceToken)
	_, gate, simURL := startGatedSim(t, 25, 2)
	admin, site := freeAddr(t), freeAddr(t)
	cfg := backfillCaddyfile(admin, filepath.Join(t.TempDir(), "craftedge.db"), simURL, site)
	cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })

	// The instance holds the bbolt file: the command asks it. Ctrl-C only
	// stops watching.
	run := startBackfill(t, cfg, "shop", "product")
	waitHeld(t, gate, 2)
	if err := run.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := run.wait(t); code != 0 {
		t.Fatalf("watcher exited %d:\n%s", code, run.out.String())
	}
	first := run.out.String()
	jobID := regexp.MustCompile(`as job ([0-9a-f]{16})`).FindStringSubmatch(first)
	if jobID == nil || !strings.Contains(first, "goes on in the instance") {
		t.Fatalf("watcher output:\n%s", first)
	}

	// A rerun joins the same job and watches it to the end.
	run = startBackfill(t, cfg, "shop", "product")
	waitFor(t, "the rerun to join", func() bool { return strings.Contains(run.out.String(), "as job") })
	gate.open()
	if code := run.wait(t); code != 0 {
		t.Fatalf("rerun exited %d:\n%s", code, run.out.String())
	}
	out := run.out.String()
	if !strings.Contains(out, "as job "+jobID[1]) || !strings.Contains(out, "done: 25 records in 3 pages, 25 changed") {
		t.Fatalf("rerun output (want job %s):\n%s", jobID[1], out)
	}
	resp, err := http.Get("http://" + site + "/vendors/v1/shop/product/25")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rec struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&rec); err != nil || resp.StatusCode != 200 || rec.ID != "25" {
		t.Fatalf("record 25 after the backfill: status %d, %+v, %v", resp.StatusCode, rec, err)
	}
}

// waitFor polls a readiness condition with a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
