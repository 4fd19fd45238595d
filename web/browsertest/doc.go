// Package browsertest drives the chat demo (web/static) in headless
// Chromium against the gateway binary: two pages chat, a third joins late
// and sees the room's history, the gateway restarts (the badges say
// "reconnecting", a message sent meanwhile waits as queued), the pages
// reconnect and catch up through pushgate.js, and a refused publish stays
// on the page to retry or edit; without --presence the page says it has
// no member list. With --presence 'chat:*', three pages in a room list
// each other (names marked unverified in open mode), announce a join and
// a leave (a closed tab), and a page the admin API disconnects with
// reconnect:false stays disconnected and shows the reason. Behind HAProxy
// refusing WebSocket upgrades, in cluster mode, the chat page falls back
// to an event stream and POSTed ops, and with a bare EventSource page
// recovers what a gateway restart made them miss. With a connect proxy
// (--proxy-connect) and no token, a backend in the test logs a browser in
// with an HttpOnly session cookie, which Chromium sends on the upgrade:
// refused (401) before the login, the page joins after it as the
// backend's user, named by its info.
//
// It is a module of its own, so that the gateway's users never download
// chromedp; the repository's go.work joins it to the gateway, which its
// test builds from the same tree. The test needs Chromium (`make deps`
// installs Debian's); without it the test skips, or fails under CI=true.
package browsertest
