package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/internal/boltsafe"
)

// Outbox job states; the same words as package jobs' states.
const (
	OutboxReady   = "ready"
	OutboxRunning = "running"
	OutboxDone    = "done"
	OutboxDead    = "dead"
)

// Defaults for zero OutboxConfig fields.
const (
	DefaultOutboxMaxAttempts  = 12
	DefaultOutboxBaseBackoff  = time.Second
	DefaultOutboxMaxBackoff   = 15 * time.Minute
	DefaultOutboxConcurrency  = 4
	DefaultOutboxTimeout      = time.Minute
	DefaultOutboxAckWait      = 30 * time.Second
	DefaultOutboxBlockedRetry = 250 * time.Millisecond
	DefaultOutboxRetention    = 24 * time.Hour
	DefaultOutboxMaxBytes     = 1 << 30
	DefaultOutboxDeadMaxBytes = 256 << 20

	outboxMaxKind        = 128
	outboxMaxKey         = 1024
	outboxMaxCorrelation = 128
)

// ErrOutboxInvalid is wrapped by Accept's errors for a malformed request
// (an API answers 400).
var ErrOutboxInvalid = errors.New("cluster: outbox: invalid request")

// ErrOutboxNotFound is wrapped by Get's error for an unknown job (or one
// whose status expired after Retention).
var ErrOutboxNotFound = errors.New("cluster: outbox: job not found")

// OutboxConfig configures the cluster outbox. Zero values select the
// documented defaults.
type OutboxConfig struct {
	// MaxAttempts is how many attempts a job gets before it is
	// dead-lettered; default 12.
	MaxAttempts int
	// BaseBackoff and MaxBackoff shape the retry delay, exponential with
	// full jitter as in package jobs; defaults 1s and 15m.
	BaseBackoff, MaxBackoff time.Duration
	// Concurrency is how many jobs this node runs at once (Run); default 4.
	Concurrency int
	// Timeout bounds one attempt; default 1m.
	Timeout time.Duration
	// AckWait is how long a job stays with a node that stopped answering
	// (killed, partitioned) before another node gets it; a live worker
	// renews it every AckWait/3. Default 30s, at least 100ms.
	AckWait time.Duration
	// BlockedRetry is how long a job waiting for an earlier job of its
	// entity is put back before it is offered again, the first time; it
	// waits n × BlockedRetry the n-th time, at most 8 ×. Default 250ms.
	BlockedRetry time.Duration
	// Retention is how long a job's status is kept after its last change
	// and how long an idempotency key deduplicates (JetStream's duplicate
	// window); default 24h.
	Retention time.Duration
	// MaxBytes bounds the jobs waiting in the stream. When it is reached
	// Accept fails (the stream refuses new messages, it never drops an
	// accepted one); default 1 GiB.
	MaxBytes int64
	// DeadMaxBytes bounds the dead-letter stream; when it is full a job
	// that should be dead-lettered stays and is retried; default 256 MiB.
	DeadMaxBytes int64
	// Permanent reports an error retrying cannot fix (dead-letter at
	// once); nil: none is.
	Permanent func(error) bool
	// RetryDelay returns the delay a handler asked for (a vendor's
	// Retry-After), instead of the backoff; nil: none.
	RetryDelay func(error) (time.Duration, bool)
}

