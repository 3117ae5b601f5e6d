// Command gorilla is the benchmark's github.com/gorilla/websocket peer server.
//
// It is written the way gorilla's own examples are: net/http upgrades with an
// Upgrader of 1 KiB read and write buffers whose write buffers come from a
// sync.Pool; echo mode is examples/echo (one goroutine reads a message and
// writes it back); broadcast mode is examples/chat (a reader goroutine and a
// writer goroutine per connection, one hub goroutine, a buffered send channel
// of 256 per client, a client whose channel is full is dropped). It leaves out
// the chat example's ping ticker and pong read deadline: no peer server closes
// an idle connection, and none sends pings of its own.
//
// With -compress the Upgrader accepts permessage-deflate (EnableCompression:
// gorilla answers server_no_context_takeover and client_no_context_takeover
// and compresses every data message at level 1 with pooled writers); a
// PreparedMessage then compresses a broadcast once for every connection.
//
//	gorilla -addr 127.0.0.1:8081 -mode echo|broadcast [-debug-addr 127.0.0.1:9081] [-compress]
package main

import (
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/bench/servers/internal/peer"
)

const (
	// writeWait is the time allowed to write to a peer (the chat example's).
	writeWait = 10 * time.Second
	// sendQueue is the capacity of a client's send channel (the chat
	// example's); a client whose channel is full is dropped.
	sendQueue = 256
)

var upgrader = websocket.Upgrader{
	ReadBufferSize:  1024,
	WriteBufferSize: 1024,
	// With a pool, a connection holds a write buffer only while it writes.
	WriteBufferPool: &sync.Pool{},
	// A benchmark peer: the load generator's origin does not matter.
	CheckOrigin: func(*http.Request) bool { return true },
}

func main() {
	cfg := peer.Setup("gorilla")
	upgrader.EnableCompression = cfg.Compress

	mux := http.NewServeMux()
	switch cfg.Mode {
	case peer.ModeEcho:
		mux.HandleFunc(peer.Path, serveEcho)
	case peer.ModeBroadcast:
		h := newHub()
		go h.run()
		mux.HandleFunc(peer.Path, func(w http.ResponseWriter, r *http.Request) { serveBroadcast(h, w, r) })
	}

	peer.ServeHTTP("gorilla", cfg, mux)
}

// serveEcho upgrades and hands the connection to its one goroutine; the
// handler returns so that net/http's per-request memory can be collected.
func serveEcho(w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered with an HTTP error
	}
	go echo(conn)
}

// echo is gorilla's examples/echo loop: ReadMessage, WriteMessage (a server
// without compression writes a message as one frame, header and payload in
// one writev).
func echo(conn *websocket.Conn) {
	defer conn.Close()
	conn.SetReadLimit(peer.MaxMessageSize)
	for {
		mt, msg, err := conn.ReadMessage()
		if err != nil {
			return
		}
		if err := conn.WriteMessage(mt, msg); err != nil {
			return
		}
	}
}

// hub is the chat example's: it owns the set of clients and is the only one
// to touch it, through channels.
type hub struct {
	clients    map[*client]struct{}
	broadcast  chan *websocket.PreparedMessage
	register   chan *client
	unregister chan *client
}

func newHub() *hub {
	return &hub{
		clients:    make(map[*client]struct{}),
		broadcast:  make(chan *websocket.PreparedMessage),
		register:   make(chan *client),
		unregister: make(chan *client),
	}
}

func (h *hub) run() {
	for {
		select {
		case c := <-h.register:
			h.clients[c] = struct{}{}
		case c := <-h.unregister:
			if _, ok := h.clients[c]; ok {
				delete(h.clients, c)
				close(c.send)
			}
		case m := <-h.broadcast:
			for c := range h.clients {
				select {
				case c.send <- m:
				default: // too slow: dropped, as in the chat example
					close(c.send)
					delete(h.clients, c)
				}
			}
		}
	}
}

// client is one connection in broadcast mode.
type client struct {
	hub  *hub
	conn *websocket.Conn
	send chan *websocket.PreparedMessage
}

func serveBroadcast(h *hub, w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &client{hub: h, conn: conn, send: make(chan *websocket.PreparedMessage, sendQueue)}
	h.register <- c
	// All work in new goroutines, so that the caller's memory can be
	// collected (the chat example's words).
	go c.writePump()
	go c.readPump()
}

// readPump reads messages and hands each to the hub as a PreparedMessage:
// the frame is encoded once, on the first write, and the same bytes go to
// every client.
func (c *client) readPump() {
	defer func() {
		c.hub.unregister <- c
		_ = c.conn.Close()
	}()
	c.conn.SetReadLimit(peer.MaxMessageSize)
	for {
		mt, msg, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		pm, err := websocket.NewPreparedMessage(mt, msg)
		if err != nil {
			return
		}
		c.hub.broadcast <- pm
	}
}

// writePump writes what the hub queued. Like the chat example it drains the
// queue on each wake-up under one write deadline; unlike it, it does not join
// queued messages into one newline-separated message, which would change
// what the client receives: every message stays its own frame with its own
// opcode.
func (c *client) writePump() {
	defer c.conn.Close()
	for {
		m, ok := <-c.send
		_ = c.conn.SetWriteDeadline(time.Now().Add(writeWait))
		if !ok {
			// The hub closed the channel.
			_ = c.conn.WriteMessage(websocket.CloseMessage, []byte{})
			return
		}
		if err := c.conn.WritePreparedMessage(m); err != nil {
			return
		}
		// Only this goroutine receives, so the n queued messages are there
		// even if the hub has closed the channel meanwhile.
		for n := len(c.send); n > 0; n-- {
			if err := c.conn.WritePreparedMessage(<-c.send); err != nil {
				return
			}
		}
	}
}
