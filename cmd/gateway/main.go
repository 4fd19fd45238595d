// Command gateway runs pushgate, a WebSocket push gateway, and mints
// client tokens for it.
//
//	go run ./cmd/gateway --help
//	go run ./cmd/gateway token --help
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pushgate/pushgate/adminapi"
	"github.com/pushgate/pushgate/broadcast"
	"github.com/pushgate/pushgate/broker"
	controlplane "github.com/pushgate/pushgate/control"
	"github.com/pushgate/pushgate/metrics"
	"github.com/pushgate/pushgate/occupancy"
	"github.com/pushgate/pushgate/presence"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/session"
	"github.com/pushgate/pushgate/streamapi"
	"github.com/pushgate/pushgate/web"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	setGC(os.Getenv)
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is the whole gateway, or its token command: it returns the process
// exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "token" {
		return runToken(args[1:], getenv, stdout, stderr)
	}
	cfg, err := parseConfig(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		usage(stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "pushgate: %v\nRun with --help to see the flags.\n", err)
		return 2
	}
	log := cfg.logger(stderr)
	verifier, err := cfg.verifier()
	if err != nil {
		fmt.Fprintf(stderr, "pushgate: %v\n", err)
		return 2
	}

	reg := metrics.NewRegistry()
	gm := metrics.New(reg)
	hc := cfg.Hub
	hc.FanoutDuration = gm.FanoutDuration
	hc.Evictions = gm.HistoryEvictions
	// The broker, made after the hub, reads the channels the hub holds
	// (--cluster-read served); none is created before it exists.
	var reader atomic.Pointer[broker.Broker]
	if cfg.Broker.ReadServed {
		hc.Load = func(name string, id uint64) { reader.Load().Load(name, id) }
		hc.Unload = func(name string) { reader.Load().Unload(name) }
	}
	// The webhooks' tracker is made once the node is named (sessions,
	// below); no channel is subscribed before.
	var tracker atomic.Pointer[occupancy.Tracker]
	if cfg.Webhook.URL != "" {
		hc.Occupied = func(name string, up bool) {
			if t := tracker.Load(); t != nil {
				t.Channel(name, up)
			}
		}
	}
	hub := broadcast.New(hc)
	defer hub.Close()
	gm.ObserveHub(
		func() int { return int(hub.Stats().Channels) },
		func() int { return int(hub.Stats().Subscribers) },
		func() int { return int(hub.Stats().History) },
		func() int { return int(hub.Stats().HistoryBytes) },
		func() int { return hub.Stats().InFlight },
		func() int { return int(hub.Stats().QueuedOps) },
	)
	sc := cfg.Server
	var publisher broadcast.Publisher = hub
	var cluster atomic.Pointer[controlplane.Cluster]
	if cfg.Broker.URL != "" {
		bc := cfg.Broker
		bc.Hub, bc.Metrics, bc.Gateway, bc.Logger = hub, metrics.NewBroker(reg), gm, log
		// Batches once every node says it reads them (a rolling update
		// from a version before batching); the control plane starts below.
		bc.Batches = func() bool { c := cluster.Load(); return c != nil && c.ReadBatches() }
		b, err := broker.New(bc)
		if err != nil {
			fmt.Fprintf(stderr, "pushgate: %v\n", err)
			return 1
		}
		defer b.Close()
		reader.Store(b)
		publisher = b
		sc.ReadyCheck = b.Ready
	}
	sc.Logger = log
	sc.Metrics = gm
	// The public listener's plain HTTP: the pages, and the ops of event
	// streams' clients (registered below, once their Commander exists).
	pages := http.NewServeMux()
	pages.Handle("/", web.Handler())
	sc.Pages = pages
	pres := presence.New(cfg.Presence)
	gm.ObservePresence(func() int { return int(pres.Clients()) })
	pm := metrics.NewProxy(reg)
	hooks, err := cfg.Proxy.build(pm, log)
	if err != nil {
		fmt.Fprintf(stderr, "pushgate: %v\n", err)
		return 2
	}
	sessions := session.New(session.Config{Hub: hub, Publisher: publisher, Metrics: gm, ClientPublish: cfg.clientPublish, Logger: log,
		Verifier: verifier, MaxBacklog: cfg.MaxClientBacklog, Presence: pres,
		Connect: hooks.connect, SubscribeProxy: hooks.subscribe, PublishProxy: hooks.publish, ProxyMetrics: pm,
		UserOnline: func(user string, online bool) {
			if t := tracker.Load(); t != nil {
				t.User(user, online)
			}
		}})
	live := func() ([]string, bool) {
		if c := cluster.Load(); c != nil {
			return c.Nodes()
		}
		return nil, false
	}
	snapshot := func() ([]string, []string) { return sessions.Users(), hub.Occupied() }
	wh, err := cfg.Webhook.start(sessions.Node(), cfg.Broker, live, snapshot, reg, log)
	if err != nil {
		fmt.Fprintf(stderr, "pushgate: %v\n", err)
		return 1
	}
	if wh != nil {
		tracker.Store(wh.tracker)
	}
	sc.Handler = sessions
	if cfg.SSE {
		sc.Events = sessions.Events()
	}
	defer sessions.Close()
	sc.AppPing = session.AppPing
	if verifier != nil || hooks.connect != nil {
		sc.Authorize = sessions.Authorize
	}
	if hooks.connect != nil {
		sc.Expired = sessions.Expired
	}
	srv, err := server.New(sc)
	if err != nil {
		fmt.Fprintf(stderr, "pushgate: %v\n", err)
		return 2
	}
	sessions.SetLookup(srv.Data)
	apiCfg := adminapi.Config{
		Hub: hub, Publisher: publisher, Metrics: gm, APIKey: cfg.APIKey, MaxBodyBytes: cfg.MaxPublishBytes, Connections: srv.Len,
		Control: sessions, Node: sessions.Node(), PresenceClients: pres.Clients,
	}
	if cfg.Broker.URL != "" {
		statsCfg := apiCfg // a copy: the other nodes' calls read it while apiCfg changes
		cp, err := controlplane.New(controlplane.Config{URL: cfg.Broker.URL, Stream: cfg.Broker.Stream, Replicas: cfg.Broker.Replicas,
			Local: sessions, Hub: hub, Presence: pres, LeaseTTL: cfg.NodeLeaseTTL, Logger: log,
			LocalStats: func() any { return adminapi.LocalStats(statsCfg) }, Lost: gm.PresenceEvents("lost")})
		if err != nil {
			fmt.Fprintf(stderr, "pushgate: %v\n", err)
			return 1
		}
		// Closed after the drain (deferred calls run last first), so
		// that the leave events of the connections it closes go out.
		defer cp.Close()
		cluster.Store(cp)
		sessions.SetPeers(cp)
		apiCfg.Control = cp
	}
	// Closed after the drain, within what is left of it (below), and
	// before the control plane: the leaves of the connections the drain
	// closed are written while this node's lease still stands. This is
	// for a return before the drain.
	defer wh.close(context.Background(), log)
	api := adminapi.New(apiCfg)
	if cfg.SSE {
		// In a cluster the control plane takes a stream's ops to its node.
		var cmd streamapi.Commander = sessions
		if c := cluster.Load(); c != nil {
			cmd = c
		}
		// A body may carry one op as large as a WebSocket message.
		maxBody := max(64<<10, int64(sc.MaxMessageSize)+4<<10)
		pages.Handle(streamapi.Path, streamapi.New(streamapi.Config{Commander: cmd, Origins: srv.Origins(), Logger: log, MaxBodyBytes: maxBody}))
	}
	public, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		fmt.Fprintf(stderr, "pushgate: public listener: %v\n", err)
		return 1
	}
	adminLn, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		public.Close()
		fmt.Fprintf(stderr, "pushgate: admin listener: %v\n", err)
		return 1
	}
	admin := &http.Server{Handler: adminHandler(srv, reg, cfg, api), ReadHeaderTimeout: 10 * time.Second}

	log.Info("pushgate listening", "addr", public.Addr().String(), "admin_addr", adminLn.Addr().String(),
		"echo", sc.Echo, "sse", cfg.SSE, "compression", sc.Compression, "client_publish", cfg.ClientPublish,
		"proxy_connect", cfg.Proxy.Connect, "proxy_subscribe", cfg.Proxy.Subscribe, "proxy_publish", cfg.Proxy.Publish, "webhook", cfg.Webhook.URL, "broker", cfg.Broker.URL, "gogc", gcInEffect())
	if verifier == nil && hooks.connect == nil {
		log.Warn("authentication is off (no --jwt-secret or --jwt-public-key): any client may connect and subscribe to any channel")
	}
	if cfg.APIKey == "" {
		log.Warn("the admin API is open (no --api-key): anyone who reaches the admin listener may publish")
		if cfg.Pprof {
			log.Warn("the profiler is open (--pprof without --api-key): anyone who reaches the admin listener may profile the gateway")
		}
	}
	// Serving starts once the warnings are out: whoever sees the
	// gateway ready may read them.
	failed := make(chan error, 2)
	go func() { failed <- srv.Serve(public) }()
	go func() { failed <- admin.Serve(adminLn) }()

	code := 0
	select {
	case <-ctx.Done():
		log.Info("draining", "drain_timeout", sc.DrainTimeout)
	case err := <-failed:
		log.Error("listener failed; draining", "err", err)
		code = 1
	}
	drainCtx, cancel := context.WithTimeout(context.Background(), sc.DrainTimeout)
	defer cancel()
	if err := srv.Shutdown(drainCtx); err != nil {
		log.Warn("drain incomplete", "err", err)
	}
	wh.close(drainCtx, log)
	_ = admin.Close()
	log.Info("stopped")
	return code
}
