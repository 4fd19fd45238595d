// Package broadcast is pushgate's channel registry and fan-out.
//
// A connection joins the Hub as a Member and subscribes to channels. A
// publish builds its envelope once ({"type":"message","channel":...,
// "offset":...,"data":...}) and encodes it once per wire encoding its
// subscribers take (protocol.Wire: a WebSocket frame, a compressed one):
// every subscriber of an encoding is sent the same bytes. The hub never
// frames anything itself; the protocol package does.
//
// # Shards
//
// The registry is split two ways, each into Config.Shards parts:
//
//   - channel tables, chosen by a hash of the channel name, hold each
//     channel's offset counter, epoch, history and subscription counts,
//     under the channel's own lock;
//   - delivery shards, chosen round-robin per connection, hold which of
//     their connections subscribe to what. Each has one goroutine that
//     runs its queue of ops (publish, subscribe, unsubscribe, leave) in
//     order and writes to its connections without blocking (Subscriber.Send
//     queues what a socket cannot take). Shards run in parallel, so one
//     broadcast is written from all cores at once.
//
// A shard takes every op that queued up while it was busy as one batch.
// In a batch, frames for a Subscriber that is also a Batcher are queued
// (Batcher.Queue) and flushed once the batch is delivered, at most 64 at a
// time (a replay's frames, for a Pacer, as its socket drains), so a connection's frames of many messages leave in one writev
// rather than one write each. An idle gateway writes each message at once;
// a busy one writes more per syscall the busier it is. A publication is
// done, and Publish returns, when its frames have been flushed.
//
// Every op about a channel is queued under that channel's lock. So a
// connection sees each channel's messages in offset order, and a
// subscription with a recovery Position gets its replay and then exactly
// the live messages after it: no gap, no duplicate, however publishes race
// with it.
//
// # History and recovery
//
// Each channel keeps its latest messages (Config.HistorySize, HistoryTTL,
// HistoryChannelMaxBytes) with offsets that increase by one, within a
// node-wide byte budget (HistoryMaxBytes) that drops the node's oldest
// messages first (budget.go), and an epoch: a channel dropped (no
// subscribers, history expired) or a restarted node starts a new epoch. A
// subscriber at Position{Offset, Epoch} is replayed what it missed and told
// recovered:true, or, when history no longer reaches back or the epoch
// differs, is replayed all the history holds and told recovered:false.
//
// # Clustered
//
// A single node numbers its own publications. In a cluster the broker
// (package broker) numbers them and every node's hub takes them, in order,
// through Apply; a Clustered hub's channels get their epoch from the
// broker's first message. Publisher is what the API and client publishing
// call: the Hub itself, or the broker.
//
// # Loading
//
// With Config.Load a Clustered node holds only the channels it serves:
// Apply skips the others (AppliedNotServed). A subscribe that creates a
// channel makes it load: Load(name) asks the broker for it, which applies
// what its stream stores of the channel, then calls Hub.Loaded (also when
// it gives up). Until then the channel's subscribes wait, and each is then
// answered as it would have been had the channel held that history all
// along (recovered, replay, skip). A member waiting so is held on its shard
// (held.go): whatever its shard would hand it meanwhile, the frames of its
// other channels, its replies, After's fn, is kept in order behind the
// wait, and a publication's fan-out never waits for it (it keeps the
// frame). A channel dropped (no subscribers, no history) has its waiting
// subscribes answered, and Unload(name) tells the broker. Stats counts
// the channels loading and the members and frames held.
//
// # Publish slots
//
// At most Config.MaxPending publications are fanned out at once: Publish
// waits for a slot, TryPublish (client publishing) fails with
// ErrOverloaded, and client publishes hold at most MaxClientPending of
// the slots, so that API publishes always find one. That bounds the
// publications in the delivery queues; a member's own ops there
// (subscribes, unsubscribes, replies) are counted (Hub.Backlog) for the
// caller to bound.
//
// # Lock order
//
// chanTable.mu, then channel.mu, then historyIndex.mu; shard.mu is taken
// under channel.mu (ops about a channel are queued under its lock) and
// never holds another. Config.Load and Unload are called under
// chanTable.mu, written: they take no hub lock (nor one held while the
// hub is called). A held member's queue is its shard goroutine's, under
// no lock. No code
// takes a channel lock while holding another channel's: history eviction
// looks at the node-wide index, lets it go, then locks the evicted
// message's channel (budget.go).
package broadcast
