package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/demoorigin"
	"github.com/craftedge/craftedge/vendorsim"
	"github.com/craftedge/craftedge/webhook"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "demo",
		Usage: "[--listen <addr>] [--origin <addr>] [--vendor <addr>] [--admin <addr>] [--storage <path>] [--cluster <n>]",
		Short: "Runs a demo Craft-like site behind the craftedge gateway",
		Long: `
Starts, with no setup, a demo origin (a small Craft-like site: pages with
Cache-Tag headers, a login that sets a session cookie, a control panel and a
switch that makes the origin fail or slow down) on loopback, and the
craftedge gateway in front of it, configured by an embedded Caddyfile
(cmd/craftedge/demo.Caddyfile). Then it prints the URLs and curl commands
to try: cache hits and misses, purges by tag, the origin going down
(snapshots and the fallback page), the kill switch and the health endpoint.

A simulated e-commerce API (the vendor simulator) listens on --vendor: its
products are synced into records every minute, served by the read-model API
under /vendors/v1/ and, live, under /shop-api/; both keep answering while the
simulator is down.

The gateway listens on --listen, the origin on --origin, Caddy's admin API
(with craftedge's routes under /craftedge/) on --admin. Snapshots are kept
in --storage, by default in the system's temporary directory, so a restarted
demo still has the copies of the pages visited before.

Stop it with Ctrl+C.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().StringP("listen", "l", defaultDemoListen, "Address of the gateway (the demo site)")
			cmd.Flags().StringP("origin", "o", defaultDemoOrigin, "Address of the demo origin (the Craft stand-in)")
			cmd.Flags().String("vendor", defaultDemoVendor, "Address of the simulated shop API (vendorsim)")
			cmd.Flags().StringP("admin", "a", defaultDemoAdmin, "Address of Caddy's admin API")
			cmd.Flags().StringP("storage", "s", defaultDemoStorage(), "Path of the snapshot file (bbolt)")
			cmd.Flags().Int("cluster", 0, "Run this many gateway nodes (2 to 5) clustered through embedded NATS servers, on --listen's and --admin's ports upwards (demo_cluster.go)")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdDemo)
		},
	})
}

// demoWebhookSecret signs the simulator's webhooks to the demo (a demo
// value: real secrets come from {env.*}).
const demoWebhookSecret = "whsec_Y3JhZnRlZGdlLWRlbW8td2ViaG9vay1zZWNyZXQ="

// The demo's write token: craftedge_records accepts outbox writes with
// "Authorization: Bearer <token>", the token from this variable. The demo
// sets it to demoRecordsToken when it is unset (a demo value: a real site
// sets its own, e.g. openssl rand -hex 32).
const (
	demoRecordsTokenEnv = "CRAFTEDGE_DEMO_RECORDS_TOKEN"
	demoRecordsToken    = "craftedge-demo-records-token"
)

// recordsToken returns the demo's write token, setting the variable to its
// default when unset.
func recordsToken() string {
	if v := os.Getenv(demoRecordsTokenEnv); v != "" {
		return v
	}
	_ = os.Setenv(demoRecordsTokenEnv, demoRecordsToken)
	return demoRecordsToken
}

// demoPurgeSecret is craftedge_purge's secret in demo.Caddyfile (Standard
// Webhooks), unless CRAFTEDGE_DEMO_PURGE_SECRET is set: a demo value.
const demoPurgeSecret = "whsec_Y3JhZnRlZGdlLWRlbW8tcHVyZ2Utc2VjcmV0LTMyYnl0ZXM="

// The demo's status page login (demo.Caddyfile's basic_auth).
const (
	demoStatusUser     = "editor"
	demoStatusPassword = "craftedge-demo"
)

// Defaults of the demo's flags.
const (
	defaultDemoListen = "127.0.0.1:8080"
	defaultDemoOrigin = "127.0.0.1:8081"
	defaultDemoVendor = "127.0.0.1:8082"
	defaultDemoAdmin  = "localhost:2019"
)

func defaultDemoStorage() string {
	return filepath.Join(os.TempDir(), "craftedge-demo", "craftedge.db")
}

// demoCaddyfile is a plain Caddyfile; the demo's flags reach it through
// the CRAFTEDGE_DEMO_* environment variables (Caddyfile {$VAR:default}
// substitution, done when it is adapted), so `craftedge adapt` and
// `craftedge validate` work on the file as shipped.
//
//go:embed demo.Caddyfile
var demoCaddyfile []byte

// demoOptions configures a demo.
type demoOptions struct {
	// Listen is the gateway's address (host:port; an empty host listens on
	// every interface).
	Listen string
	// Origin is the demo origin's address; port 0 picks a free port.
	Origin string
	// Vendor is the vendor simulator's address; port 0 picks a free port.
	Vendor string
	// Admin is the address of Caddy's admin endpoint.
	Admin string
	// Storage is the path of the snapshot file.
	Storage string
	// Out receives the instructions; nil means os.Stdout.
	Out io.Writer
}

func cmdDemo(fl caddycmd.Flags) (int, error) {
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	if n := fl.Int("cluster"); n != 0 {
		err := cmdDemoCluster(ctx, clusterDemoOptions{
			Nodes: n, Listen: fl.String("listen"), Admin: fl.String("admin"),
			Dir: filepath.Join(filepath.Dir(fl.String("storage")), "cluster"),
		}, stopSignals)
		if err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
		return caddy.ExitCodeSuccess, nil
	}
	opts := demoOptions{
		Listen:  fl.String("listen"),
		Origin:  fl.String("origin"),
		Vendor:  fl.String("vendor"),
		Admin:   fl.String("admin"),
		Storage: fl.String("storage"),
	}
	if err := runDemo(ctx, opts, stopSignals); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	return caddy.ExitCodeSuccess, nil
}

// runDemo starts the demo, prints what to try and runs until ctx is done.
// onDone, if not nil, is called as soon as ctx is done (cmdDemo uses it to
// restore the default signal handling, so a second Ctrl+C kills at once).
func runDemo(ctx context.Context, opts demoOptions, onDone func()) error {
	d, err := startDemo(opts)
	if err != nil {
		return err
	}
	d.printInstructions(d.out)
	<-ctx.Done()
	if onDone != nil {
		onDone()
	}
	fmt.Fprintln(d.out, "\nStopping the craftedge demo...")
	return d.stop()
}

// demo is a running demo: the origin on its own listener and the gateway
// loaded into Caddy.
type demo struct {
	listen  string // the gateway's address, as given
	origin  string // the origin's actual address (dialable)
	vendor  string // the vendor simulator's base URL
	admin   string
	storage string
	out     io.Writer

	site      *demoorigin.Origin
	originSrv *http.Server
	sim       *vendorsim.Sim
	simSrv    *vendorsim.Server

	stopOnce sync.Once
	stopErr  error
}

// startDemo starts the origin and loads the gateway's config into Caddy.
// Stop it with stop. Caddy runs one config per process: only one demo may
// run at a time.
func startDemo(opts demoOptions) (*demo, error) {
	if opts.Listen == "" {
		opts.Listen = defaultDemoListen
	}
	if opts.Origin == "" {
		opts.Origin = defaultDemoOrigin
	}
	if opts.Vendor == "" {
		opts.Vendor = defaultDemoVendor
	}
	if opts.Admin == "" {
		opts.Admin = defaultDemoAdmin
	}
	if opts.Storage == "" {
		opts.Storage = defaultDemoStorage()
	}
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	recordsToken() // the Caddyfile's bearer_token {env.CRAFTEDGE_DEMO_RECORDS_TOKEN}
	if _, port, err := splitHostPort("--listen", opts.Listen); err != nil {
		return nil, err
	} else if port == "0" {
		return nil, fmt.Errorf("--listen %q: give a port (0 is not supported)", opts.Listen)
	}
	if _, port, err := splitHostPort("--admin", opts.Admin); err != nil {
		return nil, err
	} else if port == "0" {
		return nil, fmt.Errorf("--admin %q: give a port (0 is not supported)", opts.Admin)
	}
	if _, _, err := splitHostPort("--origin", opts.Origin); err != nil {
		return nil, err
	}
	if _, _, err := splitHostPort("--vendor", opts.Vendor); err != nil {
		return nil, err
	}
	storage, err := filepath.Abs(opts.Storage)
	if err != nil {
		return nil, fmt.Errorf("--storage %q: %w", opts.Storage, err)
	}
	if err := os.MkdirAll(filepath.Dir(storage), 0o700); err != nil {
		return nil, fmt.Errorf("--storage: %w", err)
	}

	ln, err := net.Listen("tcp", opts.Origin)
	if err != nil {
		return nil, fmt.Errorf("starting the demo origin on %s: %w (is another demo running? choose other ports with --listen, --origin and --admin)", opts.Origin, err)
	}
	d := &demo{
		listen:  opts.Listen,
		origin:  dialAddr(ln.Addr()),
		admin:   opts.Admin,
		storage: storage,
		out:     opts.Out,
		site:    demoorigin.New(),
	}
	d.originSrv = &http.Server{
		Handler:           d.site,
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = d.originSrv.Serve(ln) }()

	d.sim = vendorsim.New(vendorsim.Options{Products: 120, Seed: 1})
	d.simSrv, err = d.sim.Start(opts.Vendor)
	if err != nil {
		_ = d.originSrv.Close()
		_ = d.sim.Close()
		return nil, fmt.Errorf("starting the vendor simulator on %s: %w (choose another port with --vendor)", opts.Vendor, err)
	}
	d.vendor = d.simSrv.URL()
	closeBackends := func() {
		_ = d.originSrv.Close()
		_ = d.sim.Close()
	}

	// Webhooks go to the gateway's /webhooks/shop.
	hookURL := "http://" + displayAddr(opts.Listen) + "/webhooks/shop"
	if err := d.sim.AddWebhookTarget(hookURL, webhook.Config{Scheme: webhook.SchemeStandard, Secrets: []string{demoWebhookSecret}}); err != nil {
		closeBackends()
		return nil, err
	}

	cfgJSON, err := d.adapt()
	if err != nil {
		closeBackends()
		return nil, err
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		closeBackends()
		return nil, fmt.Errorf("starting the gateway: %w (is another demo running? choose other ports with --listen, --origin and --admin)", err)
	}
	return d, nil
}

// caddyfileEnv returns the CRAFTEDGE_DEMO_* variables demo.Caddyfile
// reads, from the demo's addresses and storage path.
func (d *demo) caddyfileEnv() (map[string]string, error) {
	host, port, err := splitHostPort("--listen", d.listen)
	if err != nil {
		return nil, err
	}
	storage, err := caddyfileRaw(d.storage)
	if err != nil {
		return nil, err
	}
	bind := ""
	switch {
	case strings.Contains(host, ":"):
		bind = "bind [" + host + "]"
	case host != "":
		bind = "bind " + host
	}
	return map[string]string{
		"CRAFTEDGE_DEMO_ADMIN":          d.admin,
		"CRAFTEDGE_DEMO_STORAGE":        storage,
		"CRAFTEDGE_DEMO_MEDIA":          filepath.Join(filepath.Dir(d.storage), "media"),
		"CRAFTEDGE_DEMO_PORT":           port,
		"CRAFTEDGE_DEMO_BIND_DIRECTIVE": bind,
		"CRAFTEDGE_DEMO_ORIGIN":         d.origin,
		"CRAFTEDGE_DEMO_VENDOR":         d.vendor,
		"CRAFTEDGE_DEMO_WEBHOOK_SECRET": demoWebhookSecret,
	}, nil
}

// setCaddyfileEnv sets the variables of caddyfileEnv in the process
// environment, where Caddy's Caddyfile adapter reads them.
func (d *demo) setCaddyfileEnv() error {
	env, err := d.caddyfileEnv()
	if err != nil {
		return err
	}
	for k, v := range env {
		if err := os.Setenv(k, v); err != nil {
			return fmt.Errorf("setting %s: %w", k, err)
		}
	}
	return nil
}

// adapt fills the demo Caddyfile and adapts it to Caddy's JSON.
func (d *demo) adapt() ([]byte, error) {
	if err := d.setCaddyfileEnv(); err != nil {
		return nil, err
	}
	body := demoCaddyfile
	adapter := caddyconfig.GetAdapter("caddyfile")
	if adapter == nil {
		return nil, errors.New("the caddyfile config adapter is not registered")
	}
	cfgJSON, warnings, err := adapter.Adapt(body, map[string]any{"filename": "demo.Caddyfile"})
	if err != nil {
		return nil, fmt.Errorf("adapting the demo Caddyfile: %w", err)
	}
	for _, w := range warnings {
		caddy.Log().Warn("demo Caddyfile", zap.String("warning", w.String()))
	}
	return cfgJSON, nil
}

// stop unloads the gateway, closes Caddy's admin endpoint and the origin.
// It is safe to call more than once.
func (d *demo) stop() error {
	d.stopOnce.Do(func() {
		// Loading an empty config with the admin endpoint disabled stops the
		// gateway and closes the admin listener (caddy.Stop alone leaves it
		// open); persist false keeps the user's autosave.json untouched.
		err := caddy.Load([]byte(`{"admin":{"disabled":true,"config":{"persist":false}}}`), true)
		if err != nil {
			err = fmt.Errorf("stopping the gateway: %w", err)
		}
		_ = caddy.Stop()
		d.stopErr = errors.Join(err, d.originSrv.Close(), d.sim.Close())
	})
	return d.stopErr
}

// printInstructions prints the URLs and the commands to try: demoSteps
// with the demo's addresses (the same steps README.md shows).
func (d *demo) printInstructions(w io.Writer) {
	a := demoAddrs{
		Site:   "http://" + displayAddr(d.listen),
		Admin:  "http://" + displayAddr(d.admin),
		Origin: "http://" + displayAddr(d.origin),
		Shop:   d.vendor,
		Token:  recordsToken(),
	}
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("")
	p("craftedge demo is running. Press Ctrl+C to stop.")
	p("")
	p("  Site, through the gateway   %s/", a.Site)
	p("  Origin, the Craft stand-in  %s/   (mode switch: %s%s)", a.Origin, a.Origin, demoorigin.ControlPath)
	p("  Shop API (vendor simulator) %s/   (chaos knobs: %s%s)", a.Shop, a.Shop, vendorsim.ControlChaosPath)
	p("  Admin API                   %s/craftedge/health", a.Admin)
	p("  Status page                 %s/status   (login %s / %s)", a.Site, demoStatusUser, demoStatusPassword)
	p("  Remote purge                %s/.craftedge/purge   (craftedge_purge: Standard Webhooks, secret %s)", a.Site, demoPurgeSecret)
	p("  Snapshots                   %s", d.storage)
	p("")
	p("Open the site in a browser: the box at the bottom of every page says when")
	p("the origin rendered it. While a page comes from the cache, it does not change.")
	p("")
	p("Things to try:")
	p("")
	writeDemoSteps(&b, a)
	p("")
	p("Snapshots stay in %s between runs: restart the demo,", d.storage)
	p("take the origin down at once, and the pages you visited before are still served.")
	p("")
	_, _ = io.WriteString(w, b.String())
}

// splitHostPort splits a host:port flag value, naming the flag in errors.
func splitHostPort(flag, addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("%s %q: want host:port, e.g. 127.0.0.1:8080: %w", flag, addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", "", fmt.Errorf("%s %q: invalid port %q", flag, addr, port)
	}
	return host, port, nil
}

// dialAddr is the address to reach a listener at: an unspecified IP
// (0.0.0.0, ::) becomes the loopback address.
func dialAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := tcp.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(tcp.Port))
}

// displayAddr is an address for URLs: an empty or unspecified host becomes
// localhost.
func displayAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// caddyfileRaw checks that s can stand between the backquotes of
// demo.Caddyfile's storage line (a backquoted token is taken literally, so
// Windows paths and spaces survive).
func caddyfileRaw(s string) (string, error) {
	if strings.ContainsAny(s, "`\r\n") {
		return "", fmt.Errorf("%q: a backquote or line break cannot appear in the demo's Caddyfile", s)
	}
	return s, nil
}
