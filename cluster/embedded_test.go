package cluster

import (
	"context"
	"fmt"
	"maps"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// startEmbeddedNodes starts 3 nodes, each running its own NATS server,
// clustered through routes, and waits until they are ready.
func startEmbeddedNodes(tb testing.TB, hs []Handlers) []*Node {
	tb.Helper()
	ports := make([]int, len(hs))
	for i := range ports {
		ports[i] = freePort(tb)
	}
	nodes := make([]*Node, len(hs))
	errs := make([]error, len(hs))
	var wg sync.WaitGroup
	for i := range hs {
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
			}
		}
		cfg := Config{
			NodeName: fmt.Sprintf("e%d", i+1),
			Embedded: &Embedded{
				Listen: "127.0.0.1:0", StoreDir: tb.TempDir(),
				ClusterName: "ce", ClusterListen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes,
			},
			Auth:          Auth{User: "craftedge", Password: "s3cret"},
			ReconnectWait: 50 * time.Millisecond,
		}
		wg.Go(func() { nodes[i], errs[i] = Start(cfg, hs[i], Options{Logger: testLogger(tb)}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			tb.Fatalf("starting node %d: %v", i, err)
		}
	}
	tb.Cleanup(func() {
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Go(func() { n.Close() })
		}
		wg.Wait()
	})
	deadline := time.Now().Add(60 * time.Second)
	for _, n := range nodes {
		for n.State() != StateReady {
			if time.Now().After(deadline) {
				tb.Fatalf("%s not ready: %s", n.Name(), n.State())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nodes
}

func TestEmbeddedServersClusterThroughRoutes(t *testing.T) {
	recs := []*recorder{{}, {}, {}}
	nodes := startEmbeddedNodes(t, []Handlers{recs[0].handlers(), recs[1].handlers(), recs[2].handlers()})
	if got := nodes[0].Config().Replicas; got != 3 {
		t.Fatalf("default replicas with 2 routes: %d", got)
	}
	if nodes[0].ClientURL() == "" || nodes[0].ClusterURL() == "" {
		t.Fatal("embedded URLs missing")
	}
	nodes[0].Publish(Purge{Tags: []string{"fan-out"}})
	for _, r := range recs[1:] {
		waitFor(t, "fan-out applied", func() bool { return r.hasPurge("fan-out") })
	}
	if err := nodes[1].SetSnapshotOnly(context.Background(), "craft", true); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*recorder{recs[0], recs[2]} {
		waitFor(t, "kill switch on every node", func() bool { return maps.Equal(r.killSet(), map[string]bool{"craft": true}) })
	}
}

// An embedded server whose port is taken fails to start with an error
// naming the address and why, not only "not ready".
func TestEmbeddedPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()
	_, err = Start(Config{NodeName: "e1", Embedded: &Embedded{Listen: addr, StoreDir: t.TempDir()}, Timeout: time.Second},
		Handlers{}, Options{})
	if err == nil || !strings.Contains(err.Error(), "listen "+addr) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("start on a taken port: %v", err)
	}
}
