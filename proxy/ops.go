package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/pushgate/pushgate/protocol"
)

// SubscribeRequest is the body POSTed to the subscribe proxy.
type SubscribeRequest struct {
	Client  string          `json:"client"`
	User    string          `json:"user"` // "" for an anonymous connection
	Channel string          `json:"channel"`
	Info    json.RawMessage `json:"info,omitempty"` // the connection's info, if any
}

// PublishRequest is the body POSTed to the publish proxy.
type PublishRequest struct {
	Client  string          `json:"client"`
	User    string          `json:"user"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
	// Granted says whether the connection's claims or --client-publish
	// allow the publish already: a backend that only checks or rewrites
	// data may refuse the others.
	Granted bool `json:"granted"`
}

// OpAnswer is the subscribe and publish proxies' 200 answer: {} allows,
// "error" refuses, and (publish) "data" replaces what subscribers get.
type OpAnswer struct {
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Data json.RawMessage `json:"data"`
}

// Verdict is the backend's decision on one op.
type Verdict struct {
	Refused bool
	Code    protocol.Code // of a refusal: the backend's, or forbidden
	Message string        // of a refusal, for the client
	Data    []byte        // a publish's replacement data; nil keeps the client's
}

// Ops asks the subscribe or the publish proxy about client ops, one call
// each, answered on a goroutine of its own.
type Ops struct{ c *Client }

// NewSubscriber returns the subscribe proxy for cfg. Its calls may be
// replayed: a subscribe is a question.
func NewSubscriber(cfg Config) (*Ops, error) {
	cfg.Name, cfg.Replayable, cfg.Parse = "subscribe", true, parseOp("not allowed to subscribe to this channel")
	c, err := New(cfg)
	return &Ops{c}, err
}

// NewPublisher returns the publish proxy for cfg. Its calls are never
// replayed once written: the backend may act on a publish.
func NewPublisher(cfg Config) (*Ops, error) {
	cfg.Name, cfg.Replayable, cfg.Parse = "publish", false, parseOp("the publish was refused")
	c, err := New(cfg)
	return &Ops{c}, err
}

// Client is the proxy's HTTP client.
func (o *Ops) Client() *Client { return o.c }

// Ask sends req (a SubscribeRequest or a PublishRequest) and hands the
// verdict, or the failure, to done on a goroutine of the client's;
// canceling ctx gives it up. It reports false, calling nothing, when the
// client is busy.
func (o *Ops) Ask(ctx context.Context, req any, done func(Verdict, error)) bool {
	body, err := json.Marshal(req)
	if err != nil {
		return false // the data is valid JSON, checked before
	}
	return o.c.Go(ctx, body, func(a Answer, err error) {
		if err != nil {
			done(Verdict{}, err)
			return
		}
		done(a.Value.(Verdict), nil)
	})
}

// parseOp reads an op answer: 200 {} or {"data"} or {"error"}, or a 403
// (with or without an error body), refused.
func parseOp(refused string) func(int, []byte) (any, error) {
	return func(status int, body []byte) (any, error) {
		switch status {
		case http.StatusOK:
		case http.StatusForbidden:
			return Verdict{Refused: true, Code: protocol.CodeForbidden, Message: message(body, refused)}, nil
		default:
			return nil, fmt.Errorf("status %d, want 200 or 403", status)
		}
		var a OpAnswer
		if err := json.Unmarshal(body, &a); err != nil {
			return nil, fmt.Errorf("not an op answer: %v", err)
		}
		if a.Error != nil {
			return Verdict{Refused: true, Code: code(a.Error.Code), Message: printable(a.Error.Message, refused)}, nil
		}
		if len(a.Data) > 0 && string(a.Data) != "null" {
			return Verdict{Data: a.Data}, nil
		}
		return Verdict{}, nil
	}
}

// code is the backend's error code if it is a code a client can switch
// on (1-32 of a-z 0-9 _), else forbidden.
func code(s string) protocol.Code {
	if len(s) == 0 || len(s) > 32 {
		return protocol.CodeForbidden
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return protocol.CodeForbidden
		}
	}
	return protocol.Code(s)
}
