package engine

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/wsdproject/wsd/codec"
)

// upgrader runs HTTP upgrades for one event loop. Upgrades on a loop happen
// one at a time, so its scratch state is reused without locks. It works on
// bytes only; loop.handshake does the socket I/O.
type upgrader struct {
	o       *Options
	ws      ws.Upgrader
	in      bytes.Reader // exactly the request's header bytes
	out     []byte       // the response to send, in one Write
	rw      io.ReadWriter
	req     Request
	reject  *Response
	deflate codec.Deflate // what the upgrade negotiated
	tls     recordLayer   // the TLS of the connection being upgraded, for Request.TLS; nil for ws

	// Deferred upgrades (upgrade_defer.go): the connection being upgraded,
	// the Pending its OnUpgrade made, and the answer being applied.
	conn             *Conn
	pending, resumed *Pending

	searched int64 // bytes searched for the end of a request, ever (tests check it stays linear)
}

// outcome is what process made of the buffered bytes.
type outcome uint8

const (
	needMore outcome = iota // no complete request yet: wait for more bytes
	upgraded                // out holds the 101; the request was headLen bytes
	answered                // out holds an HTTP response; close after sending it
	deferred                // OnUpgrade deferred its answer (Request.Defer): hold the request
)

type capture struct{ u *upgrader }

func (w capture) Write(p []byte) (int, error) {
	w.u.out = append(w.u.out, p...)
	return len(p), nil
}

func newUpgrader(o *Options) *upgrader {
	u := &upgrader{o: o}
	u.rw = struct {
		io.Reader
		io.Writer
	}{&u.in, capture{u}}
	u.ws.ReadBufferSize = o.MaxHeaderBytes // gobwas reads lines through a pooled bufio of this size
	u.ws.WriteBufferSize = 512
	if prefs := o.Subprotocols; len(prefs) > 0 {
		u.ws.ProtocolCustom = func(offer []byte) (string, bool) {
			return selectProtocol(prefs, offer), true
		}
	}
	u.ws.OnBeforeUpgrade = func() (ws.HandshakeHeader, error) {
		if p := u.resumed; p != nil { // OnUpgrade deferred, and the answer is to accept
			u.req.Context = p.ctx
			return nil, nil
		}
		if hook := o.OnUpgrade; hook != nil {
			u.req.up = u
			resp := hook(&u.req)
			u.req.up = nil
			if u.pending != nil {
				return nil, errRejected // gobwas's answer is dropped: the request is held
			}
			if resp != nil {
				u.reject = resp
				return nil, errRejected
			}
		}
		return nil, nil
	}
	return u
}

// headEnd ends an HTTP request's header.
var headEnd = []byte("\r\n\r\n")

// resumeAt returns where the search for headEnd may resume once more bytes
// follow buf: its last 3 bytes may start the terminator.
func resumeAt(buf []byte) int { return max(0, len(buf)-(len(headEnd)-1)) }

var errRejected = ws.RejectConnectionError(ws.RejectionStatus(http.StatusForbidden))

