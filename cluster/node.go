package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// State is a node's view of the cluster.
type State int32

const (
	// StateConnecting: NATS has not been reached since Start. The node
	// works locally; purges published meanwhile wait in memory.
	StateConnecting State = iota
	// StateCatchingUp: connected, replaying the purges published while
	// this node was away. Memory copies may be stale until StateReady.
	StateCatchingUp
	// StateReady: every purge published before the (re)connection has
	// been applied; the memory tier may serve again.
	StateReady
	// StateDisconnected: NATS was lost after having been reached. Purges
	// of other nodes are not received until the node is ready again.
	StateDisconnected
	// StateClosed: Close was called.
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateCatchingUp:
		return "catching_up"
	case StateReady:
		return "ready"
	case StateDisconnected:
		return "disconnected"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("state(%d)", int32(s))
}

// Handlers are the caller's reactions to the cluster. Purge, Gap and
// State are called from one goroutine, one at a time, in this order
// for a (re)connection: State(StateCatchingUp), Gap if any, Purge for
// each missed purge, State(StateReady). KillSwitch is called from
// another goroutine, one call at a time. Handlers must not block for
// long (they hold up the purges behind them) and may be nil.
type Handlers struct {
	// Purge applies a purge published by another node: drop the memory
	// copies, mark the snapshots stale. A purge may be delivered more
	// than once (after a crash, a redelivery): applying it must be
	// idempotent, which purges are if marks use Purge.At. An error says
	// the purge could not be recorded now (a full disk): it is not
	// acknowledged, the node reports StateCatchingUp and applies it
	// again, then the purges after it, from its next session (after
	// ReconnectWait). A purge the caller refuses must return nil.
	Purge func(Purge) error

	// Gap reports that the node cannot know which purges it missed: drop
	// the whole memory tier and mark every snapshot stale (they still
	// serve when the live path fails). An error says the gap could not
	// be recorded now (a full disk): the node does not pass it (no purge
	// after it is applied, the cursor stays), reports StateCatchingUp and
	// reports the gap again (Gap.Retry) from its next session, after a
	// pause doubling from ReconnectWait up to a minute while it keeps
	// failing (Stats.PendingGap says which).
	Gap func(Gap) error

	// State reports each change of State.
	State func(State)

	// KillSwitch reports the cluster's kill-switch overrides, the whole
	// set each time: upstream name → on; "" means every upstream. It is
	// called with the current set on every (re)connection and on each
	// change.
	KillSwitch func(map[string]bool)
}

// Options are a Node's collaborators.
type Options struct {
	// Logger receives the node's logs; nil discards them.
	Logger *zap.Logger

	// Cursors persists the position of the last applied purge; nil keeps
	// it in a JetStream key-value bucket, keyed by node name. A caller
	// whose purge effects live in a local file (bbolt snapshots) should
	// store the cursor in the same file, so the two cannot disagree after
	// a restore from backup.
	Cursors CursorStore
}

// Node is one craftedge node's membership of the cluster. Its methods
// never wait for NATS longer than Config.Timeout, and Publish never
// waits at all.
type Node struct {
	cfg  Config
	h    atomic.Pointer[Handlers]
	opts Options
	log  *zap.Logger
	boot string // random per process: tells this process from an earlier one of the same name

	srv *server.Server // nil unless embedded
	nc  *nats.Conn
	js  jetstream.JetStream

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	connSig chan struct{} // a connection came up (capacity 1)
	state   atomic.Int32

	mu          sync.Mutex
	epochCancel context.CancelFunc // ends the current session; nil between sessions
	leases      jetstream.KeyValue
	kill        jetstream.KeyValue
	overrides   map[string]bool

	out outbox

	// Buckets set up on first use (lazyBucket): quotas (see Quota) and
	// webhook deliveries (see DeliverySeen).
	quotas, deliveries lazyBucket

	// cursor is the last purge applied (cursorOK once known); only the
	// run goroutine uses them.
	cursor   Cursor
	cursorOK bool

	applied   atomic.Uint64
	gaps      atomic.Uint64
	cursorSeq atomic.Uint64
	malformed atomic.Uint64
	// applyFailures counts purges Handlers.Purge could not record.
	applyFailures atomic.Uint64

	// pendingGap is the gap Handlers.Gap could not record (nil once it
	// did); gapFailing counts its failures in a row. Only the run
	// goroutine uses them; gapPendingReason and gapFailures are for Stats.
	pendingGap       *Gap
	gapFailing       int
	gapPendingReason atomic.Pointer[string]
	gapFailures      atomic.Uint64
}

