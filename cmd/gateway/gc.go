package main

import "runtime/debug"

// defaultGOGC is the collector's setting when the environment sets none.
// A gateway's heap is mostly its parked connections, which live long and
// hold few pointers, while fan-out allocates almost nothing: the default
// of 100 let the heap grow to twice the connections' own bytes before a
// collection, which was most of an idle connection's RSS. At 20 the
// headroom is a fifth: RSS per idle subscribed connection at 15,000
// connections goes from about 800 bytes to under 512 (README, Settings),
// and fan-out's CPU per message is unchanged (a publication allocates a
// few hundred bytes). What costs more is allocation-heavy traffic, say
// many small API publishes: collections are five times as frequent for
// the same allocations. GOGC in the environment wins, as with any Go
// program.
const defaultGOGC = 20

// gcPercent returns the GOGC to set, unless the environment chose one.
func gcPercent(getenv func(string) string) (int, bool) {
	if getenv("GOGC") != "" {
		return 0, false
	}
	return defaultGOGC, true
}

// setGC applies gcPercent. main calls it, not run, which tests call in
// their own process.
func setGC(getenv func(string) string) {
	if p, ok := gcPercent(getenv); ok {
		debug.SetGCPercent(p)
	}
}

// gcInEffect is the collector's GOGC now, for the log (-1: off).
func gcInEffect() int {
	p := debug.SetGCPercent(-1)
	debug.SetGCPercent(p)
	return p
}
