package main

import (
	"bytes"
	"compress/flate"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/internal/wstest"
)

// deflateClient connects a raw client to td that offers permessage-deflate
// with offer (none if empty) and returns it with the server's answer ("" for
// none).
func deflateClient(t *testing.T, td *testDaemon, path, offer string) (*wstest.Client, string) {
	t.Helper()
	c := wstest.Dial(t, td.addr)
	c.Key = wstest.NewKey()
	hs := wstest.UpgradeHeaders(td.addr, c.Key)
	if offer != "" {
		hs = wstest.WithHeader(hs, "Sec-WebSocket-Extensions", offer)
	}
	c.Write(wstest.BuildRequest("GET", path, hs))
	resp := c.ExpectUpgrade(c.Key)
	return c, strings.Join(resp.Header.Values("Sec-WebSocket-Extensions"), ", ")
}

// inflate decompresses a permessage-deflate payload with the standard
// library, adding back the 00 00 ff ff the sender strips.
func inflate(t *testing.T, p []byte) []byte {
	t.Helper()
	r := flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff})))
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("inflating %d bytes: %v", len(p), err)
	}
	return out
}

// jsonDoc returns about n bytes of JSON text, a list of records like the
// ones a push service sends.
func jsonDoc(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"type":"quotes","items":[`)
	for i := 0; b.Len() < n-2; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"symbol":"SYM%d","price":%d.%02d,"change":-%d.%d,"volume":%d}`, i, 100+i*7, i*13%100, i%5, i%10, 1000+i*37)
	}
	b.WriteString("]}")
	return b.Bytes()
}

// nextFrame reads the next frame of c, which may have RSV1 (the Client's
// ExpectFrame refuses it).
func nextFrame(t *testing.T, c *wstest.Client) *wstest.ServerFrame {
	t.Helper()
	f, err := c.ReadFrame()
	if err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	if f.Masked || f.Rsv&^wstest.Rsv1 != 0 {
		t.Fatalf("got %v: masked, or with RSV2 or RSV3", f)
	}
	return f
}

// expectCompressed reads the next frame of c and fails unless it is a
// compressed (RSV1) frame of op whose payload is p compressed at level,
// byte for byte: wsd compresses every message on its own, so the wire
// shows which level it used.
func expectCompressed(t *testing.T, c *wstest.Client, op byte, p []byte, level int) {
	t.Helper()
	f := nextFrame(t, c)
	if f.Opcode != op || !f.Fin || f.Rsv != wstest.Rsv1 {
		t.Fatalf("got %v, want a compressed (rsv=4) final frame of opcode %d", f, op)
	}
	if got := inflate(t, f.Payload); !bytes.Equal(got, p) {
		t.Fatalf("the frame inflates to %d bytes %.40q, want %d bytes %.40q", len(got), got, len(p), p)
	}
	if want := codec.Compress(nil, p, level); !bytes.Equal(f.Payload, want) {
		t.Fatalf("compressed payload of %d bytes is not the level-%d compression of the message (%d bytes)", len(f.Payload), level, len(want))
	}
}

// expectPlain reads the next frame of c and fails unless it is an
// uncompressed final frame of op carrying p.
func expectPlain(t *testing.T, c *wstest.Client, op byte, p []byte) {
	t.Helper()
	f := nextFrame(t, c)
	if f.Opcode != op || !f.Fin || f.Rsv != 0 || !bytes.Equal(f.Payload, p) {
		t.Fatalf("got %v, want an uncompressed final frame of opcode %d with the %d bytes sent", f, op, len(p))
	}
}

