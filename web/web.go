// Package web holds the pages the public listener serves, embedded in the
// binary.
package web

import (
	"embed"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the embedded pages: GET / is the landing page.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "static/index.html")
	})
	return mux
}
