// Package webhook delivers the gateway's events (users coming online and
// going offline, channels becoming occupied and vacated) to a backend over
// HTTP.
//
// A Sender takes events from the gateway without ever blocking it: Send
// encodes the event once and queues it, or drops and counts it when the
// queue holds Config.MaxQueueBytes. One goroutine per Sender posts the
// queue in batches, one batch at a time, retrying a failed batch until it
// is delivered, so the backend sees every event at least once and in the
// order sent. SendThen is Send that also reports whether the event was
// queued and calls back once it has been delivered. Close delivers what is
// queued, for as long as its context allows.
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
//	  {"type":"user_online","time":1700000000000,"node":"gw-1","seq":17,"user":"alice"},
//	  {"type":"channel_vacated","time":1700000000042,"node":"gw-1","seq":9,"channel":"chat:42"}
//	]}
//
// "type" is one of user_online, user_offline (with "user") or
// channel_occupied, channel_vacated (with "channel"); "time" is when the
// gateway saw it, in Unix milliseconds (an integer); "node" names the
// gateway. "seq" (always there, an unsigned 64-bit integer) orders the
// events of one user or one channel across the cluster: of two events
// about the same user (or channel), the later has the larger seq (the
// revision of the cluster's agreement about it). Compare seq, not time,
// whose clocks differ between nodes, and do not rely on arrival order:
// each gateway posts its own events, so those of different gateways
// arrive in any order, even about the same user. Backends should ignore
// fields they do not know.
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
// sees a batch again after an answer it sent was lost, and events from
// several gateways interleave: it should treat events as idempotent and
// possibly late, such as by keeping, per user or channel, the event with
// the largest "seq" and ignoring any whose seq is not larger.
package webhook
