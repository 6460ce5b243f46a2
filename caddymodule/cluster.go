package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/cluster"
	"github.com/craftedge/craftedge/snapshot"
)

// The wiring of the cluster tier (package cluster) into the app. A node
// (its NATS connection, maybe an embedded NATS server and its ports) is
// kept in statePool keyed by its resolved configuration, so a reload that
// keeps the cluster block keeps the node, as Caddy keeps listeners; the
// running app installs itself as the node's app at Start, and the node is
// closed when the last config using it is cleaned up.
//
// What the node does to this app (clusterNode's handlers):
//   - another node's purge: applyPurge with the purge's own time (memory
//     copies dropped, snapshots marked stale; applying it twice marks the
//     same time);
//   - a gap (purges missed that cannot be known): the memory tier is
//     dropped and every snapshot marked stale; marks that cannot be
//     written (a full disk) keep the node catching up until they are;
//   - catching up after a (re)connection: the memory tier does not serve
//     (MemoryServes is false: hits become misses, fetched from the
//     upstream, with the snapshots behind it) until the missed purges are
//     applied; the state is one atomic load on the hit path;
//   - the cluster's kill-switch overrides: written to the local store, so
//     they hold across restarts even without NATS (cluster_killswitch.go).

// clusterNode is this process's membership of the cluster.
type clusterNode struct {
	node *cluster.Node
	cfg  cluster.Config // with the defaults applied
	log  *zap.Logger

	// started is closed once node and cfg are set: the node's calls
	// (handlers, cursor store) wait for it, as they may come before
	// cluster.Start has returned.
	started chan struct{}

	// app is the app the handlers act on: the running one, or the one
	// that created the node until it starts.
	app atomic.Pointer[App]

	// state is the node's cluster.State; serving is false while it
	// catches up (the memory tier must not serve).
	state   atomic.Int32
	serving atomic.Bool

	// kill-switch changes made here that the cluster has not stored yet
	// (NATS unreachable): upstream → on.
	pendingMu sync.Mutex
	pending   map[string]bool
	pushMu    sync.Mutex // one pushPending at a time

	// members is the last answer of Node.Members (for metrics), with
	// when it was read; nil before the first.
	members atomic.Pointer[clusterMembersSample]

	// snapshotsImported is set by the first app to import the cluster's
	// shared snapshots through this node (cluster_snapshots.go).
	snapshotsImported atomic.Bool

	// store is the storage file of the last app started on the node:
	// where its purge marks and cursor are (see adoptStore).
	store atomic.Pointer[snapshot.Store]

	// storageGap is a storage_replaced gap whose marks are not written
	// yet (a full disk), retried by the app running on its store;
	// storageGaps counts those gaps, storageGapFailures the failed
	// attempts to record them.
	storageGap         atomic.Pointer[storageGap]
	storageGaps        atomic.Uint64
	storageGapFailures atomic.Uint64

	// gapAt is when the last gap of the node was first reported (only
	// onGap uses it, from the node's one goroutine).
	gapAt time.Time
}

// storageGap is a storage_replaced gap to record in store: every snapshot
// stored before at is stale.
type storageGap struct {
	store *snapshot.Store
	at    time.Time
}

type clusterMembersSample struct {
	m  cluster.Members
	at time.Time
}

// Destruct publishes what is still queued (if NATS is there, within the
// node's timeout) and closes the node. Its metrics go with it: a node
// that left the cluster is not a disconnected one.
func (c *clusterNode) Destruct() error {
	clusterMetricsNode.CompareAndSwap(c, nil)
	if c.node.Stats().Connected {
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
		if err := c.node.Flush(ctx); err != nil {
			q := c.node.Stats().Queued
			c.log.Warn("closing the cluster node: purges not published (other nodes keep their copies until purged again)",
				zap.Int("queued", q), zap.Error(err))
		}
		cancel()
	}
	return c.node.Close()
}

// provisionCluster resolves the cluster block and joins (or keeps) the
// node. A config without the block has no node and connects nothing; a
// config only being validated checks the block and starts nothing.
func (a *App) provisionCluster() error {
	if a.Cluster == nil {
		return nil
	}
	cfg, err := a.Cluster.resolve(caddy.NewReplacer())
	if err != nil {
		return fmt.Errorf("craftedge: %w", err)
	}
	if validatingOnly {
		return nil
	}
	if err := registerClusterMetrics(a.ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("craftedge: registering cluster metrics: %w", err)
	}
	// The key hashes the resolved config (secrets included, never kept
	// in clear): a changed block makes a new node.
	raw, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("craftedge: cluster: %w", err)
	}
	sum := sha256.Sum256(raw)
	key := "cluster:" + hex.EncodeToString(sum[:])
	val, _, err := statePool.LoadOrNew(key, func() (caddy.Destructor, error) {
		return a.startClusterNode(cfg)
	})
	if err != nil {
		return fmt.Errorf("craftedge: %w", err)
	}
	a.clusterKey = key
	a.cluster = val.(*clusterNode)
	a.cluster.app.CompareAndSwap(nil, a)
	return nil
}

