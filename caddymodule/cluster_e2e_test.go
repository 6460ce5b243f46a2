package caddymodule_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/craftedge/craftedge/caddymodule"
	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
	"github.com/craftedge/craftedge/cluster"
)

// The cluster wiring, end to end: a real NATS server with JetStream in the
// test process, the gateway under test as one node, and a peer node (the
// cluster tier, as another craftedge would use it) in the test.

// peer is another node of the cluster, run by the test.
type peer struct {
	node   *cluster.Node
	mu     sync.Mutex
	purges []cluster.Purge
}

func startPeer(t *testing.T, url string) *peer {
	t.Helper()
	p := &peer{}
	node, err := cluster.Start(cluster.Config{NodeName: "peer", URLs: []string{url}, LeaseTTL: time.Second, ReconnectWait: 20 * time.Millisecond},
		cluster.Handlers{Purge: func(pu cluster.Purge) error {
			p.mu.Lock()
			p.purges = append(p.purges, pu)
			p.mu.Unlock()
			return nil
		}}, cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Close() })
	p.node = node
	e2e.WaitFor(t, "the peer ready", func() bool { return node.State() == cluster.StateReady })
	return p
}

func (p *peer) received() []cluster.Purge {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.purges)
}

func clusterHealth(g *e2e.Gateway) *caddymodule.ClusterHealth {
	g.T.Helper()
	return e2e.AdminJSON[caddymodule.Health](g, "/craftedge/health").Cluster
}

func waitClusterReady(t *testing.T, g *e2e.Gateway) {
	t.Helper()
	e2e.WaitFor(t, "the gateway's node ready", func() bool {
		h := clusterHealth(g)
		return h != nil && h.State == "ready"
	})
}

// A purge through the gateway reaches the other nodes, with its mode;
// another node's hard purge empties the gateway's memory copy (the next
// request is a miss), its soft purge leaves it stale, and the gateway
// reports what it applied.
func TestClusterPurgesBothWays(t *testing.T) {
	nats := e2e.StartNATS(t)
	o := e2e.NewOrigin(t)
	o.Handle("/a", e2e.PageHandler("a", "post-1"))
	o.Handle("/b", e2e.PageHandler("b", "post-2"))
	// stale_after off: a soft-purged copy never answers before the origin.
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: nats.ClusterBlock("gw"), HandlerExtra: "stale_after off"})
	waitClusterReady(t, g)
	p := startPeer(t, nats.URL())

	// Through the gateway's admin API: the peer gets it, with its source.
	e2e.Purge(g, `{"tags":["post-9"],"hosts":["example.com"]}`)
	e2e.WaitFor(t, "the peer to receive the purge", func() bool { return len(p.received()) == 1 })
	got := p.received()[0]
	if got.Node != "gw" || got.Source != "admin" || !slices.Equal(got.Tags, []string{"post-9"}) || !slices.Equal(got.Hosts, []string{"example.com"}) {
		t.Fatalf("peer received %+v", got)
	}
	if !got.Soft { // purge_mode's default, settled on the gateway
		t.Fatalf("peer received %+v, want a soft purge", got)
	}

	// From the peer: the gateway drops its copy of /a, keeps /b.
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; fwd=miss; stored")
	e2e.WantCacheStatus(t, g.Get("/b"), "craftedge; fwd=miss; stored")
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; hit")
	applied := e2e.Scrape(g, `craftedge_cluster_purges_applied_total{outcome="ok"}`) // process-wide
	p.node.Publish(cluster.Purge{Tags: []string{"post-1"}, Source: "admin"})
	// Applied counts a purge as it is handed over; its cursor moves once
	// it is applied: both, for the purge to be done.
	e2e.WaitFor(t, "the gateway to apply the peer's purge", func() bool {
		h := clusterHealth(g)
		return h.Applied == 1 && h.Lag != nil && *h.Lag == 0
	})
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; fwd=miss; stored")
	e2e.WantCacheStatus(t, g.Get("/b"), "craftedge; hit")
	if n := o.Count("/a"); n != 2 {
		t.Fatalf("origin saw /a %d times, want 2", n)
	}

	// A peer's purge is not sent back, nor counted as this node's own.
	h := clusterHealth(g)
	if h.Published != 1 || h.Lag == nil || *h.Lag != 0 || !h.MemoryServes || !h.Connected {
		t.Fatalf("health %+v", h)
	}
	names := []string{}
	for _, m := range h.Members {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"gw", "peer"}) {
		t.Fatalf("members %v, want gw and peer", names)
	}
	if v := e2e.Scrape(g, `craftedge_cluster_purges_applied_total{outcome="ok"}`); v != applied+1 {
		t.Fatalf("purges applied = %v, want %v", v, applied+1)
	}
	if v := e2e.Scrape(g, `craftedge_cluster_state{state="ready"}`); v != 1 {
		t.Fatalf("state ready = %v, want 1", v)
	}

	// The mode travels: a hard purge reaches the peer hard; the peer's
	// soft purge keeps the gateway's copy of /b, stale (revalidated next).
	e2e.Purge(g, `{"tags":["post-8"],"mode":"hard"}`)
	e2e.WaitFor(t, "the peer to receive the hard purge", func() bool { return len(p.received()) == 2 })
	if got := p.received()[1]; got.Soft || !slices.Equal(got.Tags, []string{"post-8"}) {
		t.Fatalf("peer received %+v, want a hard purge of post-8", got)
	}
	p.node.Publish(cluster.Purge{Tags: []string{"post-2"}, Source: "admin", Soft: true})
	e2e.WaitFor(t, "the gateway to apply the peer's soft purge", func() bool {
		h := clusterHealth(g)
		return h.Applied == 2 && h.Lag != nil && *h.Lag == 0
	})
	e2e.WantCacheStatus(t, g.Get("/b"), "craftedge; fwd=stale; stored")
}

