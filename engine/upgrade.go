package engine

import (
	"bytes"
	"io"
	"net/http"
	"strconv"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
)

// upgrader runs HTTP upgrades for one event loop. Upgrades on a loop happen
// one at a time, so its scratch state is reused without locks.
type upgrader struct {
	l      *loop
	ws     ws.Upgrader
	in     bytes.Reader // exactly the request's header bytes
	out    []byte       // the response gobwas writes, sent with one Write
	rw     io.ReadWriter
	req    Request
	reject *Response
}

type capture struct{ u *upgrader }

func (w capture) Write(p []byte) (int, error) {
	w.u.out = append(w.u.out, p...)
	return len(p), nil
}

func newUpgrader(l *loop) *upgrader {
	u := &upgrader{l: l}
	u.rw = struct {
		io.Reader
		io.Writer
	}{&u.in, capture{u}}
	u.ws.ReadBufferSize = l.e.opts.MaxHeaderBytes // gobwas reads lines through a pooled bufio of this size
	u.ws.WriteBufferSize = 512
	if prefs := l.e.opts.Subprotocols; len(prefs) > 0 {
		u.ws.ProtocolCustom = func(offer []byte) (string, bool) {
			return selectProtocol(prefs, offer), true
		}
	}
	u.ws.OnBeforeUpgrade = func() (ws.HandshakeHeader, error) {
		if hook := l.e.opts.OnUpgrade; hook != nil {
			if resp := hook(&u.req); resp != nil {
				u.reject = resp
				return nil, errRejected
			}
		}
		return nil, nil
	}
	return u
}

var errRejected = ws.RejectConnectionError(ws.RejectionStatus(http.StatusForbidden))

// selectProtocol returns the first of prefs (server preference order) that
// appears in the comma-separated offer, or "".
func selectProtocol(prefs []string, offer []byte) string {
	for _, p := range prefs {
		for rest := offer; len(rest) > 0; {
			var tok []byte
			tok, rest, _ = bytes.Cut(rest, []byte{','})
			if string(bytes.TrimSpace(tok)) == p {
				return p
			}
		}
	}
	return ""
}

// handshake reads the upgrade request of c from its buffered bytes. It
// returns with c still in stateHandshake when the request is incomplete, in
// stateOpen after a successful upgrade (the bytes after the request are
// left buffered), or in stateClosing after an HTTP answer.
func (l *loop) handshake(c *Conn) gnet.Action {
	gc := c.gc
	max := l.e.opts.MaxHeaderBytes
	n := gc.InboundBuffered()
	buf, err := gc.Peek(min(n, max))
	if err != nil {
		return gnet.Close
	}
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		if n >= max {
			l.answer(c, &Response{Status: http.StatusRequestHeaderFieldsTooLarge, Body: []byte("request header too large\n")})
		}
		return gnet.None
	}
	head := buf[:end+4]
	u := l.up
	line, headers, _ := bytes.Cut(head, crlf)
	method, rest, ok1 := bytes.Cut(line, []byte{' '})
	uri, proto, ok2 := bytes.Cut(rest, []byte{' '})
	if !ok1 || !ok2 || len(uri) == 0 || !bytes.HasPrefix(proto, []byte("HTTP/")) {
		l.answer(c, &Response{Status: http.StatusBadRequest, Body: []byte("malformed request line\n")})
		return gnet.None
	}
	u.req = Request{method: method, uri: uri, head: headers[:len(headers)-2], remote: c.remote}
	u.reject = nil
	defer func() { u.req = Request{} }()

	upgrade, hasUpgrade := headerValue(u.req.head, "Upgrade")
	if !hasUpgrade {
		l.answerPlain(c, &u.req)
		return gnet.None
	}
	if !hasToken(upgrade, "websocket") {
		l.answer(c, &Response{Status: http.StatusBadRequest, Body: []byte("Upgrade header must be websocket\n")})
		return gnet.None
	}
	origin, _ := headerValue(u.req.head, "Origin")
	if !l.e.opts.originAllowed(origin) {
		l.answer(c, &Response{Status: http.StatusForbidden, Body: []byte("origin not allowed\n")})
		return gnet.None
	}

	u.in.Reset(head)
	u.out = u.out[:0]
	hs, err := u.ws.Upgrade(u.rw)
	if err != nil {
		if u.reject != nil {
			l.answer(c, u.reject)
		} else {
			_, _ = gc.Write(u.out)
			c.linger(true)
		}
		return gnet.None
	}
	if _, err := gc.Write(u.out); err != nil {
		return gnet.None // gnet has closed the connection
	}
	c.proto = hs.Protocol
	o := &l.e.opts
	if o.KeepPath {
		c.path = string(uri)
	}
	if o.KeepHeaders {
		c.header = bytes.Clone(u.req.head)
	}
	c.ctx = u.req.Context
	_, _ = gc.Discard(len(head)) // head may be a pooled copy: done with it only now
	l.open(c)
	return gnet.None
}

// answerPlain answers a request that is not a WebSocket upgrade.
func (l *loop) answerPlain(c *Conn, req *Request) {
	if h := l.e.opts.HTTPHandler; h != nil {
		if resp := h(req); resp != nil {
			l.answer(c, resp)
			return
		}
	}
	if m := string(req.method); m != http.MethodGet && m != http.MethodHead {
		l.answer(c, &Response{Status: http.StatusMethodNotAllowed, Header: http.Header{"Allow": {"GET"}}, Body: []byte("method not allowed\n")})
		return
	}
	l.answer(c, &Response{
		Status: http.StatusUpgradeRequired,
		Header: http.Header{"Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}},
		Body:   []byte("this is a WebSocket endpoint: connect with a WebSocket client\n"),
	})
}

// answer writes an HTTP response and lingers until the peer closes.
func (l *loop) answer(c *Conn, r *Response) {
	status := r.Status
	if status == 0 {
		status = http.StatusOK
	}
	b := append(l.wbuf[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\nConnection: close\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(r.Body)), 10)
	b = append(b, "\r\n"...)
	for k, vs := range r.Header {
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "\r\n"...)
	if string(l.up.req.method) != http.MethodHead {
		b = append(b, r.Body...)
	}
	l.wbuf = b[:0]
	if _, err := c.gc.Write(b); err != nil {
		return
	}
	c.linger(true)
}

// hasToken reports whether the comma-separated header value v contains
// token, case-insensitively.
func hasToken(v, token string) bool {
	for rest := []byte(v); len(rest) > 0; {
		var tok []byte
		tok, rest, _ = bytes.Cut(rest, []byte{','})
		if bytes.EqualFold(bytes.TrimSpace(tok), []byte(token)) {
			return true
		}
	}
	return false
}
