// Package refserver is what the reference servers hub and floor share
// around their one difference, the fan-out: the HTTP routes the harness
// drives, the publish body, and the metrics it reads.
package refserver

import (
	"errors"
	"io"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MaxPublishBytes bounds a publish body; larger bodies get 413.
const MaxPublishBytes = 1 << 20

// Routes returns the handler of a reference server:
//
//   - GET /ws: ws, the upgrade;
//   - POST /publish: publish;
//   - GET /metrics: the process and Go runtime collectors, and
//     refserver_clients, the connections clients reports. The harness
//     waits for it before publishing, because a server may answer an
//     upgrade before it has registered the connection;
//   - GET /healthz, and /debug/pprof/ (the churn scenario forces a GC
//     through /debug/pprof/heap?gc=1).
func Routes(ws, publish http.HandlerFunc, clients func() int) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "refserver_clients", Help: "Connections the server writes publishes to.",
		}, func() float64 { return float64(clients()) }),
	)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", ws)
	mux.HandleFunc("POST /publish", publish)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	return mux
}

// ReadPublish reads a publish body. On error it has answered (413 past
// MaxPublishBytes, else 400) and returns false.
func ReadPublish(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxPublishBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		} else {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		}
		return nil, false
	}
	return body, true
}
