package engine

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/wsdproject/wsd/codec"
)

// Defaults applied by New to zero fields of Options.
const (
	DefaultAddr             = "tcp://127.0.0.1:8080"
	DefaultMaxHeaderBytes   = 8 << 10
	DefaultMaxMessageSize   = 16 << 20
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultPingInterval     = 20 * time.Second
	DefaultIdleTimeout      = 60 * time.Second
	DefaultCloseTimeout     = 5 * time.Second
	DefaultMaxBuffered      = 1 << 20
	DefaultWriteTimeout     = 30 * time.Second
	DefaultMessageTimeout   = 60 * time.Second
	DefaultMsgBurstFactor   = 2 // MaxMessageBurst defaults to twice MaxMessageRate
)

// Options configures an Engine. The zero value is valid: every zero field
// takes the default its comment names, and a negative duration or size
// turns that timeout or limit off.
type Options struct {
	// Addrs are the listen addresses: "tcp://host:port", "tcp4://",
	// "tcp6://", or "unix:///path/to.sock". A bare "host:port" means tcp.
	// Empty means DefaultAddr, tcp://127.0.0.1:8080, unless TLSAddrs is
	// set. They serve ws://, or wss:// when TLS is set and TLSAddrs is not.
	Addrs []string

	// TLS, if not nil, serves WebSocket over TLS (wss://) with crypto/tls on
	// the event loops: on every address of Addrs, or, with TLSAddrs, on
	// those (Addrs then serve plain ws). The engine works on a clone made
	// by New, with MinVersion TLS 1.2 when it is 0 and NextProtos
	// ["http/1.1"] when it is nil (it may not offer "h2"); session tickets
	// are on unless SessionTicketsDisabled. It needs Certificates,
	// GetCertificate or GetConfigForClient.
	//
	// To reload the certificate without a restart, set GetCertificate to a
	// function that returns the current one (from an atomic.Pointer the
	// reloader swaps): every new handshake calls it, and open connections
	// keep the session they have. Fields changed on the config after New
	// are not seen, and session ticket keys (SetSessionTicketKeys, for
	// tickets that work across servers) must be set before New. For mutual
	// TLS set ClientAuth and ClientCAs; Conn.ClientCertificate then names
	// the client.
	//
	// The handshake runs in a goroutine per connection, at most
	// MaxTLSHandshakes at once; after it the connection is served by its
	// loop like a ws one, with no goroutine. An idle wss connection costs
	// about 7 KiB of Go heap more than a ws one, mostly crypto/tls's
	// buffers and cipher state (see the package's measurements).
	TLS *tls.Config

	// TLSAddrs are listen addresses, written as in Addrs, that serve wss
	// next to the plain ws of Addrs; TLS must be set. The engine tells a
	// connection's listener by its local port (or socket path), so no port
	// or path may be in both lists, and a TLSAddrs port may not be 0 while
	// Addrs is set.
	TLSAddrs []string

	// MaxTLSHandshakes caps the TLS handshakes running at once, each in a
	// goroutine, so that a storm of new wss connections takes a bounded
	// share of the CPU and of memory. A connection waits for its complete
	// ClientHello before it asks for a slot (a peer that sends nothing, or
	// half a ClientHello, takes none), and while the slots are taken it
	// waits in a first-in first-out line, with no goroutine, its bytes in
	// gnet's buffer (at most 64 KiB), until a slot frees up or its
	// HandshakeTimeout ends. A slot is held until the handshake ends, so
	// peers that send a ClientHello and then stall hold theirs up to
	// HandshakeTimeout. 0 means 4 × GOMAXPROCS; negative means no cap.
	MaxTLSHandshakes int

	// EventLoops is the number of event loops, each owning its connections
	// on one goroutine. 0 means one per CPU (runtime.NumCPU).
	EventLoops int

	// ReusePort gives every event loop its own SO_REUSEPORT listener so the
	// kernel spreads accepts; otherwise one acceptor round-robins new
	// connections over the loops. Linux only; ignored for unix sockets.
	ReusePort bool

	// MaxHeaderBytes caps the HTTP upgrade request (request line and
	// headers). A larger request gets 431 Request Header Fields Too Large.
	// 0 means DefaultMaxHeaderBytes (8 KiB).
	MaxHeaderBytes int

	// MaxMessageSize caps a message's payload, whole or summed over its
	// fragments. A larger message fails the connection with 1009 as soon as
	// a frame header announces it. 0 means DefaultMaxMessageSize (16 MiB);
	// negative means no limit. A message that arrives in pieces is assembled
	// in a pooled buffer of up to this size.
	MaxMessageSize int64

	// HandshakeTimeout bounds the time from accept to a complete upgrade
	// request (for wss, the TLS handshake included), so slow or silent
	// peers cannot hold sockets. 0 means DefaultHandshakeTimeout (10 s);
	// negative means none for ws, and DefaultHandshakeTimeout for wss.
	HandshakeTimeout time.Duration

	// PingInterval: a connection from which nothing has been read for this
	// long is sent a ping. 0 means DefaultPingInterval (20 s); negative
	// turns automatic pings off.
	PingInterval time.Duration

	// IdleTimeout: a connection from which nothing (pongs included) has been
	// read for this long is closed with 1001. It must exceed PingInterval
	// when both are on. 0 means DefaultIdleTimeout (60 s); negative means none.
	IdleTimeout time.Duration

	// CloseTimeout bounds the wait for the peer's close frame (or TCP close)
	// once wsd has sent its own close frame. 0 means DefaultCloseTimeout
	// (5 s); negative means no wait: the TCP connection is closed as soon
	// as the close frame has been handed to the socket.
	CloseTimeout time.Duration

	// MaxBuffered caps the bytes waiting to be sent to one connection:
	// gnet's outbound buffer, the frames gathered for it while its input is
	// handled, and the frames Send has queued for it. Once a connection has
	// MaxBuffered bytes or more unsent, every write to it (Write, Send,
	// WriteFrames, pongs and pings) is refused with ErrBackpressure and the
	// connection is closed with BackpressureCode; a write made while it is
	// under the cap is taken whole, so one connection holds at most
	// MaxBuffered plus one message. While a connection has more than half
	// of it unsent, its input is not decoded (a peer that does not read is
	// not heard either); once that input reaches a quarter of the cap, or
	// it and the unsent output reach MaxBuffered together, the connection
	// is closed the same way.
	// Decoding resumes at the first tick after the backlog falls under a
	// quarter of the cap. So that the backlog waits where the cap counts
	// it, the kernel keeps at most an eighth of the cap (16 to 128 KiB)
	// unsent per TCP connection (TCP_NOTSENT_LOWAT, on Linux; one
	// setsockopt per connection). Check
	// Conn.Full before writing to shed load instead. 0 means
	// DefaultMaxBuffered (1 MiB); negative means no cap (no pause, and the
	// kernel's own send buffer).
	MaxBuffered int

	// BackpressureCode is the close code sent when MaxBuffered closes a
	// connection. 0 means 1008 (policy violation); 1013 (try again later)
	// is the other usual choice.
	BackpressureCode codec.StatusCode

	// WriteTimeout closes (1008) a connection whose unsent bytes have not
	// shrunk for this long: a peer that stopped reading. It is checked once
	// per tick, with no timer per connection. 0 means DefaultWriteTimeout
	// (30 s); negative means none.
	WriteTimeout time.Duration

	// MaxBufferedTotal is a budget for the unsent bytes of all connections
	// together, plus the bytes of partly received messages. Every tick each
	// loop adds up its own; when the total is over the budget, each loop
	// closes its connections with the largest backlogs first (1013) until
	// its share of the excess is shed. 0 means a quarter of physical
	// memory, at most 1 GiB (DefaultMaxBufferedTotal); negative means none.
	MaxBufferedTotal int64

	// MessageTimeout bounds the time from the first byte of a message to
	// its last, so a peer cannot hold an assembly buffer by trickling a
	// large message; over it the connection is closed with 1008. 0 means
	// DefaultMessageTimeout (60 s); negative means none.
	MessageTimeout time.Duration

	// MaxMessageRate limits the messages one connection may send, per
	// second, with bursts of MaxMessageBurst (0 means twice the rate);
	// MaxByteRate limits their payload bytes per second, with bursts of one
	// second's worth or one MaxMessageSize message, whichever is larger.
	// Buckets refill lazily as messages arrive (no timers). Over a limit the
	// connection is closed with 1008, or with RateLimitDrop the message is
	// dropped and counted. 0 means no limit. A connection with a rate limit
	// costs about 64 more bytes.
	MaxMessageRate  float64
	MaxMessageBurst int
	MaxByteRate     int64
	RateLimitDrop   bool

	// MaxConns caps the TCP connections the engine serves at once, on all
	// its listeners, in any state (upgrading, open, closing). A connection
	// accepted over the cap is refused: it gets 503 Service Unavailable
	// with "Retry-After: 5" once its request has arrived, and is closed.
	// 0 or negative means no limit: unlike most options, MaxConns has no
	// default, because any number would be wrong for some embedders. Set it
	// below the process's file limit, so that the engine, not accept(2),
	// says no, and clients get an answer.
	//
	// A refused connection never reaches the Handler and is not an
	// upgrade. It waits for its request as any handshake does (at most
	// HandshakeTimeout, or DefaultHandshakeTimeout when that is off), gets
	// its answer, and is held half-closed, its input discarded, until the
	// peer closes or CloseTimeout ends, so that the answer is read rather
	// than lost to a TCP reset. Meanwhile it counts in Stats.Conns, but
	// not against MaxConns or MaxConnsPerIP. Refusals are counted in
	// Stats.Rejected and logged at most once a second per limit.
	MaxConns int

	// MaxConnsPerIP caps the connections served at once from one remote
	// address: an IPv4 address, or an IPv6 /64 prefix (a host or site is
	// given a whole /64 and may use any address in it, so a cap per IPv6
	// address would not hold). IPv4 peers of a dual-stack listener count as
	// IPv4. Over the cap: 429 Too Many Requests with "Retry-After: 5", as
	// for MaxConns. 0 or negative means no limit. Unix-socket peers have no
	// address: only MaxConns applies to them.
	//
	// The per-IP limits keep an entry per address in a table of 65,536
	// entries (about 3.5 MiB when full, allocated in 64 parts as addresses
	// arrive). An entry whose address has no connection, and whose bucket
	// (HandshakeRatePerIP) is full again, is reused for a new address, the
	// least recently used first. When no entry can be reused, a connection
	// from an address not in the table is admitted without per-IP limits,
	// counted in Stats.IPTableFull and logged: refusing it instead would let
	// whoever holds 65,536 addresses shut out every new one. MaxConns still
	// caps the total, so set it too.
	MaxConnsPerIP int

	// HandshakeRatePerIP limits the new connections one remote address (as
	// for MaxConnsPerIP) may open per second, with bursts of
	// HandshakeBurstPerIP (0 means twice the rate, at least 1): a token
	// bucket per address, refilled lazily as connections arrive (no
	// timers). Every connection accepted from the address takes a token,
	// even one that MaxConnsPerIP then refuses; with no token left the
	// connection is refused with 429 Too Many Requests and a Retry-After of
	// 1/HandshakeRatePerIP seconds, rounded up. 0 or negative means no
	// limit. Unix-socket peers are not limited.
	HandshakeRatePerIP  float64
	HandshakeBurstPerIP int

	// Compression configures permessage-deflate (RFC 7692), which every
	// browser offers. The zero value turns it on, with no compression state
	// kept per connection (see Compression).
	Compression Compression

	// AllowedOrigins lists the Origin header values accepted at upgrade
	// (exact, case-insensitive match, e.g. "https://example.com"; "*" accepts
	// any). Requests without an Origin header (non-browser clients) are
	// accepted. Empty means any origin. CheckOrigin, if set, decides instead.
	AllowedOrigins []string

	// CheckOrigin, if not nil, decides whether to accept a request's Origin
	// header value (empty when the header is absent). Rejected requests get
	// 403 Forbidden. It runs on the event loop and must not block.
	CheckOrigin func(origin string) bool

	// Subprotocols lists the supported subprotocols in server preference
	// order: the first of these the client offers is selected. If the client
	// offers none of them, the upgrade succeeds with no subprotocol.
	Subprotocols []string

	// OnUpgrade, if not nil, sees every valid upgrade request (after the
	// origin check, before the 101 is sent). Returning a non-nil *Response
	// rejects the upgrade with that HTTP response (auth, unknown paths).
	// It may set req.Context, which becomes the Conn's Context. It runs on
	// the event loop and must not block: a check that costs more than a
	// few microseconds (bcrypt, an RSA or ECDSA signature) calls req.Defer
	// and answers later from another goroutine (see Pending).
	OnUpgrade func(req *Request) *Response

	// HTTPHandler, if not nil, answers requests that are not WebSocket
	// upgrades (no "Upgrade: websocket" header), like python websockets'
	// process_request; wsd serves its demo page this way. A nil result, or
	// a nil HTTPHandler, answers 426 Upgrade Required to GET and HEAD, and
	// 405 to other methods. The connection closes after the response. It
	// runs on the event loop and must not block.
	HTTPHandler func(req *Request) *Response

	// KeepPath keeps each connection's request URI (path and query) for
	// Conn.Path. Off by default, to save memory per connection.
	KeepPath bool

	// KeepHeaders keeps a copy of each connection's request headers for
	// Conn.Header (a few hundred bytes per connection). Off by default.
	KeepHeaders bool

	// Logger receives lifecycle logs (listen, shutdown, abnormal closes at
	// debug level); nothing is logged per frame. nil means zap.NewNop().
	// gnet's own logger is process-global: the first engine's logger wins.
	Logger *zap.Logger
}

