package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Defaults for zero SharedSnapshotsConfig fields.
const (
	DefaultSharedSnapshotsMaxBytes        = 256 << 20
	DefaultSharedSnapshotsMaxCount        = 100000
	DefaultSharedSnapshotsMaxAge          = 7 * 24 * time.Hour
	DefaultSharedSnapshotsQueue           = 1024
	DefaultSharedSnapshotsQueueBytes      = 32 << 20
	minSharedSnapshotsMaxBytes            = 4 << 10
	sharedSnapshotVersion            byte = 1
)

// SharedSnapshotsConfig bounds the shared snapshot store, like the local
// one (snapshot.Options): by bytes, count and age, oldest dropped first.
// Unlimited is not offered.
type SharedSnapshotsConfig struct {
	// MaxBytes bounds the stored copies; default 256 MiB, at least 4 KiB.
	MaxBytes int64
	// MaxCount bounds the number of pages kept; default 100000.
	MaxCount int64
	// MaxAge drops copies stored longer ago; default 7 days.
	MaxAge time.Duration
	// QueueSize and QueueBytes bound the copies waiting in memory to be
	// published (one per key: a newer copy replaces a waiting one); a
	// copy beyond them is dropped and counted. Defaults 1024 and 32 MiB.
	QueueSize  int
	QueueBytes int64
}

func (c SharedSnapshotsConfig) withDefaults() (SharedSnapshotsConfig, error) {
	switch {
	case c.MaxBytes < 0, c.MaxCount < 0, c.MaxAge < 0, c.QueueSize < 0, c.QueueBytes < 0:
		return c, errors.New("cluster: shared snapshots: negative bound")
	case c.MaxBytes > 0 && c.MaxBytes < minSharedSnapshotsMaxBytes:
		return c, fmt.Errorf("cluster: shared snapshots: max_bytes %d is less than %d", c.MaxBytes, minSharedSnapshotsMaxBytes)
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultSharedSnapshotsMaxBytes
	}
	if c.MaxCount == 0 {
		c.MaxCount = DefaultSharedSnapshotsMaxCount
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultSharedSnapshotsMaxAge
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultSharedSnapshotsQueue
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = DefaultSharedSnapshotsQueueBytes
	}
	return c, nil
}

// SharedSnapshot is a last good copy of a page as the cluster shares it:
// the fields of snapshot.Record. StoredAt is when the page was produced
// and Tags every tag it carries: a node importing it keeps both, so its
// own purge marks decide, as for its own copies, whether it is stale.
type SharedSnapshot struct {
	Key      string
	StoredAt time.Time
	Tags     []string
	Value    []byte
	// Node is the node that published it (on receipt).
	Node string
}

// SharedSnapshotsStats counts what this node did.
type SharedSnapshotsStats struct {
	Published, Dropped, TooLarge, Malformed uint64
	Queued                                  int
}

// SharedSnapshots is the cluster's shared snapshot store: the stream
// <ns>_snapshots, one subject per page key holding its latest copy,
// bounded by bytes, count and age with the oldest copies dropped first.
// Every node publishes the copies it stores; a node that starts while
// Craft is down imports them (Each) or reads one on a local miss (Get).
type SharedSnapshots struct {
	n   *Node
	cfg SharedSnapshotsConfig

	bg *background
	q  *latestQueue[[]byte]

	mu     sync.Mutex
	stream jetstream.Stream

	published, dropped, tooLarge, malformed atomic.Uint64
}

// NewSharedSnapshots sets the store up on n (whenever it connects).
// Close stops it (before the node's Close).
func NewSharedSnapshots(n *Node, cfg SharedSnapshotsConfig) (*SharedSnapshots, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &SharedSnapshots{n: n, cfg: c, q: newLatestQueue[[]byte]()}
	s.bg = n.background("shared snapshots", s.session)
	return s, nil
}

// Close stops publishing; queued copies are dropped.
func (s *SharedSnapshots) Close() { s.bg.stop() }