// startClusterNode starts a node acting on a (until another app starts).
func (a *App) startClusterNode(cfg cluster.Config) (*clusterNode, error) {
	c := &clusterNode{cfg: cfg, log: a.logger.Named("cluster"), started: make(chan struct{})}
	c.app.Store(a)
	c.store.Store(a.store)
	c.serving.Store(true)
	c.pending = loadKillPending(a, cfg)
	node, err := cluster.Start(cfg, cluster.Handlers{
		Purge:      c.onPurge,
		Gap:        c.onGap,
		State:      c.onState,
		KillSwitch: c.onKillSwitch,
	}, cluster.Options{Logger: c.log, Cursors: &boltCursors{c: c}})
	if err != nil {
		return nil, err
	}
	c.node = node
	c.cfg = node.Config()
	close(c.started)
	a.logger.Info("cluster node started",
		zap.String("node", cfg.NodeName), zap.String("namespace", c.cfg.Namespace),
		zap.Strings("urls", cfg.URLs), zap.String("embedded", node.ClientURL()))
	return c, nil
}

// startCluster makes this app the one the node acts on and starts its
// metrics sampler (bound to the app's context).
func (a *App) startCluster() {
	c := a.cluster
	if c == nil {
		return
	}
	c.app.Store(a)
	if prev := c.store.Swap(a.store); prev != nil && prev != a.store {
		a.adoptStore(c, prev)
	}
	initClusterMetrics()
	clusterMetricsNode.Store(c)
	ctx, cancel := context.WithCancel(a.ctx)
	var wg sync.WaitGroup
	a.stopClusterSampler = func() {
		cancel()
		wg.Wait()
	}
	wg.Go(func() { c.sample(ctx) })
	// A storage_replaced gap not recorded yet (by this app or the one
	// before it on the same file) is retried until it is.
	wg.Go(func() { a.retryStorageGap(ctx, c) })
}

// stopCluster stops this app's sampler. The node stays (the next config
// may keep it); it keeps acting on this app until another one starts.
func (a *App) stopCluster() {
	if a.stopClusterSampler != nil {
		a.stopClusterSampler()
	}
}

// cleanupCluster releases this config's hold on the node first, so the
// node is closed (no more handler calls) before the store and memory
// tier it acts on may be.
func (a *App) cleanupCluster() {
	if a.clusterKey == "" {
		return
	}
	if _, err := statePool.Delete(a.clusterKey); err != nil {
		a.logger.Error("closing the cluster node", zap.Error(err))
	}
	a.clusterKey = ""
}

// publishPurge hands a purge made on this node (already applied here) to
// the cluster, which never makes the caller wait.
func (a *App) publishPurge(p *PurgeRequest, source string, at time.Time) {
	if a.cluster == nil {
		return
	}
	a.cluster.node.Publish(cluster.Purge{
		Tags: p.Tags, URLs: p.URLs, Prefixes: p.Prefixes, Hosts: p.Hosts, All: p.All,
		Soft: p.Mode == purgeModeSoft, At: at, Source: source,
	})
}

// onPurge applies another node's purge with its own time, or this
// node's time when the purge has none or one in the future (a purge from
// the future would mark stale every copy stored until then; one without
// a time, none). An error (the marks could not be written: a full disk)
// makes the node apply it again (it catches up meanwhile: the memory
// tier does not serve).
func (c *clusterNode) onPurge(p cluster.Purge) error {
	<-c.started
	a := c.app.Load()
	// The publishing node settled the mode: apply it, not this node's
	// purge_mode.
	mode := purgeModeHard
	if p.Soft && !p.All {
		mode = purgeModeSoft
	}
	req := &PurgeRequest{Tags: p.Tags, URLs: p.URLs, Prefixes: p.Prefixes, Hosts: p.Hosts, All: p.All, Mode: mode}
	if err := req.validate(); err != nil {
		observeClusterApplied("refused")
		c.log.Error("refusing another node's purge", zap.String("from", p.Node), zap.Uint64("seq", p.Seq), zap.Error(err))
		return nil
	}
	at := p.At
	if now := nowFunc(); at.IsZero() || at.After(now) {
		at = now
	}
	n, err := a.applyPurge(req, at)
	observeClusterFanout(time.Since(p.At))
	fields := purgeLogFields(req, "cluster", n)
	fields = append(fields, zap.String("from", p.Node), zap.String("origin_source", p.Source), zap.Uint64("seq", p.Seq))
	if !at.Equal(p.At) {
		fields = append(fields, zap.Time("purge_at", p.At), zap.Time("applied_at", at))
	}
	if err != nil {
		observeClusterApplied("error")
		a.logger.Error("applying another node's purge: not recorded in the storage file, applying it again",
			append(fields, zap.String("storage", a.store.Path()), zap.Error(err))...)
		return err
	}
	observeClusterApplied("ok")
	metrics.purgedEntries.Add(float64(n))
	a.logger.Info("purged", fields...)
	return nil
}

