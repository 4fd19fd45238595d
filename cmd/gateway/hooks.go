package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/pushgate/pushgate/metrics"
	"github.com/pushgate/pushgate/proxy"
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
		if u, err := url.Parse(f.url); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("invalid --%s %q: want an http:// or https:// URL", f.name, f.url)
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