// process reads the upgrade request at the start of buf, which holds the
// first min(buffered, MaxHeaderBytes) of the connection's buffered bytes.
// The first from bytes of buf were searched by an earlier call that
// returned needMore (resumeAt(buf) of that call's buf), so a request that
// arrives a byte at a time costs linear time, not quadratic. It leaves the
// response in u.out. On upgraded, u.req is still valid (it aliases buf)
// until the next call, and hs is the negotiated handshake.
func (u *upgrader) process(buf []byte, buffered, from int, remote net.Addr) (res outcome, headLen int, hs ws.Handshake) {
	u.out = u.out[:0]
	u.req = Request{}
	u.reject = nil
	u.deflate = codec.Deflate{}
	from = min(from, len(buf))
	u.searched += int64(len(buf) - from)
	end := bytes.Index(buf[from:], headEnd)
	if end >= 0 {
		end += from
	} else {
		if buffered >= u.o.MaxHeaderBytes {
			return u.answer(&Response{Status: http.StatusRequestHeaderFieldsTooLarge, Body: []byte("request header too large\n")}), 0, hs
		}
		return needMore, 0, hs
	}
	head := buf[:end+len(headEnd)]
	line, headers, _ := bytes.Cut(head, crlf)
	method, rest, ok1 := bytes.Cut(line, []byte{' '})
	uri, proto, ok2 := bytes.Cut(rest, []byte{' '})
	if !ok1 || !ok2 || len(method) == 0 || len(uri) == 0 || !bytes.HasPrefix(proto, []byte("HTTP/")) {
		return u.answer(&Response{Status: http.StatusBadRequest, Body: []byte("malformed request line\n")}), 0, hs
	}
	u.req = Request{method: method, uri: uri, head: headers[:len(headers)-2], remote: remote, tls: u.tls}

	// A request is a WebSocket attempt if it names the upgrade or carries
	// the handshake's own headers; only other requests are plain HTTP.
	upgrade, hasUpgrade := headerValue(u.req.head, "Upgrade")
	_, hasKey := headerValue(u.req.head, "Sec-WebSocket-Key")
	_, hasVersion := headerValue(u.req.head, "Sec-WebSocket-Version")
	switch {
	case !hasUpgrade && !hasKey && !hasVersion:
		return u.answerPlain(), 0, hs
	case hasUpgrade && !hasToken(upgrade, "websocket"):
		return u.answer(&Response{Status: http.StatusBadRequest, Body: []byte("Upgrade header must be websocket\n")}), 0, hs
	}
	origin, _ := headerValue(u.req.head, "Origin")
	if !u.o.originAllowed(origin) {
		return u.answer(&Response{Status: http.StatusForbidden, Body: []byte("origin not allowed\n")}), 0, hs
	}

	u.in.Reset(head)
	hs, err := u.ws.Upgrade(u.rw)
	switch {
	case err == nil:
		u.negotiateDeflate()
		return upgraded, len(head), hs
	case u.pending != nil:
		u.out = u.out[:0]
		return deferred, 0, hs
	case u.reject != nil:
		return u.answer(u.reject), 0, hs
	case len(u.out) == 0:
		// gobwas wrote nothing (it could not parse the request at all).
		return u.answer(&Response{Status: http.StatusBadRequest, Body: []byte("malformed request\n")}), 0, hs
	}
	return answered, 0, hs // gobwas's own 4xx answer is in u.out
}

// negotiateDeflate answers the request's permessage-deflate offers, adding
// the Sec-WebSocket-Extensions line to the 101 in u.out when one is taken.
func (u *upgrader) negotiateDeflate() {
	c := &u.o.Compression
	if c.Off {
		return
	}
	var offers []byte
	eachHeader(u.req.head, func(k, v []byte) {
		if bytes.EqualFold(k, []byte("Sec-WebSocket-Extensions")) {
			if len(offers) > 0 {
				offers = append(offers, ',')
			}
			offers = append(offers, v...)
		}
	})
	if len(offers) == 0 {
		return
	}
	if ua, _ := headerValue(u.req.head, "User-Agent"); brokenDeflate(ua) {
		return
	}
	d, answer := codec.NegotiateDeflate(string(offers), c.ClientContextTakeover)
	if !d.On {
		return
	}
	u.deflate = d
	end := len(u.out) - 2 // before the blank line that ends the 101
	line := "Sec-WebSocket-Extensions: " + answer + "\r\n"
	u.out = append(u.out[:end], append([]byte(line), "\r\n"...)...)
}

// brokenDeflate reports whether a User-Agent is Safari 15.0 to 15.3, which
// mishandles client_no_context_takeover (as uWebSockets also found): it
// gets no compression.
func brokenDeflate(ua string) bool {
	i := strings.Index(ua, "Version/15.")
	if i < 0 || !strings.Contains(ua, "Safari/") || strings.Contains(ua, "Chrome/") {
		return false
	}
	minor := ua[i+len("Version/15."):]
	return len(minor) > 0 && minor[0] >= '0' && minor[0] <= '3' && (len(minor) == 1 || minor[1] < '0' || minor[1] > '9')
}