// withDefaults returns a copy of o with defaults filled in, or an error that
// names the offending field.
func (o Options) withDefaults() (Options, error) {
	if len(o.Addrs) == 0 && len(o.TLSAddrs) == 0 {
		o.Addrs = []string{DefaultAddr}
	}
	var err error
	if o.Addrs, err = normalizeAddrs(o.Addrs); err != nil {
		return o, err
	}
	if o.TLSAddrs, err = normalizeAddrs(o.TLSAddrs); err != nil {
		return o, err
	}
	if len(o.TLSAddrs) > 0 && o.TLS == nil {
		return o, errors.New("engine: TLSAddrs needs TLS, the TLS configuration")
	}
	if err := checkTLSAddrs(o.Addrs, o.TLSAddrs); err != nil {
		return o, err
	}
	if o.EventLoops < 0 {
		return o, errors.New("engine: EventLoops must not be negative")
	}
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if o.MaxHeaderBytes < 256 {
		return o, fmt.Errorf("engine: MaxHeaderBytes %d is below 256", o.MaxHeaderBytes)
	}
	switch {
	case o.MaxMessageSize == 0:
		o.MaxMessageSize = DefaultMaxMessageSize
	case o.MaxMessageSize < 0:
		o.MaxMessageSize = 0 // the decoder's "no limit"
	}
	o.HandshakeTimeout = orDefault(o.HandshakeTimeout, DefaultHandshakeTimeout)
	o.PingInterval = orDefault(o.PingInterval, DefaultPingInterval)
	o.IdleTimeout = orDefault(o.IdleTimeout, DefaultIdleTimeout)
	o.CloseTimeout = orDefault(o.CloseTimeout, DefaultCloseTimeout)
	o.WriteTimeout = orDefault(o.WriteTimeout, DefaultWriteTimeout)
	o.MessageTimeout = orDefault(o.MessageTimeout, DefaultMessageTimeout)
	switch {
	case o.MaxBuffered == 0:
		o.MaxBuffered = DefaultMaxBuffered
	case o.MaxBuffered < 0:
		o.MaxBuffered = 0 // no cap
	}
	switch {
	case o.MaxBufferedTotal == 0:
		o.MaxBufferedTotal = DefaultMaxBufferedTotal()
	case o.MaxBufferedTotal < 0:
		o.MaxBufferedTotal = 0 // no budget
	}
	if o.Compression.Level < 0 || o.Compression.Level > 9 {
		return o, fmt.Errorf("engine: Compression.Level %d is not from 1 to 9", o.Compression.Level)
	}
	if o.Compression.Level == 0 {
		o.Compression.Level = codec.DefaultCompressionLevel
	}
	switch {
	case o.Compression.Threshold == 0:
		o.Compression.Threshold = DefaultCompressionThreshold
	case o.Compression.Threshold < 0:
		o.Compression.Threshold = 0
	}
	if o.BackpressureCode == 0 {
		o.BackpressureCode = codec.StatusPolicyViolation
	}
	if !o.BackpressureCode.ValidOnWire() {
		return o, fmt.Errorf("engine: BackpressureCode %d is not a close code a server may send", o.BackpressureCode)
	}
	if o.MaxMessageRate < 0 || o.MaxMessageBurst < 0 || o.MaxByteRate < 0 {
		return o, fmt.Errorf("engine: rate limits must not be negative (MaxMessageRate %v, MaxMessageBurst %d, MaxByteRate %d)", o.MaxMessageRate, o.MaxMessageBurst, o.MaxByteRate)
	}
	if o.MaxMessageRate > 0 && o.MaxMessageBurst == 0 {
		o.MaxMessageBurst = max(1, int(o.MaxMessageRate*DefaultMsgBurstFactor))
	}
	if err := o.admissionDefaults(); err != nil {
		return o, err
	}
	if o.PingInterval > 0 && o.IdleTimeout > 0 && o.IdleTimeout <= o.PingInterval {
		return o, fmt.Errorf("engine: IdleTimeout (%v) must exceed PingInterval (%v)", o.IdleTimeout, o.PingInterval)
	}
	for _, p := range o.Subprotocols {
		if p == "" || strings.ContainsAny(p, ", \t") {
			return o, fmt.Errorf("engine: subprotocol %q is not a token", p)
		}
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o, nil
}

// normalizeAddrs checks listen addresses and returns them with a scheme
// ("tcp://" for a bare host:port), in a new slice.
func normalizeAddrs(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	addrs := make([]string, len(in))
	for i, a := range in {
		if !strings.Contains(a, "://") {
			a = "tcp://" + a
		}
		scheme, rest, _ := strings.Cut(a, "://")
		switch scheme {
		case "tcp", "tcp4", "tcp6", "unix":
		default:
			return nil, fmt.Errorf("engine: address %q: scheme must be tcp, tcp4, tcp6 or unix", a)
		}
		if rest == "" {
			return nil, fmt.Errorf("engine: address %q has no host:port or path", a)
		}
		if scheme != "unix" {
			if err := checkHostPort(rest); err != nil {
				return nil, fmt.Errorf("engine: address %q: %v", a, err)
			}
		}
		addrs[i] = a
	}
	return addrs, nil
}

// checkHostPort checks a TCP listen address: "host:port" or ":port", with a
// port number from 0 to 65535.
func checkHostPort(hostport string) error {
	_, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return errors.New("want host:port, e.g. 127.0.0.1:8080 or :8080")
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// orDefault maps 0 to def and negative to 0 ("off").
func orDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// originAllowed applies AllowedOrigins and CheckOrigin to an Origin value.
func (o *Options) originAllowed(origin string) bool {
	if o.CheckOrigin != nil {
		return o.CheckOrigin(origin)
	}
	if origin == "" || len(o.AllowedOrigins) == 0 {
		return true
	}
	for _, a := range o.AllowedOrigins {
		if a == "*" || strings.EqualFold(a, origin) {
			return true
		}
	}
	return false
}

// Compression configures permessage-deflate. The server never keeps a
// compression context between messages (it answers
// server_no_context_takeover), so a compressed message costs a pooled
// compressor for the time it takes, and an idle connection with
// compression costs nothing more than one without.
type Compression struct {
	// Off declines every permessage-deflate offer.
	Off bool
	// Level is the compression level, 1 (fastest) to 9; 0 means
	// codec.DefaultCompressionLevel (1).
	Level int
	// Threshold: messages shorter than this are sent uncompressed, and a
	// compressed one is sent only when it is smaller. 0 means
	// DefaultCompressionThreshold (256 bytes); negative: try every message.
	Threshold int
	// ClientContextTakeover lets clients compress each message using the
	// ones before it (they do unless told not to). It costs a window of up
	// to 32 KiB (1<<client_max_window_bits) per such connection, taken on
	// its first compressed message and kept for its life. Off (the
	// default): the answer has client_no_context_takeover.
	ClientContextTakeover bool
}

// DefaultCompressionThreshold is the default of Compression.Threshold.
const DefaultCompressionThreshold = 256

// Response is an HTTP response written by the engine instead of an upgrade,
// for OnUpgrade rejections and HTTPHandler answers. The engine adds
// Content-Length and "Connection: close".
type Response struct {
	Status int         // HTTP status; 0 means 200
	Header http.Header // extra headers, e.g. Content-Type
	Body   []byte
}