func (c OutboxConfig) withDefaults() (OutboxConfig, error) {
	for _, f := range []struct {
		name string
		v    int64
	}{{"max_attempts", int64(c.MaxAttempts)}, {"concurrency", int64(c.Concurrency)}, {"max_bytes", c.MaxBytes},
		{"dead_max_bytes", c.DeadMaxBytes}, {"base_backoff", int64(c.BaseBackoff)}, {"max_backoff", int64(c.MaxBackoff)},
		{"timeout", int64(c.Timeout)}, {"ack_wait", int64(c.AckWait)}, {"blocked_retry", int64(c.BlockedRetry)},
		{"retention", int64(c.Retention)}} {
		if f.v < 0 {
			return c, fmt.Errorf("cluster: outbox: %s is negative", f.name)
		}
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultOutboxMaxAttempts
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultOutboxConcurrency
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultOutboxMaxBytes
	}
	if c.DeadMaxBytes == 0 {
		c.DeadMaxBytes = DefaultOutboxDeadMaxBytes
	}
	def(&c.BaseBackoff, DefaultOutboxBaseBackoff)
	def(&c.MaxBackoff, max(DefaultOutboxMaxBackoff, c.BaseBackoff))
	def(&c.Timeout, DefaultOutboxTimeout)
	def(&c.AckWait, DefaultOutboxAckWait)
	def(&c.BlockedRetry, DefaultOutboxBlockedRetry)
	def(&c.Retention, DefaultOutboxRetention)
	switch {
	case c.MaxBackoff < c.BaseBackoff:
		return c, fmt.Errorf("cluster: outbox: max_backoff %s is below base_backoff %s", c.MaxBackoff, c.BaseBackoff)
	case c.AckWait < 100*time.Millisecond:
		return c, fmt.Errorf("cluster: outbox: ack_wait %s is shorter than 100ms", c.AckWait)
	case c.Retention < time.Second:
		return c, fmt.Errorf("cluster: outbox: retention %s is shorter than 1s", c.Retention)
	}
	return c, nil
}

// OutboxRequest is a write to accept: the fields of jobs.EnqueueRequest
// that the outbox uses.
type OutboxRequest struct {
	// Kind selects the handler's work (the outbox kind); required.
	Kind string
	// Key is the idempotency key: within Retention, accepting the same
	// kind and key again returns the first job. Empty: no deduplication.
	Key string
	// Entity orders this job after every earlier-accepted job of the same
	// kind and entity, on whichever node it was accepted. Empty: no order.
	Entity string
	// Correlation is the request id of the HTTP request that caused it.
	Correlation string
	// Payload is handed to the handler unchanged.
	Payload []byte
}

// OutboxJob is a job of the cluster outbox, as accepted and as handed to
// the handler.
type OutboxJob struct {
	ID          string    `json:"id"`
	Kind        string    `json:"kind"`
	Key         string    `json:"key,omitempty"`
	Entity      string    `json:"entity,omitempty"`
	Correlation string    `json:"correlation,omitempty"`
	Payload     []byte    `json:"payload,omitempty"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	LastError   string    `json:"last_error,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	FinishedAt  time.Time `json:"finished_at,omitzero"`
	RunAt       time.Time `json:"run_at,omitzero"`
	// Node accepted the job; RanOn ran its last attempt.
	Node  string `json:"node"`
	RanOn string `json:"ran_on,omitempty"`
	// Seq is the job's sequence in the outbox stream (acceptance order).
	Seq uint64 `json:"seq"`
}

// IdempotencyKey is the key to send with the job's side effect: Key, or
// "<kind>:<id>" — the same rule as jobs.Task.IdempotencyKey, stable
// across attempts and nodes.
func (j OutboxJob) IdempotencyKey() string {
	if j.Key != "" {
		return j.Key
	}
	return j.Kind + ":" + j.ID
}

// OutboxHandler runs one attempt of a job. It must honour ctx (cancelled
// at Timeout or when Run's context ends) and be idempotent: a job may run
// again after a node died mid-attempt (with the same IdempotencyKey). An
// error wrapped by OutboxGiveBack gives the job back without counting the
// attempt.
type OutboxHandler func(ctx context.Context, job OutboxJob) error

// OutboxGiveBack wraps a handler's error that says this node cannot run
// jobs now, whatever the job (its storage file is damaged or full): the
// job goes back to the stream for any node, after GiveBackDelay, and the
// attempt is not counted, so a node that cannot record outcomes does not
// use up the attempts of the cluster's jobs and dead-letter them.
func OutboxGiveBack(err error) error { return &giveBack{err} }

type giveBack struct{ err error }

