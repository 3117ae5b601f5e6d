// Command gobwas is the benchmark's github.com/gobwas/ws peer server.
//
// It accepts on a net.Listener and gives each connection one goroutine, which
// does the zero-copy ws.Upgrade and then reads messages with
// wsutil.ReadClientData (which also answers pings and close frames).
//
// Reads go through a bufio.Reader of ws.DefaultServerReadBufferSize (4 KiB,
// the size gobwas reads a handshake with): wsutil reads a frame header in two
// small reads and the mask separately, so an unbuffered net.Conn would cost
// three read syscalls per message.
//
// Every frame the server sends is encoded whole (ws.WriteFrame into a pooled
// buffer) and written with one conn.Write, as gobwas' chat example
// (ws-examples) does for its broadcasts and as its own ControlHandler does
// ("one syscall instead of two"); wsutil.WriteServerMessage on a bare conn
// would write the header and the payload separately.
//
// Broadcast: a mutex-protected set of connections, written from a snapshot,
// and a write mutex per connection. The goroutine that read a message writes
// the one encoded frame to every connection in turn. We chose the write mutex over a writer goroutine and channel per
// connection because it keeps gobwas at one goroutine (and one stack) per
// connection, which is what gobwas is built for, and it writes the frame
// encoded once without a queue in between. Its cost is that a receiver whose
// socket buffer is full holds up the sender; a broadcast write therefore has a
// 10 s deadline (gorilla's chat example's writeWait), after which that
// receiver is closed.
//
//	gobwas -addr 127.0.0.1:8082 -mode echo|broadcast [-debug-addr 127.0.0.1:9082]
package main

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/wsdproject/wsd/bench/servers/internal/peer"
)

// writeWait bounds one broadcast write to one receiver.
const writeWait = 10 * time.Second

// upgrader rejects every path but /ws with a 404.
var upgrader = ws.Upgrader{
	OnRequest: func(uri []byte) error {
		if !peer.IsPath(string(uri)) {
			return ws.RejectConnectionError(ws.RejectionStatus(404), ws.RejectionReason("not found"))
		}
		return nil
	},
}

func main() {
	cfg := peer.Setup("gobwas")
	// wsutil reads whole messages; this bounds them (no limit by default).
	wsutil.SetMaxMessageSize(peer.MaxMessageSize)

	ln := peer.Listen("gobwas", cfg) // crypto/tls with -tls-cert
	var r *room
	if cfg.Mode == peer.ModeBroadcast {
		r = newRoom()
	}
	go accept(ln, r)
	peer.Serve("gobwas", cfg, ln, func() { _ = ln.Close() })
}

func accept(ln net.Listener, r *room) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond) // e.g. EMFILE: try again
			continue
		}
		go serve(nc, r)
	}
}

// conn is one upgraded connection. Reads are buffered and only its own
// goroutine makes them; writes come from any goroutine (broadcasts, and the
// control replies wsutil writes) and are whole frames, serialized by mu.
type conn struct {
	net.Conn
	br *bufio.Reader
	mu sync.Mutex
}

func (c *conn) Read(p []byte) (int, error) { return c.br.Read(p) }

// Write writes p, one or more whole frames, at once.
func (c *conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Conn.Write(p)
}

// writeFrame writes a broadcast frame within writeWait; a receiver that could
// not take it is closed, since part of a frame may have gone out.
func (c *conn) writeFrame(frame []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.Conn.SetWriteDeadline(time.Now().Add(writeWait))
	if _, err := c.Conn.Write(frame); err != nil {
		_ = c.Conn.Close()
	}
}

// serve is the connection's goroutine: upgrade, then read until an error.
func serve(nc net.Conn, r *room) {
	defer nc.Close()
	if _, err := upgrader.Upgrade(nc); err != nil {
		return // Upgrade has answered with an HTTP error
	}
	c := &conn{Conn: nc, br: bufio.NewReaderSize(nc, ws.DefaultServerReadBufferSize)}
	if r != nil {
		r.join(c)
		defer r.leave(c)
	}
	for {
		msg, op, err := wsutil.ReadClientData(c)
		if err != nil {
			return
		}
		buf := encode(op, msg)
		if r == nil {
			_, err = c.Write(buf.Bytes())
		} else {
			r.broadcast(buf.Bytes())
		}
		release(buf)
		if err != nil {
			return
		}
	}
}

// framePool holds the buffers frames are encoded in.
var framePool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledFrame: a buffer grown past it (by a big message) is left to the GC.
const maxPooledFrame = 64 << 10

// encode encodes a final, unmasked frame of payload p.
func encode(op ws.OpCode, p []byte) *bytes.Buffer {
	buf := framePool.Get().(*bytes.Buffer)
	buf.Reset()
	_ = ws.WriteFrame(buf, ws.NewFrame(op, true, p)) // a bytes.Buffer does not fail
	return buf
}

func release(buf *bytes.Buffer) {
	if buf.Cap() <= maxPooledFrame {
		framePool.Put(buf)
	}
}

// room is the one broadcast room: a mutex-protected set, and a snapshot of
// it that broadcasts write from, so that no lock is held while they write.
// The snapshot is rebuilt only by the first broadcast after the set changed:
// joining and leaving stay O(1), and a broadcast in a stable room allocates
// nothing.
type room struct {
	mu    sync.Mutex
	conns map[*conn]struct{}
	snap  []*conn // nil once conns has changed
}

func newRoom() *room { return &room{conns: make(map[*conn]struct{})} }

func (r *room) join(c *conn) {
	r.mu.Lock()
	r.conns[c] = struct{}{}
	r.snap = nil
	r.mu.Unlock()
}

func (r *room) leave(c *conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.snap = nil
	r.mu.Unlock()
}

func (r *room) snapshot() []*conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.snap == nil {
		r.snap = make([]*conn, 0, len(r.conns))
		for c := range r.conns {
			r.snap = append(r.snap, c)
		}
	}
	return r.snap
}

// broadcast writes one encoded frame to every connection, the sender
// included.
func (r *room) broadcast(frame []byte) {
	for _, c := range r.snapshot() {
		c.writeFrame(frame)
	}
}
