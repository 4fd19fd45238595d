package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pushgate/pushgate/internal/proctest"
	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/metrics"
)

// scrape reads the gateway's /metrics into families by name, within
// wstest.Timeout.
func scrape(t *testing.T, admin string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := (&http.Client{Timeout: wstest.Timeout}).Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value reads one series of a counter or gauge, or a histogram's count;
// label is "name=value", several joined by commas, or empty. A missing series reads as -1.
func value(fams map[string]*dto.MetricFamily, name, label string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	for _, m := range f.GetMetric() {
		matches := true
		for pair := range strings.SplitSeq(label, ",") {
			if pair == "" {
				continue
			}
			k, v, _ := strings.Cut(pair, "=")
			found := false
			for _, l := range m.GetLabel() {
				found = found || (l.GetName() == k && l.GetValue() == v)
			}
			matches = matches && found
		}
		if !matches {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// expect is a metric's expected value: exactly want, or at least min.
type expect struct {
	name, label string
	want, min   float64
}

func checkMetrics(t *testing.T, admin string, checked map[string]bool, expects ...expect) {
	t.Helper()
	wstest.Until(t, 10*time.Second, func() error {
		fams := scrape(t, admin)
		var wrong []string
		for _, e := range expects {
			checked[e.name] = true
			got := value(fams, e.name, e.label)
			switch {
			case e.min > 0 && got < e.min:
				wrong = append(wrong, fmt.Sprintf("%s{%s} = %v, want at least %v", e.name, e.label, got, e.min))
			case e.min == 0 && got != e.want:
				wrong = append(wrong, fmt.Sprintf("%s{%s} = %v, want %v", e.name, e.label, got, e.want))
			}
		}
		if len(wrong) > 0 {
			return errors.New("metrics:\n" + strings.Join(wrong, "\n"))
		}
		return nil
	})
}

// TestEveryMetric drives a running gateway through everything its metrics
// count, and checks each value in its /metrics. Every pushgate_ metric the
// gateway exports must be checked here; the broker's are checked by
// TestClusterBehindHAProxy.
func TestEveryMetric(t *testing.T) {
	secret := strings.Repeat("k", 32)
	g := runGateway(t, proctest.FreeAddr(t), proctest.FreeAddr(t), "--echo", "--jwt-secret", secret, "--client-publish", "chat:*",
		"--allowed-origins", "https://ok.example", "--max-header-bytes", "2048", "--handshake-timeout", "500ms",
		"--outbound-queue-bytes", "65536", "--history-size", "3", "--jwt-leeway", "0s",
		"--client-message-rate", "1", "--client-message-burst", "5", "--client-bytes-rate", "65536", "--max-node-channels", "4")
	checked := map[string]bool{}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "channels": []string{"news", "chat:*"}}).
		SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	auth := "Authorization: Bearer " + tok

	// Handshakes: one of each refusal, and three that succeed.
	for _, extra := range [][]string{
		{"Upgrade:"},                           // bad_request
		{"Sec-WebSocket-Version: 12", auth},    // bad_version
		{},                                     // unauthorized
		{"Origin: https://evil.example", auth}, // forbidden_origin
		{"X-Pad: " + strings.Repeat("p", 4096), auth}, // too_large
	} {
		c := wstest.Connect(t, g.addr)
		c.Write([]byte(wstest.UpgradeRequest("/ws", extra...)))
		if resp := c.Response(); resp.StatusCode == http.StatusSwitchingProtocols {
			t.Fatalf("upgrade with %v succeeded", extra)
		}
		c.Conn.Close()
	}
	silent := wstest.Connect(t, g.addr) // sends half a request head, then times out
	silent.Write([]byte("GET /ws HTTP/1.1\r\n"))
	checkMetrics(t, g.admin, checked, expect{name: "pushgate_handshakes_in_flight", want: 1})
	silent.ExpectEOF()
	a, _ := wstest.Dial(t, g.addr, "/ws?channels=news", auth)
	b, _ := wstest.Dial(t, g.addr, "/ws?channels=news,chat:room", auth)
	quitter, _ := wstest.Dial(t, g.addr, "/ws", auth)
	// Each is subscribed to its user's channel, #alice, and what it asked.
	for _, c := range []*wstest.Client{a, a, b, b, b, quitter} {
		c.ExpectMsg("subscribed", "")
	}
	quitter.Write(wstest.Frame(true, 0, ws.OpClose, wstest.ClosePayload(1000, "")))
	quitter.ExpectClose(1000)

	// Publishes: five from the API, one from a client.
	for i := range 5 {
		if code, body := g.post(t, "/api/publish", fmt.Sprintf(`{"channel":"news","data":%d}`, i), ""); code != http.StatusOK {
			t.Fatalf("publish: %d %s", code, body)
		}
	}
	b.Send(`{"op":"publish","channel":"chat:room","data":"hi"}`)
	// History keeps news 3 to 5 and the chat line: it weighs their frames
	// (header: 2 bytes) and 512 bytes each (README, "Limits").
	held := 4 * 512
	for i := range 5 {
		if m := a.ExpectMsg("message", ""); i >= 2 {
			held += 2 + len(m.Raw)
		}
	}
	for range 5 + 1 { // and its own chat message
		if m := b.ExpectMsg("message", ""); m.Channel == "chat:room" {
			held += 2 + len(m.Raw)
		}
	}

	// A client holding half a message: its first fragment.
	half, _ := wstest.Dial(t, g.addr, "/ws", auth)
	half.ExpectMsg("subscribed", "")
	half.Write(wstest.Frame(false, 0, ws.OpText, bytes.Repeat([]byte(" "), 1000)))

	checkMetrics(t, g.admin, checked,
		expect{name: "pushgate_handshakes_total", label: "result=ok", want: 4},
		expect{name: "pushgate_handshakes_total", label: "result=bad_request", want: 1},
		expect{name: "pushgate_handshakes_total", label: "result=bad_version", want: 1},
		expect{name: "pushgate_handshakes_total", label: "result=unauthorized", want: 1},
		expect{name: "pushgate_handshakes_total", label: "result=forbidden_origin", want: 1},
		expect{name: "pushgate_handshakes_total", label: "result=too_large", want: 1},
		expect{name: "pushgate_handshakes_total", label: "result=timeout", want: 1},
		expect{name: "pushgate_handshakes_in_flight", want: 0},
		expect{name: "pushgate_connections", want: 3},
		expect{name: "pushgate_transport_connections", label: "transport=websocket", want: 3},
		expect{name: "pushgate_transport_connections", label: "transport=sse", want: 0},
		expect{name: "pushgate_connections_accepted_total", want: 4},
		expect{name: "pushgate_connections_closed_total", label: "reason=client_close", want: 1},
		expect{name: "pushgate_messages_received_total", want: 1},  // the chat publish
		expect{name: "pushgate_received_bytes_total", min: 20},     // it and the close
		expect{name: "pushgate_messages_sent_total", want: 7 + 11}, // replies and messages; control frames are not counted
		expect{name: "pushgate_transport_messages_sent_total", label: "transport=websocket", want: 7 + 11},
		expect{name: "pushgate_sent_bytes_total", min: 11 * 40},
		expect{name: "pushgate_publishes_total", label: "source=api", want: 5},
		expect{name: "pushgate_publishes_total", label: "source=client", want: 1},
		expect{name: "pushgate_publishes_total", label: "source=broker", want: 0},
		expect{name: "pushgate_publishes_refused_total", label: "reason=overloaded", want: 0},
		expect{name: "pushgate_publishes_refused_total", label: "reason=unavailable", want: 0},
		expect{name: "pushgate_fanout_duration_seconds", want: 6},
		expect{name: "pushgate_channels", want: 3}, // news, chat:room, #alice
		expect{name: "pushgate_subscriptions", want: 6},
		expect{name: "pushgate_history_entries", want: 3 + 1}, // news keeps 3 of 5
		expect{name: "pushgate_history_bytes", want: float64(held)},
		expect{name: "pushgate_history_evictions_total", label: "reason=size", want: 2},
		expect{name: "pushgate_history_evictions_total", label: "reason=budget", want: 0},
		expect{name: "pushgate_publishes_in_flight", want: 0},
		expect{name: "pushgate_shard_queued_ops", want: 0},
		expect{name: "pushgate_partial_messages", want: 1},
		expect{name: "pushgate_drain_pauses_total", want: 0}, // nothing near 64 MiB/s to drain (TestPartialMessages passes it)
		expect{name: "pushgate_partial_message_bytes", min: 1000},
		expect{name: "pushgate_poller_events_total", min: 3}, // reads of the publish, the close, the half frame
		expect{name: "pushgate_workers_busy", want: 0},
		expect{name: "pushgate_tasks_queued", want: 0},
		expect{name: "pushgate_slow_consumers_total", want: 0},
		expect{name: "pushgate_outbound_dropped_frames_total", want: 0},
		expect{name: "pushgate_outbound_queued_bytes", want: 0},
		expect{name: "pushgate_heartbeat_pings_total", want: 0},
		expect{name: "pushgate_heartbeat_evictions_total", want: 0},
		expect{name: "go_goroutines", min: 1},
		expect{name: "process_open_fds", min: 1},
	)

	// A client over its message rate (1 a second, 5 at once): its sixth
	// message on is refused with rate_limited, and the eleventh refusal
	// in a row closes it with 1008.
	flood, _ := wstest.Dial(t, g.addr, "/ws", auth)
	flood.ExpectMsg("subscribed", "")
	flood.Write(bytes.Repeat(wstest.Text(`{"op":"nope"}`), 20))
	for range 5 {
		flood.ExpectMsg("error", "bad_request")
	}
	for range 10 {
		flood.ExpectMsg("error", "rate_limited")
	}
	if reason := flood.ExpectClose(1008); reason != "rate limit exceeded" {
		t.Fatalf("flood closed with %q", reason)
	}
	// A client over its byte rate (64 KiB a second, 128 KiB at once) is not
	// read for a while, then served.
	heavy, _ := wstest.Dial(t, g.addr, "/ws", auth)
	heavy.ExpectMsg("subscribed", "")
	pad := wstest.Text(`{"op":"pad","x":"` + strings.Repeat("x", 60<<10) + `"}`)
	heavy.Write(bytes.Repeat(pad, 3))
	for range 3 {
		heavy.ExpectMsg("error", "bad_request")
	}
	checkMetrics(t, g.admin, checked,
		expect{name: "pushgate_rate_limited_messages_total", min: 11}, // and those read with the eleventh
		expect{name: "pushgate_connections_closed_total", label: "reason=rate_limited", want: 1},
		expect{name: "pushgate_read_throttles_total", min: 1},
	)

	// A reader too slow for what it asks echoed is closed with 1013.
	slow, _ := wstest.Dial(t, g.addr, "/echo")
	frame := wstest.Frame(true, 0, ws.OpBinary, bytes.Repeat([]byte{'s'}, 32<<10))
	for i := 0; value(scrape(t, g.admin), "pushgate_slow_consumers_total", "") < 1; i++ {
		if i == 10000 {
			t.Fatal("no slow-consumer close after 320 MiB")
		}
		if _, err := slow.Conn.Write(frame); err != nil {
			break
		}
	}
	slow.Conn.Close()
	checkMetrics(t, g.admin, checked,
		expect{name: "pushgate_slow_consumers_total", want: 1},
		expect{name: "pushgate_outbound_dropped_frames_total", min: 1},
		expect{name: "pushgate_connections_closed_total", label: "reason=slow_consumer", want: 1},
	)

	// A connection whose token expires is closed with 4001; the token
	// leaves a second for the upgrade.
	shortTok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "bob", "exp": wstest.ExpiresIn(time.Second)}).
		SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	expiring, _ := wstest.Dial(t, g.addr, "/ws", "Authorization: Bearer "+shortTok)
	expiring.ExpectMsg("subscribed", "")
	expiring.ExpectClose(4001)
	// A fifth channel (news, chat:room, #alice and #bob exist) is refused
	// with --max-node-channels 4.
	extra, _ := wstest.Dial(t, g.addr, "/ws?channels=chat:extra", auth)
	extra.ExpectMsg("subscribed", "")
	extra.ExpectMsg("error", "channel_limit")
	checkMetrics(t, g.admin, checked,
		expect{name: "pushgate_connections_closed_total", label: "reason=token_expired", want: 1},
		expect{name: "pushgate_channels_refused_total", want: 1},
	)

	// Heartbeats, on a gateway that pings soon: a client that never
	// answers is evicted.
	h := runGateway(t, proctest.FreeAddr(t), proctest.FreeAddr(t), "--echo", "--ping-interval", "100ms", "--pong-timeout", "100ms")
	mute, _ := wstest.Dial(t, h.addr, "/echo")
	if hd, _ := mute.ReadFrame(); hd.OpCode != ws.OpPing {
		t.Fatalf("got %v, want a ping", hd.OpCode)
	}
	mute.ExpectClose(1001)
	checkMetrics(t, h.admin, map[string]bool{},
		expect{name: "pushgate_heartbeat_pings_total", min: 1},
		expect{name: "pushgate_heartbeat_evictions_total", want: 1},
		expect{name: "pushgate_connections_closed_total", label: "reason=heartbeat_timeout", want: 1},
	)

	// Shedding, on a gateway with two handshake slots and a share of one
	// per address: an address that keeps opening stalled connections sheds
	// its own oldest (per_source), and a client that finds every slot held
	// by stalled ones sheds the oldest (full) and gets in.
	sh := runGateway(t, proctest.FreeAddr(t), proctest.FreeAddr(t), "--echo", "--max-handshakes", "2",
		"--max-handshakes-per-source", "1", "--handshake-timeout", "1m", "--request-line-timeout", "1m")
	// Stalled is a matter of time (50 ms without progress), so the
	// connections come 100 ms apart: each finds the one before sheddable,
	// and the two slots are never both held by unstalled ones, which
	// would make the shed a "full" one.
	for i := 0; value(scrape(t, sh.admin), "pushgate_handshakes_shed_total", "reason=per_source") < 1; i++ {
		if i == 50 {
			t.Fatal("no handshake shed per source after 50 stalled connections")
		}
		wstest.ConnectFrom(t, "127.0.0.2", sh.addr).Write([]byte("GET /echo HTTP/1.1\r\n"))
		time.Sleep(100 * time.Millisecond)
	}
	wstest.ConnectFrom(t, "127.0.0.3", sh.addr).Write([]byte("GET /echo HTTP/1.1\r\n"))
	in, _ := wstest.Dial(t, sh.addr, "/echo")
	in.Send("in")
	in.ExpectMessage(ws.OpText, []byte("in"))
	checkMetrics(t, sh.admin, checked,
		expect{name: "pushgate_handshakes_shed_total", label: "reason=per_source", min: 1}, // awaited above; listed as checked
		expect{name: "pushgate_handshakes_shed_total", label: "reason=full", min: 1},
	)

	// Presence, on a gateway that keeps it for "room": two clients join,
	// one leaves.
	pg := runGateway(t, proctest.FreeAddr(t), proctest.FreeAddr(t), "--presence", "room")
	stay, _ := wstest.Dial(t, pg.addr, "/ws?channels=room")
	stay.ExpectMsg("subscribed", "")
	stay.ExpectMsg("join", "")
	goer, _ := wstest.Dial(t, pg.addr, "/ws?channels=room")
	goer.ExpectMsg("subscribed", "")
	stay.ExpectMsg("join", "")
	goer.Write(wstest.Frame(true, 0, ws.OpClose, wstest.ClosePayload(1000, "")))
	stay.ExpectMsg("leave", "")
	// Five presence asks at once: four answered, the fifth refused.
	for range 5 {
		stay.Send(`{"op":"presence","channel":"room"}`)
	}
	for range 4 {
		stay.ExpectMsg("presence", "")
	}
	stay.ExpectMsg("error", "rate_limited")
	checkMetrics(t, pg.admin, checked,
		expect{name: "pushgate_presence_clients", want: 1},
		expect{name: "pushgate_presence_events_total", label: "event=join", want: 2},
		expect{name: "pushgate_presence_events_total", label: "event=leave", want: 1},
		expect{name: "pushgate_presence_asks_refused_total", label: "reason=rate", want: 1},
	)

	// An event stream: counted by transport, its events too (connected,
	// subscribed, one message), in the totals with the WebSocket's.
	stream, _, _ := openStream(t, pg.addr, "?channels=room")
	stream.ExpectMsg("subscribed", "")
	stay.ExpectMsg("join", "")
	if code, body := pg.post(t, "/api/publish", `{"channel":"room","data":1}`, ""); code != http.StatusOK {
		t.Fatalf("publish: %d %s", code, body)
	}
	stream.ExpectMsg("join", "") // its own
	stream.ExpectMsg("message", "")
	stay.ExpectMsg("message", "")
	checkMetrics(t, pg.admin, checked,
		expect{name: "pushgate_transport_connections", label: "transport=sse", want: 1},
		expect{name: "pushgate_transport_connections", label: "transport=websocket", want: 1},
		expect{name: "pushgate_connections", want: 2},
		expect{name: "pushgate_transport_messages_sent_total", label: "transport=sse", want: 4},
	)

	// Without proxies configured, their series are there, at 0 (the
	// session and gateway hook tests check them in use).
	var unused []expect
	for _, p := range metrics.ProxyNames {
		for _, r := range metrics.ProxyResults {
			unused = append(unused, expect{name: "pushgate_proxy_requests_total", label: "proxy=" + p + ",result=" + r})
		}
		unused = append(unused, expect{name: "pushgate_proxy_request_duration_seconds", label: "proxy=" + p},
			expect{name: "pushgate_proxy_circuit_open", label: "proxy=" + p})
	}
	unused = append(unused, expect{name: "pushgate_proxy_held_ops"}, expect{name: "pushgate_proxy_held_bytes"})
	// Nor webhooks (TestWebhooksEndToEnd checks them in use).
	for _, typ := range []string{"user_online", "user_offline", "channel_occupied", "channel_vacated", "other"} {
		unused = append(unused, expect{name: "pushgate_webhook_events_total", label: "type=" + typ})
	}
	unused = append(unused, expect{name: "pushgate_webhook_deliveries_total", label: "result=ok"},
		expect{name: "pushgate_webhook_deliveries_total", label: "result=error"},
		expect{name: "pushgate_webhook_delivery_duration_seconds"}, expect{name: "pushgate_webhook_queue_bytes"},
		expect{name: "pushgate_webhook_events_dropped_total"})
	checkMetrics(t, g.admin, checked, unused...)

	// Every pushgate metric the gateway exports was checked.
	for name := range scrape(t, g.admin) {
		if strings.HasPrefix(name, "pushgate_") && !checked[name] {
			t.Errorf("%s is exported but this test does not check it", name)
		}
	}
}
