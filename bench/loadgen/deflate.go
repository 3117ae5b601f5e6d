package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/flate"
	"golang.org/x/sys/unix"
)

// DeflateOffer is the permessage-deflate offer (RFC 7692) the load
// generator makes: Chrome's, Node's ws and Python's websockets' default.
const DeflateOffer = "permessage-deflate; client_max_window_bits"

// maxInflated bounds an inflated message (the peer servers' limit).
const maxInflated = 16 << 20

// deflateTail ends a message's compressed bytes for the reader: the
// 00 00 ff ff a sender strips (RFC 7692 §7.2.1), then an empty final
// stored block, so that the reader ends with io.EOF.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// DeflateParams is what a server's answer to DeflateOffer says.
type DeflateParams struct {
	ServerNoContextTakeover bool
	ClientNoContextTakeover bool
	ServerMaxWindowBits     int // 15 when not given
	ClientMaxWindowBits     int // 15 when not given
}

// deflateConn is the permessage-deflate state of a connection: whether the
// message being read is compressed, and its compressed bytes so far.
type deflateConn struct {
	compressed bool
	msg        []byte
}

// DialDeflate is Dial with DeflateOffer in the request. The server must
// accept the offer, and with server_no_context_takeover: this client
// inflates every message on its own (it keeps no window per connection), so
// an answer that lets the server keep its context is an error, as is a
// declined offer (a compressed run must not measure plain frames).
func DialDeflate(src, dst, path string, timeout time.Duration) (*Conn, error) {
	fd, header, rest, err := dialRequest(src, dst, offerRequest(dst, path, DeflateOffer), timeout, 0)
	if err != nil {
		return nil, err
	}
	params, ok, err := ParseDeflateAnswer(header)
	switch {
	case err == nil && !ok:
		err = errors.New("the server declined permessage-deflate")
	case err == nil && !params.ServerNoContextTakeover:
		err = errors.New("the server keeps its compression context (no server_no_context_takeover); this client inflates each message alone")
	}
	if err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	c, err := newConn(fd, rest)
	if err != nil {
		return nil, err
	}
	c.fl = &deflateConn{}
	return c, nil
}

// offerRequest is upgradeRequest with a Sec-WebSocket-Extensions header.
func offerRequest(host, path, offer string) []byte {
	req := upgradeRequest(host, path)
	req = req[:len(req)-2] // before the blank line
	return append(req, "Sec-WebSocket-Extensions: "+offer+"\r\n\r\n"...)
}

// ParseDeflateAnswer reads the Sec-WebSocket-Extensions headers of a 101
// answer to DeflateOffer. ok is false when the server accepted no
// extension. An answer this client did not offer, a parameter RFC 7692
// does not define (or one defined twice), a window size outside 8-15, or
// a second extension is an error (RFC 7692 §5, §7.1).
func ParseDeflateAnswer(header []byte) (p DeflateParams, ok bool, err error) {
	p.ServerMaxWindowBits, p.ClientMaxWindowBits = 15, 15
	var exts []string
	for _, line := range strings.Split(string(header), "\r\n")[1:] {
		name, value, found := strings.Cut(line, ":")
		if !found || !strings.EqualFold(strings.TrimSpace(name), "Sec-WebSocket-Extensions") {
			continue
		}
		for _, e := range strings.Split(value, ",") {
			if e = strings.TrimSpace(e); e != "" {
				exts = append(exts, e)
			}
		}
	}
	if len(exts) == 0 {
		return p, false, nil
	}
	if len(exts) > 1 {
		return p, false, fmt.Errorf("the server answered %d extensions to one offer: %q", len(exts), exts)
	}
	params := strings.Split(exts[0], ";")
	if strings.TrimSpace(params[0]) != "permessage-deflate" {
		return p, false, fmt.Errorf("the server answered an extension that was not offered: %q", exts[0])
	}
	seen := map[string]bool{}
	for _, param := range params[1:] {
		name, value, hasValue := strings.Cut(strings.TrimSpace(param), "=")
		name, value = strings.TrimSpace(name), strings.Trim(strings.TrimSpace(value), `"`)
		if seen[name] {
			return p, false, fmt.Errorf("permessage-deflate parameter %s given twice", name)
		}
		seen[name] = true
		switch name {
		case "server_no_context_takeover", "client_no_context_takeover":
			if hasValue {
				return p, false, fmt.Errorf("permessage-deflate parameter %s takes no value", name)
			}
			if name == "server_no_context_takeover" {
				p.ServerNoContextTakeover = true
			} else {
				p.ClientNoContextTakeover = true
			}
		case "server_max_window_bits", "client_max_window_bits":
			bits, err := strconv.Atoi(value)
			if !hasValue || err != nil || bits < 8 || bits > 15 || value != strconv.Itoa(bits) {
				return p, false, fmt.Errorf("permessage-deflate parameter %s=%q is not a window size of 8 to 15", name, value)
			}
			if name == "server_max_window_bits" {
				p.ServerMaxWindowBits = bits
			} else {
				p.ClientMaxWindowBits = bits
			}
		default:
			return p, false, fmt.Errorf("unknown permessage-deflate parameter %q", param)
		}
	}
	return p, true, nil
}

