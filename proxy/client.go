package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/pushgate/pushgate/metrics"
)

// Config configures a Client: the calls to one backend URL.
type Config struct {
	// Name is the proxy's name in metrics and logs: connect, subscribe or
	// publish.
	Name string
	// URL is the backend's endpoint, http or https. Required.
	URL string
	// Timeout bounds a call, from asking for a request slot to reading the
	// answer (default 2s).
	Timeout time.Duration
	// MaxInFlight bounds the requests being sent or answered at once, and
	// so the keep-alive connections to the backend (default 64).
	MaxInFlight int
	// MaxWaiting bounds the calls waiting for a request slot (default 4 ×
	// MaxInFlight); past it a call fails at once with ErrBusy.
	MaxWaiting int
	// Replayable marks calls the backend may see twice without harm (an
	// authorization question, not an action): one that fails on a
	// connection before any answer is tried again once. Others are resent
	// only when net/http knows none of the request was written.
	Replayable bool
	// Header is sent with every request (besides Content-Type and
	// User-Agent): a shared secret for the backend to check, say.
	Header http.Header
	// MaxAnswerBytes bounds an answer's body (default 256 KiB); a longer
	// one is an error.
	MaxAnswerBytes int
	// Breaker: after BreakAfter failures in a row (default 5) calls fail
	// at once with ErrCircuitOpen for BreakFor (default 2s); then one call
	// goes through, and closes the circuit if it succeeds.
	BreakAfter uint32
	BreakFor   time.Duration
	// Parse decodes an answer whose status is below 500 into what the
	// call returns (Answer.Value); an error makes the call fail, counted
	// as the backend's failure. Required.
	Parse func(status int, body []byte) (any, error)
	// Metrics default to collectors registered nowhere.
	Metrics *metrics.Proxy
	Logger  *slog.Logger
}

// Errors of a call that got no answer. Each is a 503 or an "unavailable"
// error for the client.
var (
	// ErrCanceled is a call its caller gave up on (its context canceled,
	// the client's connection gone): not counted, not the backend's
	// failure.
	ErrCanceled    = errors.New("proxy: the call was canceled")
	ErrBusy        = errors.New("proxy: every request slot is taken")
	ErrCircuitOpen = errors.New("proxy: the backend failed repeatedly and is given a rest")
	ErrTimeout     = errors.New("proxy: the backend did not answer in time")
)

// StatusError is an answer whose status is not one the call takes.
type StatusError struct{ Status int }

func (e *StatusError) Error() string { return fmt.Sprintf("proxy: the backend answered %d", e.Status) }

// Answer is a backend's answer: its status, and its body as Config.Parse
// decoded it.
type Answer struct {
	Status int
	Value  any
}

// Client calls one backend URL with JSON POSTs over keep-alive HTTP/1.1,
// at most MaxInFlight at a time, each within Timeout, behind a circuit
// breaker. Its methods are safe for concurrent use.
type Client struct {
	cfg     Config
	url     string
	http    *http.Client
	slots   chan struct{} // a request slot each
	waiting atomic.Int32  // calls waiting for a slot, or (Go) for their goroutine to ask
	breaker *gobreaker.CircuitBreaker[Answer]
	m       metrics.ProxyCollectors
	log     *slog.Logger
}