func (s *SharedSnapshots) subject(key string) string {
	sum := sha256.Sum256([]byte(key))
	return s.n.cfg.Namespace + ".snapshots." + hex.EncodeToString(sum[:16])
}

func (s *SharedSnapshots) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              s.n.name("snapshots"),
		Description:       "craftedge shared snapshots: the last good copy of each page, by key",
		Subjects:          []string{s.n.cfg.Namespace + ".snapshots.*"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: 1,
		MaxMsgs:           s.cfg.MaxCount,
		MaxBytes:          s.cfg.MaxBytes,
		MaxAge:            s.cfg.MaxAge,
		Storage:           jetstream.FileStorage,
		Replicas:          s.n.cfg.Replicas,
	}
}

func (s *SharedSnapshots) session(ctx context.Context) error {
	octx, cancel := s.n.opCtx(ctx)
	stream, err := s.n.ensureStreamConfig(octx, s.streamConfig())
	cancel()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.stream = stream
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.stream = nil
		s.mu.Unlock()
	}()
	for {
		key, it, ok := s.q.wait(ctx)
		if !ok {
			return nil
		}
		msg := nats.NewMsg(s.subject(key))
		msg.Header.Set(headerNode, s.n.cfg.NodeName)
		msg.Data = it.v
		pctx, cancel := s.n.opCtx(ctx)
		_, err := s.n.js.PublishMsg(pctx, msg)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("cluster: publishing a shared snapshot: %w", err)
		}
		s.published.Add(1)
		s.q.done(key, it)
	}
}

// Put queues a copy for the other nodes and never blocks; false when it
// was dropped (queue full, or larger than NATS accepts in one message).
// Call it with what the local store keeps (snapshot.Record's fields),
// StoredAt included.
func (s *SharedSnapshots) Put(snap SharedSnapshot) bool {
	if snap.StoredAt.IsZero() {
		snap.StoredAt = time.Now()
	}
	data := encodeShared(snap)
	if limit := s.n.payloadLimit(); len(data) > limit {
		s.tooLarge.Add(1)
		return false
	}
	// One per key; beyond QueueSize keys or QueueBytes (unless it is the
	// only copy queued) the new copy is dropped.
	ok := s.q.putIf(snap.Key, data, int64(len(data)), func(n int, bytes int64, had bool) bool {
		return (had || n <= s.cfg.QueueSize) && (bytes <= s.cfg.QueueBytes || n == 1)
	})
	if !ok {
		s.dropped.Add(1)
	}
	return ok
}

// Flush waits until every queued copy is published, or ctx ends.
func (s *SharedSnapshots) Flush(ctx context.Context) error { return s.q.flush(ctx) }

func (s *SharedSnapshots) handle() (jetstream.Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stream == nil || !s.n.connected() {
		return nil, errNotConnected
	}
	return s.stream, nil
}

// Ready reports whether Get and Each can read the store now.
func (s *SharedSnapshots) Ready() bool {
	_, err := s.handle()
	return err == nil
}

