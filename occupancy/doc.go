// Package occupancy decides, cluster-wide, when a user comes online and
// goes offline and when a channel becomes occupied and vacated, and hands
// those events to the webhook sender (package webhook).
//
// Each node tells its Tracker of its own changes: a user's first
// connection on the node opened or its last one closed (from the session
// index), a channel's first subscriber on the node or its last one gone
// (from the hub). The Tracker never blocks its caller: changes wait in a
// bounded map, latest state per key, and one goroutine writes them every
// pass.
//
// The nodes agree through a store: one entry per online user or occupied
// channel, listing the nodes that hold it, changed only by
// compare-and-set. The node whose write creates the entry announces it
// (user_online, channel_occupied). The node whose write leaves it with no
// node records a check due after Config.Delay. The leader, the first live
// node by name, makes the due checks: if no live node holds the entry by
// then, it deletes the entry (compare-and-set again, so a node joining at
// that moment wins) and announces it gone. So a reconnect, or a move from
// a draining node to another, within the delay announces nothing, and each
// stay is announced once.
//
// A node that dies stops renewing its lease (package control); once it is
// no longer live, the leader takes it off every entry (a sweep, also made
// on taking the lead and every five minutes) and the entries it was the
// last to hold are checked after the delay. Offline after a crash thus
// comes within the lease TTL, the control plane's listing period (a third
// of it) and the delay.
//
// In a cluster the store is a JetStream key-value bucket,
// "<stream>_occupancy", in memory like the leases: keys "u.<user>" and
// "c.<channel>" with the names in base64url, due checks under "p.". A node
// alone keeps the same entries in memory, and announces what it held gone
// when it stops.
package occupancy