// TestDaemonCompression checks what the compression flags do on the wire:
// the answer to an offer, which messages go compressed and at what level,
// and that -compression=false declines.
func TestDaemonCompression(t *testing.T) {
	const answer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	doc := jsonDoc(1024)
	small := []byte(strings.Repeat("a", 100)) // compressible, under 256
	cases := []struct {
		name   string
		args   []string
		answer string
		level  int
		small  bool // the 100-byte message goes compressed
	}{
		{"defaults", nil, answer, 1, false},
		{"level 9", []string{"-compression-level", "9"}, answer, 9, false},
		{"threshold 0 is every message", []string{"-compression-threshold", "0"}, answer, 1, true},
		{"threshold 64", []string{"-compression-threshold", "64"}, answer, 1, true},
		{"client context takeover", []string{"-compression-client-context-takeover"}, "permessage-deflate; server_no_context_takeover; client_max_window_bits=12", 1, false},
		{"off", []string{"-compression=false"}, "", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			td := startWSD(t, append([]string{"-mode", "echo"}, tc.args...)...)
			c, got := deflateClient(t, td, "/", "permessage-deflate; client_max_window_bits")
			if got != tc.answer {
				t.Fatalf("Sec-WebSocket-Extensions %q, want %q", got, tc.answer)
			}
			c.WriteFrames(wstest.Msg(wstest.OpText, doc))
			if tc.answer == "" {
				expectPlain(t, c, wstest.OpText, doc)
			} else {
				expectCompressed(t, c, wstest.OpText, doc, tc.level)
			}
			c.WriteFrames(wstest.Msg(wstest.OpBinary, small))
			if tc.small {
				expectCompressed(t, c, wstest.OpBinary, small, tc.level)
			} else {
				expectPlain(t, c, wstest.OpBinary, small)
			}
			// Incompressible data goes as it is, whatever its size.
			noise := make([]byte, 4096)
			_, _ = rand.Read(noise)
			c.WriteFrames(wstest.Msg(wstest.OpBinary, noise))
			expectPlain(t, c, wstest.OpBinary, noise)
			// Without an offer, nothing is compressed.
			plain, got := deflateClient(t, td, "/", "")
			if got != "" {
				t.Fatalf("answer %q to no offer", got)
			}
			plain.WriteFrames(wstest.Msg(wstest.OpText, doc))
			expectPlain(t, plain, wstest.OpText, doc)
		})
	}
}

// TestDaemonPublishCompressed publishes messages through the admin API to
// subscribers with and without permessage-deflate: a publish is compressed
// once (wsd_published_compressed_total) with the daemon's level and
// threshold, and each subscriber gets it as it negotiated.
func TestDaemonPublishCompressed(t *testing.T) {
	doc, small := jsonDoc(1024), strings.Repeat("b", 100)
	for _, tc := range []struct {
		name  string
		args  []string
		level int  // 0: compression off
		small bool // the 100-byte publish is compressed
	}{
		{"defaults", nil, 1, false},
		{"level 5", []string{"-compression-level", "5"}, 5, false},
		{"threshold 0", []string{"-compression-threshold", "0"}, 1, true},
		{"off", []string{"-compression=off"}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			td := startWSD(t, append([]string{"-mode", "push"}, tc.args...)...)
			var zs, plains []*wstest.Client
			for range 3 {
				z, _ := deflateClient(t, td, "/?topics=news", "permessage-deflate")
				p, _ := deflateClient(t, td, "/?topics=news", "")
				zs, plains = append(zs, z), append(plains, p)
			}
			const rounds = 3
			for range rounds {
				for _, m := range []struct {
					p        []byte
					compress bool
				}{{doc, tc.level != 0}, {[]byte(small), tc.small}} {
					data, _ := json.Marshal(string(m.p))
					if r := td.publish(t, `{"topic":"news","data":`+string(data)+`}`); r.status != http.StatusOK {
						t.Fatalf("publish: %d %s", r.status, r.body)
					}
					for _, z := range zs {
						if m.compress {
							expectCompressed(t, z, wstest.OpText, m.p, tc.level)
						} else {
							expectPlain(t, z, wstest.OpText, m.p)
						}
					}
					for _, p := range plains {
						expectPlain(t, p, wstest.OpText, m.p)
					}
				}
			}
			samples, _ := promSamples(t, call(t, td.admin, "GET", "/metrics", "", "").body)
			want := 0
			if tc.level != 0 {
				want = rounds
			}
			if tc.small {
				want += rounds
			}
			if got := samples["wsd_published_compressed_total"]; got != fmt.Sprint(want) {
				t.Errorf("wsd_published_compressed_total = %q after %d publishes to 3+3 subscribers, want %d", got, 2*rounds, want)
			}
		})
	}
}