func (e *giveBack) Error() string { return e.err.Error() }
func (e *giveBack) Unwrap() error { return e.err }

func isGiveBack(err error) bool {
	var g *giveBack
	return errors.As(err, &g)
}

// giveBackDelay is how long a job given back waits before any node may
// take it again: long enough for another node's worker to take it first
// (this node's workers keep asking).
func (c OutboxConfig) giveBackDelay() time.Duration { return 8 * c.BlockedRetry }

// OutboxStats counts what this node did.
type OutboxStats struct {
	Accepted, Duplicates, Delivered, Retried, Dead, Blocked, Malformed uint64
	// GivenBack counts jobs this node gave back (OutboxGiveBack).
	GivenBack uint64
	// Running is the number of attempts in progress on this node.
	Running int64
}

// Outbox is the cluster's durable outbox: a JetStream work-queue stream
// that any node accepts writes into and any node delivers from. See the
// package doc.
type Outbox struct {
	n   *Node
	cfg OutboxConfig

	bg *background

	mu     sync.Mutex
	stream jetstream.Stream
	dead   jetstream.Stream
	status jetstream.KeyValue

	accepted, duplicates, delivered, retried, deadN, blocked, malformed, givenBack atomic.Uint64
	running                                                                        atomic.Int64
}

// NewOutbox sets up the outbox on n: its streams and status bucket are
// created (or updated) whenever n connects. Accept works once they are;
// Run delivers. Close stops it (before the node's Close).
func NewOutbox(n *Node, cfg OutboxConfig) (*Outbox, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	o := &Outbox{n: n, cfg: c}
	o.bg = n.background("outbox", o.setup)
	return o, nil
}

// Close stops the set-up goroutine; Runs end with their own contexts.
func (o *Outbox) Close() { o.bg.stop() }

func (o *Outbox) subjectRoot() string { return o.n.cfg.Namespace + ".outbox" }

// subject of a job: per entity (hashed: entities may hold any byte), or
// one subject for every unordered job.
func (o *Outbox) subject(kind, entity string) string {
	if entity == "" {
		return o.subjectRoot() + ".u"
	}
	sum := sha256.Sum256([]byte(kind + "\x00" + entity))
	return o.subjectRoot() + ".e." + hex.EncodeToString(sum[:16])
}

