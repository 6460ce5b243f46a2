package caddymodule

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/craftedge/craftedge/cluster"
	"github.com/craftedge/craftedge/snapshot"
)

// Cluster mode's shared snapshots: every copy this node stores in its
// snapshot store (saveSnapshot, on the miss path, never on a hit) is
// also queued for the cluster's snapshot stream (never blocking; the
// queue is bounded and drops what overflows). Once the node is ready
// (connected, purges caught up) the app imports the stream's copies into
// its own store, each with its original stored-at time and tags, unless
// its own copy is as new or newer: its own purge marks then decide
// whether a copy is stale, as for its own copies (a purged page is never
// served as fresh; stale copies serve only when the live path fails).
// The import runs once per node (a reload keeping the node does not
// import again; one stopped by a reload before it finished is run by the
// next app started on the node after that); one that stops short (NATS
// lost, a full disk) runs again after a pause until it succeeds.

// ClusterSnapshotsHealth counts this node's shared snapshots.
type ClusterSnapshotsHealth struct {
	// Published copies; Dropped (queue full), TooLarge (over one NATS
	// message) not shared; Malformed stream messages skipped; Queued
	// copies wait to be published.
	Published uint64 `json:"published"`
	Dropped   uint64 `json:"dropped"`
	TooLarge  uint64 `json:"too_large"`
	Malformed uint64 `json:"malformed"`
	Queued    int    `json:"queued"`
	// Imported copies were put in this node's store; Kept were skipped
	// because its own copy was as new or newer; Refused were copies this
	// node would not have stored (Set-Cookie, private, stored in the
	// future, not a response: see the log). ImportDone is true once the
	// import has read the whole stream.
	Imported   uint64 `json:"imported"`
	Kept       uint64 `json:"kept"`
	Refused    uint64 `json:"refused"`
	ImportDone bool   `json:"import_done"`
	// ImportFailures counts the imports that stopped short (NATS lost,
	// the storage file full or damaged); ImportError is the last one's
	// error while the import is not done. A failed import runs again
	// after a pause (doubling from the cluster's reconnect_wait up to a
	// minute) until it succeeds; on a damaged file it waits for the next
	// config, which runs on a fresh file.
	ImportFailures uint64 `json:"import_failures"`
	ImportError    string `json:"import_error,omitempty"`
}

// clusterSnapshots is this app's use of the shared snapshots.
type clusterSnapshots struct {
	ss   *cluster.SharedSnapshots
	stop func()

	imported, kept, refused, importFailures atomic.Uint64
	importDone                              atomic.Bool
	importError                             atomic.Pointer[string]
}

func (s *clusterSnapshots) health() ClusterSnapshotsHealth {
	st := s.ss.Stats()
	h := ClusterSnapshotsHealth{Published: st.Published, Dropped: st.Dropped, TooLarge: st.TooLarge, Malformed: st.Malformed,
		Queued: st.Queued, Imported: s.imported.Load(), Kept: s.kept.Load(), Refused: s.refused.Load(), ImportDone: s.importDone.Load(),
		ImportFailures: s.importFailures.Load()}
	if e := s.importError.Load(); e != nil {
		h.ImportError = *e
	}
	return h
}

// sharedSnapshotsConfig bounds the stream like the local store: its byte
// bound (at least the tier's minimum, 4 KiB) and age; the defaults of the
// cluster tier where the local store is unbounded.
func (a *App) sharedSnapshotsConfig() cluster.SharedSnapshotsConfig {
	var cfg cluster.SharedSnapshotsConfig
	if a.SnapshotMaxSize > 0 {
		cfg.MaxBytes = max(a.SnapshotMaxSize, 4<<10)
	}
	cfg.MaxAge = time.Duration(a.SnapshotMaxAge)
	return cfg
}