// onGap drops the memory tier and marks every snapshot stale as of when
// the gap was first reported: purges were missed and nobody can say
// which. An error (the marks could not be written: a full disk) makes the
// node catch up (the memory tier does not serve) and report the gap again
// until they are.
func (c *clusterNode) onGap(g cluster.Gap) error {
	<-c.started
	a := c.app.Load()
	// A gap reported again marks as of when it was first reported: the
	// copies stored since (from the origin) are not stale.
	if !g.Retry || c.gapAt.IsZero() {
		observeClusterGap(g.Reason)
		c.gapAt = nowFunc()
	}
	at := c.gapAt
	purgeRefillMu.RLock()
	// Snapshots first, as applyPurge does: one promoted into memory in
	// between is then promoted as a purged snapshot or dropped here.
	err := a.store.MarkPurgedAll(at)
	n := a.memory.PurgeAll()
	purgeRefillMu.RUnlock()
	fields := []zap.Field{zap.String("reason", g.Reason), zap.Uint64("cursor", g.Cursor), zap.Uint64("first", g.First),
		zap.Time("gap_at", at), zap.Bool("retry", g.Retry), zap.Int("entries", n)}
	if err != nil {
		a.logger.Error("cluster gap: marking snapshots stale failed: catching up (memory tier off) until they are marked",
			append(fields, zap.String("storage", a.store.Path()), zap.Error(err))...)
		return err
	}
	a.logger.Warn("cluster gap: memory tier dropped, snapshots marked stale", fields...)
	return nil
}

// adoptStore is startCluster's when the node kept by a reload recorded
// its purges in another storage file than this app's: the file was found
// damaged and moved aside (this one is fresh), or the reload changed
// storage. This file missed purges, and nobody can say which: as on a
// gap, every snapshot in it is marked stale (the memory tier saw every
// purge and stays). The cluster's shared snapshots are imported into it
// again (stale), and the cluster's kill switch and this node's pending
// changes written to it; this app's read model applies every record
// version again (a new read model starts from the bucket's first one).
func (a *App) adoptStore(c *clusterNode, prev *snapshot.Store) {
	why := "the storage changed"
	if d := prev.Damaged(); d != nil {
		why = "the storage file was damaged and moved aside"
	}
	observeClusterGap(gapStorageReplaced)
	c.storageGaps.Add(1)
	g := &storageGap{store: a.store, at: nowFunc()}
	if err := a.store.MarkPurgedAll(g.at); err != nil {
		c.storageGap.Store(g) // retried by retryStorageGap
		c.storageGapFailures.Add(1)
		a.logger.Error("cluster: marking the snapshots of the new storage file stale failed; retrying until they are",
			zap.String("reason", gapStorageReplaced), zap.String("storage", a.store.Path()), zap.Error(err))
	} else {
		c.storageGap.Store(nil)
	}
	c.snapshotsImported.Store(false)
	c.pendingMu.Lock()
	if len(c.pending) > 0 {
		if err := c.saveKillPendingLocked(); err != nil {
			a.logger.Error("storing the pending kill-switch changes", zap.Error(err))
		}
	}
	c.pendingMu.Unlock()
	if c.node.Stats().Connected {
		// Otherwise the set comes with the next connection.
		c.onKillSwitch(c.node.SnapshotOnlyOverrides())
	}
	a.logger.Warn("cluster gap: "+why+"; snapshots in the new file marked stale, the cluster's snapshots, records and kill switch applied to it",
		zap.String("reason", gapStorageReplaced), zap.String("storage", a.store.Path()), zap.String("previous", prev.Path()))
}

// retryStorageGap records the node's pending storage_replaced gap in this
// app's file, if it is the gap's file, pausing between attempts (doubling
// from the cluster's reconnect_wait up to a minute) until it succeeds or
// ctx ends. Meanwhile health says the gap is pending.
func (a *App) retryStorageGap(ctx context.Context, c *clusterNode) {
	pause := c.cfg.ReconnectWait
	for {
		g := c.storageGap.Load()
		if g == nil || g.store != a.store {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		if err := a.store.MarkPurgedAll(g.at); err != nil {
			c.storageGapFailures.Add(1)
			pause = min(2*pause, time.Minute)
			a.logger.Error("cluster: marking the snapshots of the new storage file stale failed again",
				zap.String("reason", gapStorageReplaced), zap.String("storage", a.store.Path()), zap.Duration("retry_in", pause), zap.Error(err))
			continue
		}
		c.storageGap.CompareAndSwap(g, nil)
		a.logger.Info("cluster: the pending gap is recorded: the snapshots of the new storage file are marked stale",
			zap.String("reason", gapStorageReplaced), zap.String("storage", a.store.Path()))
		return
	}
}

// onState records the node's state; the memory tier does not serve while
// the node catches up.
func (c *clusterNode) onState(s cluster.State) {
	<-c.started
	c.state.Store(int32(s))
	c.serving.Store(s != cluster.StateCatchingUp)
}

// State is the node's current state as this app saw it.
func (c *clusterNode) currentState() cluster.State {
	return cluster.State(c.state.Load())
}
