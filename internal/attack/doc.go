// Package attack holds hostile clients of a pushgate gateway, and a
// healthy client that measures what they cost everyone else. They replay
// the attacks of issue 11 against a real gateway, at a scale the caller
// sets: the regression tests in cmd/gateway run them scaled down, and
// `go run ./bench hostile` at scale, against a gateway with the user's
// own settings.
//
// Every attacker speaks raw WebSocket over its own TCP connection, dialled
// from one of Target.Sources (127.0.0.x addresses, so that many
// connections never run out of ephemeral ports), and writes the frames an
// attacker would: a first fragment it never finishes (HoldPartial), a
// message a byte at a time (Trickle), compressed messages that inflate far
// (Bombs), ops as fast as the socket takes them (FloodOps) or a number of
// them and then nothing (SendOps: what a slow proxy holds), publishes to
// ever new channels (FloodChannels), or it subscribes and never reads
// (StallReaders). StreamOps opens event streams instead (GET /events,
// from the default source) and floods their POST /events/commands. Each plays until its context ends, reconnecting whenever
// the gateway drops it (but StallReaders, which never reads and so never
// knows), and counts what it did and how the gateway closed it in a Stats.
//
// Healthy is a well-behaved client beside them: it times the round trip
// of ops (a subscribe and its unsubscribe) and, given a Publisher on the
// admin API, the time from a publish to its delivery. Probes it never got
// an answer to count with the time they waited, so a starved client shows
// in its p99 rather than dropping out of it.
//
// A Spec names an attack, to Run in this process or to Spawn in a child
// process at the lowest CPU priority (internal/attack/attacker, or a
// program that re-runs itself and calls RunChild first): on one machine
// the attackers' own sending would otherwise compete with the gateway
// and the healthy client for the CPU, and be measured as the gateway's
// slowness. Scrape reads the gateway's metrics, to see its protections
// at work.
package attack