func (o *Outbox) streamConfig() jetstream.StreamConfig {
	n := o.n
	return jetstream.StreamConfig{
		Name:        n.name("outbox"),
		Description: "craftedge outbox: accepted writes waiting for delivery, one subject per entity",
		Subjects:    []string{o.subjectRoot() + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    o.cfg.MaxBytes,
		Storage:     jetstream.FileStorage,
		Replicas:    n.cfg.Replicas,
		Duplicates:  o.cfg.Retention,
	}
}

func (o *Outbox) deadStreamConfig() jetstream.StreamConfig {
	n := o.n
	return jetstream.StreamConfig{
		Name:        n.name("outbox_dead"),
		Description: "craftedge outbox dead letters: jobs that failed permanently or ran out of attempts",
		Subjects:    []string{n.cfg.Namespace + ".outbox_dead.>"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    o.cfg.DeadMaxBytes,
		Storage:     jetstream.FileStorage,
		Replicas:    n.cfg.Replicas,
		Duplicates:  2 * time.Minute,
	}
}

// setup creates the streams and bucket, then holds them until the session
// ends.
func (o *Outbox) setup(ctx context.Context) error {
	n := o.n
	octx, cancel := n.opCtx(ctx)
	defer cancel()
	stream, err := n.ensureStreamConfig(octx, o.streamConfig())
	if err != nil {
		return err
	}
	dead, err := n.ensureStreamConfig(octx, o.deadStreamConfig())
	if err != nil {
		return err
	}
	status, err := n.ensureBucket(ctx, jetstream.KeyValueConfig{
		Bucket:      n.name("outbox_jobs"),
		Description: "craftedge outbox: status of each job (j.<id>), and the job id of each idempotency key (k.<hash>)",
		History:     1,
		// Key index entries outlive the duplicate window they mirror.
		TTL: o.cfg.Retention + 5*time.Minute,
	})
	if err != nil {
		return err
	}
	o.mu.Lock()
	o.stream, o.dead, o.status = stream, dead, status
	o.mu.Unlock()
	<-ctx.Done()
	o.mu.Lock()
	o.stream, o.dead, o.status = nil, nil, nil
	o.mu.Unlock()
	return nil
}

func (o *Outbox) handles() (jetstream.Stream, jetstream.Stream, jetstream.KeyValue, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stream == nil || !o.n.connected() {
		return nil, nil, nil, errNotConnected
	}
	return o.stream, o.dead, o.status, nil
}

// Ready reports whether Accept can store jobs now.
func (o *Outbox) Ready() bool {
	_, _, _, err := o.handles()
	return err == nil
}

func checkOutboxRequest(r OutboxRequest) error {
	field := func(name, v string, maxLen int) error {
		switch {
		case len(v) > maxLen:
			return fmt.Errorf("%w: %s longer than %d bytes", ErrOutboxInvalid, name, maxLen)
		case strings.IndexByte(v, 0) >= 0:
			return fmt.Errorf("%w: %s contains a NUL byte", ErrOutboxInvalid, name)
		}
		return nil
	}
	if r.Kind == "" {
		return fmt.Errorf("%w: empty kind", ErrOutboxInvalid)
	}
	if err := errors.Join(field("kind", r.Kind, outboxMaxKind), field("key", r.Key, outboxMaxKey),
		field("entity", r.Entity, outboxMaxKey)); err != nil {
		return err
	}
	if len(r.Correlation) > outboxMaxCorrelation {
		return fmt.Errorf("%w: correlation longer than %d bytes", ErrOutboxInvalid, outboxMaxCorrelation)
	}
	for i := 0; i < len(r.Correlation); i++ {
		if c := r.Correlation[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("%w: correlation contains byte %#x (want printable ASCII)", ErrOutboxInvalid, c)
		}
	}
	return nil
}

// newOutboxID is a random job id: 128 bits in 32 hex digits, like package
// jobs' ids, so one job's id says nothing of another's.
func newOutboxID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// keyHash names an idempotency key (of a kind) in the stream's duplicate
// window and in the key index.
func keyHash(kind, key string) string {
	sum := sha256.Sum256([]byte("craftedge-outbox\x00" + kind + "\x00" + key))
	return hex.EncodeToString(sum[:16])
}

// Accept stores a job in the outbox stream and returns once JetStream has
// acknowledged it, that is once the stream's replicas hold it: from then
// on it is delivered even if this node never comes back. created is false
// when a job of the same kind and key was accepted within Retention (that
// job is returned). Without NATS it fails at once (ErrNotConnected is
// true) and nothing is stored: the caller refuses the write (503) rather
// than acknowledging what only its own disk holds.
//
// A job with a key takes its id from the key index (k.<hash> in the
// status bucket, created before the publication, so every node retrying
// the key finds the same id) and is published with the key's hash as its
// message id (JetStream's duplicate window deduplicates it). An index
// entry whose publication never happened (the accepting node died in
// between) is reused by the next attempt, which then publishes.
func (o *Outbox) Accept(ctx context.Context, req OutboxRequest) (job OutboxJob, created bool, err error) {
	if err := checkOutboxRequest(req); err != nil {
		return OutboxJob{}, false, err
	}
	_, _, status, err := o.handles()
	if err != nil {
		return OutboxJob{}, false, err
	}
	fail := func(doing string, err error) (OutboxJob, bool, error) {
		if !o.n.nc.IsConnected() {
			err = errors.Join(errNotConnected, err)
		}
		return OutboxJob{}, false, fmt.Errorf("cluster: outbox: %s %s: %w", doing, req.Kind, err)
	}
	id, msgID := newOutboxID(), ""
	if req.Key != "" {
		msgID = "k-" + keyHash(req.Kind, req.Key)
		if id, err = o.indexKey(ctx, status, keyHash(req.Kind, req.Key), id); err != nil {
			return fail("indexing the key of", err)
		}
	} else {
		msgID = id
	}
	now := time.Now().UTC()
	job = OutboxJob{
		ID: id, Kind: req.Kind, Key: req.Key, Entity: req.Entity,
		Correlation: req.Correlation, Payload: req.Payload, State: OutboxReady,
		CreatedAt: now, UpdatedAt: now, Node: o.n.cfg.NodeName,
	}
	body, err := json.Marshal(job)
	if err != nil {
		return OutboxJob{}, false, fmt.Errorf("cluster: outbox: encoding job: %w", err)
	}
	if limit := o.n.payloadLimit(); len(body) > limit {
		return OutboxJob{}, false, fmt.Errorf("%w: job of %d bytes exceeds the NATS payload limit (%d)", ErrOutboxInvalid, len(body), limit)
	}
	msg := nats.NewMsg(o.subject(req.Kind, req.Entity))
	msg.Header.Set(headerNode, o.n.cfg.NodeName)
	msg.Data = body
	pctx, cancel := o.n.opCtx(ctx)
	ack, err := o.n.js.PublishMsg(pctx, msg, jetstream.WithMsgID(msgID))
	cancel()
	if err != nil {
		return fail("accepting", err)
	}
	job.Seq = ack.Sequence
	if ack.Duplicate {
		o.duplicates.Add(1)
		if prev, err := o.getStatus(ctx, status, job.ID); err == nil {
			return prev, false, nil
		}
		return job, false, nil
	}
	o.accepted.Add(1)
	// The status is for visibility only: the stream holds the job.
	if err := o.putStatus(ctx, status, job); err != nil {
		o.n.log.Warn("outbox: recording an accepted job's status", zap.String("job", job.ID), zap.Error(err))
	}
	return job, true, nil
}

// indexKey returns the job id of a key: the one indexed, or id, indexed
// now.
func (o *Outbox) indexKey(ctx context.Context, status jetstream.KeyValue, hash, id string) (string, error) {
	ctx, cancel := o.n.opCtx(ctx)
	defer cancel()
	k := "k." + hash
	for range 4 {
		_, err := status.Create(ctx, k, []byte(id))
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return "", err
		}
		e, err := status.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired in between
		}
		if err != nil {
			return "", err
		}
		if v := string(e.Value()); len(v) == 32 {
			return v, nil
		}
		return id, nil // unreadable: the message id still deduplicates
	}
	return "", errors.New("the key index keeps changing")
}

