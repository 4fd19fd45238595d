// Package proxy asks the app's backend about connections and client ops:
// the connect, subscribe and publish proxies (--proxy-connect,
// --proxy-subscribe, --proxy-publish). Each is a JSON POST to one URL;
// what the gateway does with the answer is the session package's.
//
// # The calls
//
// Connect, for a connection without a valid token (Connector):
//
//	→ {"client":"n1.2s3","transport":"websocket"|"sse","path":"/ws","query":"channels=a",
//	   "remote_addr":"10.0.0.5:51234",
//	   "headers":{"Cookie":"…","Authorization":"…","Origin":"…","User-Agent":"…","X-Forwarded-For":"…"}}
//	← 200 {"user":"alice","channels":["chat:*"],"publish":["chat:*"],"info":{…},"expire_at":1767225600}
//	← 401 or 403, body {"error":{"message":"…"}} or text: the upgrade is refused with it
//
// The 200 answer is checked as a token's claims are (auth.Claims): a bad
// user name or pattern is the backend's failure. When expire_at (Unix
// seconds) passes, the gateway asks again with {"client","user",
// "refresh":true} and the same answers: 200 renews, anything else closes
// the connection with 4001.
//
// Subscribe, for a channel the connection's claims do not grant (Ops):
//
//	→ {"client":"…","user":"alice","channel":"room:7","info":{…}}
//	← 200 {} allows; 200 {"error":{"code":"not_member","message":"…"}} or 403 refuses
//
// Publish, for every client publish but to a personal channel (Ops):
//
//	→ {"client":"…","user":"alice","channel":"room:7","data":<json>,"granted":true}
//	← 200 {} allows; 200 {"data":<json>} replaces what subscribers get;
//	  200 {"error":{"code","message"}} or 403 refuses
//
// A refusal's code (1-32 of a-z 0-9 _, else "forbidden") and message
// (printable ASCII, at most 200 bytes) reach the client in its error
// frame.
//
// # Failures
//
// Every proxy has its own Client: keep-alive HTTP/1.1, at most MaxInFlight
// requests out and MaxWaiting calls waiting for one (past that a call
// fails at once: busy), each call bounded by Timeout, and a circuit
// breaker (github.com/sony/gobreaker) that, after BreakAfter failures in
// a row, fails calls at once for BreakFor before trying one again. A
// failure is a transport error, a timeout, a 5xx, or an answer that is
// not the schema; the client gets 503 (connect) or an "unavailable"
// error (ops), and pushgate_proxy_requests_total counts it by result. A
// call its caller gave up (the client's connection closed) frees its slot
// at once and is not counted, nor held against the backend.
//
// Connect and subscribe calls are questions: one whose connection fails
// before an answer is sent again, once. A publish call is sent again only
// when net/http knows none of it was written.
package proxy
