package hub

import (
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/gorilla/websocket"
	"github.com/pushgate/pushgate/bench/refserver"
)

// defaultChannel is used when /ws or /publish names no channel.
const defaultChannel = "bench"

// upgrader is the chat example's, accepting any origin because the harness
// connects from its own process.
var upgrader = websocket.Upgrader{
	ReadBufferSize:  1024,
	WriteBufferSize: 1024,
	CheckOrigin:     func(*http.Request) bool { return true },
}

// publication is one message for every client of a room.
type publication struct {
	channel string
	data    []byte
}

// Hub owns the rooms. Only its run goroutine touches them; the HTTP handlers
// and the pumps talk to it through channels, as in the chat example.
type Hub struct {
	register   chan *client
	unregister chan *client
	broadcast  chan publication
	done       chan struct{} // closed by Close: every goroutine stops
	stopped    chan struct{} // closed when run has returned
	closeOnce  sync.Once

	// clients is the number of registered clients, kept by run so that
	// Clients needs no trip through the hub goroutine.
	clients atomic.Int64

	// mu guards closed, so that no pump is added to pumps once Close
	// has started waiting for them.
	mu     sync.Mutex
	closed bool
	pumps  sync.WaitGroup
}

// New starts the hub goroutine; Close stops it.
func New() *Hub {
	h := &Hub{
		register:   make(chan *client),
		unregister: make(chan *client),
		broadcast:  make(chan publication),
		done:       make(chan struct{}),
		stopped:    make(chan struct{}),
	}
	go h.run()
	return h
}

// Handler serves /ws, /publish, /metrics, /healthz and /debug/pprof/.
// refserver_clients counts the clients the hub goroutine has registered.
func (h *Hub) Handler() http.Handler {
	return refserver.Routes(h.serveWS, h.servePublish, h.Clients)
}

// Clients reports how many clients are registered.
func (h *Hub) Clients() int { return int(h.clients.Load()) }

// Close stops the hub goroutine, closes every client connection and waits
// for all pumps to return. It is safe to call more than once.
func (h *Hub) Close() {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		close(h.done)
		<-h.stopped
		h.pumps.Wait()
	})
}

// run is the chat example's hub loop, with rooms keyed by channel.
func (h *Hub) run() {
	defer close(h.stopped)
	rooms := make(map[string]map[*client]struct{})
	// live holds every client whose readPump has not unregistered yet,
	// including those dropped from their room as slow, so that stopping
	// closes them all instead of waiting out a blocked write.
	live := make(map[*client]struct{})
	drop := func(c *client) {
		room := rooms[c.channel]
		if _, ok := room[c]; !ok {
			return // already dropped as slow
		}
		delete(room, c)
		if len(room) == 0 {
			delete(rooms, c.channel)
		}
		close(c.send)
		h.clients.Add(-1)
	}
	for {
		select {
		case c := <-h.register:
			room := rooms[c.channel]
			if room == nil {
				room = make(map[*client]struct{})
				rooms[c.channel] = room
			}
			room[c] = struct{}{}
			live[c] = struct{}{}
			h.clients.Add(1)
		case c := <-h.unregister:
			drop(c)
			delete(live, c)
		case p := <-h.broadcast:
			for c := range rooms[p.channel] {
				select {
				case c.send <- p.data:
				default:
					// The client's queue is full: drop it, as the
					// example does. Its writePump sees send closed.
					drop(c)
				}
			}
		case <-h.done:
			for c := range live {
				c.conn.Close()
			}
			return
		}
	}
}

// serveWS upgrades the request and registers a client for the channel named
// by the query.
func (h *Hub) serveWS(w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered the request
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		conn.Close()
		return
	}
	h.pumps.Add(2)
	h.mu.Unlock()

	c := &client{
		hub:     h,
		conn:    conn,
		channel: channelOf(r),
		send:    make(chan []byte, sendQueue),
	}
	select {
	case h.register <- c:
	case <-h.done:
		conn.Close()
		h.pumps.Add(-2)
		return
	}
	go c.writePump()
	go c.readPump()
}

// servePublish hands the body to the hub and answers without waiting for
// delivery, as a fire-and-forget publish in the common design would.
func (h *Hub) servePublish(w http.ResponseWriter, r *http.Request) {
	body, ok := refserver.ReadPublish(w, r)
	if !ok {
		return
	}
	select {
	case h.broadcast <- publication{channel: channelOf(r), data: body}:
		w.WriteHeader(http.StatusNoContent)
	case <-h.done:
		http.Error(w, "hub closed", http.StatusServiceUnavailable)
	}
}

func channelOf(r *http.Request) string {
	if ch := r.URL.Query().Get("channel"); ch != "" {
		return ch
	}
	return defaultChannel
}