// Get returns a job's last recorded status (payload included).
func (o *Outbox) Get(ctx context.Context, id string) (OutboxJob, error) {
	_, _, status, err := o.handles()
	if err != nil {
		return OutboxJob{}, err
	}
	return o.getStatus(ctx, status, id)
}

func (o *Outbox) getStatus(ctx context.Context, status jetstream.KeyValue, id string) (OutboxJob, error) {
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return OutboxJob{}, fmt.Errorf("%w: id %q", ErrOutboxNotFound, id)
	}
	ctx, cancel := o.n.opCtx(ctx)
	defer cancel()
	e, err := status.Get(ctx, "j."+id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return OutboxJob{}, fmt.Errorf("%w: %s", ErrOutboxNotFound, id)
	}
	if err != nil {
		return OutboxJob{}, fmt.Errorf("cluster: outbox: reading job %s: %w", id, err)
	}
	var j OutboxJob
	if err := json.Unmarshal(e.Value(), &j); err != nil {
		return OutboxJob{}, fmt.Errorf("cluster: outbox: job %s: unreadable status: %w", id, err)
	}
	return j, nil
}

func (o *Outbox) putStatus(ctx context.Context, status jetstream.KeyValue, j OutboxJob) error {
	data, err := json.Marshal(j)
	if err != nil {
		return err
	}
	ctx, cancel := o.n.opCtx(ctx)
	defer cancel()
	_, err = status.Put(ctx, "j."+j.ID, data)
	return err
}

