// Package floor is the reference for the fastest fan-out this machine can
// do: no channels, no queues, no per-connection goroutines, not even a
// net.Conn. Each socket is kept as a bare blocking descriptor, and a publish
// writes one frame, encoded once, to every descriptor from GOMAXPROCS
// goroutines in a tight loop.
//
// The benchmark harness runs it next to pushgate so that pushgate's figures
// can be read as a distance from the floor: what is left between them is the
// cost of pushgate's own work, not of the kernel or the network.
package floor
