// Package control is the cluster's control plane: it makes the admin
// API's commands and presence queries (adminapi.Control) work whichever
// node a call or a client is on, and carries presence events between
// nodes. It uses NATS and nothing home-made:
//
//   - Leases. Every node keeps a key in the KV bucket "<stream>_nodes",
//     whose entries expire after Config.LeaseTTL unless refreshed (every
//     third of it). The keys are the live nodes. A node that drains
//     deletes its key; one that dies stops refreshing it.
//   - Commands and queries. A call by client id goes to the node the id
//     names (request/reply on "<stream>-control.node.<node>"); a call by
//     user, a presence list or count, and a channel listing go to every
//     node ("<stream>-control.all") and wait, at most Config.Timeout, for
//     an answer from each live node; answers are merged (counts summed,
//     lists joined and capped, channels merged in name order). The node
//     taking the call answers for itself without NATS. An event stream's
//     ops, posted to any node (streamapi), go the same way to the node
//     that holds the stream.
//   - Presence events. A join, leave or presence_lagging notice sent to a
//     channel's subscribers on one node is published on
//     "<stream>-presence" and every other node hands it to its own
//     subscribers of the channel.
//
// A node that dies leaves no ghost in lists and counts: they are asked of
// the nodes that answer. Subscribers that keep a member list from
// join/leave events never hear the dead node's leaves; so when a node's
// lease disappears (within LeaseTTL of its death, plus a third of it for
// the others to look), every node sends its presence channels'
// subscribers a presence_lagging notice, and they ask for presence again.
package control