// Get returns the shared copy of key, if the store holds one.
func (s *SharedSnapshots) Get(ctx context.Context, key string) (SharedSnapshot, bool, error) {
	stream, err := s.handle()
	if err != nil {
		return SharedSnapshot{}, false, err
	}
	ctx, cancel := s.n.opCtx(ctx)
	defer cancel()
	m, err := stream.GetLastMsgForSubject(ctx, s.subject(key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return SharedSnapshot{}, false, nil
	}
	if err != nil {
		return SharedSnapshot{}, false, fmt.Errorf("cluster: reading shared snapshot: %w", err)
	}
	snap, err := decodeShared(m.Data)
	if err != nil {
		s.malformed.Add(1)
		return SharedSnapshot{}, false, nil
	}
	if snap.Key != key { // a hash collision: not this page
		return SharedSnapshot{}, false, nil
	}
	snap.Node = m.Header.Get(headerNode)
	return snap, true, nil
}

// Each calls fn with every copy the store holds when it is called, oldest
// first (by publication), until fn returns false: a node starting with an
// empty local store imports them (keeping StoredAt and Tags). Malformed
// copies are skipped and counted.
func (s *SharedSnapshots) Each(ctx context.Context, fn func(SharedSnapshot) bool) error {
	stream, err := s.handle()
	if err != nil {
		return err
	}
	ictx, cancel := s.n.opCtx(ctx)
	info, err := stream.Info(ictx)
	cancel()
	if err != nil {
		return fmt.Errorf("cluster: shared snapshots: %w", err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return nil
	}
	cctx, cancel := s.n.opCtx(ctx)
	cons, err := stream.OrderedConsumer(cctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	cancel()
	if err != nil {
		return fmt.Errorf("cluster: shared snapshots: reading: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("cluster: shared snapshots: reading: %w", err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("cluster: shared snapshots: reading: %w", err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("cluster: shared snapshots: reading: %w", err)
		}
		snap, err := decodeShared(m.Data())
		if err == nil && m.Subject() != s.subject(snap.Key) {
			// Filed under another page's subject, where no copy of its
			// own key would ever replace it: not published by a node.
			err = fmt.Errorf("%w: the copy of %.200q is on subject %s", errMalformedSnapshot, snap.Key, m.Subject())
		}
		if err != nil {
			s.malformed.Add(1)
			s.n.log.Warn("shared snapshots: skipping a malformed copy", zap.Uint64("seq", md.Sequence.Stream),
				zap.String("from", m.Headers().Get(headerNode)), zap.Error(err))
		} else {
			snap.Node = m.Headers().Get(headerNode)
			if !fn(snap) {
				return nil
			}
		}
		if md.Sequence.Stream >= last || md.NumPending == 0 {
			return nil
		}
	}
}

// Stats returns this node's counters.
func (s *SharedSnapshots) Stats() SharedSnapshotsStats {
	q := s.q.len()
	return SharedSnapshotsStats{Published: s.published.Load(), Dropped: s.dropped.Load(),
		TooLarge: s.tooLarge.Load(), Malformed: s.malformed.Load(), Queued: q}
}

// encodeShared lays a copy out as: version byte, uvarint key length and
// key, 8-byte big-endian StoredAt (unix nanos), uvarint tag count and
// per tag uvarint length and bytes, then the value to the end.
func encodeShared(s SharedSnapshot) []byte {
	n := 1 + 3*binary.MaxVarintLen64 + len(s.Key) + 8 + len(s.Value)
	for _, t := range s.Tags {
		n += binary.MaxVarintLen64 + len(t)
	}
	b := make([]byte, 0, n)
	b = append(b, sharedSnapshotVersion)
	b = binary.AppendUvarint(b, uint64(len(s.Key)))
	b = append(b, s.Key...)
	b = binary.BigEndian.AppendUint64(b, uint64(s.StoredAt.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(s.Tags)))
	for _, t := range s.Tags {
		b = binary.AppendUvarint(b, uint64(len(t)))
		b = append(b, t...)
	}
	return append(b, s.Value...)
}

var errMalformedSnapshot = errors.New("cluster: malformed shared snapshot")

func decodeShared(b []byte) (SharedSnapshot, error) {
	if len(b) < 1 || b[0] != sharedSnapshotVersion {
		return SharedSnapshot{}, errMalformedSnapshot
	}
	rest := b[1:]
	str := func() (string, error) {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return "", errMalformedSnapshot
		}
		v := string(rest[w : w+int(n)])
		rest = rest[w+int(n):]
		return v, nil
	}
	var s SharedSnapshot
	var err error
	if s.Key, err = str(); err != nil {
		return s, err
	}
	if len(rest) < 8 {
		return s, errMalformedSnapshot
	}
	s.StoredAt = time.Unix(0, int64(binary.BigEndian.Uint64(rest)))
	rest = rest[8:]
	nTags, w := binary.Uvarint(rest)
	if w <= 0 || nTags > uint64(len(rest)) {
		return s, errMalformedSnapshot
	}
	rest = rest[w:]
	for range nTags {
		t, err := str()
		if err != nil {
			return s, err
		}
		s.Tags = append(s.Tags, t)
	}
	s.Value = append([]byte(nil), rest...)
	return s, nil
}
