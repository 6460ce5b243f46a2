package cluster

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// sessions runs fn once per connection to NATS, for the data-sharing parts
// (outbox workers, read model, shared snapshots) that keep their own state
// in JetStream beside the node's purge session. fn sets up its stream or
// bucket and runs until ctx ends, the connection drops, or it fails; the
// next session starts once NATS is reachable again, at most every
// ReconnectWait. sessions returns when ctx or the node ends.
func (n *Node) sessions(ctx context.Context, what string, fn func(ctx context.Context) error) {
	for {
		for !n.nc.IsConnected() {
			if !n.pause(ctx, n.cfg.ReconnectWait) {
				return
			}
		}
		sctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(n.ctx, cancel) // Close ends the session
		err := n.watchConn(sctx, cancel, fn)
		stop()
		cancel()
		if ctx.Err() != nil || n.ctx.Err() != nil {
			return
		}
		if err != nil && n.nc.IsConnected() {
			n.log.Warn("cluster "+what+" session ended; retrying", zap.Error(err))
		}
		if !n.pause(ctx, n.cfg.ReconnectWait) {
			return
		}
	}
}

// watchConn runs fn, cancelling its context when the connection drops.
func (n *Node) watchConn(ctx context.Context, cancel context.CancelFunc, fn func(context.Context) error) error {
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(n.cfg.ReconnectWait)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if !n.nc.IsConnected() {
					cancel()
					return
				}
			}
		}
	}()
	return fn(ctx)
}

// pause waits d; false if ctx or the node ended first.
func (n *Node) pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-n.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// connected reports whether the node can reach NATS now.
func (n *Node) connected() bool { return n.nc.IsConnected() && n.ctx.Err() == nil }

// payloadLimit is the largest message body the node publishes: the
// server's limit (1 MiB, NATS's default, before the first connection)
// less room for headers.
func (n *Node) payloadLimit() int {
	p := n.nc.MaxPayload()
	if p <= 0 {
		p = 1 << 20
	}
	return int(p) - 1024
}

// ensureStreamConfig returns the stream of cfg, creating it, or updating it
// when its limits differ from cfg. A stream that already matches is left
// alone: every node sets its streams up on every connection, and an
// update while other nodes create consumers on the stream is churn (and
// trips a data race inside nats-server v2.15 under -race).
func (n *Node) ensureStreamConfig(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	ctx, cancel := n.opCtx(ctx)
	defer cancel()
	if s, err := n.js.Stream(ctx, cfg.Name); err == nil && sameStreamLimits(s.CachedInfo().Config, cfg) {
		return s, nil
	}
	s, err := n.js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: stream %s: %w", cfg.Name, err)
	}
	return s, nil
}

// sameStreamLimits reports whether have already has what want sets.
func sameStreamLimits(have, want jetstream.StreamConfig) bool {
	unlimited := func(v int64) int64 { // the server stores "none" as -1
		if v == 0 {
			return -1
		}
		return v
	}
	return slices.Equal(have.Subjects, want.Subjects) && have.Retention == want.Retention &&
		have.Discard == want.Discard && have.MaxBytes == unlimited(want.MaxBytes) && have.MaxAge == want.MaxAge &&
		have.MaxMsgs == unlimited(want.MaxMsgs) && have.MaxMsgsPerSubject == unlimited(want.MaxMsgsPerSubject) &&
		have.Storage == want.Storage && have.Replicas == max(want.Replicas, 1) &&
		(want.Duplicates == 0 || have.Duplicates == want.Duplicates) && have.Description == want.Description
}
