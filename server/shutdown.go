package server

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Shutdown drains the server: readiness turns false, the listeners close,
// and every connection gets a close frame with 1001, the frames spread
// evenly over the drain window so that clients do not all reconnect to the
// other nodes in the same instant. It then waits for the closing
// handshakes; connections still open near the deadline are dropped.
// The deadline is ctx's, or DrainTimeout from now; the window is the
// deadline minus CloseTimeout. Shutdown may be called more than once; later
// calls wait for the first.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		select {
		case <-s.shutdown:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.started = true
	s.draining.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	for nc := range s.reading {
		nc.Close() // a client still sending its request head
	}
	s.mu.Unlock()
	defer close(s.shutdown)

	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(s.cfg.DrainTimeout)
	}
	s.httpLn.Close()
	httpCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		_ = s.http.Shutdown(httpCtx)
	}()

	// Upgrades already past their request head finish now; open() closes
	// each with 1001. Waiting for them first keeps any out of the count.
	waitGroup(&s.handshakes, deadline)

	total := s.conns.len()
	s.spreadClose(ctx, time.Until(deadline)-s.cfg.CloseTimeout)
	// Leave a little time at the end for dropping the stragglers.
	margin := min(s.cfg.CloseTimeout/2, 500*time.Millisecond)
	var err error
	if !s.waitEmpty(deadline.Add(-margin)) {
		left := s.conns.len()
		err = fmt.Errorf("server: %d of %d connections did not finish closing by the deadline", left, total)
		s.conns.each(func(c *Conn) {
			c.mu.Lock()
			c.kickLocked()
			c.mu.Unlock()
		})
		s.waitEmpty(deadline)
	}

	<-httpDone
	close(s.quit)
	s.wg.Wait()
	_ = s.readPoller.Close()
	_ = s.writePoller.Close()
	s.pool.Close()
	// Whatever is left has no task that could still use its descriptor, so
	// finalize may run here, outside one.
	for _, c := range s.conns.all() {
		c.finalize(ReasonShutdown)
	}
	return err
}

// spreadClose sends every connection a close frame with 1001, spread
// evenly over window (at once if window is not positive or ctx ends).
func (s *Server) spreadClose(ctx context.Context, window time.Duration) {
	conns := s.conns.all()
	start := time.Now()
	const step = 10 * time.Millisecond
	for i := 0; i < len(conns); {
		due := len(conns)
		if elapsed := time.Since(start); window > 0 && elapsed < window {
			due = int(int64(len(conns))*int64(elapsed)/int64(window)) + 1
		}
		for ; i < due && i < len(conns); i++ {
			conns[i].Close(ReasonShutdown, "server shutting down")
		}
		// Connections that ended meanwhile do not wait for their turn.
		for i < len(conns) && conns[i].state.Load() != stateOpen {
			i++
		}
		if i == len(conns) {
			return
		}
		select {
		case <-time.After(step):
		case <-ctx.Done():
			window = 0
		}
	}
}

// waitGroup waits for wg until the deadline.
func waitGroup(wg *sync.WaitGroup, deadline time.Time) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// waitEmpty waits until no connection is left or the deadline passes, and
// reports which.
func (s *Server) waitEmpty(deadline time.Time) bool {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for s.conns.len() > 0 {
		select {
		case <-s.conns.empty:
		case <-t.C:
			return s.conns.len() == 0
		}
	}
	return true
}