// Stats returns this node's counters.
func (o *Outbox) Stats() OutboxStats {
	return OutboxStats{
		Accepted: o.accepted.Load(), Duplicates: o.duplicates.Load(), Delivered: o.delivered.Load(),
		Retried: o.retried.Load(), Dead: o.deadN.Load(), Blocked: o.blocked.Load(), Malformed: o.malformed.Load(), GivenBack: o.givenBack.Load(),
		Running: o.running.Load(),
	}
}

// Run delivers jobs with h until ctx ends, Concurrency at a time, taking
// them from the stream shared by every node: each job goes to one node at
// a time, and a job of an entity runs only when every earlier-accepted job
// of that entity is gone from the stream (done or dead-lettered). It
// returns once ctx ended and its attempts returned.
func (o *Outbox) Run(ctx context.Context, h OutboxHandler) error {
	if h == nil {
		return errors.New("cluster: outbox: nil handler")
	}
	var wg sync.WaitGroup
	for range o.cfg.Concurrency {
		wg.Go(func() {
			o.n.sessions(ctx, "outbox worker", func(sctx context.Context) error { return o.work(sctx, ctx, h) })
		})
	}
	wg.Wait()
	return nil
}

// work takes jobs one at a time until sctx ends. runCtx is Run's context:
// an attempt cut short by it gives its attempt back.
func (o *Outbox) work(sctx, runCtx context.Context, h OutboxHandler) error {
	stream, _, _, err := o.waitHandles(sctx)
	if err != nil {
		return err
	}
	octx, cancel := o.n.opCtx(sctx)
	cons, err := stream.CreateOrUpdateConsumer(octx, jetstream.ConsumerConfig{
		Durable:       "outbox",
		Description:   "craftedge outbox workers of every node",
		FilterSubject: o.subjectRoot() + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 10000,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("cluster: outbox consumer: %w", err)
	}
	for sctx.Err() == nil {
		msg, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
			continue
		}
		if err != nil {
			return fmt.Errorf("cluster: outbox: fetching: %w", err)
		}
		o.handle(sctx, runCtx, msg, h)
	}
	return nil
}

// waitHandles waits until the set-up session has the streams.
func (o *Outbox) waitHandles(ctx context.Context) (jetstream.Stream, jetstream.Stream, jetstream.KeyValue, error) {
	for {
		s, d, st, err := o.handles()
		if err == nil {
			return s, d, st, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, nil, ctx.Err()
		case <-time.After(min(o.n.cfg.ReconnectWait, 100*time.Millisecond)):
		}
	}
}

