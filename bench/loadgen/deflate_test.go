package loadgen

import (
	"bytes"
	stdflate "compress/flate"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestDeflateAnswer(t *testing.T) {
	const ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	for _, tc := range []struct {
		name, header string
		want         DeflateParams
		accepted     bool
		err          string
	}{
		{"declined", ok + "\r\n", DeflateParams{ServerMaxWindowBits: 15, ClientMaxWindowBits: 15}, false, ""},
		{"gorilla", ok + "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n\r\n",
			DeflateParams{true, true, 15, 15}, true, ""},
		{"window bits and case", ok + "sec-websocket-extensions: permessage-deflate;server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=\"12\"\r\n\r\n",
			DeflateParams{true, false, 10, 12}, true, ""},
		{"two header lines", ok + "Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n", DeflateParams{}, false, "2 extensions"},
		{"not offered", ok + "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n\r\n", DeflateParams{}, false, "not offered"},
		{"unknown parameter", ok + "Sec-WebSocket-Extensions: permessage-deflate; mux\r\n\r\n", DeflateParams{}, false, "unknown"},
		{"duplicated", ok + "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; server_no_context_takeover\r\n\r\n", DeflateParams{}, false, "twice"},
		{"takeover with a value", ok + "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover=1\r\n\r\n", DeflateParams{}, false, "no value"},
		{"bits too small", ok + "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=7\r\n\r\n", DeflateParams{}, false, "window size"},
		{"bits without value", ok + "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n", DeflateParams{}, false, "window size"},
		{"bits with a leading zero", ok + "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=09\r\n\r\n", DeflateParams{}, false, "window size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, accepted, err := ParseDeflateAnswer([]byte(tc.header))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil || accepted != tc.accepted || p != tc.want {
				t.Fatalf("got %+v accepted=%v err=%v, want %+v accepted=%v", p, accepted, err, tc.want, tc.accepted)
			}
		})
	}
}

func TestJSONPayload(t *testing.T) {
	for _, size := range []int{JSONMinSize, 300, 1024, 4096, 65536} {
		for _, seq := range []uint64{1, 2, 987654} {
			b := JSONPayload(nil, seq, size)
			if len(b) != size {
				t.Fatalf("size %d seq %d: %d bytes", size, seq, len(b))
			}
			var v struct {
				Seq   uint64 `json:"seq"`
				TS    int64  `json:"ts"`
				Items []struct {
					Symbol string  `json:"symbol"`
					Bid    float64 `json:"bid"`
				} `json:"items"`
			}
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatalf("size %d: not JSON: %v\n%s", size, err, b)
			}
			s, ts, ok := BroadcastStamp(b[:HeadSize])
			if !ok || s != seq || ts != v.TS || v.Seq != seq || len(v.Items) == 0 {
				t.Fatalf("size %d: stamp %d %d %v, JSON %+v", size, s, ts, ok, v)
			}
		}
	}
	// Padding would compress to almost nothing; quotes should not.
	b := JSONPayload(nil, 7, 1024)
	if c := len(DeflateFrame(0x2, b)) - 8; c < len(b)/5 || c > len(b)*6/10 {
		t.Fatalf("1 KiB of quotes compresses to %d bytes: not like real JSON", c)
	}
	if a, b := JSONPayload(nil, 1, 1024), JSONPayload(nil, 2, 1024); bytes.Equal(a[40:], b[40:]) {
		t.Fatal("two messages carry the same quotes")
	}
	// The binary form of BroadcastPayload still reads.
	if s, _, ok := BroadcastStamp(BroadcastPayload(nil, 42, 32)); !ok || s != 42 {
		t.Fatalf("binary stamp %d %v", s, ok)
	}
	if _, _, ok := BroadcastStamp([]byte(`{"seq":12,"ts":1234`)); ok {
		t.Fatal("a time cut short by the head was taken")
	}
}

// recorder is a Handler that keeps what it gets.
type recorder struct {
	lengths []int
	heads   [][]byte
}

func (r *recorder) OnMessage(_ *Poller, _ *Conn, _ byte, length int, head []byte) {
	r.lengths = append(r.lengths, length)
	r.heads = append(r.heads, append([]byte(nil), head...))
}