// New returns the Client for cfg.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("proxy %s: %q is not an http:// or https:// URL", cfg.Name, cfg.URL)
	}
	if cfg.Parse == nil {
		return nil, fmt.Errorf("proxy %s: no Parse", cfg.Name)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 64
	}
	if cfg.MaxWaiting <= 0 {
		cfg.MaxWaiting = 4 * cfg.MaxInFlight
	}
	if cfg.MaxAnswerBytes <= 0 {
		cfg.MaxAnswerBytes = 256 << 10
	}
	if cfg.BreakAfter == 0 {
		cfg.BreakAfter = 5
	}
	if cfg.BreakFor <= 0 {
		cfg.BreakFor = 2 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewProxy(nil)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := &Client{cfg: cfg, url: u.String(), slots: make(chan struct{}, cfg.MaxInFlight), m: cfg.Metrics.For(cfg.Name),
		log: cfg.Logger.With("proxy", cfg.Name)}
	c.http = &http.Client{Transport: &http.Transport{
		Proxy:               nil, // the backend is reached directly, whatever HTTP_PROXY says
		DialContext:         (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxConnsPerHost:     cfg.MaxInFlight,
		MaxIdleConns:        cfg.MaxInFlight,
		MaxIdleConnsPerHost: cfg.MaxInFlight,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   false,
	}}
	c.breaker = gobreaker.NewCircuitBreaker[Answer](gobreaker.Settings{
		Name:        cfg.Name,
		Timeout:     cfg.BreakFor,
		ReadyToTrip: func(n gobreaker.Counts) bool { return n.ConsecutiveFailures >= cfg.BreakAfter },
		IsExcluded:  func(err error) bool { return errors.Is(err, ErrCanceled) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if to == gobreaker.StateClosed {
				c.m.Open.Set(0)
			} else {
				c.m.Open.Set(1)
			}
			if to == gobreaker.StateOpen {
				c.log.Warn("backend failing: its calls fail at once for a while", "url", c.url, "for", cfg.BreakFor)
			} else if to == gobreaker.StateClosed {
				c.log.Info("backend answering again", "url", c.url)
			}
		},
	})
	return c, nil
}

// Calls is how many calls are being made: sent, or waiting for a
// request slot.
func (c *Client) Calls() int { return int(c.waiting.Load()) }

// Close drops the idle connections to the backend.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Call POSTs body and returns the backend's answer, whatever its status
// below 500, as Config.Parse decoded it. It fails with ErrBusy,
// ErrCircuitOpen or ErrTimeout without an answer, a *StatusError for a
// 5xx, or Parse's error. The call is bounded by Timeout and by ctx.
func (c *Client) Call(ctx context.Context, body []byte) (Answer, error) {
	if !c.take() {
		return Answer{}, ErrBusy
	}
	defer c.waiting.Add(-1)
	return c.call(ctx, body)
}

// take counts a call in, unless MaxInFlight + MaxWaiting are being made
// (busy, counted).
func (c *Client) take() bool {
	if int(c.waiting.Add(1)) > c.cfg.MaxWaiting+c.cfg.MaxInFlight {
		c.waiting.Add(-1)
		c.m.Results[metrics.ProxyBusy].Inc()
		return false
	}
	return true
}

// Go makes the call on a goroutine of its own and hands the result to
// done there; canceling ctx gives it up (ErrCanceled), freeing its slot.
// It reports false, calling nothing, when the client already has
// MaxInFlight + MaxWaiting calls: goroutines exist only for calls being
// made.
func (c *Client) Go(ctx context.Context, body []byte, done func(Answer, error)) bool {
	if !c.take() {
		return false
	}
	go func() {
		a, err := c.call(ctx, body)
		c.waiting.Add(-1)
		done(a, err)
	}()
	return true
}

func (c *Client) call(ctx context.Context, body []byte) (Answer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	// The breaker is asked first: a dead backend fails its calls at once,
	// not after they waited for a slot.
	if c.breaker.State() == gobreaker.StateOpen {
		c.m.Results[metrics.ProxyCircuitOpen].Inc()
		return Answer{}, ErrCircuitOpen
	}
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.Canceled) {
			return Answer{}, ErrCanceled
		}
		c.m.Results[metrics.ProxyTimeout].Inc()
		return Answer{}, ErrTimeout
	}
	defer func() { <-c.slots }()
	a, err := c.breaker.Execute(func() (Answer, error) { return c.send(ctx, body) })
	switch {
	case err == nil:
		c.m.Results[metrics.ProxyOK].Inc()
	case errors.Is(err, ErrCanceled):
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		c.m.Results[metrics.ProxyCircuitOpen].Inc()
		err = ErrCircuitOpen
	case errors.Is(err, ErrTimeout):
		c.m.Results[metrics.ProxyTimeout].Inc()
	default:
		c.m.Results[metrics.ProxyError].Inc()
	}
	if err != nil {
		c.log.Debug("backend call failed", "err", err)
	}
	return a, err
}

// send makes the request, once more on a replayable call's connection
// failure before any answer.
func (c *Client) send(ctx context.Context, body []byte) (Answer, error) {
	start := time.Now()
	defer func() { c.m.Duration.Observe(time.Since(start).Seconds()) }()
	for attempt := 0; ; attempt++ {
		a, unanswered, err := c.sendOnce(ctx, body)
		if err == nil || !unanswered || !c.cfg.Replayable || attempt == 1 {
			return a, err
		}
	}
}

// sendOnce makes the request; unanswered reports a failure before any
// answer (not a timeout), the only one a replayable call is sent again
// for.
func (c *Client) sendOnce(ctx context.Context, body []byte) (a Answer, unanswered bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return Answer{}, false, err
	}
	for k, v := range c.cfg.Header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "pushgate-proxy")
	if c.cfg.Replayable {
		// net/http may resend it on a keep-alive connection the backend
		// closed; a nil value marks it so without sending the header.
		req.Header["Idempotency-Key"] = nil
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return Answer{}, false, ErrCanceled
		}
		if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return Answer{}, false, ErrTimeout
		}
		return Answer{}, true, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(c.cfg.MaxAnswerBytes)+1))
	switch {
	case err != nil && errors.Is(ctx.Err(), context.Canceled):
		return Answer{}, false, ErrCanceled
	case err != nil && ctx.Err() != nil:
		return Answer{}, false, ErrTimeout
	case err != nil:
		return Answer{}, false, err
	case len(b) > c.cfg.MaxAnswerBytes:
		return Answer{}, false, fmt.Errorf("proxy: the backend's answer is over %d bytes", c.cfg.MaxAnswerBytes)
	case resp.StatusCode >= 500:
		return Answer{}, false, &StatusError{Status: resp.StatusCode}
	}
	v, err := c.cfg.Parse(resp.StatusCode, b)
	if err != nil {
		return Answer{}, false, fmt.Errorf("proxy: the backend's %d answer: %w", resp.StatusCode, err)
	}
	return Answer{Status: resp.StatusCode, Value: v}, false, nil
}
