// Package web holds the pages the public listener serves, embedded in the
// binary.
//
// static/pushgate.js is the browser client of the pushgate.v1 protocol: a
// plain script (no build step, no dependencies) that defines
// window.Pushgate, or under CommonJS is the module's export. It subscribes
// after the socket opens so that every subscribe carries the channel's
// {since, epoch} (or, for a subscription that asks for history, "since" 0
// and no epoch, which replays all the server holds), tracks the personal
// channel ("#user") through user_since/user_epoch in the URL, drops
// duplicates by offset, reports what recovery could not fill as "resync"
// and the end of a replay as "synced", and reconnects with exponential
// backoff and full jitter (state "reconnecting"; "disconnected" once it
// stopped, by close() or close code 4003). Publishes made while
// disconnected wait in a bounded outbox.
//
// static/index.html, chat.js and chat.css are the demo chat room built on
// it: a room is the channel "chat:<room>", a message {name, text, ts, id}
// (ts in Unix milliseconds, shown in local time; id lets the sender
// recognise its own message coming back). Joining loads the room's
// history; each message is shown once (by id, else by epoch and offset).
// The page's own messages stay at the bottom, queued or sending, until
// they come back on the channel; one the gateway refuses is marked failed
// with the reason, to retry or take back into the input.
//
// static/package.json, pushgate.d.ts and README.md make pushgate.js the
// npm package pushgate-client (`npm pack` in static/), with TypeScript
// declarations; they are not served. TestPackage packs it with npm, loads
// it from Node with require and import, and type-checks the declarations
// with the compiler testdata/types pins; TestDeclarations keeps them to
// the events, methods and options pushgate.js has.
//
// Handler serves each .html, .js and .css file of static at GET /<name>
// (index.html at GET /) with a fixed Content-Type, Cache-Control: no-cache
// and a content-hash ETag. testdata/client.mjs runs pushgate.js under Node
// against a scripted fake WebSocket; TestClientScripts runs it.
package web