// serverFrames is a message as a server sends it with permessage-deflate:
// compressed by the standard library (not the inflater's library), the
// final 00 00 ff ff removed, in frames of at most frag bytes (0: one frame),
// RSV1 on the first frame only, unmasked.
func serverFrames(t *testing.T, op byte, payload []byte, frag int) []byte {
	var buf bytes.Buffer
	w, err := stdflate.NewWriter(&buf, stdflate.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write(payload)
	_ = w.Flush()
	data := bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})
	if frag <= 0 {
		frag = len(data) + 1
	}
	var out []byte
	first := true
	for {
		n := min(frag, len(data))
		b0 := byte(0)
		if first {
			b0 = op | 0x40
		}
		if n == len(data) {
			b0 |= 0x80
		}
		out = append(out, b0)
		switch {
		case n < 126:
			out = append(out, byte(n))
		case n < 1<<16:
			out = append(out, 126, byte(n>>8), byte(n))
		default:
			out = append(out, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		}
		out = append(out, data[:n]...)
		data, first = data[n:], false
		if len(data) == 0 {
			return out
		}
	}
}

func TestPollerInflate(t *testing.T) {
	big := bytes.Repeat(JSONPayload(nil, 3, 4096), 256) // 1 MiB
	for _, tc := range []struct {
		name  string
		size  int
		frag  int // compressed bytes per frame, 0: one frame
		chunk int // bytes per read, 0: all at once
	}{
		{"empty", 0, 0, 0},
		{"16 B", 16, 0, 0},
		{"1 KiB", 1024, 0, 0},
		{"1 KiB read a byte at a time", 1024, 0, 1},
		{"1 KiB in 3-byte fragments", 1024, 3, 7},
		{"100 KiB in 4 KiB fragments", 100 << 10, 4096, 1500},
		{"1 MiB", 1 << 20, 0, 65536},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			p := &Poller{h: rec}
			c := &Conn{fl: &deflateConn{}}
			payload := big[:tc.size]
			var stream []byte
			for range 3 { // one reader serves message after message
				stream = append(stream, serverFrames(t, 0x1, payload, tc.frag)...)
			}
			stream = append(stream, 0x82, 5, 'p', 'l', 'a', 'i', 'n') // uncompressed: RSV1 is per message
			chunk := tc.chunk
			if chunk == 0 {
				chunk = len(stream)
			}
			var in []byte
			for len(stream) > 0 {
				n := min(chunk, len(stream))
				in = append(in, stream[:n]...)
				stream = stream[n:]
				in = append([]byte(nil), p.parse(c, in)...)
			}
			if len(in) != 0 || len(rec.lengths) != 4 {
				t.Fatalf("%d messages, %d bytes left", len(rec.lengths), len(in))
			}
			for i := range 3 {
				if rec.lengths[i] != tc.size || !bytes.Equal(rec.heads[i], payload[:min(tc.size, HeadSize)]) {
					t.Fatalf("message %d: length %d head %q, want %d %q", i, rec.lengths[i], rec.heads[i], tc.size, payload[:min(tc.size, HeadSize)])
				}
			}
			if rec.lengths[3] != 5 || string(rec.heads[3]) != "plain" {
				t.Fatalf("plain message after compressed ones: %d %q", rec.lengths[3], rec.heads[3])
			}
			// The same bytes three times: inflated once, unless too large to keep.
			if want := uint64(1 + 2*btou(tc.size > memoLargest)); p.infl.inflated != want || p.infl.inflated+p.infl.reused != 3 {
				t.Fatalf("inflated %d times, reused %d: want %d inflations", p.infl.inflated, p.infl.reused, want)
			}
		})
	}
	t.Run("memo", func(t *testing.T) {
		// Messages that differ in one byte are each inflated, and each
		// repeat is answered with its own message's result.
		rec := &recorder{}
		p := &Poller{h: rec}
		c := &Conn{fl: &deflateConn{}}
		base := JSONPayload(nil, 1, 1024)
		var want [][]byte
		for round := range 2 {
			for i := range 40 {
				m := bytes.Clone(base)
				m[40] = byte(' ' + i)
				want = append(want, m)
				p.parse(c, serverFrames(t, 0x1, m, 0))
			}
			if round == 0 && (p.infl.inflated != 40 || p.infl.reused != 0) {
				t.Fatalf("40 different messages: inflated %d, reused %d", p.infl.inflated, p.infl.reused)
			}
		}
		// More different messages than the memo keeps: it starts again.
		for i := range memoEntries + 10 {
			m := JSONPayload(nil, uint64(i), 1024)
			want = append(want, m)
			p.parse(c, serverFrames(t, 0x1, m, 0))
		}
		for i, m := range want {
			if rec.lengths[i] != len(m) || !bytes.Equal(rec.heads[i], m[:HeadSize]) {
				t.Fatalf("message %d: %d %q, want %q", i, rec.lengths[i], rec.heads[i], m[:HeadSize])
			}
		}
		if p.infl.inflated != 40+memoEntries+10 || p.infl.reused != 40 {
			t.Fatalf("inflated %d, reused %d", p.infl.inflated, p.infl.reused)
		}
	})
	t.Run("corrupt", func(t *testing.T) {
		rec := &recorder{}
		p := &Poller{h: rec}
		c := &Conn{fl: &deflateConn{}}
		p.parse(c, []byte{0xc2, 3, 0xff, 0xff, 0xff})
		if len(rec.lengths) != 1 || rec.lengths[0] != -1 {
			t.Fatalf("a message that does not inflate gave %v", rec.lengths)
		}
	})
}