// Start validates cfg, starts the embedded server if configured, and
// connects to NATS in the background: it returns at once even when NATS
// is unreachable. Close releases everything.
func Start(cfg Config, h Handlers, opts Options) (*Node, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:     c,
		opts:    opts,
		log:     opts.Logger,
		connSig: make(chan struct{}, 1),
	}
	n.h.Store(&h)
	if n.log == nil {
		n.log = zap.NewNop()
	}
	n.log = n.log.With(zap.String("node", c.NodeName))
	var b [8]byte
	_, _ = rand.Read(b[:])
	n.boot = hex.EncodeToString(b[:])
	n.out.init(c.MaxQueued)
	natsOpts, err := natsOptions(c, connHandlers{up: n.connUp, down: n.connDown})
	if err != nil {
		return nil, err
	}
	urls := strings.Join(c.URLs, ",")
	if c.Embedded != nil {
		if n.srv, err = startEmbedded(c); err != nil {
			return nil, err
		}
		natsOpts = append(natsOpts, nats.InProcessServer(n.srv))
		urls = n.srv.ClientURL()
	}
	n.nc, err = nats.Connect(urls, natsOpts...)
	if err != nil {
		n.shutdownServer()
		return nil, fmt.Errorf("cluster: connecting to %s: %w", urls, err)
	}
	n.js, err = jetstream.New(n.nc)
	if err != nil {
		n.nc.Close()
		n.shutdownServer()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.wg.Add(2)
	go n.run()
	go n.publishLoop()
	return n, nil
}

// Close stops the node: it ends its goroutines, closes the connection
// and stops the embedded server. Purges still queued are dropped (the
// other nodes never see them): call Flush first, with a deadline, for a
// graceful shutdown. Leases held through Lead are released when their
// Lead's context ends; leases taken with AcquireLease expire after
// LeaseTTL. Close must not be called from a handler.
func (n *Node) Close() error {
	n.cancel()
	n.wg.Wait()
	n.nc.Close()
	n.shutdownServer()
	n.setState(StateClosed)
	return nil
}

func (n *Node) shutdownServer() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
	}
}

// SetHandlers replaces the handlers; calls in progress finish with the
// old ones. A node outlives a config reload (it holds a connection, maybe
// a server and its ports): the new config's app installs its handlers and
// reads State and SnapshotOnlyOverrides for the current values.
func (n *Node) SetHandlers(h Handlers) { n.h.Store(&h) }

func (n *Node) handlers() *Handlers { return n.h.Load() }

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.NodeName }

// State is the node's current State.
func (n *Node) State() State { return State(n.state.Load()) }

// Config is the node's configuration with defaults applied.
func (n *Node) Config() Config { return n.cfg }

// ClientURL is the embedded server's client URL ("" without one).
func (n *Node) ClientURL() string {
	if n.srv == nil {
		return ""
	}
	return n.srv.ClientURL()
}

// ClusterURL is the embedded server's route URL, for other nodes'
// Embedded.Routes ("" without routes).
func (n *Node) ClusterURL() string {
	if n.srv == nil || n.cfg.Embedded.ClusterListen == "" {
		return ""
	}
	return "nats-route://" + n.srv.ClusterAddr().String()
}

