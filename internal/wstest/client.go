package wstest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// DefaultTimeout is the deadline applied to every read and write of a Client
// unless Client.Timeout is changed.
const DefaultTimeout = 5 * time.Second

// MaxFramePayload bounds the payload length a Client accepts in a server
// frame, so that a garbage header cannot make the test allocate gigabytes.
const MaxFramePayload = 64 << 20

// WebSocketGUID is the fixed GUID of RFC 6455, section 1.3.
const WebSocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// Header is one HTTP header field of a hand-built request.
type Header struct{ Name, Value string }

// NewKey returns a fresh Sec-WebSocket-Key: 16 random bytes, base64.
func NewKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

// AcceptKey returns the Sec-WebSocket-Accept value for key.
func AcceptKey(key string) string {
	h := sha1.Sum([]byte(key + WebSocketGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// UpgradeHeaders returns the header fields of a minimal valid RFC 6455
// opening handshake.
func UpgradeHeaders(host, key string) []Header {
	return []Header{
		{"Host", host},
		{"Upgrade", "websocket"},
		{"Connection", "Upgrade"},
		{"Sec-WebSocket-Key", key},
		{"Sec-WebSocket-Version", "13"},
	}
}

// WithoutHeader returns a copy of hs without the fields named name
// (case-insensitive).
func WithoutHeader(hs []Header, name string) []Header {
	var out []Header
	for _, h := range hs {
		if !strings.EqualFold(h.Name, name) {
			out = append(out, h)
		}
	}
	return out
}

// WithHeader returns a copy of hs where the field name has value: replaced
// if present, appended otherwise.
func WithHeader(hs []Header, name, value string) []Header {
	out := WithoutHeader(hs, name)
	return append(out, Header{name, value})
}

// BuildRequest returns an HTTP/1.1 request with the given method, target and
// header fields, ending with the empty line, and no body.
func BuildRequest(method, target string, hs []Header) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", method, target)
	for _, h := range hs {
		fmt.Fprintf(&b, "%s: %s\r\n", h.Name, h.Value)
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// CheckUpgradeResponse returns an error unless resp is a valid 101 answer to
// an opening handshake that sent key: status 101, "Upgrade: websocket",
// "Connection" containing the token "upgrade" and the right
// Sec-WebSocket-Accept.
func CheckUpgradeResponse(resp *http.Response, key string) error {
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("status %q, want 101", resp.Status)
	}
	if u := resp.Header.Get("Upgrade"); !strings.EqualFold(strings.TrimSpace(u), "websocket") {
		return fmt.Errorf("header Upgrade: %q, want websocket", u)
	}
	if !headerHasToken(resp.Header, "Connection", "upgrade") {
		return fmt.Errorf("header Connection: %q lacks the upgrade token", resp.Header.Values("Connection"))
	}
	want := AcceptKey(key)
	if got := resp.Header.Values("Sec-WebSocket-Accept"); len(got) != 1 || got[0] != want {
		return fmt.Errorf("Sec-WebSocket-Accept %q, want %q", got, want)
	}
	return nil
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// ServerFrame is a frame read from the server.
type ServerFrame struct {
	Fin    bool
	Rsv    byte // RSV1<<2 | RSV2<<1 | RSV3
	Opcode byte
	Masked bool
	Length uint64 // length announced by the header
	// LenBytes is the size of the extended length field: 0, 2 or 8.
	LenBytes int
	Payload  []byte // unmasked payload
}

// CloseCode returns the status code of a close frame, CloseNoStatus (1005)
// for an empty payload and -1 for a 1-byte payload.
func (f *ServerFrame) CloseCode() int {
	switch len(f.Payload) {
	case 0:
		return CloseNoStatus
	case 1:
		return -1
	}
	return int(binary.BigEndian.Uint16(f.Payload))
}

// CloseReason returns the reason of a close frame.
func (f *ServerFrame) CloseReason() string {
	if len(f.Payload) < 2 {
		return ""
	}
	return string(f.Payload[2:])
}

// String describes the frame for failure messages.
func (f *ServerFrame) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s frame (fin=%v rsv=%d masked=%v len=%d", OpcodeName(f.Opcode), f.Fin, f.Rsv, f.Masked, f.Length)
	if f.Opcode == OpClose {
		fmt.Fprintf(&b, " code=%d reason=%q", f.CloseCode(), f.CloseReason())
	} else {
		fmt.Fprintf(&b, " payload=%s", hexPrefix(f.Payload, 32))
	}
	b.WriteString(")")
	return b.String()
}

func hexPrefix(p []byte, n int) string {
	if len(p) <= n {
		return hex.EncodeToString(p)
	}
	return hex.EncodeToString(p[:n]) + "..."
}

// Client is a raw WebSocket client over one TCP connection. Its Expect*
// methods, and the Write* methods other than TryWrite and TryWriteChopped,
// end the test with t.Fatal on any mismatch or error; every read and write
// carries a deadline of Timeout. If the test fails, the bytes the client
// wrote after the handshake (the first 1 KiB) and the frames it received are
// logged.
type Client struct {
	T       testing.TB
	Conn    net.Conn
	Timeout time.Duration
	// Key is the Sec-WebSocket-Key of the last Handshake.
	Key string
	// Response is the server's answer to the last Handshake.
	Response *http.Response

	r *bufio.Reader

	// Trace of the connection, logged if the test fails.
	sent     []byte // first traceLimit bytes written
	nSent    int    // bytes written
	nWrites  int    // write calls
	nFrames  int    // bytes of the frames read
	received []string
	// traceNote qualifies the trace ("after the handshake").
	traceNote string
}

// traceLimit bounds how many written bytes a Client keeps for its failure
// trace.
const traceLimit = 1024

// Dial opens a TCP connection to addr without any handshake. The connection
// is closed when the test ends.
func Dial(t testing.TB, addr string) *Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, DefaultTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return NewClient(t, conn)
}

// NewClient is a Client over conn, an open connection of any kind (a
// *tls.Conn for wss). conn is closed when the test ends.
func NewClient(t testing.TB, conn net.Conn) *Client {
	c := &Client{T: t, Conn: conn, Timeout: DefaultTimeout, r: bufio.NewReaderSize(conn, 64<<10)}
	t.Cleanup(func() {
		conn.Close()
		if t.Failed() {
			t.Logf("trace: client wrote %d bytes in %d writes%s; first %d bytes (hex):\n%x\nframes received: %s",
				c.nSent, c.nWrites, c.traceNote, len(c.sent), c.sent, strings.Join(c.received, ", "))
		}
	})
	return c
}

// Connect dials addr and completes the opening handshake on path "/".
func Connect(t testing.TB, addr string) *Client {
	t.Helper()
	c := Dial(t, addr)
	c.Handshake("/")
	return c
}

// Handshake sends a valid upgrade request for path in one write, reads the
// response and fails the test unless it is a correct 101.
func (c *Client) Handshake(path string) *http.Response {
	c.T.Helper()
	c.Key = NewKey()
	req := BuildRequest("GET", path, UpgradeHeaders(c.Conn.RemoteAddr().String(), c.Key))
	c.Write(req)
	resp := c.ExpectUpgrade(c.Key)
	// Keep only what follows the handshake in the failure trace.
	c.sent = c.sent[min(len(req), len(c.sent)):]
	c.nSent -= len(req)
	c.nWrites--
	c.traceNote = " after the handshake"
	return resp
}

// ExpectUpgrade reads the HTTP response and fails the test unless it is a
// valid 101 answer for key.
func (c *Client) ExpectUpgrade(key string) *http.Response {
	c.T.Helper()
	resp, err := c.ReadResponse()
	if err != nil {
		c.T.Fatalf("reading the handshake response: %v", err)
	}
	if err := CheckUpgradeResponse(resp, key); err != nil {
		c.T.Fatalf("handshake: %v\nresponse headers: %v", err, resp.Header)
	}
	c.Key, c.Response = key, resp
	return resp
}

// ReadResponse reads one HTTP response header block. The body, if any, can
// be read from resp.Body; the read deadline is Timeout from now and covers
// the body too.
func (c *Client) ReadResponse() (*http.Response, error) {
	c.setReadDeadline(c.Timeout)
	return http.ReadResponse(c.r, nil)
}

// Reader returns the buffered reader of the connection, for tests that
// parse the server's bytes themselves.
func (c *Client) Reader() *bufio.Reader { return c.r }

func (c *Client) setReadDeadline(d time.Duration) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(d))
}

// TryWrite writes b in one call with a deadline and returns the error, for
// writes that may legitimately fail because the server has already closed
// the connection.
func (c *Client) TryWrite(b []byte) error {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.Timeout))
	n, err := c.Conn.Write(b)
	c.nWrites++
	c.nSent += n
	if room := traceLimit - len(c.sent); room > 0 {
		c.sent = append(c.sent, b[:min(room, n)]...)
	}
	return err
}

