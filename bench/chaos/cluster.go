package main

// Cluster mode (-cluster N, issue 15): N craftedge processes, each with its
// own bbolt file and ports, joined through one NATS server with JetStream
// that the suite runs in this process (github.com/nats-io/nats-server/v2);
// the load spread round-robin over the nodes; two faults between healthy
// windows: NATS down for a window (the server shut down, then started again
// on the same port and store directory), then one node SIGKILLed for good.
// Purges made through node 1 while NATS is down must be applied by every
// other node once NATS is back.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// natsServer is the suite's NATS server. Its port and store directory stay
// the same across stop and start, so the nodes reconnect to it and the
// streams survive.
type natsServer struct {
	dir  string
	port int
	s    *server.Server
}

func startNATS(dir string) (*natsServer, error) {
	n := &natsServer{dir: dir, port: server.RANDOM_PORT}
	return n, n.start()
}

func (n *natsServer) start() error {
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: n.port, JetStream: true, StoreDir: n.dir,
		NoLog: true, NoSigs: true, DisableJetStreamBanner: true,
	})
	if err != nil {
		return fmt.Errorf("nats server: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("nats server on port %d not ready within 10s", n.port)
	}
	n.s, n.port = s, s.Addr().(*net.TCPAddr).Port
	return nil
}

// stop shuts the server down (idempotent).
func (n *natsServer) stop() {
	if n.s != nil {
		n.s.Shutdown()
		n.s.WaitForShutdown()
		n.s = nil
	}
}

func (n *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// clusterBlock is inserted into the global craftedge option of each node's
// Caddyfile.
const clusterBlock = `	craftedge {
		cluster {
			node_name %s
			urls %s
			lease_ttl 2s
			reconnect_wait 100ms
		}
`

// newClusterNode writes node i's config (the single-node Caddyfile plus a
// cluster block) in its own directory: own ports, own bbolt file.
func newClusterNode(bin, dir string, i int, originAddr, vendorURL, natsURL string, c config) (*gateway, error) {
	nd := filepath.Join(dir, fmt.Sprintf("node%d", i))
	if err := os.MkdirAll(nd, 0o700); err != nil {
		return nil, err
	}
	g, err := newGateway(bin, nd, originAddr, vendorURL, c.syncEvery, c.healthy, c.warmStart)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(g.config)
	if err != nil {
		return nil, err
	}
	const anchor = "\n\tcraftedge {\n"
	if strings.Count(string(b), anchor) != 1 {
		return nil, fmt.Errorf("%s: want one global craftedge option to add the cluster block to", g.config)
	}
	cfg := strings.Replace(string(b), anchor, "\n"+fmt.Sprintf(clusterBlock, fmt.Sprintf("node%d", i), natsURL), 1)
	if err := os.WriteFile(g.config, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	return g, nil
}

// roundRobin sends each request to the next live node: the load's URLs
// name node 1, the transport rewrites the host. A killed node is taken out
// of the rotation, as a load balancer's health check would. While
// pinSaves is set, editors' saves all go to the first node (the editor's
// session sticks to it), so a peer's copies of the entries change only
// through the purges it gets from the cluster.
type roundRobin struct {
	base     http.RoundTripper
	next     atomic.Uint64
	pinSaves atomic.Bool
	mu       sync.Mutex
	hosts    []string
}

func (rr *roundRobin) remove(host string) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	for i, h := range rr.hosts {
		if h == host {
			rr.hosts = append(rr.hosts[:i:i], rr.hosts[i+1:]...)
			return
		}
	}
}

func (rr *roundRobin) RoundTrip(req *http.Request) (*http.Response, error) {
	rr.mu.Lock()
	host := rr.hosts[rr.next.Add(1)%uint64(len(rr.hosts))]
	if rr.pinSaves.Load() && req.Method == http.MethodPost && strings.HasPrefix(req.URL.Path, "/admin/entries/") {
		host = rr.hosts[0]
	}
	rr.mu.Unlock()
	r := req.Clone(req.Context())
	r.URL.Host, r.Host = host, host
	return rr.base.RoundTrip(r)
}

// ClusterHealth is the cluster part of GET /craftedge/health.
type ClusterHealth struct {
	State     string  `json:"state"`
	Connected bool    `json:"connected"`
	Queued    int     `json:"queued"`
	Applied   uint64  `json:"applied"`
	Published uint64  `json:"published"`
	Lag       *uint64 `json:"lag"`
}

func clusterHealth(ctx context.Context, g *gateway) (*ClusterHealth, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.adminURL()+"/craftedge/health", nil)
	if err != nil {
		return nil, err
	}
	res, err := adminClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var h struct {
		Cluster *ClusterHealth `json:"cluster"`
	}
	if err := json.NewDecoder(res.Body).Decode(&h); err != nil {
		return nil, fmt.Errorf("health: %w", err)
	}
	if h.Cluster == nil {
		return nil, fmt.Errorf("health of %s has no cluster part", g.admin)
	}
	return h.Cluster, nil
}

