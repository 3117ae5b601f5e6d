// Command nbio is the benchmark's github.com/lesismal/nbio peer server.
//
// It is nbio's non-blocking model, as in nbio's websocket_1m and
// go-websocket-benchmark servers: an nbhttp.Engine with
// IOMod: nbhttp.IOModNonBlocking reads every connection from its epoll
// pollers (no goroutine per connection) and runs the handlers of a connection
// one after the other on its task pool; websocket.NewUpgrader upgrades on
// /ws, and payload buffers go back to nbio's pool after each OnMessage
// (ReleaseWebsocketPayload). Echo writes back from OnMessage with
// WriteMessage, which never blocks: what the socket does not take at once,
// nbio keeps and writes when it can.
//
// Broadcast: nbio v1.6.7 has no broadcaster, so, as its examples do, a
// mutex-protected set of connections and a loop of WriteMessage (which
// encodes the frame for each receiver).
//
// Two of nbio's defaults are changed for the common contract: the upgrader's
// KeepaliveTime (a 120 s read deadline renewed by each message, which would
// close an idle connection) is turned off, and MessageLengthLimit (4 MiB) is
// raised to 16 MiB.
//
// With -tls-cert and -tls-key it serves wss with nbio's TLS (tls.go).
//
//	nbio -addr 127.0.0.1:8084 -mode echo|broadcast [-debug-addr 127.0.0.1:9084] [-tls-cert cert.pem -tls-key key.pem]
package main

import (
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/lesismal/nbio/logging"
	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/wsdproject/wsd/bench/servers/internal/peer"
)

func main() {
	cfg := peer.Setup("nbio")
	// nbio logs its start and stop at info level to stdout; keep errors only,
	// on stderr.
	logging.Output = os.Stderr
	logging.SetLevel(logging.LevelError)

	u := websocket.NewUpgrader()
	u.KeepaliveTime = 0
	u.MessageLengthLimit = peer.MaxMessageSize
	u.CheckOrigin = func(*http.Request) bool { return true } // a benchmark peer
	switch cfg.Mode {
	case peer.ModeEcho:
		u.OnMessage(func(c *websocket.Conn, mt websocket.MessageType, data []byte) {
			_ = c.WriteMessage(mt, data)
		})
	case peer.ModeBroadcast:
		r := &room{conns: make(map[*websocket.Conn]struct{})}
		u.OnOpen(r.join)
		u.OnClose(func(c *websocket.Conn, _ error) { r.leave(c) })
		u.OnMessage(r.broadcast)
	}

	mux := http.NewServeMux()
	mux.HandleFunc(peer.Path, func(w http.ResponseWriter, r *http.Request) {
		_, _ = u.Upgrade(w, r, nil) // on error Upgrade has answered with an HTTP error
	})

	var ln net.Listener // the engine's listener, to report the bound address
	conf := nbhttp.Config{
		Network:                 "tcp",
		Addrs:                   []string{cfg.Addr},
		Handler:                 mux,
		IOMod:                   nbhttp.IOModNonBlocking,
		ReleaseWebsocketPayload: true,
		Listen: func(network, addr string) (net.Listener, error) {
			l, err := net.Listen(network, addr)
			ln = l
			return l, err
		},
	}
	if cfg.TLS.On() { // nbio's own TLS, on its pollers (tls.go)
		conf.Addrs, conf.AddrsTLS, conf.TLSConfig = nil, conf.Addrs, tlsConfig(cfg)
	}
	engine := nbhttp.NewEngine(conf)
	if err := engine.Start(); err != nil {
		peer.Fatal("nbio", err)
	}
	peer.Serve("nbio", cfg, ln, engine.Stop)
}

// room is the one broadcast room.
type room struct {
	mu    sync.RWMutex
	conns map[*websocket.Conn]struct{}
}

func (r *room) join(c *websocket.Conn) {
	r.mu.Lock()
	r.conns[c] = struct{}{}
	r.mu.Unlock()
}

func (r *room) leave(c *websocket.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
}

// broadcast writes the message to every connection, the sender included;
// WriteMessage does not block, so the read lock is held only while nbio
// copies the frame into each connection's socket or queue.
func (r *room) broadcast(_ *websocket.Conn, mt websocket.MessageType, data []byte) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for c := range r.conns {
		_ = c.WriteMessage(mt, data)
	}
}