// NATS stopped: purges made on the gateway apply at once and wait; the
// peer's purges wait in its own queue. NATS back: each receives the
// other's, and the gateway serves no copy the peer's purge covers.
func TestClusterPurgesReplayedAfterNATSReturns(t *testing.T) {
	nats := e2e.StartNATS(t)
	o := e2e.NewOrigin(t)
	o.Handle("/a", e2e.PageHandler("a", "post-1"))
	g := e2e.StartGateway(t, o, e2e.Options{GlobalExtra: nats.ClusterBlock("gw")})
	waitClusterReady(t, g)
	p := startPeer(t, nats.URL())
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; fwd=miss; stored")

	nats.Stop()
	e2e.WaitFor(t, "the gateway disconnected", func() bool {
		h := clusterHealth(g)
		return !h.Connected && h.State == "disconnected" && h.Error != ""
	})
	e2e.Purge(g, `{"tags":["mine"]}`)
	p.node.Publish(cluster.Purge{Tags: []string{"post-1"}, Source: "admin"})
	if h := clusterHealth(g); h.Queued != 1 {
		t.Fatalf("queued = %d, want 1 (the gateway's purge, waiting for NATS)", h.Queued)
	}
	// Still served from memory: the node cannot know of the peer's purge.
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; hit")

	nats.Start()
	e2e.WaitFor(t, "the peer's purge published", func() bool { return p.node.Stats().Queued == 0 })
	e2e.WaitFor(t, "the gateway caught up", func() bool {
		h := clusterHealth(g)
		return h.State == "ready" && h.Queued == 0 && h.Lag != nil && *h.Lag == 0
	})
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; fwd=miss; stored")
	e2e.WaitFor(t, "the peer to receive the gateway's purge", func() bool {
		return slices.ContainsFunc(p.received(), func(pu cluster.Purge) bool { return slices.Equal(pu.Tags, []string{"mine"}) })
	})
}

// The kill switch: the peer's override reaches the gateway (and its bbolt
// file); the gateway's change reaches the cluster; a change made while
// NATS is unreachable applies at once and is shared when it returns.
func TestClusterKillSwitch(t *testing.T) {
	nats := e2e.StartNATS(t)
	o := e2e.NewOrigin(t)
	o.Handle("/a", e2e.PageHandler("a", "post-1"))
	storage := filepath.Join(t.TempDir(), "craftedge.db")
	opts := e2e.Options{Storage: storage, GlobalExtra: nats.ClusterBlock("gw")}
	g := e2e.StartGateway(t, o, opts)
	waitClusterReady(t, g)
	p := startPeer(t, nats.URL())
	overrides := func() map[string]bool {
		return e2e.AdminJSON[caddymodule.Health](g, "/craftedge/health").KillSwitch.Overrides
	}

	if err := p.node.SetSnapshotOnly(t.Context(), "", true); err != nil {
		t.Fatal(err)
	}
	e2e.WaitFor(t, "the peer's override on the gateway", func() bool { return overrides()[""] })

	r := g.Admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":false}`)
	e2e.WantStatus(t, r, http.StatusOK)
	e2e.WaitFor(t, "the gateway's change in the cluster", func() bool { return !p.node.SnapshotOnlyOverrides()[""] })

	// NATS down: the change applies here, pending; NATS back: shared.
	nats.Stop()
	e2e.WaitFor(t, "the gateway disconnected", func() bool { return !clusterHealth(g).Connected })
	r = g.Admin(http.MethodPut, "/craftedge/snapshot-only", `{"enabled":true,"upstream":"craft"}`)
	e2e.WantStatus(t, r, http.StatusOK)
	ks := e2e.DecodeJSON[caddymodule.KillSwitchStatus](t, r)
	if !ks.Overrides["craft"] || !ks.ClusterPending["craft"] {
		t.Fatalf("kill switch %+v, want craft on and pending", ks)
	}
	// In force here at once: the origin is not called.
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; detail=no-copy")
	if n := o.Count("/a"); n != 0 {
		t.Fatalf("origin called %d times under the kill switch", n)
	}

	// Restarted while NATS is away: the pending change survives.
	g.Restart(opts)
	if ks := e2e.AdminJSON[caddymodule.Health](g, "/craftedge/health").KillSwitch; !ks.Overrides["craft"] || !ks.ClusterPending["craft"] {
		t.Fatalf("after a restart: kill switch %+v, want craft on and pending", ks)
	}
	nats.Start()
	e2e.WaitFor(t, "the pending change in the cluster", func() bool { return p.node.SnapshotOnlyOverrides()["craft"] })
	e2e.WaitFor(t, "nothing pending", func() bool {
		return len(e2e.AdminJSON[caddymodule.Health](g, "/craftedge/health").KillSwitch.ClusterPending) == 0
	})
	if !overrides()["craft"] {
		t.Fatal("the override was lost when the cluster's set arrived")
	}
}

