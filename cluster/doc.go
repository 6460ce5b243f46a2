// Package cluster joins craftedge nodes on NATS JetStream: purges fan out
// to every node, the kill switch is shared, and leases let one node at a
// time do a piece of work; the outbox, the read model, last good copies
// of pages and vendor rate limits are shared too. It knows nothing of
// Caddy; the craftedge app creates a Node when its `cluster` block is
// configured and wires the Handlers to its memory tier, snapshots and kill
// switch, and the data-sharing parts (Outbox, ReadModel, SharedSnapshots,
// Quota) to its job queue, records, snapshot store and vendor clients.
//
// # What lives in JetStream
//
//   - Stream <namespace>_purges (subject <namespace>.purges): every purge,
//     limits retention bounded by Config.PurgeMaxAge and PurgeMaxBytes,
//     oldest dropped first. Each node follows it through a durable pull
//     consumer named after the node and records the last sequence it
//     applied (its Cursor) in bucket <namespace>_cursors, or in the
//     caller's CursorStore.
//   - Bucket <namespace>_killswitch: one key per kill-switch override,
//     watched by every node.
//   - Bucket <namespace>_leases: one key per lease, expiring LeaseTTL
//     after its last write.
//   - Bucket <namespace>_webhooks: one key per webhook delivery a node
//     accepted (RememberDelivery), so that the sender's retry delivered
//     to another node is a replay there (DeliverySeen); TTL
//     DeliveriesMaxAge.
//   - Stream <namespace>_outbox (subjects <namespace>.outbox.u and
//     <namespace>.outbox.e.<hash of kind and entity>): accepted outbox
//     writes, work-queue retention (a job leaves when it is done or
//     dead), never discarding an accepted one; durable consumer "outbox"
//     shared by every node. Stream <namespace>_outbox_dead: dead
//     letters. Bucket <namespace>_outbox_jobs: each job's status and
//     each idempotency key's job id, expiring after
//     OutboxConfig.Retention (plus 5 minutes).
//   - Bucket <namespace>_records: the latest version of every vendor
//     record, one key per record.
//   - Stream <namespace>_snapshots (subject <namespace>.snapshots.<hash
//     of the key>): the latest copy of each page, bounded by bytes, count
//     and age, oldest dropped first.
//   - Bucket <namespace>_quotas: one key per quota (vendor): the current
//     window and the requests reserved in it, by node.
//
// # Purges
//
// A node applies its own purges locally at once and Publishes them; the
// node queues them in memory (bounded by MaxQueued, collapsing into one
// purge-all on overflow) and publishes them in order whenever NATS is
// reachable, so Publish never blocks. Other nodes' purges reach
// Handlers.Purge in stream order; a node skips its own. A purge the
// handler cannot record (an error: a full disk) is not acknowledged: the
// node reports StateCatchingUp and applies it again from its next session.
//
// What other writers may put in the streams and buckets is validated where
// the tier can: read-model values must be versions of their key (and one
// dated more than MaxUpdatedAhead ahead holds no record back), shared
// snapshots must sit on their key's subject, kill-switch keys must name a
// possible upstream, webhook deliveries are remembered no longer than the
// bucket keeps them. A read model's apply may return RetryLater, an outbox
// handler OutboxGiveBack, for what this node cannot store now.
//
// On every (re)connection a node reports StateCatchingUp, compares its
// cursor with the stream, replays what it missed and reports StateReady
// only then. When it cannot know what it missed it calls Handlers.Gap
// first: no cursor (GapNoCursor), a stream that is not the one the cursor
// refers to (GapStreamRecreated), or purges the stream's limits dropped
// before the node applied them (GapRetention, also detected while
// following when a delivered sequence skips ahead). The caller then drops
// its memory tier and marks its snapshots stale. A gap the caller cannot
// record (an error) is not passed: the node stays catching up and reports
// it again (Gap.Retry) from its next session, after a pause doubling from
// ReconnectWait up to a minute (Stats.PendingGap, Stats.GapFailures).
//
// # Outbox
//
// A write is acknowledged to its client only once JetStream acknowledged
// its publication to the outbox stream, that is once the stream's
// replicas (Config.Replicas) stored it: from then on it does not depend
// on the node that accepted it. Every node that runs Outbox.Run pulls
// from the one durable consumer, so each job is with one node at a time;
// a worker tells JetStream it is still busy every AckWait/3, and a job
// whose node died is handed to another after AckWait. A job completes
// with a confirmed acknowledgement (which removes it from the stream); if
// that acknowledgement is lost the job runs again, with the same
// Idempotency-Key, which is what makes delivery exactly once in effect.
// Job ids are random. A write with an idempotency key is published with
// the key's hash as its JetStream message id, and the key's job id is
// indexed in the status bucket before the publication, so accepting the
// same kind and key again within Retention (the stream's duplicate
// window) returns the first job, on whichever node it is retried.
//
// Order per entity: each entity has its own subject, and a job of an
// entity runs only when it is the oldest message of its subject still in
// the stream (one GetMsg by subject); a later job is put back with
// BlockedRetry. Because a job leaves the stream only when it is done or
// dead-lettered, a job that is retrying keeps every later job of its
// entity waiting, on every node, as package jobs does. The alternative,
// a consumer with MaxAckPending 1 per entity, would need one consumer
// per entity (JetStream limits MaxAckPending per consumer, not per
// subject); a lease per entity would add a second source of truth that
// can disagree with the stream after a crash. The head check needs
// neither: the stream is the queue and its order.
//
// Without NATS, Accept fails at once (ErrNotConnected) and the caller
// refuses the write (503 with Retry-After): a write held only on the
// accepting node's disk would be lost with that node, which the
// guarantee excludes. The client retries, on any node.
//
// # Read model
//
// Record versions live in a key-value bucket, one key per record holding
// its latest version, rather than in a stream every node applies: a new
// node needs the current state, not the history, and a bucket with
// history 1 is exactly a compacted log of it. Each node keeps serving from
// its own bbolt store (reads never touch NATS): it publishes the versions
// it stores (ReadModel.Publish, from vendors.Records.OnChange) and applies
// every other node's (the apply function, vendors.Records.ApplyReplica).
// Publication is a compare-and-set that keeps the bucket's value moving
// forward by the rule of vendors.Records.Put (a version older than the
// stored one loses; a deletion marker never counts as later), so the
// bucket converges on the newest version whatever order nodes publish in,
// and every node converges on the bucket. A node applies the whole bucket
// when its process starts (Ready once done), then resumes from the last
// revision it applied after each reconnection. Versions stored while NATS
// is unreachable wait in memory (ReadModelConfig.MaxPending, one per
// record).
//
// # Shared snapshots
//
// Every node publishes the copies it stores (SharedSnapshots.Put, never
// blocking); the stream keeps the latest copy per page key and drops the
// oldest copies first beyond its bounds, like the local store. A node
// whose store is empty while Craft is down imports them (Each) or reads
// one on a local miss (Get). Copies keep their StoredAt and tags and the
// importing node puts them in its own store with both, so its purge
// marks decide as for its own copies: a page purged after the copy was
// made is stale, and a node that reported a gap (a purge-all mark at that
// time) treats every imported copy as stale. A purged page is therefore
// never served as fresh: stale copies serve only when the live path
// fails, as local ones do.
//
// # Vendor rate limits
//
// A Quota holds a vendor's rate for the cluster as a whole: Limit
// requests per Window, counted in one key per quota. A node reserves a
// block of requests with compare-and-set (the total reserved in a window
// never exceeds Limit) and hands it out locally, so NATS is asked once
// per Block requests. A split of the token bucket between live members
// was the alternative; it depends on every node seeing the same
// membership at the same time (a node joining or dying skews the sum), a
// shared counter does not. The window advances with the first node whose
// clock enters the next one; a lagging node joins that window. Without
// NATS each node allows Limit divided by the nodes last seen reserving.
//
// # Failures
//
// The node connects in the background and never makes a caller wait for
// NATS longer than Config.Timeout: Start returns even when NATS is
// unreachable, purges queue, SetSnapshotOnly and the lease calls return
// an error for which ErrNotConnected is true, and the caller keeps its
// local effect. Outbox.Accept refuses without NATS (above); ReadModel
// and SharedSnapshots queue in memory, bounded; Quota falls back to the
// local share.
package cluster
