// Package webhook delivers the gateway's events (users coming online and
// going offline, channels becoming occupied and vacated) to a backend over
// HTTP.
//
// A Sender takes events from the gateway without ever blocking it: Send
// encodes the event once and queues it, or drops and counts it when the
// queue holds Config.MaxQueueBytes. One goroutine per Sender posts the
// queue in batches, one batch at a time, retrying a failed batch until it
// is delivered, so the backend sees every event at least once and in the
// order sent. Close delivers what is queued, for as long as its context
// allows.
//
// # Wire contract
//
// Each batch is a POST to Config.URL:
//
//	POST /your/path HTTP/1.1
//	Content-Type: application/json
//	User-Agent: pushgate-webhook
//	X-Pushgate-Signature: sha256=<hex HMAC-SHA256 of the body>
//
//	{"events":[
//	  {"type":"user_online","time":1700000000000,"node":"gw-1","user":"alice"},
//	  {"type":"channel_vacated","time":1700000000042,"node":"gw-1","channel":"chat:42"}
//	]}
//
// "type" is one of user_online, user_offline (with "user") or
// channel_occupied, channel_vacated (with "channel"); "time" is when the
// gateway saw it, in Unix milliseconds (an integer); "node" names the
// gateway. Backends should ignore fields they do not know.
//
// The signature header is "sha256=" and the lowercase hex HMAC-SHA256 of
// the exact body bytes, keyed with the shared secret (Config.Secret).
// Verify checks it in constant time; backends in other languages compute
// the HMAC over the raw body before parsing it.
//
// Any 2xx answer means delivered. Anything else (another status, a
// redirect, a transport error, Config.Timeout passing) makes the Sender
// retry the same batch, byte for byte and with the same signature, with
// exponential backoff and jitter (Config.MinBackoff doubling up to
// Config.MaxBackoff); later events wait behind it. A backend therefore
// sees a batch again after an answer it sent was lost: it should treat
// events as idempotent, such as by keeping the latest "time" per user or
// channel.
package webhook
