// Package interop runs the wsd daemon as a child process and talks to it with
// real third-party WebSocket clients: github.com/gorilla/websocket,
// github.com/coder/websocket and Node's ws package. Every byte stays on
// 127.0.0.1, every read has a deadline, and every test stops by itself.
package interop

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/wsdproject/wsd/internal/wstest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	wstest.CleanupBinary()
	os.Exit(code)
}

// ioTimeout bounds every single read, write and dial in this package.
const ioTimeout = 10 * time.Second

// echoURL is the URL of the daemon's WebSocket endpoint. The echo mode
// upgrades on any path.
func echoURL(d *wstest.Daemon) string { return "ws://" + d.Addr + "/" }

// randomBytes returns n deterministic pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// utf8Text returns exactly n bytes of valid UTF-8 mixing 1-, 2-, 3- and
// 4-byte sequences, so that any fixed-size fragmentation of it is likely to
// split a code point across frames.
func utf8Text(n int) []byte {
	const alphabet = "aé✓𝄞 日ß€b"
	var sb strings.Builder
	for sb.Len() < n {
		for _, r := range alphabet {
			var buf [utf8.UTFMax]byte
			l := utf8.EncodeRune(buf[:], r)
			if sb.Len()+l > n {
				// Pad with ASCII so the length is exact.
				for sb.Len() < n {
					sb.WriteByte('.')
				}
				break
			}
			sb.Write(buf[:l])
		}
	}
	return []byte(sb.String())
}

// recordConn is a net.Conn that keeps a copy of every byte read and written,
// so a test can check what actually went over the wire.
//
// The recorded streams are in wire order even when several goroutines use the
// connection: writeMu is held across the underlying Write and the append, so
// the order in which bytes are recorded is the order in which they were
// written. Recording after an unlocked Write is not enough: net/http writes
// the upgrade request from its own writeLoop goroutine and, for a 101
// response, hands the connection to the caller without waiting for that
// goroutine (Transport.readLoop skips pc.wroteRequest() when the body is
// writable). The request head is on the wire, the server answers, the
// WebSocket client writes its frames, and only then may writeLoop get to
// record the head, after the frames. readMu does the same for reads. Both
// match what the runtime already does (a net.Conn's Write and Read hold the
// fd's write or read lock for the whole call), so they add no new blocking.
// mu only guards the buffers, so Written and Received never wait for an
// operation in progress.
type recordConn struct {
	net.Conn
	writeMu  sync.Mutex
	readMu   sync.Mutex
	mu       sync.Mutex
	written  bytes.Buffer
	received bytes.Buffer
}

func (c *recordConn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	c.written.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

func (c *recordConn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.received.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// Written returns a copy of everything written so far.
func (c *recordConn) Written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.written.Bytes())
}

// Received returns a copy of everything read so far.
func (c *recordConn) Received() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.received.Bytes())
}

// recorder dials loopback TCP connections wrapped in recordConn.
type recorder struct {
	mu    sync.Mutex
	conns []*recordConn
}

func (r *recorder) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: ioTimeout}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	rc := &recordConn{Conn: c}
	r.mu.Lock()
	r.conns = append(r.conns, rc)
	r.mu.Unlock()
	return rc, nil
}

// only returns the single connection dialled through r.
func (r *recorder) only(t *testing.T) *recordConn {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.conns) != 1 {
		t.Fatalf("recorder: %d connections dialled, want 1", len(r.conns))
	}
	return r.conns[0]
}

// Opcodes of RFC 6455 section 5.2.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// wireFrame is one frame as seen on the wire, with the payload unmasked.
type wireFrame struct {
	fin     bool
	rsv     byte
	opcode  byte
	masked  bool
	payload []byte
}

func (f wireFrame) String() string {
	return fmt.Sprintf("{fin=%v rsv=%d op=%#x masked=%v len=%d}", f.fin, f.rsv, f.opcode, f.masked, len(f.payload))
}

// afterHTTPHead returns the bytes following the end of the HTTP upgrade
// request or response ("\r\n\r\n") that b must start with.
func afterHTTPHead(t *testing.T, b []byte) []byte {
	t.Helper()
	if !bytes.HasPrefix(b, []byte("GET ")) && !bytes.HasPrefix(b, []byte("HTTP/1.1 ")) {
		t.Fatalf("recorded bytes do not start with an HTTP head (request line found at %d, status line at %d, end of head at %d of %d bytes): %x",
			bytes.Index(b, []byte("GET ")), bytes.Index(b, []byte("HTTP/1.1 ")), bytes.Index(b, []byte("\r\n\r\n")), len(b), truncate(b, 64))
	}
	i := bytes.Index(b, []byte("\r\n\r\n"))
	if i < 0 {
		t.Fatalf("no end of HTTP head in %d recorded bytes: %q", len(b), truncate(b, 300))
	}
	return b[i+4:]
}