// Write writes b in one call and fails the test on error.
func (c *Client) Write(b []byte) {
	c.T.Helper()
	if err := c.TryWrite(b); err != nil {
		c.T.Fatalf("write of %d bytes: %v", len(b), err)
	}
}

// WriteFrames writes all frames in a single write.
func (c *Client) WriteFrames(frames ...Frame) {
	c.T.Helper()
	c.Write(Concat(frames...))
}

// WriteFramewise writes each frame with its own write call.
func (c *Client) WriteFramewise(frames ...Frame) {
	c.T.Helper()
	for _, f := range frames {
		c.Write(f.Bytes())
	}
}

// WriteChopped writes b in pieces of at most size bytes, one write call each
// (TCP_NODELAY is on, Go's default, so each piece leaves at once) and fails
// the test on error.
func (c *Client) WriteChopped(b []byte, size int) {
	c.T.Helper()
	if err := c.TryWriteChopped(b, size); err != nil {
		c.T.Fatalf("chopped write (%d-byte pieces) of %d bytes: %v", size, len(b), err)
	}
}

// TryWriteChopped is WriteChopped that stops at and returns the first error,
// for byte streams the server may reject half-way.
func (c *Client) TryWriteChopped(b []byte, size int) error {
	for len(b) > 0 {
		n := min(size, len(b))
		if err := c.TryWrite(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// ReadFrame reads one server frame with a deadline of Timeout for the whole
// frame.
func (c *Client) ReadFrame() (*ServerFrame, error) {
	c.setReadDeadline(c.Timeout)
	var h [2]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return nil, err
	}
	f := &ServerFrame{
		Fin:    h[0]&0x80 != 0,
		Rsv:    h[0] >> 4 & 7,
		Opcode: h[0] & 0x0f,
		Masked: h[1]&0x80 != 0,
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(c.r, ext[:]); err != nil {
			return nil, fmt.Errorf("reading 16-bit length: %w", err)
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
		f.LenBytes = 2
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(c.r, ext[:]); err != nil {
			return nil, fmt.Errorf("reading 64-bit length: %w", err)
		}
		n = binary.BigEndian.Uint64(ext[:])
		f.LenBytes = 8
	}
	f.Length = n
	var key [4]byte
	if f.Masked {
		if _, err := io.ReadFull(c.r, key[:]); err != nil {
			return nil, fmt.Errorf("reading masking key: %w", err)
		}
	}
	if n > MaxFramePayload {
		return f, fmt.Errorf("server frame announces %d payload bytes (header %x)", n, h)
	}
	f.Payload = make([]byte, n)
	if _, err := io.ReadFull(c.r, f.Payload); err != nil {
		return f, fmt.Errorf("reading %d payload bytes of a %s frame: %w", n, OpcodeName(f.Opcode), err)
	}
	if f.Masked {
		MaskBytes(key, 0, f.Payload)
		c.nFrames += 4
	}
	c.nFrames += 2 + f.LenBytes + len(f.Payload)
	if len(c.received) < 32 {
		c.received = append(c.received, f.String())
	}
	return f, nil
}

// FrameBytes returns how many bytes of server frames (headers included) the
// client has read.
func (c *Client) FrameBytes() int { return c.nFrames }

// ExpectFrame reads the next frame and fails the test if there is none or
// if it breaks the rules for server frames: it must be unmasked, have no RSV
// bit set (no extension is negotiated), use the minimal length encoding and,
// for a control frame, have FIN set and at most 125 payload bytes.
func (c *Client) ExpectFrame() *ServerFrame {
	c.T.Helper()
	f, err := c.ReadFrame()
	if err != nil {
		c.T.Fatalf("expected a frame from the server, got error: %v", describeErr(err))
	}
	if f.Masked {
		c.T.Fatalf("server sent a masked frame: %v", f)
	}
	if f.Rsv != 0 {
		c.T.Fatalf("server sent a frame with RSV bits set: %v", f)
	}
	if minimal := minimalLenBytes(f.Length); f.LenBytes != minimal {
		c.T.Fatalf("server frame uses a %d-byte extended length for %d payload bytes, RFC 6455 requires %d: %v", f.LenBytes, f.Length, minimal, f)
	}
	if f.Opcode >= 8 && (!f.Fin || f.Length > 125) {
		c.T.Fatalf("server sent an invalid control frame: %v", f)
	}
	return f
}

func minimalLenBytes(n uint64) int {
	switch {
	case n <= 125:
		return 0
	case n <= 0xffff:
		return 2
	}
	return 8
}

// ExpectMessage reads the next frame and fails the test unless it is a
// single unfragmented message (FIN=1) with the given opcode and exactly the
// given payload.
func (c *Client) ExpectMessage(opcode byte, payload []byte) {
	c.T.Helper()
	f := c.ExpectFrame()
	if f.Opcode != opcode || !f.Fin {
		c.T.Fatalf("expected an unfragmented %s message of %d bytes, got %v", OpcodeName(opcode), len(payload), f)
	}
	if d := diff(f.Payload, payload); d != "" {
		c.T.Fatalf("%s message payload differs from what was sent: %s", OpcodeName(opcode), d)
	}
}

// ExpectText is ExpectMessage(OpText, []byte(s)).
func (c *Client) ExpectText(s string) {
	c.T.Helper()
	c.ExpectMessage(OpText, []byte(s))
}

// ExpectBinary is ExpectMessage(OpBinary, b).
func (c *Client) ExpectBinary(b []byte) {
	c.T.Helper()
	c.ExpectMessage(OpBinary, b)
}

// ExpectPong reads the next frame and fails the test unless it is a pong
// with exactly the given payload.
func (c *Client) ExpectPong(payload []byte) {
	c.T.Helper()
	f := c.ExpectFrame()
	if f.Opcode != OpPong || !f.Fin {
		c.T.Fatalf("expected a pong with payload %s, got %v", hexPrefix(payload, 32), f)
	}
	if d := diff(f.Payload, payload); d != "" {
		c.T.Fatalf("pong payload differs from the ping's: %s", d)
	}
}

// ExpectClose reads the next frame and fails the test unless it is a valid
// close frame (FIN=1, payload 0 or 2..125 bytes, UTF-8 reason) whose code is
// one of codes (any code if none is given; an empty payload counts as 1005).
// It returns the code and reason.
func (c *Client) ExpectClose(codes ...int) (int, string) {
	c.T.Helper()
	f := c.ExpectFrame()
	if f.Opcode != OpClose {
		c.T.Fatalf("expected a close frame with code %v, got %v", codes, f)
	}
	if !f.Fin || len(f.Payload) == 1 || len(f.Payload) > 125 {
		c.T.Fatalf("server sent a malformed close frame: %v", f)
	}
	if !utf8.ValidString(f.CloseReason()) {
		c.T.Fatalf("server close reason is not valid UTF-8: %v", f)
	}
	code := f.CloseCode()
	if len(codes) == 0 {
		return code, f.CloseReason()
	}
	for _, want := range codes {
		if code == want {
			return code, f.CloseReason()
		}
	}
	c.T.Fatalf("expected a close frame with code %v, got %v", codes, f)
	return 0, ""
}

// ExpectTCPClosed fails the test unless the server closes the TCP connection
// (EOF or connection reset) within Timeout without sending any more bytes.
func (c *Client) ExpectTCPClosed() {
	c.T.Helper()
	c.setReadDeadline(c.Timeout)
	var buf [256]byte
	n, err := c.r.Read(buf[:])
	if n > 0 {
		c.T.Fatalf("expected the server to close TCP, got %d more bytes: %x", n, buf[:n])
	}
	if !IsClosedErr(err) {
		c.T.Fatalf("expected the server to close TCP, got: %v", describeErr(err))
	}
}

// ExpectFail is ExpectClose(code) followed by ExpectTCPClosed: the server
// fails the connection with that code and sends nothing after its close.
func (c *Client) ExpectFail(code int) {
	c.T.Helper()
	c.ExpectClose(code)
	c.ExpectTCPClosed()
}

// ExpectSilence fails the test if the server sends anything or closes the
// connection within d: it checks that the server is still waiting.
func (c *Client) ExpectSilence(d time.Duration) {
	c.T.Helper()
	c.setReadDeadline(d)
	_, err := c.r.Peek(1)
	if err == nil {
		f, ferr := c.ReadFrame()
		if ferr != nil {
			c.T.Fatalf("expected silence for %v, server sent bytes (%v)", d, ferr)
		}
		c.T.Fatalf("expected silence for %v, server sent %v", d, f)
	}
	if !isTimeout(err) {
		c.T.Fatalf("expected silence for %v, got: %v", d, describeErr(err))
	}
}

// CloseHandshake sends a close frame with code 1000, expects the server's
// close with code 1000 and then the end of the TCP connection. It is the
// clean ending of a case that expects the connection to be still open, and
// also proves that the server sent nothing else before.
func (c *Client) CloseHandshake() {
	c.T.Helper()
	c.WriteFrames(Close(CloseNormal, ""))
	c.ExpectClose(CloseNormal)
	c.ExpectTCPClosed()
}

// IsClosedErr reports whether err means that the peer closed the TCP
// connection (EOF or reset).
func IsClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF)
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func describeErr(err error) string {
	switch {
	case err == nil:
		return "no error"
	case isTimeout(err):
		return fmt.Sprintf("timeout (%v)", err)
	case IsClosedErr(err):
		return fmt.Sprintf("connection closed by the server (%v)", err)
	}
	return err.Error()
}

// diff describes how got differs from want, or returns "" if they are equal.
func diff(got, want []byte) string {
	if bytes.Equal(got, want) {
		return ""
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	lo := max(0, i-8)
	return fmt.Sprintf("got %d bytes, want %d; first difference at offset %d: got %s, want %s",
		len(got), len(want), i, hexPrefix(got[lo:min(len(got), i+16)], 24), hexPrefix(want[lo:min(len(want), i+16)], 24))
}
