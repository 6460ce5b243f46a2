package caddymodule

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/craftedge/craftedge/cluster"
)

// clusterMetrics are the cluster's metrics (registered only when a
// config has a cluster block). The node's counters and state are read at
// scrape time from the node (no NATS involved); the stream's last
// sequence and the members come from a sample taken every
// clusterSampleEvery (Node.Members, one NATS request).
var clusterMetrics = struct {
	once    sync.Once
	fanout  prometheus.Histogram
	applied *prometheus.CounterVec
	gaps    *prometheus.CounterVec
	data    *prometheus.CounterVec
	leases  *prometheus.GaugeVec
	node    prometheus.Collector
}{}

// clusterMetricsNode is the node the scrape-time collector reads.
var clusterMetricsNode atomic.Pointer[clusterNode]

// clusterSampleEvery is how often the members and the stream's last
// sequence are sampled for the metrics.
const clusterSampleEvery = 5 * time.Second

var clusterStates = []cluster.State{cluster.StateConnecting, cluster.StateCatchingUp, cluster.StateReady, cluster.StateDisconnected, cluster.StateClosed}

func initClusterMetrics() {
	clusterMetrics.once.Do(func() {
		clusterMetrics.fanout = prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: "cluster", Name: "purge_fanout_seconds",
			Help:    "Time from a purge made on another node to its application on this one (needs synchronised clocks).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		})
		clusterMetrics.applied = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "cluster", Name: "purges_applied_total",
			Help: "Purges of other nodes applied here, by outcome (ok, error, refused).",
		}, []string{"outcome"})
		clusterMetrics.gaps = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "cluster", Name: "gaps_total",
			Help: "Times this node could not know which purges it missed (memory tier dropped, snapshots marked stale), by reason.",
		}, []string{"reason"})
		clusterMetrics.data = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "cluster", Name: "data_applied_total",
			Help: "Other nodes' record versions and shared snapshots applied here, by part (records, snapshots) and outcome (ok, retry: not stored now, applied again later; refused: invalid or hostile, skipped).",
		}, []string{"part", "outcome"})
		clusterMetrics.leases = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Subsystem: "cluster", Name: "lease_held",
			Help: "1 while this node holds a lease of scheduled work (sync:<vendor>), else 0.",
		}, []string{"lease"})
		for _, o := range []string{"ok", "error", "refused"} {
			clusterMetrics.applied.WithLabelValues(o)
		}
		for _, r := range []string{cluster.GapNoCursor, cluster.GapStreamRecreated, cluster.GapRetention, gapStorageReplaced} {
			clusterMetrics.gaps.WithLabelValues(r)
		}
		for _, part := range []string{"records", "snapshots"} {
			for _, o := range []string{"ok", "retry", "refused"} {
				clusterMetrics.data.WithLabelValues(part, o)
			}
		}
		clusterMetrics.node = clusterCollector{}
	})
}

// registerClusterMetrics adds the cluster's collectors to reg.
func registerClusterMetrics(reg *prometheus.Registry) error {
	initClusterMetrics()
	if reg == nil {
		return nil
	}
	return registerCollectors(reg, clusterMetrics.fanout, clusterMetrics.applied, clusterMetrics.gaps,
		clusterMetrics.data, clusterMetrics.leases, clusterMetrics.node)
}

func observeClusterFanout(d time.Duration) {
	initClusterMetrics()
	clusterMetrics.fanout.Observe(max(d, 0).Seconds())
}

func observeClusterApplied(outcome string) {
	initClusterMetrics()
	clusterMetrics.applied.WithLabelValues(outcome).Inc()
}

// observeClusterData counts another node's record version (part
// "records") or shared snapshot ("snapshots") by outcome.
func observeClusterData(part, outcome string) {
	initClusterMetrics()
	clusterMetrics.data.WithLabelValues(part, outcome).Inc()
}

