// Package browsertest drives the chat demo (web/static) in headless
// Chromium against the gateway binary: two pages chat, the gateway
// restarts, and the pages reconnect and catch up through pushgate.js.
//
// It is a module of its own, so that the gateway's users never download
// chromedp; the repository's go.work joins it to the gateway, which its
// test builds from the same tree. The test needs Chromium (`make deps`
// installs Debian's); without it the test skips, or fails under CI=true.
package browsertest
