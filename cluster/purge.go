package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Purge is one purge as it travels between nodes: the fields of the
// admin API's purge body, the time it was made and where it came from.
type Purge struct {
	// Tags, URLs, Prefixes, Hosts and All mean what they mean in
	// POST /craftedge/purge. The cluster does not interpret them.
	Tags     []string `json:"tags,omitempty"`
	URLs     []string `json:"urls,omitempty"`
	Prefixes []string `json:"prefixes,omitempty"`
	Hosts    []string `json:"hosts,omitempty"`
	All      bool     `json:"all,omitempty"`
	// Soft is a soft purge (POST /craftedge/purge's mode "soft"), settled
	// on the publishing node; absent (false, as from a node that predates
	// it) is hard.
	Soft bool `json:"soft,omitempty"`

	// At is when the purge was made on its node (Publish sets it when
	// zero): snapshot marks should use it, so a purge applied twice marks
	// the same time.
	At time.Time `json:"at"`

	// Source is what asked for it (admin_api, upstream_header, sync…),
	// for logs and metrics.
	Source string `json:"source,omitempty"`

	// Node and Seq are set on receipt: the publishing node and the
	// stream sequence.
	Node string `json:"-"`
	Seq  uint64 `json:"-"`
}

// Gap reasons.
const (
	// GapNoCursor: the node has no record of a purge applied (first start
	// in the cluster, or its cursor was lost).
	GapNoCursor = "no_cursor"
	// GapStreamRecreated: the purge stream is not the one the cursor
	// refers to (deleted and created again, or NATS lost its storage).
	GapStreamRecreated = "stream_recreated"
	// GapRetention: the stream's age or size limit dropped purges before
	// this node applied them.
	GapRetention = "retention"
)

// Gap describes purges a node cannot know it missed.
type Gap struct {
	// Reason is one of the Gap… constants.
	Reason string
	// Cursor is the last sequence the node had applied.
	Cursor uint64
	// First is the first sequence the stream still holds (or the next
	// one delivered, for a gap found while following).
	First uint64
	// Retry is true when the gap is reported again because Handlers.Gap
	// could not record it before (it counts once in Stats.Gaps): the
	// caller should mark its snapshots stale as of the time it first
	// heard of it.
	Retry bool
}

func (g Gap) String() string {
	return fmt.Sprintf("%s (applied up to %d, stream continues at %d)", g.Reason, g.Cursor, g.First)
}

// headerNode carries the publishing node's name.
const headerNode = "Craftedge-Node"

func (n *Node) subject() string { return n.cfg.Namespace + ".purges" }

// ensureStream creates the purge stream, or updates it when its limits
// differ (ensureStreamConfig): limits retention, bounded by age and bytes,
// oldest dropped first.
func (n *Node) ensureStream(ctx context.Context) (jetstream.Stream, error) {
	return n.ensureStreamConfig(ctx, jetstream.StreamConfig{
		Name:        n.name("purges"),
		Description: "craftedge purges, applied by every node",
		Subjects:    []string{n.subject()},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      n.cfg.PurgeMaxAge,
		MaxBytes:    n.cfg.PurgeMaxBytes,
		Storage:     jetstream.FileStorage,
		Replicas:    n.cfg.Replicas,
		Duplicates:  min(2*time.Minute, n.cfg.PurgeMaxAge),
	})
}

// Publish sends p to the other nodes. It never blocks: p is queued in
// memory and published in order as soon as NATS accepts it (see
// Config.MaxQueued for the bound). The caller applies p locally itself,
// at once; the node ignores its own purges on receipt.
func (n *Node) Publish(p Purge) {
	if p.At.IsZero() {
		p.At = time.Now()
	}
	n.out.push(p, n.cfg.NodeName+"-"+n.boot)
}

// Flush waits until every purge queued so far is published, or ctx
// ends (then it returns ctx.Err() and the rest stays queued). For a
// graceful shutdown: Close drops what is still queued.
func (n *Node) Flush(ctx context.Context) error {
	for {
		if q, _, _ := n.out.stats(); q == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.out.popped:
		}
	}
}