func observeClusterGap(reason string) {
	initClusterMetrics()
	clusterMetrics.gaps.WithLabelValues(reason).Inc()
}

// leaseGauge is the lease_held series of a lease, created at 0.
func (c *clusterNode) leaseGauge(lease string) prometheus.Gauge {
	initClusterMetrics()
	g := clusterMetrics.leases.WithLabelValues(lease)
	g.Set(0)
	return g
}

// sample reads the members every clusterSampleEvery until ctx ends.
func (c *clusterNode) sample(ctx context.Context) {
	tick := time.NewTicker(clusterSampleEvery)
	defer tick.Stop()
	for {
		if m, err := c.node.Members(ctx); err == nil {
			c.members.Store(&clusterMembersSample{m: m, at: time.Now()})
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

var (
	descClusterState = prometheus.NewDesc(metricsNamespace+"_cluster_state",
		"1 for this node's cluster state (connecting, catching_up, ready, disconnected, closed), 0 for the others.", []string{"state"}, nil)
	descClusterConnected = prometheus.NewDesc(metricsNamespace+"_cluster_connected",
		"1 while this node is connected to NATS.", nil, nil)
	descClusterQueued = prometheus.NewDesc(metricsNamespace+"_cluster_queued_purges",
		"Purges made here waiting to be published (NATS unreachable).", nil, nil)
	descClusterPublished = prometheus.NewDesc(metricsNamespace+"_cluster_purges_published_total",
		"Purges made here and stored by JetStream.", nil, nil)
	descClusterOverflows = prometheus.NewDesc(metricsNamespace+"_cluster_queue_overflows_total",
		"Times the queue of purges to publish collapsed into one purge-all (max_queued exceeded).", nil, nil)
	descClusterLag = prometheus.NewDesc(metricsNamespace+"_cluster_lag_purges",
		"Purges in the stream this node has not applied (the stream's last sequence, sampled, minus this node's cursor).", nil, nil)
	descClusterMembers = prometheus.NewDesc(metricsNamespace+"_cluster_members",
		"Nodes with a purge consumer (known) and those following it now (following), sampled.", []string{"kind"}, nil)
)

// clusterCollector reads the node at scrape time.
type clusterCollector struct{}

func (clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descClusterState, descClusterConnected, descClusterQueued,
		descClusterPublished, descClusterOverflows, descClusterLag, descClusterMembers} {
		ch <- d
	}
}

func (clusterCollector) Collect(ch chan<- prometheus.Metric) {
	c := clusterMetricsNode.Load()
	if c == nil {
		return
	}
	st := c.node.Stats()
	for _, s := range clusterStates {
		v := 0.0
		if s == st.State {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descClusterState, prometheus.GaugeValue, v, s.String())
	}
	ch <- prometheus.MustNewConstMetric(descClusterConnected, prometheus.GaugeValue, b2f(st.Connected))
	ch <- prometheus.MustNewConstMetric(descClusterQueued, prometheus.GaugeValue, float64(st.Queued))
	ch <- prometheus.MustNewConstMetric(descClusterPublished, prometheus.CounterValue, float64(st.Published))
	ch <- prometheus.MustNewConstMetric(descClusterOverflows, prometheus.CounterValue, float64(st.Overflows))
	if s := c.members.Load(); s != nil {
		lag := uint64(0)
		if s.m.LastSeq > st.Cursor {
			lag = s.m.LastSeq - st.Cursor
		}
		ch <- prometheus.MustNewConstMetric(descClusterLag, prometheus.GaugeValue, float64(lag))
		following := 0
		for _, m := range s.m.Members {
			if m.Following {
				following++
			}
		}
		ch <- prometheus.MustNewConstMetric(descClusterMembers, prometheus.GaugeValue, float64(len(s.m.Members)), "known")
		ch <- prometheus.MustNewConstMetric(descClusterMembers, prometheus.GaugeValue, float64(following), "following")
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
