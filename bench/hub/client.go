package hub

import (
	"time"

	"github.com/gorilla/websocket"
)

// The chat example's timings and limits.
const (
	writeWait      = 10 * time.Second
	pongWait       = 60 * time.Second
	pingPeriod     = pongWait * 9 / 10 // 54s, so a ping lands before pongWait ends
	maxMessageSize = 512
	sendQueue      = 256
)

// client is one connection with its two pumps, as in the chat example.
type client struct {
	hub     *Hub
	conn    *websocket.Conn
	channel string
	// send is closed by the hub goroutine alone, when it drops the client.
	send chan []byte
}

// readPump discards what the client sends; it is there to process pongs and
// to notice the connection going away.
func (c *client) readPump() {
	defer c.hub.pumps.Done()
	defer func() {
		select {
		case c.hub.unregister <- c:
		case <-c.hub.done:
		}
		c.conn.Close()
	}()
	c.conn.SetReadLimit(maxMessageSize)
	c.conn.SetReadDeadline(time.Now().Add(pongWait))
	c.conn.SetPongHandler(func(string) error {
		return c.conn.SetReadDeadline(time.Now().Add(pongWait))
	})
	for {
		if _, _, err := c.conn.ReadMessage(); err != nil {
			return
		}
	}
}

// writePump writes queued messages and pings. Unlike the chat example it
// writes each queued message as its own WebSocket message: the example joins
// whatever is queued into one frame with newlines, which changes message
// boundaries and would make the comparison with pushgate unfair.
func (c *client) writePump() {
	defer c.hub.pumps.Done()
	ticker := time.NewTicker(pingPeriod)
	defer func() {
		ticker.Stop()
		c.conn.Close()
	}()
	for {
		select {
		case msg, ok := <-c.send:
			c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if !ok {
				c.conn.WriteMessage(websocket.CloseMessage, []byte{})
				return
			}
			if err := c.conn.WriteMessage(websocket.TextMessage, msg); err != nil {
				return
			}
		case <-ticker.C:
			c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		case <-c.hub.done:
			return
		}
	}
}
