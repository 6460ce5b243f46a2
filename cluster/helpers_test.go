package cluster

import (
	"errors"
	"fmt"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// testServer is a real NATS server with JetStream, run in the test
// process on 127.0.0.1, its storage in t.TempDir().
type testServer struct {
	t           *testing.T
	name        string
	dir         string
	cluster     string
	port        int
	clusterPort int
	s           *server.Server
}

// startServer starts a server; cluster "" runs it alone, otherwise it
// routes to routes.
func startServer(t *testing.T, name, cluster string, routes []string) *testServer {
	t.Helper()
	ts := &testServer{t: t, name: name, dir: t.TempDir(), cluster: cluster, port: server.RANDOM_PORT, clusterPort: server.RANDOM_PORT}
	ts.start(routes)
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) start(routes []string) {
	ts.t.Helper()
	opts := &server.Options{
		ServerName: ts.name, Host: "127.0.0.1", Port: ts.port,
		JetStream: true, StoreDir: ts.dir,
		NoLog: true, NoSigs: true, DisableJetStreamBanner: true,
	}
	if ts.cluster != "" {
		// NoAdvertise: clients stay on the server they were given, so
		// stopping it disconnects them (tests of a disconnected node).
		opts.Cluster = server.ClusterOpts{Name: ts.cluster, Host: "127.0.0.1", Port: ts.clusterPort, NoAdvertise: true}
		for _, r := range routes {
			u, err := url.Parse(r)
			if err != nil {
				ts.t.Fatal(err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		ts.t.Fatalf("starting NATS server %s: %v", ts.name, err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		ts.t.Fatalf("NATS server %s not ready", ts.name)
	}
	ts.s = s
	ts.port = s.Addr().(*net.TCPAddr).Port
	if ts.cluster != "" {
		ts.clusterPort = s.ClusterAddr().Port
	}
}

// stop shuts the server down (idempotent).
func (ts *testServer) stop() {
	if ts.s != nil {
		ts.s.Shutdown()
		ts.s.WaitForShutdown()
		ts.s = nil
	}
}

func (ts *testServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(ts.port) }

func (ts *testServer) routeURL() string {
	return "nats-route://127.0.0.1:" + strconv.Itoa(ts.clusterPort)
}

// startCluster starts a 3-server JetStream cluster, every server routing
// to the others, and waits for its meta leader.
func startCluster(t *testing.T) []*testServer {
	t.Helper()
	var servers []*testServer
	for i := range 3 {
		ts := &testServer{t: t, name: fmt.Sprintf("s%d", i+1), dir: t.TempDir(), cluster: "tc",
			port: server.RANDOM_PORT, clusterPort: freePort(t)}
		servers = append(servers, ts)
		t.Cleanup(ts.stop)
	}
	// Routes first (cluster ports are fixed): start writes the ports of
	// its server, which the others' goroutines must not read meanwhile.
	routes := make([][]string, len(servers))
	for i, ts := range servers {
		routes[i] = ts.routesIn(servers)
	}
	var wg sync.WaitGroup
	for i, ts := range servers {
		wg.Add(1)
		go func() { // each waits for the others before it is ready
			defer wg.Done()
			ts.start(routes[i])
		}()
	}
	wg.Wait()
	waitFor(t, "JetStream cluster of 3", func() bool {
		peers := 0
		for _, s := range servers {
			if !s.s.JetStreamIsCurrent() {
				return false
			}
			if s.s.JetStreamIsLeader() { // peers are known to the leader
				peers = len(s.s.JetStreamClusterPeers())
			}
		}
		return peers == 3
	})
	return servers
}

// freePort returns a port nothing listens on (yet).
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// restartIn restarts ts on its ports and storage, routing to the others.
func (ts *testServer) restartIn(servers []*testServer) {
	ts.t.Helper()
	ts.start(ts.routesIn(servers))
}

// routesIn returns the route URLs of the other servers.
func (ts *testServer) routesIn(servers []*testServer) []string {
	var routes []string
	for _, o := range servers {
		if o != ts {
			routes = append(routes, o.routeURL())
		}
	}
	return routes
}

// waitFor polls cond until it holds; the bound only catches a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	defer func() {
		if d := time.Since(start); d > time.Second {
			t.Logf("waited %s for %s", d.Round(time.Millisecond), what)
		}
	}()
	deadline := start.Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recorder records what a node reports, in order.
type recorder struct {
	mu     sync.Mutex
	events []string
	purges []Purge
	gaps   []Gap
	kill   map[string]bool
	kills  int
	// failGap and failPurge, when set, make Gap and Purge fail (a full
	// disk): failPurge for a purge whose first tag it returns true for.
	failGap   atomic.Bool
	failPurge func(tag string) bool
}

func (r *recorder) handlers() Handlers {
	return Handlers{
		Purge: func(p Purge) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.failPurge != nil && r.failPurge(firstTag(p)) {
				return errors.New("no space left on device")
			}
			r.purges = append(r.purges, p)
			r.events = append(r.events, fmt.Sprintf("purge:%s", firstTag(p)))
			return nil
		},
		Gap: func(g Gap) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.gaps = append(r.gaps, g)
			if r.failGap.Load() {
				r.events = append(r.events, "gap-failed:"+g.Reason)
				return errors.New("no space left on device")
			}
			r.events = append(r.events, "gap:"+g.Reason)
			return nil
		},
		State: func(s State) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.events = append(r.events, "state:"+s.String())
		},
		KillSwitch: func(m map[string]bool) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.kill = m
			r.kills++
		},
	}
}

