// Command gws is the benchmark's github.com/lxzan/gws peer server.
//
// It follows gws' README "Best Practice": net/http upgrades with
// gws.NewUpgrader, and each connection's ReadLoop runs in a goroutine of its
// own so that the handler returns ("Blocking prevents the context from being
// GC"). Messages of a connection are handled one after the other
// (ParallelEnabled: false), with gws' default 4 KiB read buffer and no
// compression unless -compress: then permessage-deflate with gws' defaults
// (level 1, 32 pooled compressors, messages of 512 bytes or more), no
// context takeover either way. Echo writes back from OnMessage with
// WriteMessage.
//
// Broadcast: the connections are in a gws.ConcurrentMap (gws' own sharded,
// mutex-protected map, which its chatroom and push examples keep their
// sockets in); each message becomes one gws.Broadcaster, which encodes the
// frame once and queues it on every connection's write queue (gws runs a
// connection's queued writes in a goroutine it starts when there is work);
// with compression it also compresses the message once, for every
// connection that negotiated it.
//
//	gws -addr 127.0.0.1:8083 -mode echo|broadcast [-debug-addr 127.0.0.1:9083] [-compress]
package main

import (
	"net/http"

	"github.com/lxzan/gws"

	"github.com/wsdproject/wsd/bench/servers/internal/peer"
)

func main() {
	cfg := peer.Setup("gws")

	h := &handler{broadcast: cfg.Mode == peer.ModeBroadcast}
	if h.broadcast {
		h.sockets = gws.NewConcurrentMap[*gws.Conn, struct{}]()
	}
	upgrader := gws.NewUpgrader(h, &gws.ServerOption{
		ParallelEnabled:     false,
		ReadMaxPayloadSize:  peer.MaxMessageSize,
		WriteMaxPayloadSize: peer.MaxMessageSize,
		PermessageDeflate:   gws.PermessageDeflate{Enabled: cfg.Compress},
	})

	mux := http.NewServeMux()
	mux.HandleFunc(peer.Path, func(w http.ResponseWriter, r *http.Request) {
		socket, err := upgrader.Upgrade(w, r)
		if err != nil {
			return // Upgrade has answered with an HTTP error
		}
		go socket.ReadLoop()
	})

	peer.ServeHTTP("gws", cfg, mux)
}

// handler is the gws.Event of every connection.
type handler struct {
	broadcast bool
	sockets   *gws.ConcurrentMap[*gws.Conn, struct{}] // broadcast mode only
}

func (h *handler) OnOpen(socket *gws.Conn) {
	if h.broadcast {
		h.sockets.Store(socket, struct{}{})
	}
}

func (h *handler) OnClose(socket *gws.Conn, _ error) {
	if h.broadcast {
		h.sockets.Delete(socket)
	}
}

// OnPing answers with the ping's payload, as RFC 6455 asks (gws'
// BuiltinEventHandler answers with an empty pong).
func (h *handler) OnPing(socket *gws.Conn, payload []byte) {
	_ = socket.WritePong(payload)
}

func (h *handler) OnPong(*gws.Conn, []byte) {}

func (h *handler) OnMessage(socket *gws.Conn, message *gws.Message) {
	defer message.Close()
	if !h.broadcast {
		_ = socket.WriteMessage(message.Opcode, message.Bytes())
		return
	}
	// The Broadcaster encodes the frame on its first Broadcast call, so the
	// message's buffer can go back to gws' pool once the loop is done
	// (without compression a queued write does not read the payload again).
	b := gws.NewBroadcaster(message.Opcode, message.Bytes())
	h.sockets.Range(func(c *gws.Conn, _ struct{}) bool {
		_ = b.Broadcast(c)
		return true
	})
	_ = b.Close()
}