// Stats is a snapshot of the node's counters.
type Stats struct {
	State     State
	Connected bool
	// Queued is how many purges wait to be published.
	Queued int
	// Overflows counts the times the queue collapsed into a purge-all.
	Overflows uint64
	// Published counts purges stored by JetStream.
	Published uint64
	// Applied counts other nodes' purges given to Handlers.Purge.
	Applied uint64
	// Gaps counts gaps reported.
	Gaps uint64
	// Malformed counts stream messages that were not purges (skipped).
	Malformed uint64
	// ApplyFailures counts purges Handlers.Purge could not record (each
	// applied again later).
	ApplyFailures uint64
	// GapFailures counts the times Handlers.Gap could not record a gap;
	// PendingGap is the reason of the gap waiting to be recorded again
	// ("" if none): the node catches up until it is.
	GapFailures uint64
	PendingGap  string
	// Cursor is the stream sequence of the last purge applied.
	Cursor uint64
	// LastError is the connection's last error ("" if none): why the
	// node cannot reach NATS (refused, TLS, authorization).
	LastError string
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	q, o, p := n.out.stats()
	st := Stats{
		State: n.State(), Connected: n.nc.IsConnected(),
		Queued: q, Overflows: o, Published: p,
		Applied: n.applied.Load(), Gaps: n.gaps.Load(), Malformed: n.malformed.Load(), ApplyFailures: n.applyFailures.Load(),
		GapFailures: n.gapFailures.Load(), Cursor: n.cursorSeq.Load(),
	}
	if r := n.gapPendingReason.Load(); r != nil {
		st.PendingGap = *r
	}
	if err := n.nc.LastError(); err != nil {
		st.LastError = err.Error()
	}
	return st
}

func (n *Node) setState(s State) {
	if State(n.state.Swap(int32(s))) == s {
		return
	}
	n.log.Info("cluster state", zap.Stringer("state", s))
	if h := n.handlers(); h.State != nil {
		h.State(s)
	}
}

// connUp is called by the client when a connection is established.
func (n *Node) connUp() {
	select {
	case n.connSig <- struct{}{}:
	default:
	}
	n.out.wake()
}

// connDown is called by the client when the connection is lost; it ends
// the current session, so the next one replays from the cursor.
func (n *Node) connDown(err error) {
	n.mu.Lock()
	if n.epochCancel != nil {
		n.epochCancel()
	}
	n.mu.Unlock()
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		n.log.Warn("disconnected from NATS", zap.Error(err))
	}
}

// run runs one session per connection: set up the streams and buckets,
// watch the kill switch, follow the purge stream. A session ends when the
// connection drops or something fails; the next starts when connected.
func (n *Node) run() {
	defer n.wg.Done()
	everConnected := false
	for {
		for !n.nc.IsConnected() {
			select {
			case <-n.ctx.Done():
				return
			case <-n.connSig:
			}
		}
		ctx, cancel := context.WithCancel(n.ctx)
		n.mu.Lock()
		n.epochCancel = cancel
		n.mu.Unlock()
		if !n.nc.IsConnected() { // lost before the session could register
			cancel()
		}
		everConnected = true
		n.setState(StateCatchingUp)
		err := n.session(ctx)
		cancel()
		n.mu.Lock()
		n.epochCancel = nil
		n.mu.Unlock()
		if n.ctx.Err() != nil {
			return
		}
		if !n.nc.IsConnected() {
			if everConnected {
				n.setState(StateDisconnected)
			}
			continue
		}
		if err != nil {
			n.log.Warn("cluster session ended; retrying", zap.Error(err))
		}
		if !n.pause(n.ctx, n.retryPause()) {
			return
		}
	}
}