func firstTag(p Purge) string {
	switch {
	case p.All:
		return "ALL"
	case len(p.Tags) > 0:
		return p.Tags[0]
	}
	return "?"
}

func (r *recorder) hasPurge(tag string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.purges {
		for _, t := range p.Tags {
			if t == tag {
				return true
			}
		}
	}
	return false
}

// gapList returns the gaps reported (failed ones included).
func (r *recorder) gapList() []Gap {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Gap(nil), r.gaps...)
}

// setFailPurge sets failPurge.
func (r *recorder) setFailPurge(f func(tag string) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failPurge = f
}

func (r *recorder) eventList() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

func (r *recorder) killSet() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.kill
}

// reset forgets what was recorded.
func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events, r.purges, r.gaps = nil, nil, nil
}

// startNode starts a node and closes it at cleanup.
func startNode(t *testing.T, cfg Config, r *recorder) *Node {
	t.Helper()
	if cfg.ReconnectWait == 0 {
		cfg.ReconnectWait = 50 * time.Millisecond
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	n, err := Start(cfg, r.handlers(), Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("starting node %s: %v", cfg.NodeName, err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { n.Close() }) })
	return n
}

// startReadyPair starts a server and two nodes on it, a and b, recording
// what they report, and waits until both are ready.
func startReadyPair(t *testing.T) (s *testServer, a, b *Node, ra, rb *recorder) {
	t.Helper()
	s = startServer(t, "solo", "", nil)
	ra, rb = &recorder{}, &recorder{}
	a = startNode(t, Config{NodeName: "a", URLs: []string{s.url()}}, ra)
	b = startNode(t, Config{NodeName: "b", URLs: []string{s.url()}}, rb)
	waitState(t, a, StateReady)
	waitState(t, b, StateReady)
	return s, a, b, ra, rb
}

func waitState(t *testing.T, n *Node, s State) {
	t.Helper()
	waitFor(t, n.Name()+" "+s.String(), func() bool { return n.State() == s })
}

// testLogger logs to t with CLUSTER_LOG=1.
func testLogger(t testing.TB) *zap.Logger {
	if os.Getenv("CLUSTER_LOG") == "" {
		return nil
	}
	return zaptest.NewLogger(t)
}
