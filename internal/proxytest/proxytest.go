// Package proxytest serves an app's backend for the gateway's connect
// proxy (--proxy-connect) on loopback, for tests of a gateway process. It
// admits each connection as the user its query names, after a set
// latency (the database lookup a real backend makes), records every
// request, and can be made to fail as a backend whose database stopped
// answering does: it holds each request until the gateway gives up on it.
package proxytest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Config configures a Backend.
type Config struct {
	// Latency delays each answer (default none).
	Latency time.Duration
	// Admit answers a connection by its query: the user ("" for an
	// anonymous one) and the channel patterns it is granted. Required.
	Admit func(query url.Values) (user string, channels []string)
}

// Call is a connect request the backend got.
type Call struct {
	Client, Transport, Path, Query string
	Headers                        map[string]string
	At                             time.Time // when it arrived
	Failing                        bool      // it came while the backend failed
	// Bad says why it is not the connect request the proxy package
	// documents, if it is not; it was answered 400.
	Bad string
}

// Backend is a connect backend on 127.0.0.1.
type Backend struct {
	URL string // for --proxy-connect

	cfg            Config
	inFlight, peak atomic.Int64

	mu      sync.Mutex
	calls   []Call        // every request, in arrival order
	release chan struct{} // while failing: closed by Recover
}

// Start serves a backend until the test ends.
func Start(t testing.TB, cfg Config) *Backend {
	t.Helper()
	if cfg.Admit == nil {
		t.Fatal("proxytest: no Admit")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &Backend{URL: "http://" + ln.Addr().String() + "/connect", cfg: cfg}
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		b.Recover()
		srv.Close()
		<-served
	})
	return b
}

// Fail makes the backend hold each request it gets from now on until the
// gateway gives up on it (its --proxy-timeout), or until Recover.
func (b *Backend) Fail() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.release == nil {
		b.release = make(chan struct{})
	}
}

// Recover makes the backend answer again; the requests it holds are
// answered 503.
func (b *Backend) Recover() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.release != nil {
		close(b.release)
		b.release = nil
	}
}

// Calls returns the requests the backend got, in arrival order.
func (b *Backend) Calls() []Call {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

// Peak is the most requests the backend had at once.
func (b *Backend) Peak() int64 { return b.peak.Load() }

func (b *Backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	n := b.inFlight.Add(1)
	defer b.inFlight.Add(-1)
	for p := b.peak.Load(); n > p && !b.peak.CompareAndSwap(p, n); p = b.peak.Load() {
	}
	var req struct {
		Client    string            `json:"client"`
		Transport string            `json:"transport"`
		Path      string            `json:"path"`
		Query     string            `json:"query"`
		Headers   map[string]string `json:"headers"`
	}
	err := json.NewDecoder(r.Body).Decode(&req)
	call := Call{Client: req.Client, Transport: req.Transport, Path: req.Path, Query: req.Query, Headers: req.Headers, At: at}
	q, qerr := url.ParseQuery(req.Query)
	switch {
	case r.Method != http.MethodPost || err != nil:
		call.Bad = fmt.Sprintf("%s with %v", r.Method, err)
	case req.Client == "" || (req.Transport != "websocket" && req.Transport != "sse") || req.Path == "" || req.Headers == nil:
		call.Bad = fmt.Sprintf("%+v", req)
	case qerr != nil:
		call.Bad = fmt.Sprintf("query %q: %v", req.Query, qerr)
	}
	b.mu.Lock()
	release := b.release
	call.Failing = release != nil
	b.calls = append(b.calls, call)
	b.mu.Unlock()
	switch {
	case call.Bad != "":
		http.Error(w, call.Bad, http.StatusBadRequest)
		return
	case call.Failing:
		select {
		case <-r.Context().Done():
		case <-release:
		}
		http.Error(w, "the database is not answering", http.StatusServiceUnavailable)
		return
	}
	if b.cfg.Latency > 0 {
		lookup := time.NewTimer(b.cfg.Latency)
		defer lookup.Stop()
		select {
		case <-lookup.C:
		case <-r.Context().Done():
			return
		}
	}
	user, channels := b.cfg.Admit(q)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"user": user, "channels": channels})
}