// session runs until ctx ends or an error.
func (n *Node) session(ctx context.Context) error {
	if err := n.waitJetStream(ctx); err != nil {
		return err
	}
	var stream jetstream.Stream
	var streamErr error
	var streamDone sync.WaitGroup
	streamDone.Go(func() { stream, streamErr = n.ensureStream(ctx) })
	// The buckets are independent: set them up at once (creating a
	// replicated bucket forms a Raft group, which takes a while).
	buckets := []jetstream.KeyValueConfig{{
		Bucket:      n.name("killswitch"),
		Description: "craftedge kill-switch overrides (snapshot-only), by upstream",
		History:     1,
	}, {
		Bucket:      n.name("leases"),
		Description: "craftedge leases: one holder per name, expiring after the TTL",
		History:     1,
		TTL:         n.cfg.LeaseTTL,
	}}
	if n.opts.Cursors == nil {
		buckets = append(buckets, jetstream.KeyValueConfig{
			Bucket:      n.name("cursors"),
			Description: "craftedge: last purge applied, by node",
			History:     1,
		})
	}
	kvs := make([]jetstream.KeyValue, len(buckets))
	errs := make([]error, len(buckets))
	var wg sync.WaitGroup
	for i, cfg := range buckets {
		wg.Go(func() { kvs[i], errs[i] = n.ensureBucket(ctx, cfg) })
	}
	wg.Wait()
	streamDone.Wait()
	if err := errors.Join(append(errs, streamErr)...); err != nil {
		return err
	}
	kill, leases := kvs[0], kvs[1]
	cursors := n.opts.Cursors
	if cursors == nil {
		cursors = &kvCursors{kv: kvs[2], key: n.cfg.NodeName, timeout: n.cfg.Timeout}
	}
	n.mu.Lock()
	n.kill, n.leases = kill, leases
	n.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		if err := n.watchKillSwitch(ctx, kill); err != nil && ctx.Err() == nil {
			n.log.Warn("kill-switch watch ended", zap.Error(err))
			cancel()
		}
	}()
	err := n.followPurges(ctx, stream, cursors)
	cancel()
	<-watchDone
	if ctx.Err() != nil && n.ctx.Err() == nil && !n.nc.IsConnected() {
		return nil // ended by a disconnection
	}
	return err
}

// waitJetStream polls JetStream until it answers (a new NATS cluster
// elects its meta leader first; requests sent before then go unanswered
// until they time out), with short requests so set-up starts soon after.
func (n *Node) waitJetStream(ctx context.Context) error {
	probe := min(time.Second, n.cfg.Timeout)
	for {
		pctx, cancel := context.WithTimeout(ctx, probe)
		_, err := n.js.AccountInfo(pctx)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
			return fmt.Errorf("cluster: NATS answers without JetStream: enable it on the server (jetstream {} in its config): %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(probe / 4):
		}
	}
}

// name is the stream or bucket name of a part.
func (n *Node) name(part string) string { return n.cfg.Namespace + "_" + part }

// opCtx bounds one request to NATS.
func (n *Node) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, n.cfg.Timeout)
}

// lazyBucket is a key-value bucket a part of the node sets up on its
// first use while connected (not in every session: few configs use it),
// and again after an operation on it failed (the bucket may be gone, or
// the session changed).
type lazyBucket struct {
	mu sync.Mutex
	kv jetstream.KeyValue
}

// get returns the bucket of cfg, setting it up (ensureBucket) on the
// first use since the last drop.
func (b *lazyBucket) get(ctx context.Context, n *Node, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if !n.connected() {
		return nil, errNotConnected
	}
	b.mu.Lock()
	kv := b.kv
	b.mu.Unlock()
	if kv != nil {
		return kv, nil
	}
	kv, err := n.ensureBucket(ctx, cfg)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.kv = kv
	b.mu.Unlock()
	return kv, nil
}

// drop makes the next get set the bucket up again.
func (b *lazyBucket) drop() {
	b.mu.Lock()
	b.kv = nil
	b.mu.Unlock()
}

func (n *Node) ensureBucket(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	cfg.Replicas = n.cfg.Replicas
	cfg.Storage = jetstream.FileStorage
	ctx, cancel := n.opCtx(ctx)
	defer cancel()
	kv, err := n.js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: key-value bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}
