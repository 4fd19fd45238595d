package floor

import (
	"runtime"
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

// publish writes frame to every socket and drops those that failed. It
// reports false if the Floor is closed.
func (f *Floor) publish(frame []byte) bool {
	f.publishMu.Lock()
	defer f.publishMu.Unlock()

	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return false
	}
	// Sockets accepted during the round are appended to f.fds and wait
	// for the next publish; the round writes this snapshot.
	fds := slices.Clone(f.fds)
	f.mu.Unlock()

	failed := writeRound(fds, frame)
	if len(failed) == 0 {
		return true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// A failed descriptor is still open here, so no new socket can have
	// been given its number: removing by value is exact.
	f.fds = slices.DeleteFunc(f.fds, func(fd int) bool {
		return slices.Contains(failed, fd)
	})
	for _, fd := range failed {
		unix.Close(fd)
	}
	return true
}

// writeRound writes frame to every descriptor, splitting them into
// GOMAXPROCS contiguous chunks with one goroutine each, and returns the
// descriptors whose write failed.
func writeRound(fds []int, frame []byte) []int {
	workers := min(runtime.GOMAXPROCS(0), len(fds))
	if workers == 0 {
		return nil
	}
	size := (len(fds) + workers - 1) / workers
	failed := make([][]int, workers)
	var wg sync.WaitGroup
	for i := range workers {
		chunk := fds[min(i*size, len(fds)):min((i+1)*size, len(fds))]
		wg.Go(func() {
			for _, fd := range chunk {
				if writeAll(fd, frame) != nil {
					failed[i] = append(failed[i], fd)
				}
			}
		})
	}
	wg.Wait()
	return slices.Concat(failed...)
}

// writeAll writes b to the blocking descriptor fd, resuming after partial
// writes and interrupts.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