// caughtUp: ready, connected, nothing queued to publish, nothing to apply.
func (c *ClusterHealth) caughtUp() bool {
	return c.State == "ready" && c.Connected && c.Queued == 0 && c.Lag != nil && *c.Lag == 0
}

// waitCluster polls every node's cluster health until cond holds on all of
// them or the deadline passes; it returns how long that took.
func waitCluster(ctx context.Context, nodes []*gateway, within time.Duration, cond func(*ClusterHealth) bool) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < within && ctx.Err() == nil {
		ok := true
		for _, g := range nodes {
			if h, err := clusterHealth(ctx, g); err != nil || !cond(h) {
				ok = false
				break
			}
		}
		if ok {
			return time.Since(start), true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start), false
}

// ClusterResult is what the cluster mode measured beyond Result.
type ClusterResult struct {
	Nodes      int
	NATSDownAt time.Time
	NATSUpAt   time.Time
	// Disconnected reports that every node saw NATS go away.
	Disconnected bool
	// ReadyAfter is how long after NATS came back every node reported
	// ready and caught up (Ready false: not within the bound).
	ReadyAfter time.Duration
	Ready      bool
	Purges     []PurgeCheck
	Killed     string // node killed for good
	KilledAt   time.Time
	// SurvivorsReady reports that the surviving nodes were ready and
	// caught up after the kill.
	SurvivorsReady bool
}

// PurgeCheck is one editor save made through node 1 while NATS was down.
type PurgeCheck struct {
	Entry    int
	Slug     string
	Revision int // the origin's revision right after the save
	// StaleDuringOutage lists the nodes still serving an older revision
	// right after the save (expected: they cannot know yet).
	StaleDuringOutage []string
	// Stale lists "node (revision N)" still older than Revision once NATS
	// was back and the nodes ready: what was missed.
	Stale []string
	// Checked is how many nodes were compared.
	Checked int
	SaveErr string
}

