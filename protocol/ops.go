package protocol

import "encoding/json"

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