// startSharedSnapshots starts sharing this app's snapshots on c and, the
// first time for this node, the import.
func (a *App) startSharedSnapshots(c *clusterNode) (*clusterSnapshots, error) {
	ss, err := cluster.NewSharedSnapshots(c.node, a.sharedSnapshotsConfig())
	if err != nil {
		return nil, err
	}
	s := &clusterSnapshots{ss: ss}
	ctx, cancel := context.WithCancel(a.ctx)
	done := make(chan struct{})
	s.stop = func() {
		a.clusterLive.snapshots.CompareAndSwap(s, nil)
		cancel()
		<-done
		ss.Close()
	}
	a.clusterLive.snapshots.Store(s)
	if !c.snapshotsImported.CompareAndSwap(false, true) {
		s.importDone.Store(true)
		close(done)
		return s, nil
	}
	go func() {
		defer close(done)
		if !a.importSharedSnapshotsUntilDone(ctx, c, s) {
			// Stopped before it finished (a reload's new app skipped it
			// already), or the file is damaged: the next app started on
			// this node imports.
			c.snapshotsImported.Store(false)
		}
	}()
	return s, nil
}

// maxImportRetryPause bounds the pause between two imports of the shared
// snapshots.
const maxImportRetryPause = time.Minute

// importSharedSnapshotsUntilDone imports the shared snapshots, and again
// after each import that stops short (NATS lost, the storage file full),
// pausing between them (doubling from the cluster's reconnect_wait up to a
// minute), until one reads the whole stream: true then. It returns false
// when ctx ends first, or when the file is damaged (nothing can be
// imported into it; the next config runs on a fresh file).
func (a *App) importSharedSnapshotsUntilDone(ctx context.Context, c *clusterNode, s *clusterSnapshots) bool {
	pause := c.cfg.ReconnectWait
	for {
		err := a.importSharedSnapshots(ctx, c, s)
		if err == nil {
			s.importError.Store(nil)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		s.importFailures.Add(1)
		msg := err.Error()
		s.importError.Store(&msg)
		if a.store.Damaged() != nil {
			a.logger.Error("cluster: importing shared snapshots: the storage file is damaged; the next config (a fresh file) imports them",
				zap.String("storage", a.store.Path()), zap.Error(err))
			return false
		}
		a.logger.Error("cluster: importing shared snapshots stopped short; importing them again",
			zap.String("storage", a.store.Path()), zap.Duration("retry_in", pause), zap.Error(err))
		select {
		case <-ctx.Done():
			return false
		case <-time.After(pause):
		}
		pause = min(2*pause, maxImportRetryPause)
	}
}

// shareSnapshot queues a copy just stored locally for the other nodes.
func (a *App) shareSnapshot(rec snapshot.Record) {
	if a.clusterLive == nil {
		return
	}
	if s := a.clusterLive.snapshots.Load(); s != nil {
		s.ss.Put(cluster.SharedSnapshot{Key: rec.Key, StoredAt: rec.StoredAt, Tags: rec.Tags, Value: rec.Value})
	}
}

// importSharedSnapshots waits until the node is ready and the stream
// readable, then puts every shared copy newer than this node's own in
// its store.
func (a *App) importSharedSnapshots(ctx context.Context, c *clusterNode, s *clusterSnapshots) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for c.currentState() != cluster.StateReady || !s.ss.Ready() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	var firstErr error
	err := s.ss.Each(ctx, func(sh cluster.SharedSnapshot) bool {
		if d := a.store.Damaged(); d != nil {
			// The next app (on a fresh file) imports again.
			firstErr = d
			return false
		}
		rec, err := sharedSnapshotRecord(sh, nowFunc())
		if err != nil {
			s.refused.Add(1)
			observeClusterData("snapshots", "refused")
			a.logger.Warn("cluster: refusing another node's shared snapshot", zap.String("key", fmt.Sprintf("%.200q", sh.Key)),
				zap.String("from", sh.Node), zap.Error(err))
			return true
		}
		own, ok, err := a.store.Get(sh.Key)
		if err == nil && ok && !own.StoredAt.Before(sh.StoredAt) {
			s.kept.Add(1)
			return true
		}
		if !a.store.Put(rec) {
			// The write-behind queue is full: commit it and try once more.
			if err := a.store.Flush(); err != nil && firstErr == nil {
				firstErr = err
			}
			if !a.store.Put(rec) {
				return true
			}
		}
		s.imported.Add(1)
		observeClusterData("snapshots", "ok")
		return true
	})
	if err == nil {
		err = a.store.Flush()
	}
	if err == nil {
		err = firstErr
	}
	s.importDone.Store(err == nil)
	if err == nil {
		a.logger.Info("cluster: shared snapshots imported", zap.Uint64("imported", s.imported.Load()),
			zap.Uint64("kept", s.kept.Load()), zap.Uint64("refused", s.refused.Load()))
	}
	return err
}