// handle runs one delivered message.
func (o *Outbox) handle(sctx, runCtx context.Context, msg jetstream.Msg, h OutboxHandler) {
	log := o.n.log
	md, err := msg.Metadata()
	if err != nil {
		_ = msg.NakWithDelay(o.cfg.BlockedRetry)
		return
	}
	var job OutboxJob
	if err := json.Unmarshal(msg.Data(), &job); err != nil || job.ID == "" || job.Kind == "" {
		o.malformed.Add(1)
		log.Error("outbox: dead-lettering a message that is not a job", zap.Uint64("seq", md.Sequence.Stream), zap.Error(err))
		o.deadLetter(sctx, msg, job, "not a job")
		return
	}
	job.Seq = md.Sequence.Stream
	stream, _, status, err := o.handles()
	if err != nil {
		_ = msg.NakWithDelay(o.cfg.BlockedRetry)
		return
	}
	if job.Entity != "" {
		gctx, cancel := o.n.opCtx(sctx)
		head, err := stream.GetMsg(gctx, 1, jetstream.WithGetMsgSubject(msg.Subject()))
		cancel()
		if err != nil || head.Sequence != job.Seq {
			// An earlier job of the entity is still in the stream (ready,
			// retrying, or running on another node): wait for it, longer
			// each time (up to 8 × BlockedRetry), so a long entity queue
			// behind a retrying job does not spin.
			o.blocked.Add(1)
			_ = msg.NakWithDelay(o.cfg.BlockedRetry * time.Duration(min(max(md.NumDelivered, 1), 8)))
			return
		}
	}
	if prev, err := o.getStatus(sctx, status, job.ID); err == nil && prev.Seq == job.Seq {
		job.Attempts, job.LastError, job.CreatedAt = prev.Attempts, prev.LastError, prev.CreatedAt
	}
	job.Attempts++
	job.State, job.RanOn, job.UpdatedAt, job.RunAt = OutboxRunning, o.n.cfg.NodeName, time.Now().UTC(), time.Time{}
	if err := o.putStatus(sctx, status, job); err != nil {
		log.Warn("outbox: recording a job's attempt", zap.String("job", job.ID), zap.Error(err))
	}

	o.running.Add(1)
	herr := o.attempt(runCtx, msg, job, h)
	o.running.Add(-1)

	now := time.Now().UTC()
	job.UpdatedAt = now
	fields := []zap.Field{zap.String("job_id", job.ID), zap.String("kind", job.Kind), zap.Int("attempt", job.Attempts),
		zap.String("request_id", job.Correlation)}
	switch {
	case herr == nil:
		job.State, job.FinishedAt, job.LastError = OutboxDone, now, ""
		// Confirmed: the job leaves the stream only once JetStream says so.
		actx, cancel := o.n.opCtx(context.WithoutCancel(sctx))
		err := msg.DoubleAck(actx)
		cancel()
		if err != nil {
			// It runs again after AckWait, with the same idempotency key.
			log.Warn("outbox: acknowledging a delivered job failed; it may run again", append(fields, zap.Error(err))...)
			return
		}
		o.delivered.Add(1)
		log.Info("outbox job done", fields...)
	case isGiveBack(herr):
		job.State, job.Attempts = OutboxReady, max(job.Attempts-1, 0)
		job.LastError = "given back by " + o.n.cfg.NodeName + ": " + errText(herr)
		_ = msg.NakWithDelay(o.cfg.giveBackDelay())
		o.givenBack.Add(1)
		log.Warn("outbox job given back: this node cannot run jobs now", append(fields, zap.Error(herr))...)
	case runCtx.Err() != nil && !o.permanent(herr):
		job.State, job.Attempts = OutboxReady, max(job.Attempts-1, 0)
		job.LastError = "interrupted by shutdown: " + errText(herr)
		_ = msg.Nak()
		log.Info("outbox job interrupted by shutdown; it will run again", fields...)
	case o.permanent(herr) || job.Attempts >= o.cfg.MaxAttempts:
		job.LastError = errText(herr)
		if !o.deadLetter(sctx, msg, job, job.LastError) {
			return
		}
		job.State, job.FinishedAt = OutboxDead, now
		log.Error("outbox job dead-lettered", append(fields, zap.Error(herr))...)
	default:
		delay, ok := time.Duration(0), false
		if o.cfg.RetryDelay != nil {
			delay, ok = o.cfg.RetryDelay(herr)
		}
		if !ok {
			delay = outboxBackoff(o.cfg, job.Attempts)
		}
		job.State, job.LastError, job.RunAt = OutboxReady, errText(herr), now.Add(delay)
		_ = msg.NakWithDelay(delay)
		o.retried.Add(1)
		log.Warn("outbox job attempt failed; will retry", append(fields, zap.Duration("delay", delay), zap.Error(herr))...)
	}
	if err := o.putStatus(context.WithoutCancel(sctx), status, job); err != nil {
		log.Warn("outbox: recording a job's outcome", zap.String("job", job.ID), zap.Error(err))
	}
}

