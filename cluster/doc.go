// Package cluster joins craftedge nodes on NATS JetStream: purges fan out
// to every node, the kill switch is shared, and leases let one node at a
// time do a piece of work. It knows nothing of Caddy; the craftedge app
// creates a Node when its `cluster` block is configured and wires the
// Handlers to its memory tier, snapshots and kill switch.
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
//
// # Purges
//
// A node applies its own purges locally at once and Publishes them; the
// node queues them in memory (bounded by MaxQueued, collapsing into one
// purge-all on overflow) and publishes them in order whenever NATS is
// reachable, so Publish never blocks. Other nodes' purges reach
// Handlers.Purge in stream order; a node skips its own.
//
// On every (re)connection a node reports StateCatchingUp, compares its
// cursor with the stream, replays what it missed and reports StateReady
// only then. When it cannot know what it missed it calls Handlers.Gap
// first: no cursor (GapNoCursor), a stream that is not the one the cursor
// refers to (GapStreamRecreated), or purges the stream's limits dropped
// before the node applied them (GapRetention, also detected while
// following when a delivered sequence skips ahead). The caller then drops
// its memory tier and marks its snapshots stale.
//
// # Failures
//
// The node connects in the background and never makes a caller wait for
// NATS longer than Config.Timeout: Start returns even when NATS is
// unreachable, purges queue, SetSnapshotOnly and the lease calls return
// an error for which ErrNotConnected is true, and the caller keeps its
// local effect.
package cluster
