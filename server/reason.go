package server

import (
	"github.com/gobwas/ws"

	"github.com/pushgate/pushgate/wsproto"
)

// CloseReason says why a connection ended. Each reason has one close code
// and one metric label (pushgate_connections_closed_total{reason}).
type CloseReason uint8

// Close reasons.
const (
	ReasonPeerClosed       CloseReason = iota // the client sent a close frame
	ReasonPeerGone                            // the TCP connection ended without one
	ReasonProtocol                            // 1002: a protocol violation
	ReasonInvalidData                         // 1007: text that is not UTF-8, bad compressed data
	ReasonPolicy                              // 1008: refused by policy
	ReasonTooBig                              // 1009: a message over the limit
	ReasonInternal                            // 1011: a failure of the server
	ReasonSlowConsumer                        // 1013: the outbound queue overflowed
	ReasonHeartbeat                           // 1001: no answer to a ping
	ReasonShutdown                            // 1001: the server is draining
	ReasonTokenExpired                        // 4001: the connection's token expired
	ReasonRateLimited                         // 1008: messages over the message rate, again and again
	ReasonMessageTimeout                      // 1008: a message begun and not finished in time
	ReasonPartialBudget                       // 1013: partial messages hold the node's whole budget
	ReasonOverloaded                          // 1013: the client's ops pile up faster than they run
	ReasonDisconnected                        // 4002: the backend disconnected it (it may reconnect)
	ReasonDisconnectedHard                    // 4003: the backend disconnected it for good
	numReasons
)

var reasonInfo = [numReasons]struct {
	label string
	code  ws.StatusCode
}{
	ReasonPeerClosed:     {"client_close", wsproto.CloseNormal},
	ReasonPeerGone:       {"peer_gone", 0},
	ReasonProtocol:       {"protocol_error", wsproto.CloseProtocolError},
	ReasonInvalidData:    {"invalid_data", wsproto.CloseInvalidData},
	ReasonPolicy:         {"policy", wsproto.ClosePolicy},
	ReasonTooBig:         {"too_big", wsproto.CloseTooBig},
	ReasonInternal:       {"internal_error", wsproto.CloseInternal},
	ReasonSlowConsumer:   {"slow_consumer", wsproto.CloseTryAgainLater},
	ReasonHeartbeat:      {"heartbeat_timeout", wsproto.CloseGoingAway},
	ReasonShutdown:       {"shutdown", wsproto.CloseGoingAway},
	ReasonTokenExpired:   {"token_expired", wsproto.CloseTokenExpired},
	ReasonRateLimited:    {"rate_limited", wsproto.ClosePolicy},
	ReasonMessageTimeout: {"message_timeout", wsproto.ClosePolicy},
	ReasonPartialBudget:  {"partial_budget", wsproto.CloseTryAgainLater},
	ReasonOverloaded:     {"overloaded", wsproto.CloseTryAgainLater},

	ReasonDisconnected:     {"disconnected", wsproto.CloseDisconnected},
	ReasonDisconnectedHard: {"disconnected_no_reconnect", wsproto.CloseDisconnectedHard},
}

// String is the reason's metric label.
func (r CloseReason) String() string { return reasonInfo[r].label }

// Code is the close code sent for the reason (0 when none is sent).
func (r CloseReason) Code() ws.StatusCode { return reasonInfo[r].code }

// reasonFor maps a close code from the frame reader to a reason.
func reasonFor(code ws.StatusCode) CloseReason {
	switch code {
	case wsproto.CloseInvalidData:
		return ReasonInvalidData
	case wsproto.CloseTooBig:
		return ReasonTooBig
	case wsproto.ClosePolicy:
		return ReasonPolicy
	case wsproto.CloseInternal:
		return ReasonInternal
	}
	return ReasonProtocol
}
