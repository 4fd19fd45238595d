// Package hub is the reference for what most Go users would write instead of
// pushgate: gorilla/websocket's chat example, one read and one write
// goroutine per connection and a single hub goroutine that owns the rooms.
//
// It is kept close to the example on purpose, so that the benchmark harness
// compares pushgate with the common design rather than with a tuned one. The
// only departures are the ones a comparison needs: rooms keyed by channel, a
// publish endpoint, one WebSocket message per published message, metrics, and
// a Close that leaves no goroutine behind.
package hub
