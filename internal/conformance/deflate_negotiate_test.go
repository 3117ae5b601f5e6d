package conformance

import (
	"compress/flate"
	"fmt"
	"slices"
	"testing"
)

// wsd additions to group 13: the negotiation of RFC 7692 section 7 over
// the wire, one connection per offer (a list of Sec-WebSocket-Extensions
// lines), each with the exact answer expected.
//
//   - 13.8.x: offers wsd accepts. The answer is answerBase, with
//     server_max_window_bits=N when the offer names it (section 7.1.2.1);
//     client_max_window_bits, offered with or without a value, is never
//     answered, as wsd answers client_no_context_takeover. Then JSON
//     messages of 256 B, 4 KiB and, under server_max_window_bits=N, 2^N and
//     2^N + 1 bytes are sent compressed and echoed; the server's compressed
//     ones refer at most 2^N bytes back.
//   - 13.9.x: offers wsd must decline (section 7: an unknown or repeated
//     parameter, an invalid value; no offer of permessage-deflate at all).
//     The upgrade succeeds without Sec-WebSocket-Extensions, and a 1 KiB
//     text message comes back uncompressed.
var (
	negotiateAccepted = []struct {
		desc   string
		offers []string
		bits   int // server_max_window_bits in the answer, 0 if none
	}{
		{"no parameters (7)", []string{"permessage-deflate"}, 0},
		{"server_no_context_takeover (7.1.1.1)", []string{"permessage-deflate; server_no_context_takeover"}, 0},
		{"client_no_context_takeover (7.1.1.2)", []string{"permessage-deflate; client_no_context_takeover"}, 0},
		{"both no_context_takeover", []string{"permessage-deflate; server_no_context_takeover; client_no_context_takeover"}, 0},
		{"server_max_window_bits=8 (7.1.2.1)", []string{"permessage-deflate; server_max_window_bits=8"}, 8},
		{"server_max_window_bits=9", []string{"permessage-deflate; server_max_window_bits=9"}, 9},
		{"server_max_window_bits=10", []string{"permessage-deflate; server_max_window_bits=10"}, 10},
		{"server_max_window_bits=11", []string{"permessage-deflate; server_max_window_bits=11"}, 11},
		{"server_max_window_bits=12", []string{"permessage-deflate; server_max_window_bits=12"}, 12},
		{"server_max_window_bits=13", []string{"permessage-deflate; server_max_window_bits=13"}, 13},
		{"server_max_window_bits=14", []string{"permessage-deflate; server_max_window_bits=14"}, 14},
		{"server_max_window_bits=15", []string{"permessage-deflate; server_max_window_bits=15"}, 15},
		{"client_max_window_bits without a value (7.1.2.2)", []string{"permessage-deflate; client_max_window_bits"}, 0},
		{"client_max_window_bits=8", []string{"permessage-deflate; client_max_window_bits=8"}, 0},
		{"client_max_window_bits=11", []string{"permessage-deflate; client_max_window_bits=11"}, 0},
		{"client_max_window_bits=15", []string{"permessage-deflate; client_max_window_bits=15"}, 0},
		{"all four parameters", []string{"permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12"}, 10},
		{"all four, another order", []string{"permessage-deflate; client_max_window_bits=9; server_max_window_bits=12; client_no_context_takeover; server_no_context_takeover"}, 12},
		{"quoted server_max_window_bits=\"10\"", []string{`permessage-deflate; server_max_window_bits="10"`}, 10},
		{"quoted client_max_window_bits=\"12\"", []string{`permessage-deflate; client_max_window_bits="12"`}, 0},
		{"no spaces", []string{"permessage-deflate;client_max_window_bits;server_max_window_bits=11"}, 11},
		{"two offers, the first taken", []string{"permessage-deflate; server_max_window_bits=9, permessage-deflate"}, 9},
		{"unknown parameter in the first offer, the second taken", []string{"permessage-deflate; foo, permessage-deflate; server_max_window_bits=13"}, 13},
		{"invalid value in the first offer, the second taken", []string{"permessage-deflate; server_max_window_bits=16, permessage-deflate; client_max_window_bits"}, 0},
		{"offers on two header lines, the first declined", []string{"permessage-deflate; server_max_window_bits=7", "permessage-deflate; server_max_window_bits=14"}, 14},
		{"offers on two header lines, the first taken", []string{"permessage-deflate; server_max_window_bits=8", "permessage-deflate"}, 8},
		{"another extension before it", []string{"x-webkit-deflate-frame, permessage-deflate; client_max_window_bits"}, 0},
		{"another extension with parameters before it", []string{"foo; bar=1; baz, permessage-deflate; server_max_window_bits=11"}, 11},
		{"another extension whose quoted value holds a comma and an offer", []string{`foo; bar="x, permessage-deflate; server_max_window_bits=9, y", permessage-deflate; server_max_window_bits=12`}, 12},
		{"another extension on its own line before it", []string{"x-webkit-deflate-frame", "permessage-deflate; server_no_context_takeover"}, 0},
		{"browsers' offer (Chrome)", []string{"permessage-deflate; client_max_window_bits"}, 0},
	}

	negotiateDeclined = []struct {
		desc   string
		offers []string
	}{
		{"unknown parameter", []string{"permessage-deflate; foo"}},
		{"unknown parameter with a value", []string{"permessage-deflate; foo=1"}},
		{"server_no_context_takeover twice", []string{"permessage-deflate; server_no_context_takeover; server_no_context_takeover"}},
		{"client_no_context_takeover twice", []string{"permessage-deflate; client_no_context_takeover; client_no_context_takeover"}},
		{"server_max_window_bits twice, same value", []string{"permessage-deflate; server_max_window_bits=10; server_max_window_bits=10"}},
		{"server_max_window_bits twice, other values", []string{"permessage-deflate; server_max_window_bits=10; server_max_window_bits=11"}},
		{"client_max_window_bits twice without values", []string{"permessage-deflate; client_max_window_bits; client_max_window_bits"}},
		{"client_max_window_bits with and without a value", []string{"permessage-deflate; client_max_window_bits=10; client_max_window_bits"}},
		{"server_max_window_bits=7", []string{"permessage-deflate; server_max_window_bits=7"}},
		{"server_max_window_bits=16", []string{"permessage-deflate; server_max_window_bits=16"}},
		{"server_max_window_bits=08 (leading zero)", []string{"permessage-deflate; server_max_window_bits=08"}},
		{"server_max_window_bits=0", []string{"permessage-deflate; server_max_window_bits=0"}},
		{"server_max_window_bits=abc", []string{"permessage-deflate; server_max_window_bits=abc"}},
		{"server_max_window_bits= (empty)", []string{"permessage-deflate; server_max_window_bits="}},
		{"server_max_window_bits=9.0", []string{"permessage-deflate; server_max_window_bits=9.0"}},
		{"server_max_window_bits=+9 (not 1*DIGIT)", []string{"permessage-deflate; server_max_window_bits=+9"}},
		{"server_max_window_bits=\"16\" (quoted)", []string{`permessage-deflate; server_max_window_bits="16"`}},
		{"server_max_window_bits=\"10 (unterminated quote)", []string{`permessage-deflate; server_max_window_bits="10`}},
		{"server_max_window_bits without a value", []string{"permessage-deflate; server_max_window_bits"}},
		{"client_max_window_bits=7", []string{"permessage-deflate; client_max_window_bits=7"}},
		{"client_max_window_bits=16", []string{"permessage-deflate; client_max_window_bits=16"}},
		{"client_max_window_bits=08", []string{"permessage-deflate; client_max_window_bits=08"}},
		{"client_max_window_bits=abc", []string{"permessage-deflate; client_max_window_bits=abc"}},
		{"client_max_window_bits= (empty)", []string{"permessage-deflate; client_max_window_bits="}},
		{"client_max_window_bits=+9 (not 1*DIGIT)", []string{"permessage-deflate; client_max_window_bits=+9"}},
		{"server_no_context_takeover with a value", []string{"permessage-deflate; server_no_context_takeover=1"}},
		{"client_no_context_takeover with a value", []string{"permessage-deflate; client_no_context_takeover=true"}},
		{"client_no_context_takeover with a quoted empty value", []string{`permessage-deflate; client_no_context_takeover=""`}},
		{"two offers, both invalid", []string{"permessage-deflate; server_max_window_bits=7, permessage-deflate; foo"}},
		{"two lines, both invalid", []string{"permessage-deflate; client_max_window_bits=16", "permessage-deflate; server_no_context_takeover=x"}},
		{"another extension only", []string{"x-webkit-deflate-frame"}},
		{"a longer name", []string{"permessage-deflate-x; server_max_window_bits=10"}},
		{"the name only inside another extension's quoted value", []string{`foo; bar="permessage-deflate"`}},
	}
)