// runCluster is the cluster mode's run: it replaces the single node's
// gateway and fault list, and reuses the load, the checks and the report.
func runCluster(ctx context.Context, c config, bin, dir string, org *origin, vs *vendorSim) (*Result, *ClusterResult, error) {
	ns, err := startNATS(filepath.Join(dir, "nats"))
	if err != nil {
		return nil, nil, err
	}
	defer ns.stop()
	var nodes []*gateway
	defer func() {
		for _, g := range nodes {
			g.stop()
		}
	}()
	for i := 1; i <= c.cluster; i++ {
		g, err := newClusterNode(bin, dir, i, org.addr, vs.srv.URL(), ns.url(), c)
		if err != nil {
			return nil, nil, err
		}
		if err := g.start(ctx); err != nil {
			return nil, nil, err
		}
		nodes = append(nodes, g)
		log.Printf("node%d on %s (admin %s)", i, g.site, g.admin)
	}
	log.Printf("NATS %s, origin %s, vendor %s", ns.url(), org.addr, vs.srv.URL())
	if _, ok := waitCluster(ctx, nodes, 60*time.Second, (*ClusterHealth).caughtUp); !ok {
		return nil, nil, fmt.Errorf("the %d nodes were not ready within 60s; see %s/node*/craftedge.log", len(nodes), dir)
	}
	// Webhooks go to node 1 (never killed); so do the checks of records.
	first := nodes[0]
	if err := vs.addWebhookTarget(first.siteURL() + "/webhooks/shop"); err != nil {
		return nil, nil, err
	}
	if err := waitFirstSync(ctx, first); err != nil {
		return nil, nil, err
	}

	cr := &ClusterResult{Nodes: len(nodes)}
	res := &Result{Cfg: c}
	r := &runner{cfg: c, g: first, org: org, vs: vs}
	r.load = newLoadGen(first.siteURL(), pageURLs(c.pages), c.products, vs.sim, c.rates)
	rr := &roundRobin{base: r.load.client.Transport}
	for _, g := range nodes {
		rr.hosts = append(rr.hosts, g.site)
	}
	r.load.client.Transport = rr

	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	sc := &scraper{g: first}
	var wg sync.WaitGroup
	res.Start = time.Now()
	wg.Go(func() { r.load.run(loadCtx) })
	wg.Go(func() { sc.run(loadCtx, time.Second) })
	res.Phases = make([]Phase, 0, 6)
	window := func(name string, fault int, d time.Duration, during func()) {
		res.Phases = append(res.Phases, Phase{Name: name, Fault: fault, Start: time.Now(), CraftUp: true})
		p := &res.Phases[len(res.Phases)-1]
		log.Printf("window: %s (%s)", name, d)
		end := p.Start.Add(d)
		if during != nil {
			during()
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(end)):
		}
		p.End = time.Now()
	}

	// Fault numbers 9 and 10: none of the single-node faults' special
	// targets (p99 for Craft slow, live reads for the vendor faults) apply.
	window("warm-up", -1, c.warmup, nil)
	window("healthy", 0, c.healthy, nil)
	// From the NATS outage until the purge check, every save goes
	// through node1: a save through a peer would purge that peer's
	// entries itself and hide whether the cluster's purges reached it.
	rr.pinSaves.Store(true)
	window("9. NATS down", 9, c.fault, func() { r.natsDown(ctx, ns, nodes, cr) })
	if err := ns.start(); err != nil {
		return nil, nil, err
	}
	cr.NATSUpAt = time.Now()
	log.Printf("NATS back")
	window("healthy", 0, c.healthy, func() {
		r.checkPurges(ctx, nodes, cr)
		rr.pinSaves.Store(false)
	})
	window("10. one node SIGKILLed for good", 10, c.fault, func() {
		victim := nodes[len(nodes)-1]
		if h, err := first.health(ctx); err == nil {
			res.Restart.PendingAtKill = h.pending("outbox")
			res.Restart.SnapshotsBefore = h.Snapshots.Count
		}
		res.Restart.KilledAt = time.Now()
		victim.kill()
		rr.remove(victim.site)
		res.Restart.ReadyAt = time.Now()
		cr.Killed, cr.KilledAt = fmt.Sprintf("node%d", len(nodes)), res.Restart.KilledAt
		nodes = nodes[:len(nodes)-1]
		log.Printf("%s killed (SIGKILL) for good", cr.Killed)
		_, cr.SurvivorsReady = waitCluster(ctx, nodes, c.fault, (*ClusterHealth).caughtUp)
		if h, err := first.health(ctx); err == nil {
			res.Restart.SnapshotsAfter = h.Snapshots.Count
		}
		// Every record is still served by every survivor.
		for _, g := range nodes {
			for i := 1; i <= c.products; i++ {
				if _, status := fetchRecord(ctx, g.siteURL(), fmt.Sprint(i)); status != 200 {
					res.Restart.RecordsNotServed = append(res.Restart.RecordsNotServed, fmt.Sprintf("%d on %s (%d)", i, g.site, status))
				}
			}
		}
	})
	window("healthy", 0, c.healthy, func() {
		rc := checkRecords(ctx, first, r.load, vs.sim, c.products, 3*c.syncEvery+20*time.Second)
		res.Records8 = &rc
	})
	stopLoad()
	wg.Wait()
	waitDrained(ctx, first, time.Now().Add(60*time.Second))
	var acked []ackedWrite
	res.Samples, acked, res.Skipped, _ = r.load.snapshot()
	res.Outbox = checkOutbox(vs.sim, acked, r.load.writeSeq.Load())
	res.Scrapes = sc.points()
	res.Changes = r.load.changes.Load()
	for _, d := range vs.sim.Webhooks() {
		switch {
		case d.Dropped:
			res.Webhooks.Dropped++
		case d.Err != nil || d.Status/100 != 2:
			res.Webhooks.Failed++
		default:
			res.Webhooks.Sent++
		}
	}
	return res, cr, ctx.Err()
}

