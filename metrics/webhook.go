package metrics

import "github.com/prometheus/client_golang/prometheus"

// Webhook holds the collectors of the webhook sender (package webhook).
// Fields used per event or per POST are resolved once, so recording is one
// atomic add.
type Webhook struct {
	events *prometheus.CounterVec
	// Dropped counts events refused: the queue was full, or the sender
	// was closed; and the occupancy changes dropped for their bound
	// (occupancy.Config.Dropped).
	Dropped prometheus.Counter
	// DeliveriesOK and DeliveriesError count POST attempts by result: a
	// 2xx answer, or anything else (another status, a transport error, a
	// timeout). A batch retried twice counts two errors and one ok.
	DeliveriesOK    prometheus.Counter
	DeliveriesError prometheus.Counter
	// DeliveryDuration is the time of one POST attempt, answer read.
	DeliveryDuration prometheus.Histogram
	// QueueBytes is the bytes of encoded events waiting, the batch in
	// flight included (bounded by webhook.Config.MaxQueueBytes).
	QueueBytes prometheus.Gauge
}

// Webhook event types, as the type label names them; the sender counts any
// other type as "other".
var webhookEventTypes = []string{"user_online", "user_offline", "channel_occupied", "channel_vacated", "other"}

// NewWebhook creates the webhook sender's collectors and registers them
// with reg; a nil reg registers nothing.
func NewWebhook(reg prometheus.Registerer) *Webhook {
	f := factory{reg}
	deliveries := f.counterVec("webhook_deliveries_total",
		"Webhook POST attempts, by result: ok (a 2xx answer) or error (another status, a transport error or a timeout; the batch is retried).", "result")
	w := &Webhook{
		events: f.counterVec("webhook_events_total",
			"Webhook events queued for delivery, by type.", "type"),
		Dropped: f.counter("webhook_events_dropped_total",
			"Webhook events dropped, never sent: the queue held --webhook-queue-bytes, the sender was closed, or the node's occupancy changes waiting to be written passed their bound."),
		DeliveriesOK:    deliveries.WithLabelValues("ok"),
		DeliveriesError: deliveries.WithLabelValues("error"),
		DeliveryDuration: f.histogram("webhook_delivery_duration_seconds",
			"Time of one webhook POST attempt, from sending the request to reading the answer.",
			prometheus.ExponentialBuckets(1e-3, 2.5, 12)), // 1ms .. 24s
		QueueBytes: f.gauge("webhook_queue_bytes",
			"Bytes of encoded webhook events waiting for delivery, the batch in flight included."),
	}
	for _, t := range webhookEventTypes {
		w.events.WithLabelValues(t) // exported from the start, at 0
	}
	return w
}

// Events returns the counter of queued events of one type (user_online,
// user_offline, channel_occupied, channel_vacated, other). Resolve it once
// and keep it.
func (w *Webhook) Events(typ string) prometheus.Counter {
	return w.events.WithLabelValues(typ)
}
