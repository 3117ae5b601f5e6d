package conformance

import (
	"bytes"
	"compress/flate"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	ws "github.com/wsdproject/wsd/internal/wstest"
)

// A permessage-deflate (RFC 7692) client written from the RFC, for the
// deflate groups. It shares no code with the server: it compresses and
// inflates with the standard library's compress/flate, and it checks the
// server's deflate streams with walkDeflate, a decoder of its own that
// follows every block and back-reference without producing output.

// syncTail is what a sender strips from a compressed message (the empty
// stored block that ends a sync flush, RFC 7692 section 7.2.1) and a
// receiver appends before inflating.
var syncTail = []byte{0x00, 0x00, 0xff, 0xff}

// finalBlock is an empty stored block with BFINAL set. Appended after
// syncTail it lets compress/flate end with io.EOF at a block boundary; a
// message that stops inside a block fails instead.
var finalBlock = []byte{0x01, 0x00, 0x00, 0xff, 0xff}

// deflateMessage compresses p on its own (no context takeover) at level
// with compress/flate, sync-flushes and strips the 00 00 ff ff.
func deflateMessage(p []byte, level int) []byte {
	return deflateWithDict(p, level, nil)
}

// deflateWithDict is deflateMessage with a preset window: what a sender
// with context takeover produces for a message following dict.
// compress/flate uses dict only at levels 2 to 9.
func deflateWithDict(p []byte, level int, dict []byte) []byte {
	var b bytes.Buffer
	w, err := flate.NewWriterDict(&b, level, dict)
	if err != nil {
		panic(err)
	}
	if _, err := w.Write(p); err != nil {
		panic(err)
	}
	if err := w.Flush(); err != nil {
		panic(err)
	}
	z := b.Bytes()
	if !bytes.HasSuffix(z, syncTail) {
		panic(fmt.Sprintf("sync flush does not end with 00 00 ff ff: %x", z[max(0, len(z)-8):]))
	}
	return z[:len(z)-len(syncTail)]
}

// inflateMessage inflates a compressed message (as received, without the
// 00 00 ff ff) with compress/flate and no preset window, failing once the
// output passes limit bytes; hint is the size expected, if known.
func inflateMessage(z []byte, limit, hint int) ([]byte, error) {
	r := flate.NewReader(io.MultiReader(bytes.NewReader(z), bytes.NewReader(syncTail), bytes.NewReader(finalBlock)))
	b := bytes.NewBuffer(make([]byte, 0, min(limit, max(hint, 2*len(z)))+bytes.MinRead))
	_, err := b.ReadFrom(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return b.Bytes(), err
	}
	if b.Len() > limit {
		return b.Bytes(), fmt.Errorf("inflates past %d bytes", limit)
	}
	return b.Bytes(), nil
}

// deflateStats is what walkDeflate finds in a deflate stream.
type deflateStats struct {
	out     int    // bytes the stream inflates to
	maxDist int    // longest back-reference distance (0: none)
	blocks  [3]int // stored, fixed Huffman and dynamic Huffman blocks
}