// A reload that keeps the cluster block keeps the node (no new gap, the
// counters go on); one without the block closes it, and the peer sees the
// gateway's consumer stop following.
func TestClusterNodeSurvivesReload(t *testing.T) {
	nats := e2e.StartNATS(t)
	o := e2e.NewOrigin(t)
	storage := filepath.Join(t.TempDir(), "craftedge.db")
	g := e2e.StartGateway(t, o, e2e.Options{Storage: storage, GlobalExtra: nats.ClusterBlock("gw")})
	waitClusterReady(t, g)
	e2e.Purge(g, `{"tags":["x"]}`)
	e2e.WaitFor(t, "published", func() bool { return clusterHealth(g).Published == 1 })
	gaps := clusterHealth(g).Gaps

	g.Reload(e2e.Options{Storage: storage, GlobalExtra: nats.ClusterBlock("gw") + "\n\t\tsnapshot_max_age 48h"})
	h := clusterHealth(g)
	if h.Published != 1 || h.Gaps != gaps || h.State != "ready" {
		t.Fatalf("after a reload: %+v, want the same node (published 1, gaps %d, ready)", h, gaps)
	}

	g.Reload(e2e.Options{Storage: storage})
	if h := e2e.AdminJSON[caddymodule.Health](g, "/craftedge/health"); h.Cluster != nil {
		t.Fatalf("without the block: cluster %+v", h.Cluster)
	}
	// Its metrics went with it (a node that left is not disconnected).
	if v := e2e.Scrape(g, "craftedge_cluster_connected"); v != -1 {
		t.Fatalf("craftedge_cluster_connected = %v without a cluster, want no series", v)
	}
	p := startPeer(t, nats.URL())
	m, err := p.node.Members(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, mm := range m.Members {
		if mm.Name == "gw" && mm.Following {
			t.Fatalf("the gateway's consumer is still followed after the node closed: %+v", mm)
		}
	}
}

// The cluster block's mistakes fail at adapt, naming the Caddyfile line.
func TestClusterCaddyfileErrors(t *testing.T) {
	o := e2e.NewOrigin(t)
	storage := filepath.Join(t.TempDir(), "x.db")
	for _, tc := range []struct {
		block, want string
		line        int
	}{
		{"cluster {\n\t\t\turls nats://x:4222\n\t\t}", "cluster: node_name is required", 0},
		{"cluster {\n\t\t\tnode_name a b\n\t\t}", "wrong argument count", 1},
		{"cluster {\n\t\t\tnode_name a.b\n\t\t\turls nats://x:4222\n\t\t}", `node_name "a.b": use 1 to 64 letters`, 0},
		{"cluster {\n\t\t\tnode_name a\n\t\t}", "give the NATS urls or an embedded server", 0},
		{"cluster {\n\t\t\tnode_name a\n\t\t\turls nats://x:4222\n\t\t\tembedded {\n\t\t\t\tlisten :4222\n\t\t\t\tstore_dir /tmp/x\n\t\t\t}\n\t\t}", "urls and an embedded server exclude each other", 0},
		{"cluster {\n\t\t\tnode_name a\n\t\t\turls\n\t\t}", "urls needs at least one value", 2},
		{"cluster {\n\t\t\tnode_name a\n\t\t\turls nats://x:4222\n\t\t\tlease_ttl 100ms\n\t\t}", "lease_ttl 100ms is shorter than 500ms", 0},
		{"cluster {\n\t\t\tnode_name a\n\t\t\turls nats://x:4222\n\t\t\tlease_ttl 0s\n\t\t}", "lease_ttl must be more than 0", 3},
		{"cluster {\n\t\t\tnode_name a\n\t\t\turls nats://x:4222\n\t\t\treplicas 7\n\t\t}", "replicas must be a positive integer up to 5", 3},
		{"cluster {\n\t\t\tnode_name a\n\t\t\turls nats://x:4222\n\t\t\tauth {\n\t\t\t\tuser u\n\t\t\t}\n\t\t}", "user and password go together", 0},
		{"cluster {\n\t\t\tnode_name a\n\t\t\turls nats://x:4222\n\t\t\tauth {\n\t\t\t\tuser u\n\t\t\t\tpassword p\n\t\t\t\ttoken {env.T}\n\t\t\t}\n\t\t}", "give one of user/password, token or creds_file", 0},
		{"cluster {\n\t\t\tnode_name a\n\t\t\turls nats://x:4222\n\t\t\ttls {\n\t\t\t\tcert_file /x.pem\n\t\t\t}\n\t\t}", "cert_file and key_file go together", 0},
		{"cluster {\n\t\t\tnode_name a\n\t\t\tembedded {\n\t\t\t\tlisten :4222\n\t\t\t}\n\t\t}", "embedded: store_dir is required", 0},
		{"cluster {\n\t\t\tnode_name a\n\t\t\tembedded {\n\t\t\t\tlisten :4222\n\t\t\t\tstore_dir /x\n\t\t\t\troutes nats-route://b:6222\n\t\t\t}\n\t\t}", "routes need cluster_listen", 0},
		{"cluster {\n\t\t\tnode_name a\n\t\t\tembedded {\n\t\t\t\tport 4222\n\t\t\t}\n\t\t}", `embedded: unrecognized subdirective "port"`, 3},
		{"cluster {\n\t\t\tnode_name a\n\t\t\turl nats://x:4222\n\t\t}", `cluster: unrecognized subdirective "url"`, 2},
		{"cluster x {\n\t\t}", "wrong argument count", 0},
		{"cluster {\n\t\t\tnode_name a\n\t\t\turls nats://x:4222\n\t\t}\n\t\tcluster {\n\t\t}", "cluster is configured twice", 4},
	} {
		e2e.WantGlobalError(t, o, storage, tc.block, tc.want, tc.line)
	}
}

// Placeholders are resolved when the config loads; an unset variable is
// an error naming the field, and nothing connects.
func TestClusterUnsetVariable(t *testing.T) {
	o := e2e.NewOrigin(t)
	storage := filepath.Join(t.TempDir(), "x.db")
	cfg := e2e.CaddyfileFor(o, e2e.Options{Storage: storage, GlobalExtra: `cluster {
			node_name a
			urls nats://127.0.0.1:1
			auth {
				token {env.CRAFTEDGE_TEST_UNSET_NATS_TOKEN}
			}
		}`})
	caddytest.AssertLoadError(t, cfg, "caddyfile", "cluster: auth token")
}

// An embedded NATS server on a fixed port: a reload changing the block
// cannot start a second server on that port, so it fails and the running
// config (and its node) stays; the process is not taken down.
func TestClusterEmbeddedReloadChangingTheBlockFails(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/a", e2e.PageHandler("a", "post-1"))
	ports, err := e2e.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	storage := filepath.Join(t.TempDir(), "craftedge.db")
	block := func(extra string) string {
		return fmt.Sprintf(`cluster {
			node_name gw
			embedded {
				listen 127.0.0.1:%d
				store_dir %s
			}
			timeout 1s
			%s
		}`, ports[0], filepath.Join(t.TempDir(), "nats"), extra)
	}
	first := block("")
	g := e2e.StartGateway(t, o, e2e.Options{Storage: storage, GlobalExtra: first})
	waitClusterReady(t, g)
	if h := clusterHealth(g); h.Embedded != fmt.Sprintf("nats://127.0.0.1:%d", ports[0]) {
		t.Fatalf("embedded %q", h.Embedded)
	}
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; fwd=miss; stored")

	caddytest.AssertLoadError(t, e2e.CaddyfileFor(o, e2e.Options{Storage: storage, GlobalExtra: block("lease_ttl 2s")}),
		"caddyfile", "cluster: embedded")
	waitClusterReady(t, g)
	e2e.WantCacheStatus(t, g.Get("/a"), "craftedge; hit")
}
