package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/craftedge/craftedge/internal/natstest"
	"github.com/craftedge/craftedge/vendorsim"
)

// Cluster mode's data sharing end to end, through craftedge processes on
// one NATS server (see cluster_test.go): the replicated read model, the
// cluster outbox, shared snapshots and the vendors' cluster-wide rate
// limits. Every wait is a readiness poll of a node's health or answers.

// clusterDataCaddyfile is a node with the records API, a live vendor
// route and a cached site in front of origin.
func clusterDataCaddyfile(name, admin, site, storage, natsURL, origin, vendor, rate, resourceExtra string) string {
	block := strings.Replace(shopVendorBlock(vendor, "upsert PUT /products/{id}\n\t\t\t\t"+resourceExtra),
		"rate 1000/s burst 1000", rate, 1)
	return fmt.Sprintf(`{
	admin %s
	grace_period 1ns
	craftedge {
		storage %s
		memory 16MiB
		jobs {
			kind outbox {
				backoff 10ms 50ms
				max_attempts 1000
			}
		}
		cluster {
			node_name %s
			urls %s
			lease_ttl 2s
			reconnect_wait 50ms
		}
		%s
	}
}
http://:%s {
	bind 127.0.0.1
	handle_path /shop-api/* {
		craftedge {
			vendor shop
			ttl 1h
			timeout 2s
		}
	}
	handle /vendors/v1/* {
		craftedge_records {
			allow_anonymous_writes
		}
	}
	handle {
		craftedge {
			upstream craft
			ttl 1h
		}
		reverse_proxy %s
	}
}
`, admin, storage, name, natsURL, block, port(site), origin)
}

// port is addr's port.
func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// startDataNode starts a craftedge process with clusterDataCaddyfile.
func startDataNode(t *testing.T, name, natsURL, origin, vendor, rate, resourceExtra string) *testNode {
	t.Helper()
	return startNodeWith(t, name, func(admin, site, storage string) string {
		return clusterDataCaddyfile(name, admin, site, storage, natsURL, origin, vendor, rate, resourceExtra)
	})
}

// reload rewrites the node's Caddyfile with edit and reloads it (caddy
// reload returns once the new config runs).
func (n *testNode) reload(edit func(string) string) {
	n.t.Helper()
	b, err := os.ReadFile(n.cfgPath)
	if err != nil {
		n.t.Fatal(err)
	}
	cfg := edit(string(b))
	if cfg == string(b) {
		n.t.Fatal("reload: the config is unchanged")
	}
	if err := os.WriteFile(n.cfgPath, []byte(cfg), 0o600); err != nil {
		n.t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "reload", "--config", n.cfgPath, "--adapter", "caddyfile", "--address", n.admin)
	cmd.Env = append(os.Environ(), "CRAFTEDGE_TEST_MAIN=1", "SHOP_TOKEN="+vendorsim.DefaultCommerceToken)
	if out, err := cmd.CombinedOutput(); err != nil {
		n.t.Fatalf("node %s: reload: %v\n%s", n.name, err, out)
	}
}

// dataHealth is what the tests read of the cluster's data part of
// /craftedge/health.
type dataHealth struct {
	Cluster *struct {
		State string `json:"state"`
		Data  *struct {
			Outbox *struct {
				Accepted, Delivered uint64
			} `json:"outbox"`
			Records *struct {
				Ready              bool
				Published, Applied uint64
			} `json:"records"`
			Snapshots *struct {
				Published  uint64
				Imported   uint64 `json:"imported"`
				ImportDone bool   `json:"import_done"`
			} `json:"snapshots"`
			Quotas map[string]struct {
				Limit   int64  `json:"limit"`
				Window  string `json:"window"`
				Granted uint64 `json:"granted"`
			} `json:"quotas"`
		} `json:"data"`
	} `json:"cluster"`
}

