package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DeliveriesMaxAge bounds how long the cluster remembers an accepted
// webhook delivery (the bucket's TTL): a longer replay window is kept by
// each node's own replay store only.
const DeliveriesMaxAge = 7 * 24 * time.Hour

// deliveryBucket returns the bucket <ns>_webhooks, creating it on first
// use in a session: one key per accepted webhook delivery (a hash of its
// source and id), its value the time until which it counts as seen.
func (n *Node) deliveryBucket(ctx context.Context) (jetstream.KeyValue, error) {
	return n.deliveries.get(ctx, n, jetstream.KeyValueConfig{
		Bucket:      n.name("webhooks"),
		Description: "craftedge webhook deliveries accepted by any node (replay protection across nodes)",
		History:     1,
		TTL:         DeliveriesMaxAge,
	})
}

// deliveryKey is the bucket key of a delivery: ids are the sender's
// (any bytes), keys are not.
func deliveryKey(source, id string) string {
	sum := sha256.Sum256([]byte(source + "\x00" + id))
	return hex.EncodeToString(sum[:20])
}

// DeliverySeen reports whether any node remembered the delivery id of
// source (RememberDelivery) and it has not expired by now. An error
// (NATS unreachable: ErrNotConnected is true) leaves the answer to the
// caller's own replay store.
func (n *Node) DeliverySeen(ctx context.Context, source, id string, now time.Time) (bool, error) {
	kv, err := n.deliveryBucket(ctx)
	if err != nil {
		return false, err
	}
	ctx, cancel := n.opCtx(ctx)
	defer cancel()
	e, err := kv.Get(ctx, deliveryKey(source, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		n.deliveries.drop()
		return false, err
	}
	until, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil || until > now.Add(DeliveriesMaxAge+time.Hour).UnixNano() {
		// Not ours (no node remembers a delivery for longer than the
		// bucket keeps it): not a replay, never a delivery dropped for
		// good.
		return false, nil
	}
	return now.UnixNano() < until, nil
}

// RememberDelivery records that this node accepted the delivery id of
// source, so that a repeat delivered to any node within ttl (at most
// DeliveriesMaxAge) is a replay.
func (n *Node) RememberDelivery(ctx context.Context, source, id string, now time.Time, ttl time.Duration) error {
	kv, err := n.deliveryBucket(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := n.opCtx(ctx)
	defer cancel()
	until := now.Add(min(ttl, DeliveriesMaxAge)).UnixNano()
	if _, err := kv.Put(ctx, deliveryKey(source, id), []byte(strconv.FormatInt(until, 10))); err != nil {
		n.deliveries.drop()
		return err
	}
	return nil
}
