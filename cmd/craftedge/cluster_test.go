package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/craftedge/craftedge/internal/natstest"
	"github.com/craftedge/craftedge/vendorsim"
)

// Cluster mode end to end: one NATS server with JetStream in the test
// process, three craftedge processes (this test binary re-executed as
// craftedge, TestMain) on loopback, each with its own bbolt file, in front
// of one origin and one vendor simulator. Every wait is a readiness poll
// of a node's /craftedge/health.

// testNode is one craftedge process.
type testNode struct {
	t           testing.TB
	name        string
	admin, site string
	cfgPath     string
	dataDir     string
	cmd         *exec.Cmd
	out         *syncBuffer
}

func clusterTestCaddyfile(name, admin, site, storage, natsURL, origin, vendor string) string {
	return fmt.Sprintf(`{
	admin %s
	grace_period 1ns
	craftedge {
		storage %s
		memory 16MiB
		cluster {
			node_name %s
			urls %s
			lease_ttl 2s
			reconnect_wait 50ms
		}
		%s
	}
}
http://%s {
	craftedge {
		upstream craft
		ttl 1h
	}
	reverse_proxy %s
}
`, admin, storage, name, natsURL, shopVendorBlock(vendor, "sync every 24h"), site, origin)
}

func startTestNode(t testing.TB, name, natsURL, origin, vendor string) *testNode {
	t.Helper()
	return startNodeWith(t, name, func(admin, site, storage string) string {
		return clusterTestCaddyfile(name, admin, site, storage, natsURL, origin, vendor)
	})
}

// startNodeWith starts a node process on free ports and a directory of its
// own, with the Caddyfile config returns for them; it is killed at cleanup.
func startNodeWith(t testing.TB, name string, config func(admin, site, storage string) string) *testNode {
	t.Helper()
	dir := t.TempDir()
	n := &testNode{t: t, name: name, admin: freeAddr(t), site: freeAddr(t), dataDir: dir, cfgPath: filepath.Join(dir, "Caddyfile")}
	if err := os.WriteFile(n.cfgPath, []byte(config(n.admin, n.site, filepath.Join(dir, "craftedge.db"))), 0o600); err != nil {
		t.Fatal(err)
	}
	n.start()
	t.Cleanup(n.kill)
	return n
}

func (n *testNode) start() {
	n.t.Helper()
	cmd := exec.Command(os.Args[0], "run", "--config", n.cfgPath, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "CRAFTEDGE_TEST_MAIN=1", "SHOP_TOKEN="+vendorsim.DefaultCommerceToken,
		"XDG_DATA_HOME="+filepath.Join(n.dataDir, "data"), "XDG_CONFIG_HOME="+filepath.Join(n.dataDir, "config"))
	n.out = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = n.out, n.out
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.cmd = cmd
}

// stop ends the process with SIGINT (Caddy stops gracefully) and waits.
func (n *testNode) stop() {
	n.t.Helper()
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		n.t.Fatalf("node %s did not stop; output:\n%s", n.name, n.out.String())
	}
	n.cmd = nil
}

// kill ends the process with SIGKILL (no goodbye: leases expire).
func (n *testNode) kill() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	_, _ = n.cmd.Process.Wait()
	n.cmd = nil
}

// nodeHealth is what the test reads of /craftedge/health.
type nodeHealth struct {
	SnapshotOnly struct {
		Overrides map[string]bool `json:"overrides"`
	} `json:"snapshot_only"`
	Jobs *struct {
		Kinds map[string]struct {
			Ready, Running, Done, Dead int
		} `json:"kinds"`
	} `json:"jobs"`
	Cluster *struct {
		State     string  `json:"state"`
		Connected bool    `json:"connected"`
		Queued    int     `json:"queued"`
		Applied   uint64  `json:"applied"`
		Published uint64  `json:"published"`
		Lag       *uint64 `json:"lag"`
		Leases    []struct {
			Name   string `json:"name"`
			Holder string `json:"holder"`
		} `json:"leases"`
		Members []struct {
			Name      string `json:"name"`
			Following bool   `json:"following"`
		} `json:"members"`
	} `json:"cluster"`
}

