package status

import (
	"strings"
	"testing"

	"github.com/craftedge/craftedge/caddymodule"
)

// The cluster's colour: red without NATS, amber while catching up,
// lagging, publishing or holding unshared kill-switch changes.
func TestStatusClusterColours(t *testing.T) {
	lag := func(n uint64) *uint64 { return &n }
	for _, tc := range []struct {
		h       caddymodule.ClusterHealth
		pending map[string]bool
		want    StatusColor
		why     string
	}{
		{caddymodule.ClusterHealth{Node: "a", State: "ready", Connected: true, Lag: lag(0)}, nil, StatusGreen, ""},
		{caddymodule.ClusterHealth{Node: "a", State: "disconnected", LastError: "nats: authorization violation"}, nil, StatusRed, "cannot reach NATS (disconnected): other nodes' purges do not reach it; nats: authorization violation"},
		{caddymodule.ClusterHealth{Node: "a", State: "catching_up", Connected: true}, nil, StatusAmber, "node a is catching up"},
		{caddymodule.ClusterHealth{Node: "a", State: "ready", Connected: true, Lag: lag(3)}, nil, StatusAmber, "3 purge(s) of other nodes still to apply"},
		{caddymodule.ClusterHealth{Node: "a", State: "ready", Connected: true, Lag: lag(0), Queued: 2}, nil, StatusAmber, "2 purge(s) made here wait"},
		{caddymodule.ClusterHealth{Node: "a", State: "disconnected"}, map[string]bool{"": true}, StatusRed, "kill-switch changes made here are not shared yet"},
	} {
		c := statusCluster(&tc.h, tc.pending)
		if c.Status != tc.want || (tc.why != "" && !strings.Contains(strings.Join(c.Why, " | "), tc.why)) || (tc.why == "" && len(c.Why) != 0) {
			t.Errorf("%+v: %s %q, want %s with %q", tc.h, c.Status, c.Why, tc.want, tc.why)
		}
	}
}