// deflateServer is serveTest with gorilla's compression if compress, and
// n messages of JSONPayload's of size bytes, each one PreparedMessage.
func deflateServer(t *testing.T, compress bool, clients, n, size int) string {
	return serveTest(t, websocket.Upgrader{EnableCompression: compress}, clients, n, func(seq uint64) *websocket.PreparedMessage {
		pm, _ := websocket.NewPreparedMessage(websocket.TextMessage, JSONPayload(nil, seq, size))
		return pm
	})
}

// TestWorkerDeflate runs the echo and broadcast workers against gorilla with
// permessage-deflate: gorilla inflates what the client compressed and
// checks it, the client inflates what gorilla compressed, and the frames
// on the wire are smaller than the plain run's.
func TestWorkerDeflate(t *testing.T) {
	for _, deflate := range []bool{false, true} {
		t.Run(fmt.Sprintf("echo deflate=%v", deflate), func(t *testing.T) {
			addr := deflateServer(t, true, 0, 0, 0)
			r := runJob(t, Job{Scenario: "echo", Addr: addr, Path: "/", Conns: 10, DialConcurrency: 2, Size: 1024, Depth: 4, Duration: 300 * time.Millisecond, Deflate: deflate, JSON: true})
			if r.Connected != 10 || r.Messages == 0 || r.BadSize != 0 {
				t.Fatalf("result %+v", r)
			}
			perFrame := float64(r.WireBytes) / float64(r.Messages)
			if deflate && (perFrame < 100 || perFrame > 700) || !deflate && perFrame != 1024+4 {
				t.Fatalf("%.1f bytes on the wire per 1 KiB echo with deflate=%v", perFrame, deflate)
			}
		})
	}
	t.Run("broadcast", func(t *testing.T) {
		const clients, n = 8, 40
		addr := deflateServer(t, true, clients, n, 1024)
		r := runJob(t, Job{Scenario: "broadcast", Addr: addr, Path: "/", Conns: clients, DialConcurrency: 2, Duration: 10 * time.Second, Expect: n, Deflate: true})
		if r.Connected != clients || r.Messages != clients*n || r.Lost != 0 || r.Reordered != 0 {
			t.Fatalf("result %+v", r)
		}
		if perFrame := float64(r.WireBytes) / float64(r.Messages); perFrame > 700 {
			t.Fatalf("%.1f bytes on the wire per 1 KiB broadcast frame", perFrame)
		}
	})
	t.Run("declined", func(t *testing.T) {
		addr := deflateServer(t, false, 0, 0, 0)
		r := runJob(t, Job{Scenario: "echo", Addr: addr, Path: "/", Conns: 3, DialConcurrency: 1, Size: 1024, Duration: 100 * time.Millisecond, Deflate: true})
		if r.Connected != 0 || r.DialErrs != 3 || !strings.Contains(r.FirstErr, "declined") {
			t.Fatalf("a server without compression: %+v", r)
		}
	})
}

func btou(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
