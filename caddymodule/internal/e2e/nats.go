package e2e

import (
	"fmt"
	"testing"

	"github.com/craftedge/craftedge/internal/natstest"
)

// NATS is a real NATS server with JetStream in the test process, for the
// cluster tests (Stop and Start keep its port and storage).
type NATS struct{ *natstest.Server }

// StartNATS starts a NATS server until the test ends.
func StartNATS(t *testing.T) *NATS { return &NATS{natstest.Start(t)} }

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
