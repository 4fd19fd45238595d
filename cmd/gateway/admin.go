package main

import (
	"net/http"
	"net/http/pprof"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgate/pushgate/adminapi"
	"github.com/pushgate/pushgate/server"
)

// adminHandler is the admin listener: the server's routes (/metrics,
// /healthz, /readyz), the API on /api/ and, with --pprof, the Go profiler
// on /debug/pprof/. The profiler is off by default: the default has no
// API key, and a profile, a trace or a goroutine dump costs CPU and shows
// internals to whoever reaches the port. When on, it takes the API's key.
func adminHandler(srv *server.Server, g prometheus.Gatherer, cfg config, api http.Handler) http.Handler {
	mux := srv.AdminMux(g)
	mux.Handle("/api/", api)
	if cfg.Pprof {
		mux.Handle("/debug/pprof/", adminapi.RequireKey(cfg.APIKey, pprofMux(os.Args)))
	}
	return mux
}

// pprofMux serves net/http/pprof, with its cmdline (the process's
// arguments) stripped of secrets.
func pprofMux(args []string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	cmdline := strings.Join(redactArgs(args), "\x00") // as pprof.Cmdline writes it
	mux.HandleFunc("/debug/pprof/cmdline", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(cmdline))
	})
	return mux
}

// redacted replaces a secret in what the profiler shows.
const redacted = "REDACTED"

// secretFlag says whether a flag's value is a secret: --api-key,
// --jwt-secret and any later --*-secret or --*-key (a key file's path is
// hidden too, which costs nothing).
func secretFlag(name string) bool {
	return strings.HasSuffix(name, "-secret") || strings.HasSuffix(name, "-key")
}

// redactArgs returns args with the value of every secret flag replaced,
// in each of the forms the flag package accepts: -name value, --name
// value, -name=value, --name=value.
func redactArgs(args []string) []string {
	out := make([]string, len(args))
	copy(out, args)
	for i := 1; i < len(out); i++ {
		a := out[i]
		if a == "--" || !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !secretFlag(name) {
			continue
		}
		if hasValue {
			out[i] = a[:strings.IndexByte(a, '=')+1] + redacted
		} else if i+1 < len(out) {
			out[i+1] = redacted
			i++
		}
	}
	return out
}
