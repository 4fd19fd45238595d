// Package adminapi is the HTTP API backends use on the admin listener:
//
//	POST /api/publish  {"channel":"news","data":<JSON>} or {"user":"alice","data":<JSON>}
//	                   -> {"offset":43,"delivered":1200}
//	GET  /api/history?channel=news&since=40
//	GET  /api/stats
//
// With an API key configured every request needs "Authorization: Bearer
// <key>". Errors are JSON, {"code":"...","message":"..."}, with a 4xx or 5xx
// status, and a refused publish publishes nothing.
package adminapi