// answerPlain answers a request that is not a WebSocket upgrade.
func (u *upgrader) answerPlain() outcome {
	if h := u.o.HTTPHandler; h != nil {
		if resp := h(&u.req); resp != nil {
			return u.answer(resp)
		}
	}
	if m := string(u.req.method); m != http.MethodGet && m != http.MethodHead {
		return u.answer(&Response{Status: http.StatusMethodNotAllowed, Header: http.Header{"Allow": {"GET"}}, Body: []byte("method not allowed\n")})
	}
	return u.answer(&Response{
		Status: http.StatusUpgradeRequired,
		Header: http.Header{"Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}},
		Body:   []byte("this is a WebSocket endpoint: connect with a WebSocket client\n"),
	})
}

// answer puts an HTTP response with Content-Length and "Connection: close"
// in u.out.
func (u *upgrader) answer(r *Response) outcome {
	status := r.Status
	if status == 0 {
		status = http.StatusOK
	}
	b := append(u.out[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\nConnection: close\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(r.Body)), 10)
	b = append(b, "\r\n"...)
	for k, vs := range r.Header {
		if !isToken(k) {
			continue // not a header name: it would break the response
		}
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = appendHeaderValue(b, v)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "\r\n"...)
	if string(u.req.method) != http.MethodHead {
		b = append(b, r.Body...)
	}
	u.out = b
	return answered
}

// isToken reports whether s is an HTTP token (RFC 9110 section 5.6.2), the
// syntax of a header name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// appendHeaderValue appends v with CR, LF and NUL turned into spaces, as
// net/http does, so that a value from a hook cannot end the header line and
// inject headers or a body of its own.
func appendHeaderValue(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' || c == 0 {
			c = ' '
		}
		b = append(b, c)
	}
	return b
}

// handshake reads the upgrade request of c from its buffered bytes. It
// returns with c still in stateHandshake when the request is incomplete, in
// stateOpen after a successful upgrade (the bytes after the request are
// left buffered), or in stateClosing after an HTTP answer.
func (l *Loop) handshake(c *Conn) gnet.Action {
	if act, held := l.pendingInput(c); held {
		return act
	}
	u := l.up
	n := c.inBuffered()
	buf, err := c.peekIn(min(n, u.o.MaxHeaderBytes))
	if err != nil {
		return gnet.Close
	}
	tx := c.tlsConn()
	if tx != nil {
		u.tls = tx.rec
	}
	u.conn = c
	res, headLen, hs := u.process(buf, n, int(c.searched), c.remote)
	defer func() { u.req, u.tls, u.conn, u.pending = Request{}, nil, nil, nil }() // it aliases the input
	switch res {
	case needMore:
		c.searched = uint32(resumeAt(buf))
		return gnet.None
	case deferred:
		l.deferUpgrade(c, u.pending)
		return gnet.None
	case answered:
		if err := c.output(u.out); err == nil {
			c.linger(true)
		}
		return gnet.None
	}
	if err := c.output(u.out); err != nil {
		return gnet.None // gnet has closed the connection
	}
	c.proto = hs.Protocol
	c.dec.Deflate = u.deflate
	if u.o.KeepPath || u.o.KeepHeaders {
		x := new(connExtra) // filled before it is published: Path and Header read it from any goroutine
		x.tls = tx
		if u.o.KeepPath {
			x.path = string(u.req.uri)
		}
		if u.o.KeepHeaders {
			x.header = bytes.Clone(u.req.head)
		}
		c.extra.Store(x)
	}
	c.ctx = u.req.Context
	c.discardIn(headLen) // the request may be a pooled copy: done with it only now
	l.open(c)
	return gnet.None
}

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
