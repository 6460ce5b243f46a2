package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/craftedge/craftedge/demoorigin"
)

// `craftedge demo --cluster N`: N gateway nodes in front of one demo
// origin, each a craftedge process of its own (Caddy runs one config per
// process) running an embedded NATS server; the servers cluster through
// NATS routes, so a purge made through one node reaches the others.

// Bounds of --cluster.
const (
	minDemoCluster = 2
	maxDemoCluster = 5
)

// clusterDemoOptions configures a cluster demo.
type clusterDemoOptions struct {
	// Nodes is how many gateway nodes run.
	Nodes int
	// Listen is the first node's address; node i listens on its port + i.
	Listen string
	// Admin is the first node's admin address; node i's is its port + i.
	Admin string
	// Dir holds each node's Caddyfile, bbolt file, NATS storage and log.
	Dir string
	// Exe is the craftedge binary the nodes run (default: this one); Env
	// is added to their environment.
	Exe string
	Env []string
	// Out receives the instructions; nil means os.Stdout.
	Out io.Writer
}

// clusterDemo is a running cluster demo.
type clusterDemo struct {
	opts      clusterDemoOptions
	origin    string
	originSrv *http.Server
	nodes     []*clusterDemoNode
}

// clusterDemoNode is one gateway process.
type clusterDemoNode struct {
	name        string
	site, admin string
	dir         string
	cmd         *exec.Cmd
	exited      chan struct{}
	log         *os.File
}

func cmdDemoCluster(ctx context.Context, opts clusterDemoOptions, onDone func()) error {
	d, err := startClusterDemo(ctx, opts)
	if err != nil {
		return err
	}
	d.printInstructions()
	<-ctx.Done()
	if onDone != nil {
		onDone()
	}
	fmt.Fprintln(d.opts.Out, "\nStopping the craftedge cluster demo...")
	return d.stop()
}

// demoPorts returns n addresses from addr's host and port upwards.
func demoPorts(flag, addr string, n int) ([]string, error) {
	host, port, err := splitHostPort(flag, addr)
	if err != nil {
		return nil, err
	}
	p, _ := strconv.Atoi(port)
	if p == 0 || p+n-1 > 65535 {
		return nil, fmt.Errorf("%s %q: give a port with room for %d nodes above it", flag, addr, n)
	}
	out := make([]string, n)
	for i := range out {
		out[i] = net.JoinHostPort(host, strconv.Itoa(p+i))
	}
	return out, nil
}

// freeLoopbackPorts reserves n free loopback ports (free a moment ago).
func freeLoopbackPorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	out := make([]int, n)
	for i := range out {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		out[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return out, nil
}

// clusterDemoCaddyfile is node i's Caddyfile: the gateway in front of the
// origin, an embedded NATS server routed to the other nodes'.
func clusterDemoCaddyfile(name, admin, site, dir, origin string, natsPort, routePort int, routes []string) string {
	return fmt.Sprintf(`# craftedge demo --cluster: node %[1]s
{
	admin %[2]s
	grace_period 1s
	craftedge {
		storage %[4]s
		memory 64MiB
		cluster {
			node_name %[1]s
			embedded {
				listen 127.0.0.1:%[6]d
				store_dir %[5]s
				cluster_name craftedge-demo
				cluster_listen 127.0.0.1:%[7]d
				routes %[8]s
			}
		}
	}
}

http://%[3]s {
	craftedge {
		upstream craft
		ttl 1h
	}
	reverse_proxy %[9]s
}
`, name, admin, site, caddyfileQuote(filepath.Join(dir, "craftedge.db")), caddyfileQuote(filepath.Join(dir, "nats")),
		natsPort, routePort, strings.Join(routes, " "), origin)
}

// caddyfileQuote quotes a path for a Caddyfile.
func caddyfileQuote(s string) string { return strconv.Quote(s) }

func startClusterDemo(ctx context.Context, opts clusterDemoOptions) (*clusterDemo, error) {
	if opts.Nodes < minDemoCluster || opts.Nodes > maxDemoCluster {
		return nil, fmt.Errorf("--cluster %d: give %d to %d nodes", opts.Nodes, minDemoCluster, maxDemoCluster)
	}
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	if opts.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the craftedge binary: %w", err)
		}
		opts.Exe = exe
	}
	sites, err := demoPorts("--listen", opts.Listen, opts.Nodes)
	if err != nil {
		return nil, err
	}
	admins, err := demoPorts("--admin", opts.Admin, opts.Nodes)
	if err != nil {
		return nil, err
	}
	if opts.Dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, err
	}
	ports, err := freeLoopbackPorts(2 * opts.Nodes)
	if err != nil {
		return nil, fmt.Errorf("finding free ports for NATS: %w", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting the demo origin: %w", err)
	}
	d := &clusterDemo{opts: opts, origin: dialAddr(ln.Addr())}
	d.originSrv = &http.Server{Handler: demoorigin.New(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = d.originSrv.Serve(ln) }()

	for i := range opts.Nodes {
		name := fmt.Sprintf("edge-%d", i+1)
		dir := filepath.Join(opts.Dir, name)
		// A fresh NATS cluster each run (its route ports change); the
		// bbolt file stays, and its cursor reports the new stream.
		if err := os.RemoveAll(filepath.Join(dir, "nats")); err != nil {
			_ = d.stop()
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			_ = d.stop()
			return nil, err
		}
		var routes []string
		for j := range opts.Nodes {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[opts.Nodes+j]))
			}
		}
		cfg := clusterDemoCaddyfile(name, admins[i], sites[i], dir, d.origin, ports[i], ports[opts.Nodes+i], routes)
		n := &clusterDemoNode{name: name, site: sites[i], admin: admins[i], dir: dir}
		d.nodes = append(d.nodes, n)
		if err := n.start(opts, cfg); err != nil {
			_ = d.stop()
			return nil, err
		}
	}
	fmt.Fprintf(opts.Out, "Starting %d craftedge nodes (logs in %s/edge-*/craftedge.log); their NATS servers form a cluster...\n", opts.Nodes, opts.Dir)
	for _, n := range d.nodes {
		if err := n.waitReady(ctx); err != nil {
			_ = d.stop()
			return nil, err
		}
	}
	return d, nil
}