// health reads the node's health; ok is false while it does not answer.
func (n *testNode) health() (h nodeHealth, ok bool) {
	resp, err := http.Get("http://" + n.admin + "/craftedge/health")
	if err != nil {
		return h, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&h) != nil || h.Cluster == nil {
		return h, false
	}
	return h, true
}

// waitHealth polls the node's health until cond holds.
func (n *testNode) waitHealth(what string, cond func(h nodeHealth) bool) nodeHealth {
	n.t.Helper()
	var last nodeHealth
	deadline := time.Now().Add(60 * time.Second)
	for {
		h, ok := n.health()
		if ok {
			last = h
			if cond(h) {
				return h
			}
		}
		if time.Now().After(deadline) {
			b, _ := json.Marshal(last.Cluster)
			n.t.Fatalf("node %s: timed out waiting for %s; cluster health %s; output:\n%s", n.name, what, b, tail(n.out.String(), 4000))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (n *testNode) waitCaughtUp() nodeHealth {
	n.t.Helper()
	return n.waitHealth("ready and caught up", func(h nodeHealth) bool {
		c := h.Cluster
		return c.State == "ready" && c.Connected && c.Queued == 0 && c.Lag != nil && *c.Lag == 0
	})
}

// waitApplied waits until the node has applied want purges of other
// nodes: handed over (applied counts them then) and done (its cursor has
// caught up with the stream, which it moves after applying).
func (n *testNode) waitApplied(what string, want uint64) {
	n.t.Helper()
	n.waitHealth(what, func(h nodeHealth) bool {
		return h.Cluster.Applied == want && h.Cluster.Lag != nil && *h.Cluster.Lag == 0
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// get fetches a page through the node and returns its Cache-Status.
func (n *testNode) get(path string) string {
	n.t.Helper()
	resp, err := http.Get("http://" + n.site + path)
	if err != nil {
		n.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		n.t.Fatalf("node %s: GET %s: %d (Cache-Status %q)", n.name, path, resp.StatusCode, resp.Header.Get("Cache-Status"))
	}
	return resp.Header.Get("Cache-Status")
}

func (n *testNode) adminDo(method, path, body string) {
	n.t.Helper()
	req, err := http.NewRequest(method, "http://"+n.admin+path, strings.NewReader(body))
	if err != nil {
		n.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		n.t.Fatalf("node %s: %s %s: %d %s", n.name, method, path, resp.StatusCode, b)
	}
}

func wantMiss(t *testing.T, n *testNode, path string) {
	t.Helper()
	if cs := n.get(path); !fetchedAgain(cs) {
		t.Fatalf("node %s: %s Cache-Status %q, want a miss (or the soft-purged copy revalidated)", n.name, path, cs)
	}
}

// fetchedAgain reports whether a Cache-Status after a purge shows the page
// fetched from the origin and stored: a miss (hard purge) or the kept
// stale copy revalidated (a soft purge, purge_mode's default).
func fetchedAgain(cs string) bool {
	return strings.HasPrefix(cs, "craftedge; fwd=miss") || strings.HasPrefix(cs, "craftedge; fwd=stale; stored")
}

func wantHit(t *testing.T, n *testNode, path string) {
	t.Helper()
	if cs := n.get(path); cs != "craftedge; hit" {
		t.Fatalf("node %s: %s Cache-Status %q, want a hit", n.name, path, cs)
	}
}

func TestClusterThreeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three craftedge processes")
	}
	nats := natstest.Start(t)
	natsURL := nats.URL()

	var originCalls atomic.Int64
	origin := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		originCalls.Add(1)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Tag", "page"+r.URL.Path)
		_, _ = io.WriteString(w, "<!doctype html><h1>"+r.URL.Path+"</h1>"+strings.Repeat("<p>Lorem ipsum.</p>", 40))
	})}
	oln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = origin.Serve(oln) }()
	t.Cleanup(func() { _ = origin.Close() })
	_, gate, simURL := startGatedSim(t, 25, 0)

	nodes := map[string]*testNode{}
	for _, name := range []string{"a", "b", "c"} {
		nodes[name] = startTestNode(t, name, natsURL, oln.Addr().String(), simURL)
	}
	a, b, c := nodes["a"], nodes["b"], nodes["c"]
	for _, n := range nodes {
		n.waitCaughtUp()
	}

	// A scheduled sync runs once, on the node holding sync:shop.
	holder := ""
	for _, n := range nodes {
		h := n.waitHealth("a holder of sync:shop", func(h nodeHealth) bool {
			return len(h.Cluster.Leases) == 1 && h.Cluster.Leases[0].Holder != ""
		})
		if holder != "" && h.Cluster.Leases[0].Holder != holder {
			t.Fatalf("node %s sees %s holding sync:shop, another saw %s", n.name, h.Cluster.Leases[0].Holder, holder)
		}
		holder = h.Cluster.Leases[0].Holder
	}
	nodes[holder].waitHealth("the sync done", func(h nodeHealth) bool { return h.Jobs != nil && h.Jobs.Kinds["vendor.sync"].Done == 1 })
	for _, n := range nodes {
		h, _ := n.health()
		if k := h.Jobs.Kinds["vendor.sync"]; n.name != holder && k != (struct{ Ready, Running, Done, Dead int }{}) {
			t.Fatalf("node %s (not the holder %s) has vendor.sync jobs: %+v", n.name, holder, k)
		}
	}
	first := 0
	for _, p := range gate.requested() {
		if p == 1 {
			first++
		}
	}
	if first != 1 {
		t.Fatalf("the vendor's first page was listed %d times (pages %v), want once", first, gate.requested())
	}
	// The other nodes apply the synced records (each application purges
	// their pages locally) before the page checks below.
	for _, n := range nodes {
		if n.name != holder {
			n.waitData("the synced records applied", func(h dataHealth) bool {
				r := h.Cluster.Data.Records
				return r != nil && r.Ready && r.Applied == 25
			})
		}
	}

	// A purge through a: a miss on b and c.
	for _, n := range nodes {
		wantMiss(t, n, "/post")
		wantHit(t, n, "/post")
	}
	appliedB, _ := b.health()
	appliedC, _ := c.health()
	a.adminDo(http.MethodPost, "/craftedge/purge", `{"tags":["page/post"]}`)
	b.waitApplied("a's purge applied", appliedB.Cluster.Applied+1)
	c.waitApplied("a's purge applied", appliedC.Cluster.Applied+1)
	for _, n := range nodes {
		wantMiss(t, n, "/post")
	}

	// The kill switch set on b: on a and c; it survives a restart of a.
	b.adminDo(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":true}`)
	for _, n := range []*testNode{a, c} {
		n.waitHealth("b's kill switch", func(h nodeHealth) bool { return h.SnapshotOnly.Overrides[""] })
	}
	a.stop()
	a.start()
	a.waitCaughtUp()
	if h, _ := a.health(); !h.SnapshotOnly.Overrides[""] {
		t.Fatalf("a lost the kill switch in its restart: %+v", h.SnapshotOnly)
	}
	// Turned off on c while a is down: a, restarted, follows the cluster
	// (its own file still says on).
	a.stop()
	c.adminDo(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":false}`)
	b.waitHealth("c's change", func(h nodeHealth) bool { return !h.SnapshotOnly.Overrides[""] })
	a.start()
	a.waitHealth("the cluster's kill switch (off)", func(h nodeHealth) bool {
		return h.Cluster.State == "ready" && !h.SnapshotOnly.Overrides[""]
	})
	a.waitCaughtUp()

	// NATS stopped: b keeps serving its copy; a purge through a applies
	// on a and waits. NATS back: b and c replay it before serving.
	for _, n := range nodes {
		n.get("/news")
		wantHit(t, n, "/news")
	}
	nats.Stop()
	for _, n := range nodes {
		n.waitHealth("disconnected", func(h nodeHealth) bool { return !h.Cluster.Connected })
	}
	a.adminDo(http.MethodPost, "/craftedge/purge", `{"tags":["page/news"]}`)
	wantMiss(t, a, "/news")
	wantHit(t, b, "/news") // cannot know yet
	appliedB, _ = b.health()
	appliedC, _ = c.health()
	nats.Start()
	a.waitHealth("its purge published", func(h nodeHealth) bool { return h.Cluster.Connected && h.Cluster.Queued == 0 })
	b.waitApplied("a's purge replayed", appliedB.Cluster.Applied+1)
	c.waitApplied("a's purge replayed", appliedC.Cluster.Applied+1)
	for _, n := range []*testNode{b, c} {
		n.waitCaughtUp()
		wantMiss(t, n, "/news")
	}

	// The holder of sync:shop killed: another node takes the lease.
	h := b.waitHealth("a holder of sync:shop", func(h nodeHealth) bool {
		return len(h.Cluster.Leases) == 1 && h.Cluster.Leases[0].Holder != ""
	})
	holder = h.Cluster.Leases[0].Holder
	nodes[holder].kill()
	var other *testNode
	for _, n := range nodes {
		if n.name != holder {
			other = n
			break
		}
	}
	h = other.waitHealth("the lease handed over", func(h nodeHealth) bool {
		return len(h.Cluster.Leases) == 1 && h.Cluster.Leases[0].Holder != "" && h.Cluster.Leases[0].Holder != holder
	})
	t.Logf("sync:shop went from %s to %s", holder, h.Cluster.Leases[0].Holder)
}

// `demo --cluster 2`: the printed steps show a purge fanning out.
func TestDemoCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two craftedge processes")
	}
	out := &syncBuffer{}
	d, err := startClusterDemo(t.Context(), clusterDemoOptions{
		Nodes: 2, Listen: freeAddrPair(t), Admin: freeAddrPair(t), Dir: t.TempDir(),
		Exe: os.Args[0], Env: []string{"CRAFTEDGE_TEST_MAIN=1"}, Out: out,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Cleanup(func() {
		if err := d.stop(); err != nil {
			t.Error(err)
		}
	})
	d.printInstructions()
	if !strings.Contains(out.String(), `-d '{"tags":["el:entry:section:1"]}'`) {
		t.Fatalf("instructions:\n%s", out.String())
	}
	first, second := d.nodes[0], d.nodes[1]
	status := func() string {
		resp, err := http.Get("http://" + second.site + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header.Get("Cache-Status")
	}
	for i, want := range []string{"craftedge; fwd=miss; stored", "craftedge; hit"} {
		if got := status(); got != want {
			t.Fatalf("request %d: Cache-Status %q, want %q", i+1, got, want)
		}
	}
	resp, err := http.Post("http://"+first.admin+"/craftedge/purge", "application/json", strings.NewReader(`{"tags":["el:entry:section:1"]}`))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("purge: %v %v", resp, err)
	}
	resp.Body.Close()
	waitFor(t, "the purge on "+second.name, func() bool {
		r, err := http.Get("http://" + second.admin + "/craftedge/health")
		if err != nil {
			return false
		}
		defer r.Body.Close()
		var h nodeHealth
		_ = json.NewDecoder(r.Body).Decode(&h)
		return h.Cluster != nil && h.Cluster.Applied == 1 && h.Cluster.Lag != nil && *h.Cluster.Lag == 0
	})
	if got := status(); !fetchedAgain(got) {
		t.Fatalf("after the purge: Cache-Status %q, want the page fetched again", got)
	}
}

// freeAddrPair returns a loopback address whose port and the next one
// were free a moment ago.
func freeAddrPair(t *testing.T) string {
	t.Helper()
	for range 50 {
		a := freeAddr(t)
		host, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p+1)))
		if err == nil {
			_ = ln.Close()
			return a
		}
	}
	t.Fatal("no two consecutive free ports")
	return ""
}
