// Command chaos is craftedge's chaos suite: it builds and starts the real
// craftedge binary in front of the demo Craft-like origin and the vendor
// simulator, drives a realistic mix of visitors, editors, read-model and
// live vendor reads, outbox writes and webhooks against it, injects eight
// faults between healthy windows, and reports latency, errors, how
// responses were served, breaker states, queue depth and what was lost,
// with PASS/MISS per target. Everything listens on 127.0.0.1.
//
//	go run ./bench/chaos            # full run, about 10 minutes
//	go run ./bench/chaos -short     # about 3 minutes
//
// It writes bench/chaos/results/latest.md and latency.png (-out).
//
//	go run ./bench/chaos -short -cluster 3   # cluster mode (cluster.go)
//
// writes cluster.md and cluster-latency.png instead.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// config is the run's settings, from flags.
type config struct {
	short                  bool
	warmup, healthy, fault time.Duration
	syncEvery              time.Duration
	pages, products        int
	rates                  Rates
	out                    string
	keep                   bool
	cluster                int // nodes in cluster mode, 0: one node (cluster.go)
	date, commit           string
	warmStart              string // craftedge's `warm_start`: on or off
	purgeMode              string // craftedge's `purge_mode`: soft or hard
	seed                   uint64 // of the editors' save arrivals (load.go: arrivals)
}

func parseFlags() config {
	var c config
	flag.BoolVar(&c.short, "short", false, "short windows (about 3 minutes in all), for CI")
	flag.DurationVar(&c.warmup, "warmup", 0, "warm-up before the first healthy window (default 30s, 15s with -short)")
	flag.DurationVar(&c.healthy, "healthy", 0, "length of each healthy window (default 20s, 8s with -short)")
	flag.DurationVar(&c.fault, "fault", 0, "length of each fault window (default 30s, 12s with -short)")
	flag.DurationVar(&c.syncEvery, "sync-every", 0, "the vendor resource's `sync every` (default 10s, 5s with -short)")
	flag.IntVar(&c.pages, "pages", 3000, "distinct page URLs visitors spread over (Zipf)")
	flag.IntVar(&c.products, "products", 200, "products in the vendor simulator")
	scale := flag.Float64("scale", 1, "multiplies every request rate")
	flag.StringVar(&c.out, "out", "", "directory for latest.md and latency.png (default bench/chaos/results of the module)")
	flag.IntVar(&c.cluster, "cluster", 0, "cluster mode: this many craftedge nodes (at least 2) on one NATS server, NATS down then a node SIGKILLed for good (cluster.go)")
	flag.BoolVar(&c.keep, "keep", false, "keep the temporary directory (binary, Caddyfile, bbolt file, craftedge.log)")
	flag.StringVar(&c.date, "date", "", "date printed in the report (default today)")
	flag.StringVar(&c.warmStart, "warm-start", "on", "craftedge's `warm_start` global option: on or off (for contrast)")
	flag.StringVar(&c.commit, "commit", "", "commit printed in the report (default git rev-parse --short HEAD)")
	flag.StringVar(&c.purgeMode, "purge-mode", "soft", "craftedge's `purge_mode` global option: soft or hard (for contrast)")
	flag.Uint64Var(&c.seed, "seed", 0, "seed of the editors' random save arrivals (default: drawn for the run, printed in the report)")
	flag.Parse()
	if c.seed == 0 {
		c.seed = rand.Uint64()
	}
	saveSeed = c.seed
	if c.purgeMode != "soft" && c.purgeMode != "hard" {
		log.Fatalf("-purge-mode %q: want soft or hard", c.purgeMode)
	}
	// Read by the Caddyfile ({$CHAOS_PURGE_MODE}) of every node started.
	if err := os.Setenv("CHAOS_PURGE_MODE", c.purgeMode); err != nil {
		log.Fatal(err)
	}
	if c.warmStart != "on" && c.warmStart != "off" {
		log.Fatalf("-warm-start %q: want on or off", c.warmStart)
	}
	def := func(d *time.Duration, full, short time.Duration) {
		if *d == 0 {
			*d = full
			if c.short {
				*d = short
			}
		}
	}
	def(&c.warmup, 30*time.Second, 15*time.Second)
	def(&c.healthy, 20*time.Second, 8*time.Second)
	def(&c.fault, 30*time.Second, 12*time.Second)
	def(&c.syncEvery, 10*time.Second, 5*time.Second)
	c.rates = Rates{Page: 200, CP: 2, Save: 1, ReadModel: 20, Live: 20, Outbox: 2, VendorChange: 2}
	for _, r := range []*float64{&c.rates.Page, &c.rates.CP, &c.rates.Save, &c.rates.ReadModel, &c.rates.Live, &c.rates.Outbox, &c.rates.VendorChange} {
		*r *= *scale
	}
	return c
}

