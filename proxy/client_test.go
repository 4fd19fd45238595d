package proxy_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pushgate/pushgate/metrics"
	"github.com/pushgate/pushgate/proxy"
)

// dropFirst is a backend that drops the connection of the first request it
// reads, without answering, and answers {} to the others.
func dropFirst(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		if calls.Add(1) == 1 {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			conn.Close()
			return
		}
		io.WriteString(w, `{}`)
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

// TestRetriesOnlyWhereSafe: a subscribe (a question) whose connection
// drops before an answer is asked again; a publish, which the backend may
// have acted on, is not, and fails.
func TestRetriesOnlyWhereSafe(t *testing.T) {
	for _, tc := range []struct {
		name      string
		make      func(proxy.Config) (*proxy.Ops, error)
		wantCalls int32
		wantErr   bool
	}{
		{"subscribe", proxy.NewSubscriber, 2, false},
		{"publish", proxy.NewPublisher, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, calls := dropFirst(t)
			o, err := tc.make(proxy.Config{URL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			defer o.Client().Close()
			done := make(chan error, 1)
			if !o.Ask(context.Background(), proxy.PublishRequest{Channel: "c", Data: []byte("1")}, func(_ proxy.Verdict, err error) { done <- err }) {
				t.Fatal("busy")
			}
			err = within(t, done)
			if (err != nil) != tc.wantErr || calls.Load() != tc.wantCalls {
				t.Fatalf("err %v after %d calls; want error %v after %d", err, calls.Load(), tc.wantErr, tc.wantCalls)
			}
		})
	}
}

// TestBusy: past MaxInFlight requests out and MaxWaiting calls waiting, a
// call fails at once with ErrBusy, counted.
func TestBusy(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		io.WriteString(w, `{}`)
	}))
	defer srv.Close()
	defer close(release)
	m := metrics.NewProxy(nil)
	o, err := proxy.NewSubscriber(proxy.Config{URL: srv.URL, MaxInFlight: 1, MaxWaiting: 1, Timeout: 5 * time.Second, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Client().Close()
	done := make(chan error, 2)
	for range 2 {
		if !o.Ask(context.Background(), proxy.SubscribeRequest{Channel: "c"}, func(_ proxy.Verdict, err error) { done <- err }) {
			t.Fatal("busy before the bound")
		}
	}
	within(t, arrived)
	if o.Ask(context.Background(), proxy.SubscribeRequest{Channel: "c"}, func(proxy.Verdict, error) { t.Error("called") }) {
		t.Fatal("a third call was taken")
	}
	_, err = o.Client().Call(context.Background(), []byte(`{}`))
	if !errors.Is(err, proxy.ErrBusy) {
		t.Fatalf("Call: %v, want ErrBusy", err)
	}
	if n := testutil.ToFloat64(m.For("subscribe").Results[metrics.ProxyBusy]); n != 2 {
		t.Fatalf("busy counted %v, want 2", n)
	}
	release <- struct{}{}
	release <- struct{}{}
	for range 2 {
		if err := within(t, done); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCancel: a call its caller gives up ends at once, the backend's
// request with it, and is neither counted nor held against the backend.
func TestCancel(t *testing.T) {
	asked, gaveUp := make(chan struct{}, 1), make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // the server sees the client go only then
		select {           // never blocks: a blocked handler would hold srv.Close
		case asked <- struct{}{}:
		default:
		}
		<-r.Context().Done()
		select {
		case gaveUp <- struct{}{}:
		default:
		}
	}))
	defer srv.Close()
	m := metrics.NewProxy(nil)
	o, err := proxy.NewPublisher(proxy.Config{URL: srv.URL, Timeout: time.Minute, Metrics: m, BreakAfter: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Client().Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	o.Ask(ctx, proxy.PublishRequest{Channel: "c", Data: []byte("1")}, func(_ proxy.Verdict, err error) { done <- err })
	within(t, asked)
	cancel()
	if err := within(t, done); !errors.Is(err, proxy.ErrCanceled) {
		t.Fatalf("canceled call: %v, want ErrCanceled", err)
	}
	within(t, gaveUp)
	for i, r := range m.For("publish").Results {
		if n := testutil.ToFloat64(r); n != 0 {
			t.Errorf("result %s counted %v", metrics.ProxyResults[i], n)
		}
	}
	if testutil.ToFloat64(m.For("publish").Open) != 0 || o.Client().Calls() != 0 {
		t.Error("a canceled call opened the circuit or is still counted as made")
	}
}

// within receives from ch, or fails the test after 10s.
func within[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting")
	}
	var zero T
	return zero
}
