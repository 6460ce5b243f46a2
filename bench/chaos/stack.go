package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/craftedge/craftedge/demoorigin"
	"github.com/craftedge/craftedge/vendorsim"
	"github.com/craftedge/craftedge/webhook"
)

// webhookSecret signs the simulator's webhooks (Standard Webhooks).
// recordsToken authenticates the load's outbox writes (craftedge_records'
// bearer_token).
const recordsToken = "chaos-suite-records-token"

var webhookSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("chaos suite webhook secret 32 b."))

// caddyfileTemplate is craftedge's config for the run: Craft (the demo
// origin) behind the page cache, the simulated shop synced into records,
// served by the read model and live, its webhooks, and jobs.
var caddyfileTemplate = template.Must(template.New("Caddyfile").Parse(`{
	admin {{.Admin}}
	persist_config off
	auto_https off
	grace_period 1s
	craftedge {
		storage {{.Storage}}
		memory 64MiB
		warm_start {{.WarmStart}}
		purge_mode {$CHAOS_PURGE_MODE:soft}
		jobs {
			lease 10s
			kind vendor.sync {
				backoff 1s 10s
				max_attempts 20
			}
			kind vendor.refetch {
				backoff 500ms 5s
				max_attempts 100
			}
			kind outbox {
				backoff 500ms 5s
				max_attempts 100
			}
		}
		vendor shop {
			base_url {{.Vendor}}
			version path v2
			header Authorization "Bearer {env.SHOP_TOKEN}"
			timeout 1s
			rate 500/s burst 500
			retries 1
			breaker {
				failures 5
				cooldown {{.VendorCooldown}}
			}
			resource product {
				get /products/{id}
				list "/products?updated_since={since}&page={page}&per_page={per_page}" items data has_more has_more per_page 100 total total
				upsert PUT /products/{id}
				id id
				version version
				updated updated_at
				field title title.en required
				field price price.amount required
				field currency price.currency
				field stock stock
				tags shop:product:{id}
				sync every {{.SyncEvery}}
				public
			}
			webhook {
				scheme standard
				secret {env.SHOP_WEBHOOK_SECRET}
				event product.* product
			}
		}
	}
}

http://{{.Site}} {
	{{.AccessLog}}
	craftedge_webhook

	handle_path /shop-api/* {
		craftedge {
			vendor shop
			ttl 30s
			stale 24h
		}
	}

	handle /vendors/* {
		craftedge {
			upstream records
			ttl 1m
		}
		craftedge_records {
			bearer_token {env.CHAOS_RECORDS_TOKEN}
		}
	}

	handle {
		craftedge {
			upstream craft
			ttl 5m
			stale 24h
			timeout 2s
			breaker {
				failures 3
				cooldown {{.CraftCooldown}}
			}
			fallback 503 "Back soon"
		}
		reverse_proxy {{.Origin}}
	}
}
`))

// origin is the demo Craft-like site on a fixed loopback address, which
// can be taken off the network (connection refused) and put back.
type origin struct {
	site *demoorigin.Origin
	addr string

	mu  sync.Mutex
	srv *http.Server
}

func startOrigin(products int) (*origin, error) {
	o := &origin{site: demoorigin.NewCatalog(products)}
	o.site.SlowDelay = 10 * time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	o.addr = ln.Addr().String()
	o.serve(ln)
	return o, nil
}

