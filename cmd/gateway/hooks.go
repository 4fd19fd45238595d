package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgate/pushgate/broker"
	"github.com/pushgate/pushgate/metrics"
	"github.com/pushgate/pushgate/occupancy"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/proxy"
	"github.com/pushgate/pushgate/webhook"
)

// proxyConfig is the backend proxies' settings.
type proxyConfig struct {
	Connect, Subscribe, Publish string // URLs; empty: not asked
	Timeout                     time.Duration
	MaxInFlight                 int
	Headers                     string // comma-separated, for the connect proxy
}

// check validates the settings; handshake is --handshake-timeout, which a
// connect proxy's call must fit in.
func (p proxyConfig) check(handshake time.Duration) error {
	for _, f := range []struct{ name, url string }{{"proxy-connect", p.Connect}, {"proxy-subscribe", p.Subscribe}, {"proxy-publish", p.Publish}} {
		if f.url == "" {
			continue
		}
		if err := httpURL(f.name, f.url); err != nil {
			return err
		}
	}
	switch {
	case p.Timeout <= 0:
		return errors.New("--proxy-timeout must be positive")
	case p.Connect != "" && p.Timeout >= handshake:
		return fmt.Errorf("--proxy-timeout %v must be shorter than --handshake-timeout %v: the connect proxy answers within the handshake", p.Timeout, handshake)
	case p.MaxInFlight < 1:
		return errors.New("--proxy-max-inflight must be at least 1")
	}
	return nil
}

// httpURL checks the value of --name, a backend's URL.
func httpURL(name, value string) error {
	if u, err := url.Parse(value); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid --%s %q: want an http:// or https:// URL", name, value)
	}
	return nil
}

// proxies are the backend proxies configured, each nil when not.
type proxies struct {
	connect            *proxy.Connector
	subscribe, publish *proxy.Ops
}

// build makes the proxies' clients.
func (p proxyConfig) build(m *metrics.Proxy, log *slog.Logger) (proxies, error) {
	var ps proxies
	cfg := func(u string) proxy.Config {
		return proxy.Config{URL: u, Timeout: p.Timeout, MaxInFlight: p.MaxInFlight, Metrics: m, Logger: log}
	}
	var err error
	if p.Connect != "" {
		if ps.connect, err = proxy.NewConnector(cfg(p.Connect), splitList(p.Headers)); err != nil {
			return ps, err
		}
	}
	if p.Subscribe != "" {
		if ps.subscribe, err = proxy.NewSubscriber(cfg(p.Subscribe)); err != nil {
			return ps, err
		}
	}
	if p.Publish != "" {
		if ps.publish, err = proxy.NewPublisher(cfg(p.Publish)); err != nil {
			return ps, err
		}
	}
	return ps, nil
}

// webhookConfig is the webhooks' settings.
type webhookConfig struct {
	URL           string
	Secret        string
	SecretFile    string // path; its content is Secret
	OfflineDelay  time.Duration
	Channels      string // patterns
	MaxQueueBytes int64

	channels protocol.Patterns // Channels, parsed
}

// check validates the settings, once the secret file was read.
func (w *webhookConfig) check() error {
	var err error
	if w.channels, err = protocol.ParsePatterns(w.Channels); err != nil {
		return fmt.Errorf("invalid --webhook-channels %q: %v", w.Channels, err)
	}
	switch {
	case w.URL == "":
		return nil
	case w.Secret == "":
		return errors.New("--webhook needs --webhook-secret (or --webhook-secret-file): backends check each batch's signature with it")
	case w.OfflineDelay <= 0:
		return errors.New("--webhook-offline-delay must be positive")
	case w.MaxQueueBytes < 1<<10:
		return errors.New("--webhook-queue-bytes must be at least 1KiB")
	}
	return httpURL("webhook", w.URL)
}

// webhooks is the webhook sender and the tracker that feeds it, nil
// without --webhook.
type webhooks struct {
	sender  *webhook.Sender
	tracker *occupancy.Tracker
	once    sync.Once
}

// start makes the sender and the tracker of node. In a cluster (broker
// set) the tracker shares NATS with the other nodes, live lists them, and
// snapshot what this node holds.
func (w *webhookConfig) start(node string, broker broker.Config, live func() ([]string, bool), snapshot func() (users, channels []string),
	reg prometheus.Registerer, log *slog.Logger) (*webhooks, error) {
	m := metrics.NewWebhook(reg)
	if w.URL == "" {
		return nil, nil
	}
	s, err := webhook.New(webhook.Config{URL: w.URL, Secret: []byte(w.Secret), MaxQueueBytes: int(w.MaxQueueBytes), Logger: log, Metrics: m})
	if err != nil {
		return nil, err
	}
	t, err := occupancy.New(occupancy.Config{Node: node, Emit: s.SendThen, Snapshot: snapshot, Delay: w.OfflineDelay, Channels: w.channels,
		URL: broker.URL, Stream: broker.Stream, Replicas: broker.Replicas, Live: live, Dropped: m.Dropped, Logger: log})
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Close(ctx)
		return nil, err
	}
	return &webhooks{sender: s, tracker: t}, nil
}

// close writes the tracker's last changes and delivers what is queued,
// until ctx is done (a second, when ctx has no deadline). Only the first
// call does.
func (wh *webhooks) close(ctx context.Context, log *slog.Logger) {
	if wh == nil {
		return
	}
	wh.once.Do(func() {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(context.Background(), time.Second)
			defer cancel()
		}
		wh.tracker.Close(ctx)
		if err := wh.sender.Close(ctx); err != nil {
			log.Warn("webhook events not delivered before exit", "err", err)
		}
	})
}