// publishLoop publishes the queue's head until the node closes.
func (n *Node) publishLoop() {
	defer n.wg.Done()
	for {
		item, ok := n.out.head()
		if !ok || !n.nc.IsConnected() {
			select {
			case <-n.ctx.Done():
				return
			case <-n.out.sig:
			}
			continue
		}
		err := n.publish(item)
		if err == nil {
			n.out.pop(item.id)
			continue
		}
		if n.ctx.Err() != nil {
			return
		}
		if !ErrNotConnected(err) {
			n.log.Warn("publishing a purge failed; retrying", zap.Error(err))
		}
		select { // the connection handler wakes us when it comes back
		case <-n.ctx.Done():
			return
		case <-n.out.sig:
		case <-time.After(n.cfg.ReconnectWait):
		}
	}
}

// publish stores one queued purge, split into messages that fit the
// server's payload limit. Each message has a fixed id, so a retry after a
// lost acknowledgement is deduplicated by JetStream.
func (n *Node) publish(item queued) error {
	parts, err := split(item.p, int(n.nc.MaxPayload())-1024)
	if err != nil {
		n.log.Error("dropping a purge that cannot be published", zap.Error(err))
		return nil
	}
	for i, data := range parts {
		msg := nats.NewMsg(n.subject())
		msg.Header.Set(headerNode, n.cfg.NodeName)
		msg.Data = data
		ctx, cancel := n.opCtx(n.ctx)
		_, err := n.js.PublishMsg(ctx, msg, jetstream.WithMsgID(fmt.Sprintf("%s-%d", item.id, i)))
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// split encodes p as one message, or as several covering its entries
// when one would exceed limit bytes.
func split(p Purge, limit int) ([][]byte, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	if len(data) <= limit {
		return [][]byte{data}, nil
	}
	var out [][]byte
	base := Purge{At: p.At, Source: p.Source}
	cur, size := base, 256
	flush := func() error {
		d, err := json.Marshal(cur)
		if err != nil {
			return err
		}
		out = append(out, d)
		cur, size = base, 256
		return nil
	}
	for _, list := range []struct {
		entries []string
		add     func(*Purge, string)
	}{
		{p.Tags, func(q *Purge, s string) { q.Tags = append(q.Tags, s) }},
		{p.URLs, func(q *Purge, s string) { q.URLs = append(q.URLs, s) }},
		{p.Prefixes, func(q *Purge, s string) { q.Prefixes = append(q.Prefixes, s) }},
		{p.Hosts, func(q *Purge, s string) { q.Hosts = append(q.Hosts, s) }},
	} {
		for _, e := range list.entries {
			cost := 2*len(e) + 8 // JSON escaping can double a string
			if cost+256 > limit {
				return nil, fmt.Errorf("cluster: one purge entry of %d bytes exceeds the NATS payload limit", len(e))
			}
			if size+cost > limit {
				if err := flush(); err != nil {
					return nil, err
				}
			}
			list.add(&cur, e)
			size += cost
		}
	}
	if size > 256 {
		if err := flush(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// followPurges checks the cursor against the stream, reports a gap if
// continuity is lost, then applies every purge from the cursor on,
// reporting StateReady once it has applied what the stream held when it
// started. It returns when ctx ends or the consumer fails.
func (n *Node) followPurges(ctx context.Context, stream jetstream.Stream, cursors CursorStore) error {
	octx, cancel := n.opCtx(ctx)
	info, err := stream.Info(octx)
	cancel()
	if err != nil {
		return fmt.Errorf("cluster: purge stream info: %w", err)
	}
	created, first, last := info.Created, info.State.FirstSeq, info.State.LastSeq
	// Within a process the cursor in memory is exact (a store may have
	// failed as the connection dropped); the stored one serves restarts.
	cur, ok := n.cursor, n.cursorOK
	if !ok {
		var err error
		if cur, ok, err = loadCursor(ctx, cursors, n.cfg.Timeout); err != nil {
			return err
		}
	}
	if gap := gapOf(cur, ok, created, first, last); gap != nil {
		if err := n.reportGap(*gap); err != nil {
			return err // the cursor stays: the next session finds the gap again
		}
		cur = Cursor{Stream: created, Seq: last}
		if err := storeCursor(ctx, cursors, cur, n.cfg.Timeout); err != nil {
			return err
		}
	}
	n.cursor, n.cursorOK = cur, true
	n.cursorSeq.Store(cur.Seq)
	cons, err := n.ensureConsumer(ctx, stream, cur.Seq)
	if err != nil {
		return err
	}
	target := last
	ready := false
	if cur.Seq >= target {
		ready = true
		n.setState(StateReady)
	}
	// A pull request parked on a consumer leader that changed (elections
	// while a replicated consumer settles, a server lost) is noticed by
	// missing heartbeats, after two of them: 1s keeps that delay short.
	it, err := cons.Messages(jetstream.PullMaxMessages(256), jetstream.PullHeartbeat(time.Second))
	if err != nil {
		return fmt.Errorf("cluster: following purges: %w", err)
	}
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
		it.Stop()
	}()
	dirty, sinceStore := false, 0
	defer func() {
		// Best effort, and short (the node may be closing with NATS gone):
		// a stale stored cursor only means purges applied again after a
		// restart.
		if dirty && n.nc.IsConnected() {
			_ = storeCursor(context.Background(), cursors, cur, min(time.Second, n.cfg.Timeout))
		}
	}()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return ctx.Err()
			}
			return fmt.Errorf("cluster: following purges: %w", err)
		}
		md, err := msg.Metadata()
		if err != nil {
			_ = msg.Term()
			continue
		}
		seq := md.Sequence.Stream
		if seq <= cur.Seq { // redelivered: applied already
			_ = msg.Ack()
			continue
		}
		if seq > cur.Seq+1 {
			// On an error the purge is not applied nor acknowledged: the
			// next session's consumer starts after the cursor again and
			// delivers the same hole.
			if err := n.reportGap(Gap{Reason: GapRetention, Cursor: cur.Seq, First: seq}); err != nil {
				return err
			}
		}
		if err := n.apply(msg, seq); err != nil {
			// Not recorded here (a full disk): not acknowledged. The node
			// must not serve from memory past a purge it did not apply;
			// the next session applies it again, and the ones after it.
			n.applyFailures.Add(1)
			n.setState(StateCatchingUp)
			n.log.Error("a purge could not be applied here: catching up again to apply it",
				zap.Uint64("seq", seq), zap.Error(err))
			return fmt.Errorf("cluster: applying purge %d: %w", seq, err)
		}
		cur.Seq = seq
		n.cursor = cur
		n.cursorSeq.Store(seq)
		_ = msg.Ack()
		dirty = true
		sinceStore++
		if md.NumPending == 0 || sinceStore >= 100 {
			if err := storeCursor(ctx, cursors, cur, n.cfg.Timeout); err != nil {
				n.log.Warn("storing the purge cursor", zap.Error(err))
			} else {
				dirty, sinceStore = false, 0
			}
		}
		if !ready && cur.Seq >= target {
			ready = true
			n.setState(StateReady)
		}
	}
}

// apply hands another node's purge to the caller; an error is the
// caller's: the purge could not be recorded now.
func (n *Node) apply(msg jetstream.Msg, seq uint64) error {
	from := msg.Headers().Get(headerNode)
	if from == n.cfg.NodeName {
		return nil // applied locally when it was made
	}
	var p Purge
	if err := json.Unmarshal(msg.Data(), &p); err != nil {
		n.malformed.Add(1)
		n.log.Error("skipping a message of the purge stream that is not a purge",
			zap.Uint64("seq", seq), zap.String("from", from), zap.Error(err))
		return nil
	}
	p.Node, p.Seq = from, seq
	n.applied.Add(1)
	if h := n.handlers(); h.Purge != nil {
		return h.Purge(p)
	}
	return nil
}

// reportGap hands a gap to Handlers.Gap. A gap found while another is
// pending (its handler failed) is the same loss of continuity: reported
// again (Retry), counted once. An error (the handler's) leaves the gap
// pending, the node catching up; the caller ends the session without
// passing it.
func (n *Node) reportGap(g Gap) error {
	if n.pendingGap != nil {
		g.Retry = true
	} else {
		n.gaps.Add(1)
		n.log.Warn("purges may have been missed: the memory tier must be dropped",
			zap.String("reason", g.Reason), zap.Uint64("cursor", g.Cursor), zap.Uint64("first", g.First))
	}
	var err error
	if h := n.handlers(); h.Gap != nil {
		err = h.Gap(g)
	}
	if err != nil {
		n.pendingGap = &g
		n.gapPendingReason.Store(&g.Reason)
		n.gapFailures.Add(1)
		n.gapFailing++
		n.setState(StateCatchingUp)
		n.log.Error("a gap could not be recorded here: catching up again to record it",
			zap.String("reason", g.Reason), zap.Duration("retry_in", n.retryPause()), zap.Error(err))
		return fmt.Errorf("cluster: recording a gap (%s): %w", g, err)
	}
	if n.pendingGap != nil {
		n.log.Info("the pending gap is recorded", zap.String("reason", g.Reason))
	}
	n.pendingGap, n.gapFailing = nil, 0
	n.gapPendingReason.Store(nil)
	return nil
}

// maxGapRetryPause bounds the pause between attempts to record a gap.
const maxGapRetryPause = time.Minute

// retryPause is the pause before the next session: ReconnectWait, doubled
// for each failure in a row to record a gap, up to a minute.
func (n *Node) retryPause() time.Duration {
	if n.gapFailing == 0 {
		return n.cfg.ReconnectWait
	}
	return min(n.cfg.ReconnectWait<<min(n.gapFailing-1, 16), maxGapRetryPause)
}

// gapOf reports whether the stream (created at created, holding first
// to last) continues from cur; nil means it does.
func gapOf(cur Cursor, ok bool, created time.Time, first, last uint64) *Gap {
	switch {
	case !ok:
		return &Gap{Reason: GapNoCursor, First: first}
	case !cur.Stream.Equal(created) || cur.Seq > last:
		return &Gap{Reason: GapStreamRecreated, Cursor: cur.Seq, First: first}
	case cur.Seq+1 < first:
		return &Gap{Reason: GapRetention, Cursor: cur.Seq, First: first}
	}
	return nil
}

// ensureConsumer returns this node's durable consumer positioned after
// seq. An existing consumer is kept when its acknowledged position is
// seq; otherwise (the cursor is authoritative) it is created again.
func (n *Node) ensureConsumer(ctx context.Context, stream jetstream.Stream, seq uint64) (jetstream.Consumer, error) {
	octx, cancel := n.opCtx(ctx)
	defer cancel()
	durable := n.cfg.NodeName
	c, err := stream.Consumer(octx, durable)
	switch {
	case err == nil:
		ci := c.CachedInfo()
		if ci.AckFloor.Stream == seq && ci.Delivered.Stream == seq {
			return c, nil
		}
		if err := stream.DeleteConsumer(octx, durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("cluster: resetting consumer %s: %w", durable, err)
		}
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, fmt.Errorf("cluster: consumer %s: %w", durable, err)
	}
	c, err = stream.CreateConsumer(octx, jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "craftedge node " + durable + ": purges to apply",
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   seq + 1,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 1024,
		// A consumer left by a node gone for longer than the stream keeps
		// purges is useless: the node reports a gap and starts afresh.
		InactiveThreshold: max(n.cfg.PurgeMaxAge, time.Hour),
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: creating consumer %s: %w", durable, err)
	}
	return c, nil
}

// outbox is the bounded in-memory queue of purges to publish.
type outbox struct {
	sig    chan struct{}
	popped chan struct{} // signalled after each pop (capacity 1)

	mu        sync.Mutex
	items     []queued
	max       int
	next      uint64
	overflows uint64
	published uint64
}

type queued struct {
	id string
	p  Purge
}

func (o *outbox) init(max int) {
	o.sig = make(chan struct{}, 1)
	o.popped = make(chan struct{}, 1)
	o.max = max
}

func (o *outbox) wake() {
	select {
	case o.sig <- struct{}{}:
	default:
	}
}

func (o *outbox) push(p Purge, prefix string) {
	o.mu.Lock()
	o.next++
	id := fmt.Sprintf("%s-%d", prefix, o.next)
	if len(o.items) >= o.max {
		// Everything queued is covered by one purge-all.
		o.overflows++
		o.items = append(o.items[:0], queued{id: id, p: Purge{All: true, At: p.At, Source: "cluster_overflow"}})
	} else {
		o.items = append(o.items, queued{id: id, p: p})
	}
	o.mu.Unlock()
	o.wake()
}

func (o *outbox) head() (queued, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.items) == 0 {
		return queued{}, false
	}
	return o.items[0], true
}

// pop removes the head if it is still id (an overflow may have replaced
// the queue while it was being published).
func (o *outbox) pop(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.published++
	if len(o.items) > 0 && o.items[0].id == id {
		o.items[0] = queued{}
		o.items = o.items[1:]
	}
	select {
	case o.popped <- struct{}{}:
	default:
	}
}

func (o *outbox) stats() (queued int, overflows, published uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.items), o.overflows, o.published
}
