// Package broker joins gateways into a cluster through NATS JetStream.
//
// Every publication accepted by any node is written to one JetStream
// stream, one subject per channel, and every node reads the whole stream
// in order with an ordered consumer, applying each publication to its own
// hub (broadcast.Hub.Apply). So a publish on any node reaches the
// subscribers of every node, once each and in order per channel, and every
// node holds the same history.
//
// # Offsets and epochs
//
// Offsets stay what they are on a single node: per channel, consecutive
// from 1, in an epoch. The node that publishes numbers the message and
// writes it with JetStream's optimistic concurrency
// (Nats-Expected-Last-Subject-Sequence): it succeeds only if the message
// it numbered after is still the channel's last. A node that lost the race
// reads the channel's last message and numbers again. The stream keeps
// HistorySize messages per channel for HistoryTTL, so a node started later
// reads the history first (and is not ready until it has), and a client
// that reconnects to another node recovers with `since` as on one node.
// A channel whose history expired entirely starts a new epoch.
//
// Publishes of one channel through one node go out one at a time, in the
// order they came; channels go out in parallel. Each carries a message ID,
// so a retry after a lost confirmation is not stored twice (JetStream's
// duplicate window).
//
// # Failure
//
// While NATS is unreachable the node keeps serving its own subscribers,
// reports broker_up 0 and /readyz 503, and answers each publish with
// broadcast.ErrUnavailable; nothing is buffered to be sent later. It
// reconnects by itself and resumes reading the stream where it stopped.
package broker
