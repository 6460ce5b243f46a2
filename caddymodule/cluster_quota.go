package caddymodule

import (
	"fmt"
	"math"
	"time"

	"github.com/craftedge/craftedge/cluster"
	"github.com/craftedge/craftedge/vendors"
)

// Cluster mode's vendor rate limits: each vendor's configured rate holds
// for the cluster as a whole. Every request of the vendor's client takes,
// after its token of the node's own bucket (which still shapes this
// node's bursts), one unit of the vendor's cluster quota: ceil(rate ×
// window) requests per window, the window being 1s or, for a rate below
// one per second, one request's interval (rate 0.2/s: 1 request per 5s).
// Every node must configure the same rate for a vendor.

// ClusterQuotaHealth is one vendor's cluster quota on this node.
type ClusterQuotaHealth struct {
	// Limit requests per Window (a Go duration), for the cluster.
	Limit  int64  `json:"limit"`
	Window string `json:"window"`
	// Granted requests, Refused calls (told to wait), Reservations of
	// blocks, Fallback grants while NATS was unreachable, and Nodes seen
	// reserving (cluster.QuotaStats).
	Granted      uint64 `json:"granted"`
	Refused      uint64 `json:"refused"`
	Reservations uint64 `json:"reservations"`
	Fallback     uint64 `json:"fallback"`
	Nodes        int    `json:"nodes"`
}

// clusterQuota is a vendor client's cluster quota.
type clusterQuota struct {
	vendor string
	client *vendors.Client
	q      *cluster.Quota
	cfg    cluster.QuotaConfig
}

func (q *clusterQuota) health() ClusterQuotaHealth {
	st := q.q.Stats()
	return ClusterQuotaHealth{Limit: q.cfg.Limit, Window: q.cfg.Window.String(), Granted: st.Granted, Refused: st.Refused,
		Reservations: st.Reservations, Fallback: st.Fallback, Nodes: st.Nodes}
}

// vendorQuotaConfig is the cluster quota of a vendor's rate (requests per
// second, positive): ceil(rate × window) per window, the window 1s or, for
// a rate below one per second, one request's interval. The epsilon keeps
// a rate such as 3/m (0.05/s, not exact in binary) at 1 per 20s, not 2.
func vendorQuotaConfig(rate float64) cluster.QuotaConfig {
	window := time.Second
	if rate < 1 {
		window = time.Duration(math.Round(float64(time.Second) / rate))
	}
	limit := int64(math.Ceil(rate*window.Seconds() - 1e-6))
	return cluster.QuotaConfig{Limit: max(limit, 1), Window: window, Now: nowFunc}
}

// startClusterQuotas gives every vendor client its cluster quota.
func (a *App) startClusterQuotas(node *cluster.Node) ([]*clusterQuota, error) {
	var out []*clusterQuota
	for _, name := range sortedKeys(a.vendorClients) {
		vc := a.Vendors[name]
		if vc == nil || !(vc.Rate > 0) {
			continue
		}
		cfg := vendorQuotaConfig(vc.Rate)
		q, err := node.Quota(name, cfg)
		if err != nil {
			a.stopClusterQuotas(out)
			return nil, fmt.Errorf("craftedge: vendor %q: cluster rate limit: %w", name, err)
		}
		c := a.vendorClients[name]
		c.SetQuota(q)
		out = append(out, &clusterQuota{vendor: name, client: c, q: q, cfg: cfg})
	}
	return out, nil
}

// stopClusterQuotas removes the quotas from the clients, except from a
// client to which the running app (a reload's new config, started before
// this one stops) gave its own quota.
func (a *App) stopClusterQuotas(qs []*clusterQuota) {
	cur := currentApp.Load()
	for _, q := range qs {
		if cur != nil && cur != a && cur.clusterData != nil && cur.clusterData.quotaOf(q.client) {
			continue
		}
		q.client.SetQuota(nil)
	}
}
