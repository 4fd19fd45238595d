// Package broker joins gateways into a cluster through NATS JetStream.
//
// Every publication accepted by any node is written to one JetStream
// stream, one subject per channel, and every node reads the whole stream
// in order with an ordered consumer, applying each publication to its own
// hub (broadcast.Hub.Apply). So a publish on any node reaches the
// subscribers of every node, once each and in order per channel, and every
// node holds the same history.
//
// With Config.ReadServed a node reads only the channels its hub holds
// instead: the stream republishes what it stores on live subjects, the
// node subscribes to those of its channels, and a channel's first
// subscriber waits while the node reads the channel's history from the
// stream (served.go).
//
// # Offsets and epochs
//
// Offsets stay what they are on a single node: per channel, consecutive
// from 1, in an epoch. The node that publishes numbers the message and
// writes it with JetStream's optimistic concurrency
// (Nats-Expected-Last-Subject-Sequence): it succeeds only if the message
// it numbered after is still the channel's last. A node that lost the race
// reads the channel's last message and numbers again. The stream keeps
// every publication for HistoryTTL (by age, not a count per channel), so a
// node started later reads the history first (and is not ready until it
// has), and a client that reconnects to another node recovers with
// `since` as on one node.
//
// A channel whose history expired entirely, or whose stream NATS lost,
// starts a new epoch at offset 1. Every node's hub tells the channel's
// live subscribers before that message (a "subscribed" reply in the new
// epoch, recovered false), so clients resync rather than take the new
// offsets for ones they already have. What a node learned of a channel's
// last message is forgotten at every reconnection, and a stream with a new
// creation time is read from its start: NATS may have lost the old one.
//
// Publishes of one channel through one node go out in the order they
// came, one stream message at a time; channels go out in parallel. The
// publishes that queued for a channel while its last message went out go
// out next, together, as one message (a batch: up to 1,024 publications
// or 256 KiB), numbered consecutively. So a hot channel makes one
// JetStream round trip for many publications, which one at a time would
// cap at about one per round trip (see batch.go for the format). Each
// message carries a message ID, so a retry after a lost confirmation is
// not stored twice (JetStream's duplicate window).
//
// # Failure
//
// The broker pings NATS every second, so a NATS that hangs with its TCP
// connections open is noticed within about three seconds, like one that
// went away. While NATS is unreachable the node keeps serving its own
// subscribers, reports broker_up 0 and /readyz 503, and answers each
// publish with broadcast.ErrUnavailable; nothing is buffered to be sent
// later. A publish's PublishTimeout runs from when it was queued, so one
// stuck behind a slow channel fails in time too. The node reconnects by
// itself and resumes reading the stream where it stopped.
package broker
