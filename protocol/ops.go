package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Subprotocol is the WebSocket subprotocol of this protocol.
const Subprotocol = "pushgate.v1"

// Op names a client op.
type Op string

// Client ops.
const (
	OpSubscribe   Op = "subscribe"
	OpUnsubscribe Op = "unsubscribe"
	OpPublish     Op = "publish"
	OpRefresh     Op = "refresh"
	OpPresence    Op = "presence"
	OpPong        Op = "pong"
)

// Command is any client op; the fields an op does not use are ignored.
type Command struct {
	Op      Op              `json:"op"`
	Channel string          `json:"channel"`
	Since   *uint64         `json:"since"`
	Epoch   string          `json:"epoch"`
	Data    json.RawMessage `json:"data"`
	Token   string          `json:"token"`
}

// ParseCommand decodes a client op. Data, when present, is a slice of
// payload: the caller copies what it keeps.
func ParseCommand(payload []byte) (Command, error) {
	var c Command
	err := json.Unmarshal(payload, &c)
	return c, err
}

// MaxCommandOps bounds the ops of one CommandRequest.
const MaxCommandOps = 100

// CommandRequest is the body of POST /events/commands: ops for the event
// stream named by its client id, with the key its connected event gave.
// Each op is what a WebSocket client would send as a message.
type CommandRequest struct {
	Client string            `json:"client"`
	Key    string            `json:"key"`
	Ops    []json.RawMessage `json:"ops"`
}

// ParseCommandRequest decodes and checks a POST /events/commands body.
func ParseCommandRequest(body []byte) (CommandRequest, error) {
	var r CommandRequest
	if err := json.Unmarshal(body, &r); err != nil {
		return r, errors.New("malformed JSON: want {\"client\":…,\"key\":…,\"ops\":[…]}")
	}
	switch {
	case r.Client == "" || r.Key == "":
		return r, errors.New("client and key are required: the stream's connected event gives them")
	case len(r.Ops) == 0:
		return r, errors.New("ops is empty")
	case len(r.Ops) > MaxCommandOps:
		return r, fmt.Errorf("at most %d ops a request", MaxCommandOps)
	}
	return r, nil
}
