package webhook

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

const userAgent = "pushgate-webhook"

// maxAnswerRead is how much of an answer is read (and dropped) so that its
// connection can carry the next POST.
const maxAnswerRead = 64 << 10

// run is the delivery goroutine: it posts batches one at a time, each
// until delivered, until the sender is closed and empty or Close gives up.
func (s *Sender) run() {
	defer close(s.done)
	defer s.abort() // release s.ctx
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	idle := true      // the first events linger, as after any idle spell
	var batch []entry // reused: the events taken for one body
	for {
		if !s.awaitBatch(timer, idle) {
			break
		}
		idle = false
		var body []byte
		var size int
		batch, body, size = s.takeBatch(batch[:0])
		if !s.deliver(timer, body, len(batch)) {
			break
		}
		s.mu.Lock()
		s.inFlight = 0
		s.heldBytes -= size
		s.held.Store(int64(s.heldBytes))
		s.m.QueueBytes.Set(float64(s.heldBytes))
		s.mu.Unlock()
		// Outside the lock, so that the callbacks may send; after the
		// bytes are released, so that what they send finds the room.
		for i, e := range batch {
			batch[i].delivered = nil // let it go once called
			if e.delivered != nil {
				e.delivered()
			}
		}
		s.logDrops(false) // drops that stopped within the last second's line
	}
	s.mu.Lock()
	lost := s.queue.n + s.inFlight
	s.mu.Unlock()
	if lost > 0 {
		s.log.Error("webhook: closed before delivering every event", "lost", lost)
	}
}

// awaitBatch waits until there is a batch to post: at once if events
// queued while the last one was posted, else once the first event has
// lingered or a batch is full, and at once while closing. It returns
// false when the sender is closed and empty or Close gave up.
func (s *Sender) awaitBatch(timer *time.Timer, idle bool) bool {
	var lingered <-chan time.Time // non-nil while lingering
	defer timer.Stop()
	for {
		s.mu.Lock()
		n, full, closed := s.queue.n, s.batchFullLocked(), s.closed
		s.mu.Unlock()
		switch {
		case n == 0 && closed:
			return false
		case n == 0:
			idle = true
		case !idle || full || closed:
			return true
		case lingered == nil:
			timer.Reset(s.cfg.Linger)
			lingered = timer.C
		}
		select {
		case <-s.wake:
		case <-lingered:
			return true
		case <-s.ctx.Done():
			return false
		}
	}
}

// takeBatch moves the events of the next batch from the queue into batch
// and joins their encodings into a POST body (letting the encodings go;
// the callbacks stay). It returns the encodings' total size, which stays
// held until they are delivered.
func (s *Sender) takeBatch(batch []entry) (_ []entry, body []byte, size int) {
	s.mu.Lock()
	bodyLen := len(batchHead) + len(batchTail)
	for len(batch) < s.cfg.MaxBatch && s.queue.n > 0 {
		next := len(s.queue.at(0).enc)
		if len(batch) > 0 && bodyLen+1+next > s.cfg.MaxBatchBytes {
			break
		}
		if len(batch) > 0 {
			bodyLen++ // comma
		}
		bodyLen += next
		size += next
		batch = append(batch, s.queue.pop())
	}
	s.queuedBytes -= size
	s.inFlight = len(batch)
	s.mu.Unlock()

	// A new body each batch: the transport may still read the last one
	// after Do returns.
	body = make([]byte, 0, bodyLen)
	body = append(body, batchHead...)
	for i, e := range batch {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, e.enc...)
		batch[i].enc = nil
	}
	return batch, append(body, batchTail...), size
}

// deliver posts body until the backend takes it, waiting between attempts.
// It returns false if Close gave up first.
func (s *Sender) deliver(timer *time.Timer, body []byte, events int) bool {
	signature := Sign(s.secret, body)
	for attempt := 1; ; attempt++ {
		err := s.post(body, signature)
		if err == nil {
			if attempt > 1 {
				s.log.Info("webhook: delivered after retrying", "events", events, "attempts", attempt)
			}
			return true
		}
		if s.ctx.Err() != nil {
			return false
		}
		wait := backoff(s.cfg.MinBackoff, s.cfg.MaxBackoff, attempt)
		s.log.Warn("webhook: delivery failed", "err", err, "events", events, "attempt", attempt, "retry_in", wait)
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-s.ctx.Done():
			timer.Stop()
			return false
		}
	}
}

// statusError is an answer other than 2xx.
type statusError struct{ code int }

func (e *statusError) Error() string { return "webhook: backend answered " + strconv.Itoa(e.code) }

// post makes one attempt at delivering body.
func (s *Sender) post(body []byte, signature string) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(SignatureHeader, signature)

	start := time.Now()
	resp, err := s.client.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswerRead))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			err = &statusError{resp.StatusCode}
		}
	}
	s.m.DeliveryDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		s.m.DeliveriesError.Inc()
		return err
	}
	s.m.DeliveriesOK.Inc()
	return nil
}

// backoff is the wait before retry number attempt (from 1): lo doubled
// attempt-1 times, at most hi, less a random part of up to half (so that
// gateways restarted together do not retry together).
func backoff(lo, hi time.Duration, attempt int) time.Duration {
	d := lo
	for i := 1; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}