func TestConformanceDeflateNegotiation(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr *transport) {
		json := deflateSets()[0]
		for i, tc := range negotiateAccepted {
			want := answerBase
			if tc.bits > 0 {
				want = fmt.Sprintf(answerBits, tc.bits)
			}
			t.Run(fmt.Sprintf("13.8.%d", i+1), func(t *testing.T) {
				parallel(t)
				t.Logf("%s: offer %q -> %q", tc.desc, tc.offers, want)
				d := openDeflate(t, tr, tc.offers...)
				d.expectAnswer(want)
				sizes := []int{256, 4096}
				if tc.bits > 0 && tc.bits < 15 {
					sizes = append(sizes, 1<<tc.bits, 1<<tc.bits+1)
				}
				slices.Sort(sizes)
				for k, n := range slices.Compact(sizes) {
					p := json.message(n, k)
					d.sendMessage(json.op, p, nil, flate.BestSpeed, 0)
					d.expectMessage(json.op, p)
				}
				d.logStats()
				d.CloseHandshake()
			})
		}
		for i, tc := range negotiateDeclined {
			t.Run(fmt.Sprintf("13.9.%d", i+1), func(t *testing.T) {
				parallel(t)
				t.Logf("%s: offer %q -> declined", tc.desc, tc.offers)
				d := openDeflate(t, tr, tc.offers...)
				d.expectAnswer("")
				p := json.message(1024, i)
				d.sendMessage(json.op, p, nil, flate.BestSpeed, 0)
				d.expectMessage(json.op, p)
				d.CloseHandshake()
			})
		}
	})
}
