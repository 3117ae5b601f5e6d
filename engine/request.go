package engine

import (
	"bytes"
	"net"
	"net/url"
	"strings"
)

// Request is the HTTP request that opened a connection, as seen by
// Options.OnUpgrade and Options.HTTPHandler. It aliases the connection's
// input buffer: it is valid only during the callback. Its accessors allocate
// only the strings they return.
type Request struct {
	method, uri []byte
	head        []byte // header lines, each ending in CRLF, without the final blank line
	remote      net.Addr
	tls         recordLayer // wss: the connection's TLS; nil for ws
	up          *upgrader   // set while OnUpgrade runs, for Defer

	// Context becomes the Conn's Context when OnUpgrade accepts (for example
	// the identity an auth check found).
	Context any
}

// Method returns the request method, e.g. "GET".
func (r *Request) Method() string { return string(r.method) }

// URI returns the request target as sent, e.g. "/chat/lobby?x=1".
func (r *Request) URI() string { return string(r.uri) }

// Path returns the path of the request target, without the query.
func (r *Request) Path() string {
	p, _, _ := bytes.Cut(r.uri, []byte{'?'})
	return string(p)
}

// Query returns the first value of the query parameter key, unescaped.
func (r *Request) Query(key string) string {
	_, q, ok := bytes.Cut(r.uri, []byte{'?'})
	if !ok {
		return ""
	}
	v, err := url.ParseQuery(string(q))
	if err != nil {
		return ""
	}
	return v.Get(key)
}

// Header returns the value of the first header named name
// (case-insensitive), or "".
func (r *Request) Header(name string) string {
	v, _ := headerValue(r.head, name)
	return v
}

// Headers calls fn for each header line, in order, with its name and value
// (trimmed). The slices are valid only during fn.
func (r *Request) Headers(fn func(name, value []byte)) {
	eachHeader(r.head, fn)
}

// RemoteAddr returns the peer's address.
func (r *Request) RemoteAddr() net.Addr { return r.remote }

// headerValue finds header name in a block of CRLF-terminated lines.
func headerValue(head []byte, name string) (string, bool) {
	var (
		val   string
		found bool
	)
	eachHeader(head, func(k, v []byte) {
		if !found && strings.EqualFold(string(k), name) {
			val, found = string(v), true
		}
	})
	return val, found
}

func eachHeader(head []byte, fn func(name, value []byte)) {
	for len(head) > 0 {
		line, rest, _ := bytes.Cut(head, crlf)
		head = rest
		k, v, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		fn(bytes.TrimSpace(k), bytes.TrimSpace(v))
	}
}

var crlf = []byte("\r\n")