// RFC 1951 section 3.2.5: base values and extra bits of the length
// symbols 257-285 and of the distance symbols 0-29.
var (
	lengthBase  = [29]int{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lengthExtra = [29]uint{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase    = [30]int{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra   = [30]uint{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	// codeLengthOrder is the order of the code length code lengths in a
	// dynamic block header (RFC 1951 section 3.2.7).
	codeLengthOrder = [19]int{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
)

var errTruncated = errors.New("the deflate stream ends inside a block")

// bitReader reads a deflate stream least significant bit first.
type bitReader struct {
	in  []byte
	pos int    // next byte of in to load
	buf uint32 // loaded bits not yet used
	cnt uint   // number of bits in buf (at most 7 between calls)
}

func (r *bitReader) bits(n uint) (int, error) {
	for r.cnt < n {
		if r.pos == len(r.in) {
			return 0, errTruncated
		}
		r.buf |= uint32(r.in[r.pos]) << r.cnt
		r.pos++
		r.cnt += 8
	}
	v := int(r.buf & (1<<n - 1))
	r.buf >>= n
	r.cnt -= n
	return v, nil
}

// huffman is a canonical Huffman code: the number of codes of each length
// and the symbols in code order.
type huffman struct {
	count  [16]int
	symbol []int
}

func newHuffman(lengths []int) (*huffman, error) {
	h := &huffman{symbol: make([]int, len(lengths))}
	for _, l := range lengths {
		h.count[l]++
	}
	left := 1
	for l := 1; l < 16; l++ {
		left = left<<1 - h.count[l]
		if left < 0 {
			return nil, errors.New("over-subscribed Huffman code")
		}
	}
	var offs [16]int
	for l := 1; l < 15; l++ {
		offs[l+1] = offs[l] + h.count[l]
	}
	for s, l := range lengths {
		if l != 0 {
			h.symbol[offs[l]] = s
			offs[l]++
		}
	}
	return h, nil
}

// decode reads one symbol of h, a bit at a time.
func (r *bitReader) decode(h *huffman) (int, error) {
	code, first, index := 0, 0, 0
	for l := 1; l < 16; l++ {
		b, err := r.bits(1)
		if err != nil {
			return 0, err
		}
		code |= b
		if n := h.count[l]; code-n < first {
			return h.symbol[index+code-first], nil
		}
		index += h.count[l]
		first = (first + h.count[l]) << 1
		code <<= 1
	}
	return 0, errors.New("invalid Huffman code")
}

// fixedCodes are the literal/length and distance codes of a fixed Huffman
// block (RFC 1951 section 3.2.6).
var fixedLit, fixedDist = func() (*huffman, *huffman) {
	l := make([]int, 288)
	for i := range l {
		switch {
		case i < 144:
			l[i] = 8
		case i < 256:
			l[i] = 9
		case i < 280:
			l[i] = 7
		default:
			l[i] = 8
		}
	}
	d := make([]int, 30)
	for i := range d {
		d[i] = 5
	}
	lit, _ := newHuffman(l)
	dist, _ := newHuffman(d)
	return lit, dist
}()

// walkDeflate follows the raw deflate stream in (a compressed message
// with 00 00 ff ff appended) block by block without inflating it. It
// returns how many bytes the stream inflates to and the longest
// back-reference distance, and fails on a malformed stream, on a stream
// that ends inside a block, and on a back-reference to before the start of
// the message (a message must inflate without a preset window when the
// sender has no context takeover).
func walkDeflate(in []byte) (deflateStats, error) {
	r := &bitReader{in: in}
	var st deflateStats
	for r.pos < len(r.in) || r.cnt > 0 {
		final, err := r.bits(1)
		if err != nil {
			return st, err
		}
		typ, err := r.bits(2)
		if err != nil {
			return st, err
		}
		switch typ {
		case 0:
			err = r.stored(&st)
		case 1:
			err = r.codes(&st, fixedLit, fixedDist)
		case 2:
			err = r.dynamic(&st)
		default:
			err = errors.New("block type 3 (reserved)")
		}
		if err != nil {
			return st, fmt.Errorf("block %d (type %d) at byte %d: %w", st.blocks[0]+st.blocks[1]+st.blocks[2], typ, r.pos, err)
		}
		if typ < 3 {
			st.blocks[typ]++
		}
		if final == 1 {
			return st, nil // what follows the final block is ignored
		}
	}
	return st, nil
}

func (r *bitReader) stored(st *deflateStats) error {
	r.buf, r.cnt = 0, 0 // the rest of the current byte is padding
	if len(r.in)-r.pos < 4 {
		return errTruncated
	}
	n := int(r.in[r.pos]) | int(r.in[r.pos+1])<<8
	nn := int(r.in[r.pos+2]) | int(r.in[r.pos+3])<<8
	if n != ^nn&0xffff {
		return fmt.Errorf("stored block LEN %04x and NLEN %04x do not match", n, nn)
	}
	r.pos += 4
	if len(r.in)-r.pos < n {
		return errTruncated
	}
	r.pos += n
	st.out += n
	return nil
}

func (r *bitReader) dynamic(st *deflateStats) error {
	hlit, err := r.bits(5)
	if err != nil {
		return err
	}
	hdist, err := r.bits(5)
	if err != nil {
		return err
	}
	hclen, err := r.bits(4)
	if err != nil {
		return err
	}
	nlen, ndist := hlit+257, hdist+1
	if nlen > 286 || ndist > 30 {
		return fmt.Errorf("%d literal/length or %d distance codes", nlen, ndist)
	}
	var cl [19]int
	for i := range hclen + 4 {
		if cl[codeLengthOrder[i]], err = r.bits(3); err != nil {
			return err
		}
	}
	clCode, err := newHuffman(cl[:])
	if err != nil {
		return err
	}
	lengths := make([]int, nlen+ndist)
	for i := 0; i < len(lengths); {
		sym, err := r.decode(clCode)
		if err != nil {
			return err
		}
		if sym < 16 {
			lengths[i] = sym
			i++
			continue
		}
		var l, rep int
		switch sym {
		case 16:
			if i == 0 {
				return errors.New("code length repeat with no previous length")
			}
			l = lengths[i-1]
			rep, err = r.bits(2)
			rep += 3
		case 17:
			rep, err = r.bits(3)
			rep += 3
		default:
			rep, err = r.bits(7)
			rep += 11
		}
		if err != nil {
			return err
		}
		if i+rep > len(lengths) {
			return errors.New("code lengths overrun")
		}
		for ; rep > 0; rep-- {
			lengths[i] = l
			i++
		}
	}
	if lengths[256] == 0 {
		return errors.New("no end-of-block code")
	}
	lit, err := newHuffman(lengths[:nlen])
	if err != nil {
		return err
	}
	dist, err := newHuffman(lengths[nlen:])
	if err != nil {
		return err
	}
	return r.codes(st, lit, dist)
}

func (r *bitReader) codes(st *deflateStats, lit, dist *huffman) error {
	for {
		sym, err := r.decode(lit)
		if err != nil {
			return err
		}
		switch {
		case sym < 256:
			st.out++
			continue
		case sym == 256:
			return nil
		case sym > 285:
			return fmt.Errorf("length symbol %d", sym)
		}
		sym -= 257
		e, err := r.bits(lengthExtra[sym])
		if err != nil {
			return err
		}
		length := lengthBase[sym] + e
		ds, err := r.decode(dist)
		if err != nil {
			return err
		}
		if ds >= 30 {
			return fmt.Errorf("distance symbol %d", ds)
		}
		if e, err = r.bits(distExtra[ds]); err != nil {
			return err
		}
		d := distBase[ds] + e
		if d > st.out {
			return fmt.Errorf("back-reference distance %d at output byte %d reaches before the start of the message", d, st.out)
		}
		st.maxDist = max(st.maxDist, d)
		st.out += length
	}
}

// pmd is what a permessage-deflate answer grants; the zero value means
// that the offer was declined.
type pmd struct {
	on                      bool
	serverNoContextTakeover bool
	clientNoContextTakeover bool
	serverMaxWindowBits     int // 15 when the answer does not limit it
	clientMaxWindowBits     int // 15 when the answer does not limit it
}

// parseAnswer checks a Sec-WebSocket-Extensions answer the way a client
// must (RFC 7692 section 7): exactly one extension, permessage-deflate,
// with known parameters, none twice, values only on the window sizes, and
// window sizes from 8 to 15. (Whether the answer fits the offer is checked
// by comparing it with the expected answer.)
func parseAnswer(answer string) (pmd, error) {
	p := pmd{on: true, serverMaxWindowBits: 15, clientMaxWindowBits: 15}
	if strings.Contains(answer, ",") {
		return pmd{}, errors.New("more than one extension in the answer")
	}
	parts := strings.Split(answer, ";")
	if strings.TrimSpace(parts[0]) != "permessage-deflate" {
		return pmd{}, fmt.Errorf("extension %q", parts[0])
	}
	seen := map[string]bool{}
	for _, param := range parts[1:] {
		key, val, hasVal := strings.Cut(strings.TrimSpace(param), "=")
		if seen[key] {
			return pmd{}, fmt.Errorf("parameter %s twice", key)
		}
		seen[key] = true
		switch key {
		case "server_no_context_takeover", "client_no_context_takeover":
			if hasVal {
				return pmd{}, fmt.Errorf("%s has a value", key)
			}
			if key[0] == 's' {
				p.serverNoContextTakeover = true
			} else {
				p.clientNoContextTakeover = true
			}
		case "server_max_window_bits", "client_max_window_bits":
			n, err := strconv.Atoi(val)
			if !hasVal || err != nil || n < 8 || n > 15 || val[0] < '1' || val[0] > '9' {
				return pmd{}, fmt.Errorf("%s=%q", key, val)
			}
			if key[0] == 's' {
				p.serverMaxWindowBits = n
			} else {
				p.clientMaxWindowBits = n
			}
		default:
			return pmd{}, fmt.Errorf("unknown parameter %q", key)
		}
	}
	return p, nil
}

// deflateConn is a raw client connection that offered permessage-deflate.
type deflateConn struct {
	*ws.Client
	answer string // the 101's Sec-WebSocket-Extensions, "" if none
	pmd    pmd

	// inflatedTo holds, by the SHA-1 of a message, a compressed payload
	// from the server that inflated to it (see readMessage).
	inflatedTo map[[sha1.Size]byte][]byte

	// Counts for the case log.
	msgs, compressedMsgs int
	repeats              int // compressed messages identical to an earlier one
	payloadIn, wireIn    int
	maxDist              int // longest back-reference walked
}

// upgradeDeflate completes the handshake on c offering permessage-deflate
// with one Sec-WebSocket-Extensions line per element of offers, and parses
// the answer.
func upgradeDeflate(c *ws.Client, offers ...string) *deflateConn {
	c.T.Helper()
	key := ws.NewKey()
	hs := ws.UpgradeHeaders(c.Conn.RemoteAddr().String(), key)
	for _, o := range offers {
		hs = append(hs, ws.Header{Name: "Sec-WebSocket-Extensions", Value: o})
	}
	c.Write(ws.BuildRequest("GET", "/", hs))
	resp := c.ExpectUpgrade(key)
	d := &deflateConn{Client: c}
	switch vals := resp.Header.Values("Sec-WebSocket-Extensions"); len(vals) {
	case 0:
	case 1:
		d.answer = vals[0]
		p, err := parseAnswer(d.answer)
		if err != nil {
			c.T.Fatalf("offer %q: invalid answer %q: %v", offers, d.answer, err)
		}
		d.pmd = p
	default:
		c.T.Fatalf("offer %q: %d Sec-WebSocket-Extensions lines in the answer: %q", offers, len(vals), vals)
	}
	return d
}

// openDeflate opens a connection over tr to the shared daemon offering
// permessage-deflate with offers (one header line each).
func openDeflate(t *testing.T, tr *transport, offers ...string) *deflateConn {
	t.Helper()
	return upgradeDeflate(tr.dial(t), offers...)
}

// expectAnswer fails the test unless the server answered exactly want
// ("": no Sec-WebSocket-Extensions, the offer declined).
func (d *deflateConn) expectAnswer(want string) {
	d.T.Helper()
	if d.answer != want {
		if want == "" {
			d.T.Fatalf("the offer should be declined, the server answered %q", d.answer)
		}
		d.T.Fatalf("Sec-WebSocket-Extensions %q, want %q", d.answer, want)
	}
}

// mayCompress reports whether the client may send a message of n bytes
// compressed: always with permessage-deflate on, unless the answer limits
// the client's window below 2^15 (compress/flate always uses a 32 KiB
// window, so then only messages that fit the window are compressed).
func (d *deflateConn) mayCompress(n int) bool {
	return d.pmd.on && (d.pmd.clientMaxWindowBits >= 15 || n <= 1<<d.pmd.clientMaxWindowBits)
}

// compressedFrames returns the frames of a compressed message: z (deflate
// data without the 00 00 ff ff) in frames of frag bytes (0: one frame),
// RSV1 on the first.
func compressedFrames(op byte, z []byte, frag int) []ws.Frame {
	fs := []ws.Frame{ws.Msg(op, z)}
	if frag > 0 {
		fs = ws.Fragments(op, z, frag)
	}
	fs[0].Rsv = ws.Rsv1
	return fs
}

// sendMessage writes the message p of op in one write: compressed (z, or p
// compressed at level when z is nil) when the client may compress it,
// plain otherwise; in frames of frag bytes of what is sent (0: one frame).
func (d *deflateConn) sendMessage(op byte, p, z []byte, level, frag int) {
	d.T.Helper()
	if !d.mayCompress(len(p)) {
		fs := []ws.Frame{ws.Msg(op, p)}
		if frag > 0 {
			fs = ws.Fragments(op, p, frag)
		}
		d.WriteFrames(fs...)
		return
	}
	if z == nil {
		z = deflateMessage(p, level)
	}
	d.WriteFrames(compressedFrames(op, z, frag)...)
}

// readMessage reads the next message and checks its frames: unmasked,
// minimal lengths, no control frame, RSV1 only on the first frame and only
// with permessage-deflate on, no RSV2 or RSV3. A compressed message is
// inflated with compress/flate without a preset window (so it may not
// refer to an earlier message). Under server_max_window_bits=N < 15 it is
// also walked with walkDeflate, which must agree on its length and find no
// back-reference longer than 2^N bytes; and wsd sends a message longer
// than 2^N uncompressed (codec.Deflate.Fits). (With 15, every valid
// deflate stream fits the window.)
//
// want is the message expected, if known: a compressed payload identical
// to one that already inflated to want on this connection is want without
// inflating it again (inflating is deterministic).
func (d *deflateConn) readMessage(want []byte) (op byte, p []byte, compressed bool) {
	d.T.Helper()
	var z []byte
	wire := 0
	for n := 0; ; n++ {
		f, err := d.ReadFrame()
		if err != nil {
			d.T.Fatalf("expected a message from the server, got: %v", err)
		}
		wire += len(f.Payload)
		switch {
		case f.Masked:
			d.T.Fatalf("server sent a masked frame: %v", f)
		case f.LenBytes != minimalLen(f.Length):
			d.T.Fatalf("server frame without the minimal length encoding: %v", f)
		case f.Opcode >= 8:
			d.T.Fatalf("expected a data frame, got %v", f)
		case n == 0 && f.Opcode == ws.OpContinuation, n > 0 && f.Opcode != ws.OpContinuation:
			d.T.Fatalf("frame %d of a message: %v", n, f)
		case f.Rsv&^ws.Rsv1 != 0:
			d.T.Fatalf("server sent RSV2 or RSV3: %v", f)
		case f.Rsv == ws.Rsv1 && (n > 0 || !d.pmd.on):
			d.T.Fatalf("server sent RSV1 on frame %d with permessage-deflate %v: %v", n, d.pmd.on, f)
		}
		if n == 0 {
			op, compressed = f.Opcode, f.Rsv == ws.Rsv1
		}
		if n == 0 {
			z = f.Payload
		} else {
			z = append(z, f.Payload...)
		}
		if f.Fin {
			break
		}
	}
	d.msgs++
	d.wireIn += wire
	if !compressed {
		d.payloadIn += len(z)
		return op, z, false
	}
	var key [sha1.Size]byte
	if want != nil {
		key = sha1.Sum(want)
		if prev, ok := d.inflatedTo[key]; ok && bytes.Equal(prev, z) {
			d.compressedMsgs++
			d.repeats++
			d.payloadIn += len(want)
			return op, want, true
		}
	}
	p, err := inflateMessage(z, ws.MaxFramePayload, len(want))
	if err != nil {
		d.T.Fatalf("the server's compressed %s message of %d bytes does not inflate: %v (payload %s)", ws.OpcodeName(op), len(z), err, hexHead(z))
	}
	if bits := d.pmd.serverMaxWindowBits; bits < 15 {
		if len(p) > 1<<bits {
			d.T.Fatalf("server_max_window_bits=%d: wsd sends messages over %d bytes uncompressed, got one of %d bytes compressed", bits, 1<<bits, len(p))
		}
		st, err := walkDeflate(append(z[:len(z):len(z)], syncTail...))
		if err != nil {
			d.T.Fatalf("the server's compressed %s message of %d bytes: %v (payload %s)", ws.OpcodeName(op), len(z), err, hexHead(z))
		}
		if st.out != len(p) {
			d.T.Fatalf("the server's compressed message walks to %d bytes, compress/flate inflates it to %d", st.out, len(p))
		}
		if st.maxDist > 1<<bits {
			d.T.Fatalf("server_max_window_bits=%d, but the server's compressed message of %d bytes has a back-reference %d bytes back", bits, len(p), st.maxDist)
		}
		d.maxDist = max(d.maxDist, st.maxDist)
	}
	if want != nil && bytes.Equal(p, want) {
		if d.inflatedTo == nil {
			d.inflatedTo = map[[sha1.Size]byte][]byte{}
		}
		d.inflatedTo[key] = z
	}
	d.compressedMsgs++
	d.payloadIn += len(p)
	return op, p, true
}

// expectMessage reads the next message and fails unless it is op with
// exactly want; it reports whether it came compressed.
func (d *deflateConn) expectMessage(op byte, want []byte) bool {
	d.T.Helper()
	gotOp, p, compressed := d.readMessage(want)
	if gotOp != op {
		d.T.Fatalf("expected a %s message of %d bytes, got a %s message of %d bytes", ws.OpcodeName(op), len(want), ws.OpcodeName(gotOp), len(p))
	}
	if !bytes.Equal(p, want) {
		i := 0
		for i < len(p) && i < len(want) && p[i] == want[i] {
			i++
		}
		d.T.Fatalf("%s echo (compressed %v) differs: got %d bytes, want %d; first difference at offset %d", ws.OpcodeName(op), compressed, len(p), len(want), i)
	}
	return compressed
}

// logStats logs what the server sent on d.
func (d *deflateConn) logStats() {
	d.T.Helper()
	d.T.Logf("answer %q; received %d messages, %d compressed (%d of them repeats of an earlier one); %d payload bytes in %d wire bytes; longest back-reference walked %d",
		d.answer, d.msgs, d.compressedMsgs, d.repeats, d.payloadIn, d.wireIn, d.maxDist)
}

// minimalLen is the size of the extended length field RFC 6455 requires
// for n payload bytes: what follows the two fixed bytes of the header
// wstest encodes for n, unmasked.
func minimalLen(n uint64) int {
	return len(ws.Frame{Unmasked: true, DeclareLength: true, Length: n}.Header()) - 2
}

func hexHead(b []byte) string {
	if len(b) > 32 {
		return fmt.Sprintf("%x... (%d bytes)", b[:32], len(b))
	}
	return fmt.Sprintf("%x", b)
}

// mendUTF8 makes a slice cut at arbitrary offsets out of valid UTF-8
// valid again, keeping its length: continuation bytes at the start and an
// incomplete sequence at the end become '*'.
func mendUTF8(b []byte) {
	for i := 0; i < len(b) && !utf8.RuneStart(b[i]); i++ {
		b[i] = '*'
	}
	for j := len(b) - 1; j >= 0 && j >= len(b)-utf8.UTFMax; j-- {
		if utf8.RuneStart(b[j]) {
			if !utf8.FullRune(b[j:]) {
				for k := j; k < len(b); k++ {
					b[k] = '*'
				}
			}
			break
		}
	}
}

// TestConformanceDeflateHelpers checks the deflate client itself (no
// daemon): walkDeflate against compress/flate, and the examples of RFC
// 7692 section 7.2.3.
func TestConformanceDeflateHelpers(t *testing.T) {
	repeated := bytes.Repeat(binaryPayload(1000), 5)
	inputs := [][]byte{nil, []byte("Hello"), textPayload(5000), binaryPayload(70000), repeated, make([]byte, 300000)}
	for _, in := range inputs {
		for _, level := range []int{flate.NoCompression, flate.BestSpeed, flate.DefaultCompression, flate.BestCompression, flate.HuffmanOnly} {
			z := deflateMessage(in, level)
			st, err := walkDeflate(append(z, syncTail...))
			if err != nil || st.out != len(in) || st.maxDist > 32768 {
				t.Fatalf("%d bytes at level %d: walk %+v, %v", len(in), level, st, err)
			}
			out, err := inflateMessage(z, len(in), 0)
			if err != nil || !bytes.Equal(out, in) {
				t.Fatalf("%d bytes at level %d: inflate %d bytes, %v", len(in), level, len(out), err)
			}
		}
	}
	// Random bytes repeated refer back a multiple of their length.
	for _, level := range []int{flate.BestSpeed, flate.BestCompression} {
		if st, _ := walkDeflate(append(deflateMessage(repeated, level), syncTail...)); st.maxDist == 0 || st.maxDist%1000 != 0 {
			t.Fatalf("a 1000-byte block repeated, level %d: longest distance %d", level, st.maxDist)
		}
	}
	// A message compressed after a preset window refers before its start.
	z := deflateWithDict([]byte("Hello, world"), flate.BestCompression, []byte("Hello, world"))
	if _, err := walkDeflate(append(z, syncTail...)); err == nil {
		t.Fatal("walk accepts a back-reference before the start of the message")
	}
	if _, err := inflateMessage(z, 100, 0); err == nil {
		t.Fatal("compress/flate inflates a back-reference before the start of the message")
	}
	for _, ex := range rfc7692Examples {
		var z []byte // the frames' payloads, concatenated
		for _, f := range ex.frames {
			z = append(z, f...)
		}
		st, err := walkDeflate(append(z, syncTail...))
		out, ierr := inflateMessage(z, 100, 0)
		if err != nil || ierr != nil || st.out != len(ex.want) || string(out) != ex.want {
			t.Fatalf("%s: walk %+v %v, inflate %q %v", ex.desc, st, err, out, ierr)
		}
	}
	for _, bad := range garbageDeflate {
		if _, err := walkDeflate(append(bad.z, syncTail...)); err == nil {
			t.Errorf("%s: walk accepts %x", bad.desc, bad.z)
		}
		if _, err := inflateMessage(bad.z, 100, 0); err == nil {
			t.Errorf("%s: compress/flate inflates %x", bad.desc, bad.z)
		}
	}
	for _, n := range []int{1, 16, 1000, 4096} {
		for _, set := range deflateSets() {
			if set.op != ws.OpText {
				continue
			}
			for i := range 50 {
				if m := set.message(n, i); !utf8.Valid(m) || len(m) != n {
					t.Fatalf("%s: message %d of %d bytes is not valid UTF-8 (len %d)", set.desc, i, n, len(m))
				}
			}
		}
	}
	for _, a := range []string{"permessage-deflate; foo", "permessage-deflate; server_max_window_bits=08", "permessage-deflate; client_no_context_takeover=1", "x-foo", "permessage-deflate, permessage-deflate"} {
		if _, err := parseAnswer(a); err == nil {
			t.Errorf("parseAnswer accepts %q", a)
		}
	}
}
