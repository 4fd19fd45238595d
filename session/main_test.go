package session_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pushgate/pushgate/auth"
	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/internal/servertest"
	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/metrics"
	"github.com/pushgate/pushgate/presence"
	"github.com/pushgate/pushgate/protocol"
	"github.com/pushgate/pushgate/proxy"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/session"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// gateway is a server serving pushgate.v1 with a hub, on a loopback port.
type gateway struct {
	srv      *server.Server
	hub      *broadcast.Hub
	sessions *session.Handler
	m        *metrics.Gateway
	addr     string
}

type options struct {
	hub      broadcast.Config
	publish  string         // client-publish patterns
	verifier *auth.Verifier // nil: open mode
	queue    int            // outbound queue bytes
	compress bool           // negotiate permessage-deflate
	backlog  int            // session.Config.MaxBacklog
	tune     func(*server.Config)
	presence presence.Config
	// The backend's proxies, each optional.
	connect                      *proxy.Connector
	subscribeProxy, publishProxy *proxy.Ops
	proxyMetrics                 *metrics.Proxy
}

func start(t testing.TB, o options) *gateway {
	t.Helper()
	hub := broadcast.New(o.hub)
	patterns, err := protocol.ParsePatterns(o.publish)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(nil)
	sessions := session.New(session.Config{Hub: hub, ClientPublish: patterns, Verifier: o.verifier, Metrics: m, MaxBacklog: o.backlog,
		Presence: presence.New(o.presence), Connect: o.connect, SubscribeProxy: o.subscribeProxy, PublishProxy: o.publishProxy,
		ProxyMetrics: o.proxyMetrics, RenewalRetry: 100 * time.Millisecond})
	cfg := server.Config{
		AppPing:            session.AppPing,
		Metrics:            m,
		Handler:            sessions,
		Events:             sessions.Events(),
		OutboundQueueBytes: o.queue,
		Compression:        o.compress,
	}
	if o.verifier != nil || o.connect != nil {
		cfg.Authorize = sessions.Authorize
	}
	if o.connect != nil {
		cfg.Expired = sessions.Expired
	}
	if o.tune != nil {
		o.tune(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sessions.SetLookup(srv.Data)
	addr := servertest.Serve(t, srv, sessions.Close, hub.Close)
	return &gateway{srv: srv, hub: hub, sessions: sessions, m: m, addr: addr}
}

// dial upgrades to /ws with the query and extra header lines.
func (g *gateway) dial(t testing.TB, query string, extra ...string) *wstest.Client {
	t.Helper()
	extra = append([]string{"Sec-WebSocket-Protocol: pushgate.v1"}, extra...)
	c, _ := wstest.Dial(t, g.addr, "/ws"+query, extra...)
	return c
}

func (g *gateway) publish(t testing.TB, channel, data string) broadcast.Result {
	t.Helper()
	res, err := g.hub.Publish(context.Background(), channel, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	return res
}