// inflater inflates messages for one Poller (poller goroutine only): one
// reader reset for each message, since no server keeps a context.
//
// A broadcast reaches every subscriber as the same compressed bytes (each
// server here compresses a publish once), and inflating is a function of
// those bytes alone: the inflater keeps the messages it inflated last by
// their compressed bytes, and a message whose bytes are equal to one of
// them (compared in full) is given the same inflated form without being
// inflated again. Every message is still checked whole; what the memo saves
// is the load generator's CPU, which at 200,000 frames per second would
// otherwise cap the rate the servers are measured at.
type inflater struct {
	r    io.ReadCloser
	src  bytes.Reader
	out  []byte
	seed maphash.Seed
	memo map[uint64]inflated

	inflated, reused uint64 // messages inflated, and given a kept result
}

// inflated is one message the inflater keeps: compressed and inflated.
type inflated struct{ comp, out []byte }

const (
	memoEntries = 256      // messages kept; the memo starts again when full
	memoLargest = 64 << 10 // larger messages are not kept
)

// inflate returns the inflated form of msg, the compressed payload of a
// whole message (the slice may be appended to); the result is valid until
// the next call.
func (f *inflater) inflate(msg []byte) ([]byte, error) {
	if f.memo == nil {
		f.seed, f.memo = maphash.MakeSeed(), make(map[uint64]inflated, memoEntries)
	}
	key := maphash.Bytes(f.seed, msg)
	if m, ok := f.memo[key]; ok && bytes.Equal(m.comp, msg) {
		f.reused++
		return m.out, nil
	}
	comp := msg
	out, err := f.inflateOnce(msg)
	if err != nil || len(comp) > memoLargest || len(out) > memoLargest {
		return out, err
	}
	if len(f.memo) >= memoEntries {
		clear(f.memo)
	}
	f.memo[key] = inflated{comp: bytes.Clone(comp), out: bytes.Clone(out)}
	return out, nil
}

// inflateOnce inflates msg with the reader.
func (f *inflater) inflateOnce(msg []byte) ([]byte, error) {
	f.inflated++
	msg = append(msg, deflateTail...)
	f.src.Reset(msg)
	if f.r == nil {
		f.r = flate.NewReader(&f.src)
	} else if err := f.r.(flate.Resetter).Reset(&f.src, nil); err != nil {
		return nil, err
	}
	out := f.out[:0]
	for {
		if len(out) == cap(out) {
			if len(out) >= maxInflated {
				return nil, fmt.Errorf("a message inflates past %d bytes", maxInflated)
			}
			out = append(out, 0)[:len(out)]
		}
		n, err := f.r.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if err == io.EOF {
			f.out = out
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("inflate: %w", err)
		}
	}
}

// onCompressed takes the frames of a compressed message (RSV1 on its first
// frame) and, at the last one, hands the inflated message to the Handler.
// A message that does not inflate reaches the Handler with length -1 and
// no head, which the scenarios count as a wrong size or a lost message.
func (p *Poller) onCompressed(c *Conn, payload []byte, fin bool) {
	c.fl.msg = append(c.fl.msg, payload...)
	if !fin {
		return
	}
	c.inMsg, c.fl.compressed = false, false
	c.Got++
	if p.infl == nil {
		p.infl = &inflater{}
	}
	out, err := p.infl.inflate(c.fl.msg)
	c.fl.msg = c.fl.msg[:0]
	if err != nil {
		p.h.OnMessage(p, c, c.msgOp, -1, nil)
		return
	}
	p.h.OnMessage(p, c, c.msgOp, len(out), out[:min(len(out), HeadSize)])
}

// DeflateFrame builds one masked client frame (see ClientFrame) carrying
// payload compressed as one permessage-deflate message (RSV1 set,
// RFC 7692 §7.2.1), as a browser sends it after negotiation.
func DeflateFrame(op byte, payload []byte) []byte {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestSpeed) // level 1: the servers' default too
	_, _ = w.Write(payload)
	_ = w.Flush()
	b := bytes.TrimSuffix(buf.Bytes(), []byte{0x00, 0x00, 0xff, 0xff})
	f := ClientFrame(op, b)
	f[0] |= 0x40
	return f
}

// echoFrame is the client frame of one echo message of job: job.Size zero
// bytes, or JSONPayload's message with job.JSON, compressed with
// job.Deflate.
func echoFrame(job Job) []byte {
	payload := make([]byte, job.Size)
	if job.JSON {
		payload = JSONPayload(nil, 1, job.Size)
	}
	if job.Deflate {
		return DeflateFrame(0x2, payload)
	}
	return ClientFrame(0x2, payload)
}