func (n *clusterDemoNode) start(opts clusterDemoOptions, cfg string) error {
	path := filepath.Join(n.dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return err
	}
	log, err := os.Create(filepath.Join(n.dir, "craftedge.log"))
	if err != nil {
		return err
	}
	n.log = log
	cmd := exec.Command(opts.Exe, "run", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(append(os.Environ(), opts.Env...),
		"XDG_DATA_HOME="+filepath.Join(n.dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(n.dir, "config"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting node %s: %w", n.name, err)
	}
	n.cmd = cmd
	n.exited = make(chan struct{})
	go func() { _ = cmd.Wait(); close(n.exited) }()
	return nil
}

// waitReady polls the node's health until its cluster state is ready.
func (n *clusterDemoNode) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case <-n.exited:
			return fmt.Errorf("node %s exited; see %s", n.name, n.log.Name())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if st, _ := n.clusterState(); st == "ready" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s not ready after 2 minutes; see %s", n.name, n.log.Name())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clusterState reads the node's cluster state from its health.
func (n *clusterDemoNode) clusterState() (string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + n.admin + "/craftedge/health")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var h struct {
		Cluster *struct {
			State string `json:"state"`
		} `json:"cluster"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || h.Cluster == nil {
		return "", errors.New("no cluster in health")
	}
	return h.Cluster.State, nil
}

func (n *clusterDemoNode) stop() error {
	if n.cmd == nil {
		return nil
	}
	_ = n.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-n.exited:
	case <-time.After(30 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
	n.cmd = nil
	return n.log.Close()
}

func (d *clusterDemo) stop() error {
	var errs []error
	for _, n := range d.nodes {
		errs = append(errs, n.stop())
	}
	errs = append(errs, d.originSrv.Close())
	return errors.Join(errs...)
}

func (d *clusterDemo) printInstructions() {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	first, second := d.nodes[0], d.nodes[1]
	p("")
	p("craftedge cluster demo is running: %d nodes, each with an embedded NATS server,", len(d.nodes))
	p("clustered through NATS routes. Press Ctrl+C to stop.")
	p("")
	for _, n := range d.nodes {
		p("  %-7s site http://%s/   admin http://%s/craftedge/health", n.name, displayAddr(n.site), displayAddr(n.admin))
	}
	p("  Origin, the Craft stand-in http://%s/", d.origin)
	p("")
	p("See a purge made through %s reach %s:", first.name, second.name)
	p("")
	p("  # 1. Cache the home page on %s (a miss, then a hit):", second.name)
	p("  curl -s -o /dev/null -w '%%header{cache-status}\\n' http://%s/", displayAddr(second.site))
	p("  curl -s -o /dev/null -w '%%header{cache-status}\\n' http://%s/", displayAddr(second.site))
	p("")
	p("  # 2. Purge the blog's tag through %s's admin API:", first.name)
	p("  curl -s -X POST http://%s/craftedge/purge -d '{\"tags\":[\"el:entry:section:1\"]}'", displayAddr(first.admin))
	p("")
	p("  # 3. %s fetches the page again (a miss): the purge fanned out.", second.name)
	p("  curl -s -o /dev/null -w '%%header{cache-status}\\n' http://%s/", displayAddr(second.site))
	p("")
	p("  # The cluster as %s sees it: members, lag, purges applied.", second.name)
	p("  curl -s http://%s/craftedge/health | jq .cluster", displayAddr(second.admin))
	p("")
	p("  # The kill switch, turned on through %s, is on everywhere:", first.name)
	p("  curl -s -X PUT http://%s/craftedge/snapshot-only -d '{\"enabled\":true}'", displayAddr(first.admin))
	p("  curl -s http://%s/craftedge/health | jq .snapshot_only", displayAddr(second.admin))
	p("")
	_, _ = io.WriteString(d.opts.Out, b.String())
}