// parseFrames parses the complete frames at the start of b. A trailing
// incomplete frame is ignored (it may still have been in flight).
func parseFrames(b []byte) []wireFrame {
	var out []wireFrame
	for {
		if len(b) < 2 {
			return out
		}
		f := wireFrame{
			fin:    b[0]&0x80 != 0,
			rsv:    (b[0] >> 4) & 0x7,
			opcode: b[0] & 0x0f,
			masked: b[1]&0x80 != 0,
		}
		n := uint64(b[1] & 0x7f)
		rest := b[2:]
		switch n {
		case 126:
			if len(rest) < 2 {
				return out
			}
			n = uint64(binary.BigEndian.Uint16(rest))
			rest = rest[2:]
		case 127:
			if len(rest) < 8 {
				return out
			}
			n = binary.BigEndian.Uint64(rest)
			rest = rest[8:]
		}
		var key [4]byte
		if f.masked {
			if len(rest) < 4 {
				return out
			}
			copy(key[:], rest)
			rest = rest[4:]
		}
		if uint64(len(rest)) < n {
			return out
		}
		f.payload = bytes.Clone(rest[:n])
		if f.masked {
			for i := range f.payload {
				f.payload[i] ^= key[i%4]
			}
		}
		out = append(out, f)
		b = rest[n:]
	}
}

// dataFrames drops control frames.
func dataFrames(fs []wireFrame) []wireFrame {
	var out []wireFrame
	for _, f := range fs {
		if f.opcode < 0x8 {
			out = append(out, f)
		}
	}
	return out
}

// checkFragmented asserts that frames (data frames only) form exactly one
// message of type op and content want, split over at least minFrames frames,
// masked as a client must (RFC 6455 5.3), without RSV bits.
func checkFragmented(t *testing.T, frames []wireFrame, op byte, want []byte, minFrames int) {
	t.Helper()
	if len(frames) < minFrames {
		t.Fatalf("client sent %d data frames %v, want at least %d (message was not fragmented)", len(frames), frames, minFrames)
	}
	var got []byte
	for i, f := range frames {
		wantOp := byte(opContinuation)
		if i == 0 {
			wantOp = op
		}
		last := i == len(frames)-1
		if f.opcode != wantOp || f.fin != last || !f.masked || f.rsv != 0 {
			t.Fatalf("client frame %d of %d is %v, want op=%#x fin=%v masked rsv=0", i, len(frames), f, wantOp, last)
		}
		got = append(got, f.payload...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("reassembled client frames (%d bytes) differ from the message sent (%d bytes)", len(got), len(want))
	}
}

// checkSingleEchoFrame asserts that the server's data frames are exactly one
// unmasked, final frame of type op carrying want (the contract: an echoed
// message goes back as one frame; RFC 6455 5.1: a server never masks).
func checkSingleEchoFrame(t *testing.T, frames []wireFrame, op byte, want []byte) {
	t.Helper()
	if len(frames) != 1 {
		t.Fatalf("server sent %d data frames %v for the echo, want exactly 1", len(frames), frames)
	}
	f := frames[0]
	if f.opcode != op || !f.fin || f.masked || f.rsv != 0 {
		t.Fatalf("server echo frame is %v, want op=%#x fin=true unmasked rsv=0", f, op)
	}
	if !bytes.Equal(f.payload, want) {
		t.Fatalf("server echo frame payload (%d bytes) differs from the message sent (%d bytes)", len(f.payload), len(want))
	}
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

func TestUTF8TextHelper(t *testing.T) {
	for _, n := range []int{0, 1, 7, 512, 10 << 10, 1 << 20} {
		b := utf8Text(n)
		if len(b) != n {
			t.Fatalf("utf8Text(%d) has %d bytes", n, len(b))
		}
		if !utf8.Valid(b) {
			t.Fatalf("utf8Text(%d) is not valid UTF-8", n)
		}
	}
}

func TestParseFramesHelper(t *testing.T) {
	// A masked text frame "Hello" (RFC 6455 5.7), an unmasked 126-byte
	// binary frame and a truncated trailing frame.
	b := []byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}
	big := append([]byte{0x02, 126, 0, 126}, randomBytes(1, 126)...)
	b = append(b, big...)
	b = append(b, 0x80, 0x05, 'a')
	fs := parseFrames(b)
	if len(fs) != 2 {
		t.Fatalf("parsed %d frames, want 2: %v", len(fs), fs)
	}
	if !fs[0].fin || fs[0].opcode != opText || !fs[0].masked || string(fs[0].payload) != "Hello" {
		t.Fatalf("frame 0 = %v %q", fs[0], fs[0].payload)
	}
	if fs[1].fin || fs[1].opcode != opBinary || fs[1].masked || !bytes.Equal(fs[1].payload, randomBytes(1, 126)) {
		t.Fatalf("frame 1 = %v", fs[1])
	}
}