// natsDown is the NATS fault: NATS is shut down and, once every node saw
// it go, for each blog entry every peer fetches it (so holds a copy) and an
// editor saves it through node 1 (Craft answers with the purge tags; node 1
// purges its copies and queues the purge for the others); the peers still
// serving an older revision right after are recorded.
func (r *runner) natsDown(ctx context.Context, ns *natsServer, nodes []*gateway, cr *ClusterResult) {
	cr.NATSDownAt = time.Now()
	ns.stop()
	log.Printf("NATS stopped")
	_, cr.Disconnected = waitCluster(ctx, nodes, r.cfg.fault/2, func(h *ClusterHealth) bool { return !h.Connected })
	for i, slug := range entrySlugs {
		id := i + 1
		pc := PurgeCheck{Entry: id, Slug: slug}
		for _, g := range nodes[1:] {
			_, _, _ = entryRevision(ctx, g, slug) // cached on every peer
		}
		if err := saveEntry(ctx, nodes[0], id); err != nil {
			pc.SaveErr = err.Error()
		}
		pc.Revision = r.org.site.Revision(id)
		for j, g := range nodes[1:] {
			if rev, _, err := entryRevision(ctx, g, slug); err == nil && rev < pc.Revision {
				pc.StaleDuringOutage = append(pc.StaleDuringOutage, fmt.Sprintf("node%d", j+2))
			}
		}
		cr.Purges = append(cr.Purges, pc)
	}
}

// checkPurges waits (bounded by a healthy window) for every node to be
// ready and caught up after NATS came back, then asks every node for each
// entry saved during the outage: a revision older than the one Craft had
// right after the save is a stale page.
func (r *runner) checkPurges(ctx context.Context, nodes []*gateway, cr *ClusterResult) {
	cr.ReadyAfter, cr.Ready = waitCluster(ctx, nodes, r.cfg.healthy, (*ClusterHealth).caughtUp)
	log.Printf("after NATS: every node ready and caught up: %v (%s)", cr.Ready, cr.ReadyAfter.Round(time.Millisecond))
	for i := range cr.Purges {
		pc := &cr.Purges[i]
		for j, g := range nodes {
			rev, cs, err := entryRevision(ctx, g, pc.Slug)
			pc.Checked++
			switch {
			case err != nil:
				pc.Stale = append(pc.Stale, fmt.Sprintf("node%d (%v)", j+1, err))
			case rev < pc.Revision:
				pc.Stale = append(pc.Stale, fmt.Sprintf("node%d (revision %d, %s)", j+1, rev, cs))
			}
		}
	}
}

// saveEntry is an editor's save of entry id through node g.
func saveEntry(ctx context.Context, g *gateway, id int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s/admin/entries/%d", g.siteURL(), id), nil)
	if err != nil {
		return err
	}
	req.AddCookie(&http.Cookie{Name: "CraftSessionId", Value: "chaos-editor"})
	req.Header.Set("Accept", "application/json")
	res, err := adminClient.Do(req)
	if err != nil {
		return fmt.Errorf("save of entry %d through %s: %w", id, g.site, err)
	}
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("save of entry %d through %s: %s", id, g.site, res.Status)
	}
	return nil
}

// entryRevision fetches /blog/<slug> through node g and returns the
// revision its render line shows and its Cache-Status.
func entryRevision(ctx context.Context, g *gateway, slug string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.siteURL()+"/blog/"+slug, nil)
	if err != nil {
		return 0, "", err
	}
	res, err := adminClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return 0, "", err
	}
	cs := res.Header.Get("Cache-Status")
	if res.StatusCode != http.StatusOK {
		return 0, cs, fmt.Errorf("GET /blog/%s on %s: %s", slug, g.site, res.Status)
	}
	m := renderLine.FindSubmatch(body)
	if m == nil {
		return 0, cs, fmt.Errorf("GET /blog/%s on %s: no render line", slug, g.site)
	}
	rev, err := strconv.Atoi(string(m[1]))
	return rev, cs, err
}

// renderLine is the demo origin's "rendered at …, revision N (render #M)".
var renderLine = regexp.MustCompile(`revision (\d+) \(render #\d+\)`)
