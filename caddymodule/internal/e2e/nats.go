package e2e

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATS is a real NATS server with JetStream in the test process, on
// 127.0.0.1, for the cluster tests. Its port stays the same across Stop
// and Start, so the nodes reconnect to it.
type NATS struct {
	t    *testing.T
	dir  string
	port int
	s    *server.Server
}

// StartNATS starts a NATS server until the test ends.
func StartNATS(t *testing.T) *NATS {
	t.Helper()
	n := &NATS{t: t, dir: t.TempDir(), port: server.RANDOM_PORT}
	n.Start()
	t.Cleanup(n.Stop)
	return n
}

// Start starts the server (again), with its storage kept.
func (n *NATS) Start() {
	n.t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: n.port, JetStream: true, StoreDir: n.dir,
		NoLog: true, NoSigs: true, DisableJetStreamBanner: true,
	})
	if err != nil {
		n.t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		n.t.Fatal("NATS server not ready")
	}
	n.s, n.port = s, s.Addr().(*net.TCPAddr).Port
}

// Stop shuts the server down (idempotent).
func (n *NATS) Stop() {
	if n.s != nil {
		n.s.Shutdown()
		n.s.WaitForShutdown()
		n.s = nil
	}
}

// URL is the server's client URL.
func (n *NATS) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// ClusterBlock is a cluster block for the global craftedge option naming
// this server, with short lease and reconnection times for tests.
func (n *NATS) ClusterBlock(node string) string {
	return fmt.Sprintf(`cluster {
			node_name %s
			urls %s
			lease_ttl 1s
			reconnect_wait 20ms
		}`, node, n.URL())
}