func (o *origin) serve(ln net.Listener) {
	srv := &http.Server{Handler: o.site, ReadHeaderTimeout: 10 * time.Second}
	o.mu.Lock()
	o.srv = srv
	o.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// down closes the listener and every connection: connecting is refused.
func (o *origin) down() {
	o.mu.Lock()
	srv := o.srv
	o.srv = nil
	o.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// up listens on the same address again.
func (o *origin) up() error {
	var err error
	for range 50 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", o.addr); err == nil {
			o.serve(ln)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("origin: listening on %s again: %w", o.addr, err)
}

func (o *origin) close() { o.down() }

// gateway is the craftedge binary running as a child process.
type gateway struct {
	bin, config, logPath string
	site, admin          string // host:port
	env                  []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// buildCraftedge builds ./cmd/craftedge of the module at root into dir.
func buildCraftedge(root, dir string) (string, error) {
	bin := filepath.Join(dir, "craftedge")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/craftedge")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/craftedge: %w", err)
	}
	return bin, nil
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// newGateway writes the config. The breakers' cooldowns are at most half a
// healthy window (10s for Craft, 5s for the vendor by default), so every
// healthy window sees the breakers closed again after a fault.
func newGateway(bin, dir, originAddr, vendorURL string, syncEvery, healthy time.Duration, warmStart string) (*gateway, error) {
	site, err := freeAddr()
	if err != nil {
		return nil, err
	}
	admin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	g := &gateway{
		bin: bin, site: site, admin: admin,
		config:  filepath.Join(dir, "Caddyfile"),
		logPath: filepath.Join(dir, "craftedge.log"),
		env: append(os.Environ(),
			"SHOP_TOKEN="+vendorsim.DefaultCommerceToken,
			"SHOP_WEBHOOK_SECRET="+webhookSecret,
			"CHAOS_RECORDS_TOKEN="+recordsToken,
			"HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config")),
	}
	var b strings.Builder
	err = caddyfileTemplate.Execute(&b, map[string]string{
		"Admin": admin, "Site": site, "Origin": originAddr, "Vendor": vendorURL,
		"Storage": filepath.Join(dir, "craftedge.db"), "SyncEvery": syncEvery.String(),
		"CraftCooldown": min(10*time.Second, healthy/2).String(), "VendorCooldown": min(5*time.Second, healthy/2).String(), "WarmStart": warmStart,
		"AccessLog": accessLog(dir),
	})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(g.config, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	return g, nil
}

// accessLog is the site's log directive with CHAOS_ACCESS_LOG=1 (Caddy's
// access log in dir/access.log: each request's duration inside craftedge,
// to tell it from the load generator's; a diagnosis, not a default: it
// costs every request), else nothing.
func accessLog(dir string) string {
	if os.Getenv("CHAOS_ACCESS_LOG") == "" {
		return ""
	}
	return "log {\n\t\toutput file " + filepath.Join(dir, "access.log") + "\n\t}"
}

func (g *gateway) siteURL() string  { return "http://" + g.site }
func (g *gateway) adminURL() string { return "http://" + g.admin }

// start runs the binary and waits until its admin endpoint answers health.
func (g *gateway) start(ctx context.Context) error {
	logf, err := os.OpenFile(g.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(g.bin, "run", "--config", g.config, "--adapter", "caddyfile")
	cmd.Env = g.env
	cmd.Stdout, cmd.Stderr = logf, logf
	// The gateway dies with the suite, whatever happens to it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting craftedge: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	g.mu.Lock()
	g.cmd, g.done = cmd, done
	g.mu.Unlock()

	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("craftedge exited during start-up; see %s", g.logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := g.health(ctx); err == nil {
			return nil
		}
	}
	return fmt.Errorf("craftedge did not answer on %s within 60s; see %s", g.admin, g.logPath)
}

// cpu is the running craftedge process's id and CPU time so far
// (seconds); 0, 0 when none runs.
func (g *gateway) cpu() (int, float64) {
	g.mu.Lock()
	cmd := g.cmd
	g.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return 0, 0
	}
	return cmd.Process.Pid, procCPU(cmd.Process.Pid)
}

// kill sends SIGKILL and waits for the process to be gone.
func (g *gateway) kill() {
	g.mu.Lock()
	cmd, done := g.cmd, g.done
	g.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// stop sends SIGTERM, and SIGKILL after 10s.
func (g *gateway) stop() {
	g.mu.Lock()
	cmd, done := g.cmd, g.done
	g.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		g.kill()
	}
}

// adminClient is used for health scrapes and checks.
var adminClient = &http.Client{Timeout: 5 * time.Second}

// Health is the part of GET /craftedge/health the suite reads.
type Health struct {
	Snapshots struct {
		Count   int64 `json:"count"`
		Pending int   `json:"pending"`
		Dropped int64 `json:"dropped"`
	} `json:"snapshots"`
	Upstreams []struct {
		Name    string `json:"name"`
		Breaker string `json:"breaker"`
	} `json:"upstreams"`
	Jobs *struct {
		Kinds map[string]struct {
			Ready           int     `json:"ready"`
			Running         int     `json:"running"`
			Dead            int     `json:"dead"`
			QueueAgeSeconds float64 `json:"queue_age_seconds"`
		} `json:"kinds"`
	} `json:"jobs"`
	WarmStart WarmStartHealth `json:"warm_start"`
	Vendors   []struct {
		Name      string `json:"name"`
		Breaker   string `json:"breaker"`
		Resources []struct {
			Name       string    `json:"name"`
			LastSync   time.Time `json:"last_sync"`
			InProgress bool      `json:"in_progress"`
		} `json:"resources"`
	} `json:"vendors"`
}

// WarmStartHealth is the warm start's progress in health (warm_start).
type WarmStartHealth struct {
	State          string `json:"state"`
	Refilled       int64  `json:"refilled"`
	ServedFirst    int64  `json:"served_first"`
	OnRequest      int64  `json:"on_request"`
	SkippedPresent int64  `json:"skipped_present"`
	SkippedPurged  int64  `json:"skipped_purged"`
	Full           bool   `json:"full"`
	ElapsedMS      int64  `json:"elapsed_ms"`
	PausedMS       int64  `json:"paused_ms"`
}

func (g *gateway) health(ctx context.Context) (*Health, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.adminURL()+"/craftedge/health", nil)
	if err != nil {
		return nil, err
	}
	res, err := adminClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("health: %s", res.Status)
	}
	var h Health
	if err := json.NewDecoder(res.Body).Decode(&h); err != nil {
		return nil, fmt.Errorf("health: %w", err)
	}
	return &h, nil
}

// breaker returns the breaker state of an upstream or vendor.
func (h *Health) breaker(name string) string {
	for _, u := range h.Upstreams {
		if u.Name == name {
			return u.Breaker
		}
	}
	for _, v := range h.Vendors {
		if v.Name == name {
			return v.Breaker
		}
	}
	return ""
}

// pending is the ready+running jobs of a kind.
func (h *Health) pending(kind string) int {
	if h.Jobs == nil {
		return 0
	}
	k := h.Jobs.Kinds[kind]
	return k.Ready + k.Running
}

// lastSync is the shop product resource's last completed sync.
func (h *Health) lastSync() time.Time {
	for _, v := range h.Vendors {
		for _, r := range v.Resources {
			return r.LastSync
		}
	}
	return time.Time{}
}

// vendorSim is the simulated shop, in this process.
type vendorSim struct {
	sim *vendorsim.Sim
	srv *vendorsim.Server
}

func startVendor(products int) (*vendorSim, error) {
	sim := vendorsim.New(vendorsim.Options{Products: products, Seed: 1})
	srv, err := sim.Start("127.0.0.1:0")
	if err != nil {
		_ = sim.Close()
		return nil, fmt.Errorf("vendor simulator: %w", err)
	}
	return &vendorSim{sim: sim, srv: srv}, nil
}

func (v *vendorSim) addWebhookTarget(url string) error {
	return v.sim.AddWebhookTarget(url, webhook.Config{Scheme: webhook.SchemeStandard, Secrets: []string{webhookSecret}})
}

var errStopped = errors.New("stopped")