// waitData polls the node's health until cond holds on its data part.
func (n *testNode) waitData(what string, cond func(h dataHealth) bool) {
	n.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	last := ""
	for {
		resp, err := http.Get("http://" + n.admin + "/craftedge/health")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var h dataHealth
			if json.Unmarshal(b, &h) == nil && h.Cluster != nil && h.Cluster.Data != nil {
				last = string(b)
				if cond(h) {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("node %s: timed out waiting for %s; health %s; output:\n%s", n.name, what, tail(last, 3000), tail(n.out.String(), 4000))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// siteDo sends a request to the node's site, for the site's host name
// (the same on every node, as behind a load balancer).
func (n *testNode) siteDo(method, path, body string) (int, http.Header, string) {
	n.t.Helper()
	req, err := http.NewRequest(method, "http://"+n.site+path, strings.NewReader(body))
	if err != nil {
		n.t.Fatal(err)
	}
	req.Host = "shop.test"
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header, string(b)
}

// recordVersion is the version node n's records API serves for product
// id, "" while it has none.
func (n *testNode) recordVersion(id string) string {
	n.t.Helper()
	status, _, body := n.siteDo(http.MethodGet, "/vendors/v1/shop/product/"+id, "")
	if status != http.StatusOK {
		return ""
	}
	var r struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		n.t.Fatalf("node %s: record %s: %v %q", n.name, id, err, body)
	}
	return r.Version
}

// writeGate holds the vendor's first product write (whichever node's
// worker sends it) until released; the others pass.
type writeGate struct {
	next    http.Handler
	first   atomic.Bool
	held    atomic.Bool
	release chan struct{}
}

func (g *writeGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut && g.first.CompareAndSwap(false, true) {
		g.held.Store(true)
		select {
		case <-g.release:
		case <-r.Context().Done(): // its node was killed
			return
		}
	}
	g.next.ServeHTTP(w, r)
}

func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func TestClusterDataSharing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four craftedge processes")
	}
	nats := natstest.Start(t)
	natsURL := nats.URL()

	// Craft: up until craftDown, then every connection is dropped.
	var craftDown atomic.Bool
	origin := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if craftDown.Load() {
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					_ = c.Close()
					return
				}
			}
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Tag", "page"+r.URL.Path)
		_, _ = io.WriteString(w, "<!doctype html><h1>"+r.URL.Path+"</h1>"+strings.Repeat("<p>Lorem ipsum.</p>", 40))
	}))
	sim := vendorsim.New(vendorsim.Options{Products: 25, Seed: 1})
	t.Cleanup(func() { _ = sim.Close() })
	gate := &writeGate{next: sim.Handler(), release: make(chan struct{})}
	vendor := "http://" + serve(t, gate)

	const rate = "rate 1000/s burst 1000"
	nodes := map[string]*testNode{}
	for _, name := range []string{"a", "b", "c"} {
		nodes[name] = startDataNode(t, name, natsURL, origin, vendor, rate, "sync every 24h")
	}
	for _, n := range nodes {
		n.waitCaughtUp()
	}

	// The records: the holder of sync:shop syncs; every node serves the
	// versions it stored, each from its own bbolt file.
	h := nodes["a"].waitHealth("a holder of sync:shop", func(h nodeHealth) bool {
		return len(h.Cluster.Leases) == 1 && h.Cluster.Leases[0].Holder != ""
	})
	holder := nodes[h.Cluster.Leases[0].Holder]
	holder.waitHealth("the sync done", func(h nodeHealth) bool { return h.Jobs != nil && h.Jobs.Kinds["vendor.sync"].Done == 1 })
	var others []*testNode
	for _, n := range nodes {
		if n != holder {
			others = append(others, n)
		}
	}
	for _, id := range []string{"1", "13", "25"} {
		want := holder.recordVersion(id)
		if want == "" {
			t.Fatalf("the holder %s does not serve product %s", holder.name, id)
		}
		for _, n := range others {
			waitFor(t, "product "+id+" on "+n.name, func() bool { return n.recordVersion(id) == want })
		}
	}
	for _, n := range others {
		n.waitData("the synced versions applied", func(h dataHealth) bool {
			r := h.Cluster.Data.Records
			return r != nil && r.Ready && r.Applied >= 25
		})
		hh, _ := n.health()
		if k := hh.Jobs.Kinds["vendor.sync"]; k.Done+k.Running+k.Ready != 0 {
			t.Fatalf("node %s, not the holder, ran vendor.sync jobs: %+v", n.name, k)
		}
	}

	// The outbox: a write accepted by one node, which is then killed
	// (SIGKILL) while the vendor holds the write's first attempt, is
	// delivered once, by another node: the held attempt's if another
	// node's worker took it, else after the outbox's ack wait (30s) once
	// the killed node stops renewing it. The vendor's answer is served by
	// every node.
	acceptor, deliverer := others[0], others[1]
	status, _, body := acceptor.siteDo(http.MethodPut, "/vendors/v1/shop/product/7",
		`{"sku":"SKU-7","title":{"en":"Cluster kettle"},"price":{"amount":12,"currency":"EUR"},"stock":2}`)
	if status != http.StatusAccepted {
		t.Fatalf("write through %s: %d %s", acceptor.name, status, body)
	}
	var acc struct {
		Job string `json:"job"`
	}
	if err := json.Unmarshal([]byte(body), &acc); err != nil || acc.Job == "" {
		t.Fatalf("accepted: %q %v", body, err)
	}
	waitFor(t, "the first attempt held at the vendor", gate.held.Load)
	acceptor.kill()
	close(gate.release)
	deadline := time.Now().Add(120 * time.Second)
	for {
		st, _, b := deliverer.siteDo(http.MethodGet, "/vendors/v1/outbox/"+acc.Job, "")
		var job struct {
			State    string `json:"state"`
			Attempts int    `json:"attempts"`
		}
		if st == http.StatusOK && json.Unmarshal([]byte(b), &job) == nil && job.State == "done" {
			t.Logf("the write accepted by %s delivered after %d attempt(s)", acceptor.name, job.Attempts)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the write not delivered: %d %s; %s's output:\n%s", st, b, deliverer.name, tail(deliverer.out.String(), 4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if w := sim.WritesFor(vendorsim.KindProduct, "7"); len(w) != 1 {
		t.Fatalf("the vendor applied %d writes of product 7, want 1: %+v", len(w), w)
	}
	// (Whichever node ran the attempt stored the answer; the other
	// applies it.)
	for _, n := range []*testNode{holder, deliverer} {
		n.waitData("product 7's new version", func(dataHealth) bool {
			_, _, b := n.siteDo(http.MethodGet, "/vendors/v1/shop/product/7", "")
			return strings.Contains(b, "Cluster kettle")
		})
	}
	if v1, v2 := holder.recordVersion("7"), deliverer.recordVersion("7"); v1 != v2 {
		t.Fatalf("product 7: version %q on %s, %q on %s", v1, holder.name, v2, deliverer.name)
	}

	// Shared snapshots: a page stored by the holder is served by a node
	// started afterwards, on an empty file, while Craft is down.
	if st, hdr, _ := holder.siteDo(http.MethodGet, "/shared-page", ""); st != http.StatusOK || !strings.Contains(hdr.Get("Cache-Status"), "fwd=miss") {
		t.Fatalf("first request: %d, Cache-Status %q", st, hdr.Get("Cache-Status"))
	}
	holder.waitData("the page's copy shared", func(h dataHealth) bool {
		s := h.Cluster.Data.Snapshots
		return s != nil && s.Published >= 1
	})
	craftDown.Store(true)
	d := startDataNode(t, "d", natsURL, origin, vendor, rate, "")
	d.waitCaughtUp()
	d.waitData("the shared snapshots imported", func(h dataHealth) bool {
		s := h.Cluster.Data.Snapshots
		return s != nil && s.ImportDone && s.Imported >= 1
	})
	status, hdr, body := d.siteDo(http.MethodGet, "/shared-page", "")
	if status != http.StatusOK || !strings.Contains(hdr.Get("Cache-Status"), "detail=snapshot") ||
		!strings.Contains(body, "<h1>/shared-page</h1>") {
		t.Fatalf("d while Craft is down: %d, Cache-Status %q, body %.80q", status, hdr.Get("Cache-Status"), body)
	}
	// A page never stored anywhere: nothing to serve.
	if status, _, _ := d.siteDo(http.MethodGet, "/never-seen", ""); status == http.StatusOK {
		t.Fatal("d served a page nobody stored")
	}
	// Purged through the holder, Craft back: d fetches the page again
	// (the imported copy is never served as fresh).
	before, _ := d.health()
	holder.adminDo(http.MethodPost, "/craftedge/purge", `{"tags":["page/shared-page"]}`)
	d.waitHealth("the purge applied", func(h nodeHealth) bool { return h.Cluster.Applied == before.Cluster.Applied+1 })
	craftDown.Store(false)
	if st, hdr, body := d.siteDo(http.MethodGet, "/shared-page", ""); st != http.StatusOK || !fetchedAgain(hdr.Get("Cache-Status")) {
		t.Fatalf("d after the purge, Craft up: %d, Cache-Status %q, want the page fetched again; %.80q", st, hdr.Get("Cache-Status"), body)
	}
}

