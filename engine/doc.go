// Package engine is wsd's embeddable WebSocket server (RFC 6455) on gnet
// event loops.
//
// One event loop per CPU owns thousands of non-blocking sockets. It reads
// the HTTP upgrade and the WebSocket frames incrementally as bytes arrive,
// with no goroutine per connection and no per-connection timer: pings, idle
// timeouts, handshake and close deadlines live in a timing wheel per loop.
//
//	type echo struct{ engine.NopHandler }
//
//	func (echo) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) {
//		c.Write(op, p) // on the loop, no allocation; one write(2) per read
//	}
//
//	e, _ := engine.New(echo{}, engine.Options{Addrs: []string{"tcp://:8080"}})
//	go e.Run()
//	defer e.Shutdown(context.Background())
//
// Handler callbacks run on the connection's loop and must not block. From
// other goroutines use Conn.Send and Conn.Close, which queue work on the
// loop. gnet never appears in the API.
//
// Options.OnUpgrade sees each upgrade request on the loop; a check too slow
// for it (a password hash, a signature) calls Request.Defer and answers
// later from any goroutine with Pending.Accept or Pending.Reject, the
// connection's input held unread meanwhile.
//
// With Options.TLS the same loops serve wss:// with the standard library's
// crypto/tls: each TLS handshake runs in a short-lived goroutine, at most
// Options.MaxTLSHandshakes at once, and the loop then decrypts and
// encrypts the connection's records itself, so an open wss connection has
// no goroutine either; Conn.TLS and Conn.ClientCertificate describe its
// session.
package engine
