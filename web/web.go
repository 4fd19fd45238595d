package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"time"
)

// static holds what the public listener serves; the npm package's own
// files there (package.json, pushgate.d.ts, README.md) are not served.
//
//go:embed static/*.html static/*.js static/*.css
var static embed.FS

// contentTypes are the types of the files under static, by extension.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// csp keeps the page to its own scripts, styles and WebSocket: user data
// that slipped into markup could not run.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Handler serves the embedded files: static/index.html at GET /, every
// other file at GET /<name>, anything else 404. GET and HEAD only (405
// with Allow otherwise). Responses carry Cache-Control: no-cache and a
// content-hash ETag, so browsers revalidate and get 304 while the binary
// is unchanged.
func Handler() http.Handler {
	mux := http.NewServeMux()
	files, err := fs.ReadDir(static, "static")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	for _, f := range files {
		name := f.Name()
		route := "GET /" + name
		if name == "index.html" {
			route = "GET /{$}"
		}
		mux.Handle(route, asset(name))
	}
	return mux
}

// asset serves one embedded file.
func asset(name string) http.Handler {
	body, err := static.ReadFile("static/" + name)
	if err != nil {
		panic(err)
	}
	typ, ok := contentTypes[path.Ext(name)]
	if !ok {
		panic("web: no content type for static/" + name)
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:12]) + `"`
	html := path.Ext(name) == ".html"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", typ)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", etag)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer") // the page URL may hold ?token=
		if html {
			h.Set("Content-Security-Policy", csp)
		}
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(body))
	})
}