// The vendor's rate holds for three nodes together: with a rate of one
// request per 20 s (burst 10 per node), concurrent live reads through
// three nodes reach the vendor at most once per window they span, where
// each node alone would send 10.
func TestClusterVendorRateLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three craftedge processes")
	}
	nats := natstest.Start(t)
	sim := vendorsim.New(vendorsim.Options{Products: 40, Seed: 1})
	t.Cleanup(func() { _ = sim.Close() })
	vendor := "http://" + serve(t, sim.Handler())
	origin := serve(t, http.NotFoundHandler())
	const window = 20 * time.Second
	var nodes []*testNode
	for _, name := range []string{"a", "b", "c"} {
		nodes = append(nodes, startDataNode(t, name, nats.URL(), origin, vendor, "rate 3/m burst 10", ""))
	}
	for _, n := range nodes {
		n.waitCaughtUp()
		n.waitData("the vendor's quota", func(h dataHealth) bool {
			q, ok := h.Cluster.Data.Quotas["shop"]
			return ok && q.Limit == 1 && q.Window == "20s"
		})
	}
	// A reload of a (the node and the vendor client kept) leaves the quota
	// in place: the new config sets its own before the old one stops.
	nodes[0].reload(func(cfg string) string { return strings.Replace(cfg, "memory 16MiB", "memory 17MiB", 1) })
	nodes[0].waitData("the reloaded config's quota", func(h dataHealth) bool {
		q, ok := h.Cluster.Data.Quotas["shop"]
		return ok && q.Limit == 1
	})
	start := time.Now()
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i, n := range nodes {
		for j := range 4 {
			wg.Go(func() {
				status, _, _ := n.siteDo(http.MethodGet, fmt.Sprintf("/shop-api/products/%d", 1+i*4+j), "")
				if status == http.StatusOK {
					ok.Add(1)
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	sent := sim.Requests().Total
	// One request per window, for every window the burst touched.
	limit := int(elapsed/window) + 2
	if sent < 1 || sent > limit {
		t.Fatalf("the vendor saw %d requests from three nodes in %v; the cluster's quota allows %d (1 per %v)", sent, elapsed, limit, window)
	}
	t.Logf("12 live reads through 3 nodes in %v: %d reached the vendor, %d answered 200", elapsed, sent, ok.Load())
	if int(ok.Load()) > sent {
		t.Fatalf("%d answers for %d vendor requests", ok.Load(), sent)
	}
}