// attempt runs h under Timeout, telling JetStream the job is in progress
// every AckWait/3 so no other node takes it meanwhile.
func (o *Outbox) attempt(runCtx context.Context, msg jetstream.Msg, job OutboxJob, h OutboxHandler) (err error) {
	ctx, cancel := context.WithTimeout(runCtx, o.cfg.Timeout)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(o.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			stack := debug.Stack()
			if p, ok := r.(*boltsafe.PanicError); ok && p.Stack != nil {
				r, stack = p.Value, p.Stack // raised again by a storage guard: where it was raised first
			}
			o.n.log.Error("outbox handler panicked", zap.String("job", job.ID), zap.Any("panic", r),
				zap.ByteString("stack", stack))
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h(ctx, job)
}

func (o *Outbox) permanent(err error) bool { return o.cfg.Permanent != nil && o.cfg.Permanent(err) }

// deadLetter copies msg to the dead-letter stream, then removes it from
// the outbox; false if the copy failed (the job is retried later).
func (o *Outbox) deadLetter(ctx context.Context, msg jetstream.Msg, job OutboxJob, reason string) bool {
	_, _, _, err := o.handles()
	if err == nil {
		dm := nats.NewMsg(strings.Replace(msg.Subject(), o.subjectRoot()+".", o.n.cfg.Namespace+".outbox_dead.", 1))
		dm.Header.Set(headerNode, o.n.cfg.NodeName)
		dm.Header.Set("Craftedge-Error", strings.ToValidUTF8(strings.NewReplacer("\r", " ", "\n", " ").Replace(reason), "?"))
		dm.Data = msg.Data()
		id := job.ID
		if id == "" {
			md, _ := msg.Metadata()
			if md != nil {
				id = fmt.Sprintf("seq-%d", md.Sequence.Stream)
			}
		}
		pctx, cancel := o.n.opCtx(context.WithoutCancel(ctx))
		_, err = o.n.js.PublishMsg(pctx, dm, jetstream.WithMsgID("dead-"+id))
		cancel()
	}
	if err != nil {
		o.n.log.Error("outbox: dead-lettering a job failed; it stays and is retried", zap.String("job", job.ID), zap.Error(err))
		_ = msg.NakWithDelay(o.cfg.MaxBackoff)
		return false
	}
	actx, cancel := o.n.opCtx(context.WithoutCancel(ctx))
	defer cancel()
	if err := msg.DoubleAck(actx); err != nil {
		o.n.log.Warn("outbox: removing a dead-lettered job failed", zap.String("job", job.ID), zap.Error(err))
	}
	o.deadN.Add(1)
	return true
}

// DeadLetters returns up to limit dead-lettered jobs, oldest first, with
// the error that killed each.
func (o *Outbox) DeadLetters(ctx context.Context, limit int) ([]OutboxJob, error) {
	_, dead, _, err := o.handles()
	if err != nil {
		return nil, err
	}
	ictx, cancel := o.n.opCtx(ctx)
	info, err := dead.Info(ictx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("cluster: outbox dead letters: %w", err)
	}
	var out []OutboxJob
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && len(out) < limit && seq > 0; seq++ {
		gctx, cancel := o.n.opCtx(ctx)
		m, err := dead.GetMsg(gctx, seq)
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("cluster: outbox dead letter %d: %w", seq, err)
		}
		var j OutboxJob
		_ = json.Unmarshal(m.Data, &j)
		j.State, j.LastError = OutboxDead, m.Header.Get("Craftedge-Error")
		out = append(out, j)
	}
	return out, nil
}

// outboxBackoff is package jobs' backoff: uniform in
// [0, min(MaxBackoff, BaseBackoff·2^(n-1))], at least 1ms.
func outboxBackoff(c OutboxConfig, attempts int) time.Duration {
	d := c.BaseBackoff
	for i := 1; i < attempts && d < c.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.MaxBackoff)
	return max(time.Duration(mrand.Int64N(int64(d)+1)), time.Millisecond)
}

func errText(err error) string {
	s := err.Error()
	if len(s) > 4<<10 {
		s = s[:4<<10] + "…(truncated)"
	}
	return s
}
