// Package metrics names every Prometheus metric pushgate exports.
//
// Collectors are created by New and registered with the Registerer passed
// in; nothing is global. Labels are few and bounded (a close reason, a
// handshake result), never a user, channel or connection. Counters on hot
// paths are resolved once, so recording is a single atomic add.
package metrics
