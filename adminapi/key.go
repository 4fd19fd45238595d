package adminapi

import "net/http"

// RequireKey wraps next in the API's own key check, for other routes of
// the admin listener (the gateway's /debug/pprof/): with a key, a request
// without "Authorization: Bearer <key>" gets the same 401 as /api/; with
// an empty key, next is returned as it is.
func RequireKey(key string, next http.Handler) http.Handler {
	return (&api{key: []byte(key)}).authenticate(next)
}