func main() {
	log.SetFlags(log.Ltime)
	c := parseFlags()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		log.Fatal(err)
	}
}

// moduleRoot is the directory of the go.mod the suite belongs to.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run the suite inside the craftedge module")
	}
	return filepath.Dir(mod), nil
}

func gitCommit(root string) string {
	cmd := exec.Command("git", "rev-parse", "--short", "HEAD")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	commit := strings.TrimSpace(string(out))
	cmd = exec.Command("git", "status", "--porcelain", "--untracked-files=no")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil && len(strings.TrimSpace(string(out))) > 0 {
		commit += " (with uncommitted changes)"
	}
	return commit
}

func run(ctx context.Context, c config) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if c.out == "" {
		c.out = filepath.Join(root, "bench", "chaos", "results")
	}
	if c.commit == "" {
		c.commit = gitCommit(root)
	}
	if c.cluster != 0 && (c.cluster < 2 || c.cluster > 5) {
		return fmt.Errorf("-cluster %d: want 2 to 5 nodes", c.cluster)
	}
	if c.date == "" {
		c.date = time.Now().Format("2006-01-02")
	}
	dir, err := os.MkdirTemp("", "craftedge-chaos-")
	if err != nil {
		return err
	}
	if c.keep {
		log.Printf("keeping %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	log.Printf("building craftedge (go build -o %s/craftedge ./cmd/craftedge)", dir)
	bin, err := buildCraftedge(root, dir)
	if err != nil {
		return err
	}
	org, err := startOrigin(c.pages)
	if err != nil {
		return err
	}
	defer org.close()
	vs, err := startVendor(c.products)
	if err != nil {
		return err
	}
	defer vs.sim.Close()
	if c.cluster != 0 {
		res, cr, err := runCluster(ctx, c, bin, dir, org, vs)
		if err != nil {
			return err
		}
		return writeReport(c, res, renderCluster(cr), "cluster")
	}
	g, err := newGateway(bin, dir, org.addr, vs.srv.URL(), c.syncEvery, c.healthy, c.warmStart)
	if err != nil {
		return err
	}
	if err := g.start(ctx); err != nil {
		return err
	}
	defer g.stop()
	if err := vs.addWebhookTarget(g.siteURL() + "/webhooks/shop"); err != nil {
		return err
	}
	log.Printf("craftedge on %s (admin %s), origin %s, vendor %s", g.site, g.admin, org.addr, vs.srv.URL())
	if err := waitFirstSync(ctx, g); err != nil {
		return err
	}

	r := &runner{cfg: c, g: g, org: org, vs: vs}
	res, err := r.run(ctx)
	if err != nil {
		return err
	}
	return writeReport(c, res, "", "latest")
}

// writeReport writes <name>.md (the report, then extra) and latency.png
// (<name>-latency.png unless name is latest).
func writeReport(c config, res *Result, extra, name string) error {
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	if path := os.Getenv("CHAOS_SAMPLES"); path != "" {
		if err := writeSamples(res, path); err != nil {
			return err
		}
	}
	md := renderReport(res) + extra
	mdPath, png := filepath.Join(c.out, name+".md"), filepath.Join(c.out, "latency.png")
	if name != "latest" {
		png = filepath.Join(c.out, name+"-latency.png")
	}
	if err := os.WriteFile(mdPath, []byte(md), 0o644); err != nil {
		return err
	}
	if err := renderPlot(res, png); err != nil {
		return err
	}
	fmt.Print(md)
	log.Printf("wrote %s and %s", mdPath, png)
	return nil
}

// waitFirstSync waits for the first complete sync pass of the products.
func waitFirstSync(ctx context.Context, g *gateway) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if h, err := g.health(ctx); err == nil && !h.lastSync().IsZero() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("no sync pass completed within 60s; see %s", g.logPath)
}

// writeSamples writes every sample as CSV (class, start in Unix
// nanoseconds, latency in microseconds, status, Cache-Status) and the
// windows and the restart as comment lines, for analyses the report does
// not make (CHAOS_SAMPLES=path).
func writeSamples(res *Result, path string) error {
	var b strings.Builder
	for _, p := range res.Phases {
		fmt.Fprintf(&b, "# window %d %d %d %q\n", p.Fault, p.Start.UnixNano(), p.End.UnixNano(), p.Name)
	}
	fmt.Fprintf(&b, "# restart %d %d\n", res.Restart.KilledAt.UnixNano(), res.Restart.ReadyAt.UnixNano())
	for _, s := range res.Samples {
		fmt.Fprintf(&b, "%s,%d,%d,%d,%q\n", s.Class, s.Start.UnixNano(), s.Latency.Microseconds(), s.Status, s.CacheStatus)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
