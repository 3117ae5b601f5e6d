package conformance

import (
	"fmt"
	"strings"
	"testing"
)

// Groups 12 and 13: permessage-deflate (RFC 7692), Autobahn's cases 12.x.y
// and 13.x.y, driven by the client in deflate_client_test.go. Each case
// opens a connection with a permessage-deflate offer, checks the exact
// answer, then sends deflateEchoCount messages one round trip at a time
// (Autobahn sends 1000 distinct ones; here the five first messages of the
// data set, each compressed by compress/flate at its own level, so that
// stored, fixed and dynamic Huffman blocks all occur, go four times in
// turn, which keeps the groups within seconds), in frames of the case's
// fragment size of the compressed payload, RSV1 on the first. Every
// echo must be byte for byte what was sent; one the server compresses must
// inflate with compress/flate without a preset window and, under
// server_max_window_bits=N < 15, refer at most 2^N bytes back (see
// deflateConn.readMessage).
//
// Case y of a group is Autobahn's message size and fragment size y
// (deflateCases): 16 B to 128 KiB unfragmented (y = 1-10), 8 KiB to
// 128 KiB in 256-byte frames (11-15), 128 KiB in 1 KiB, 4 KiB and 32 KiB
// frames (16-18).
//
//   - 12.1-12.5: the data sets of deflate_data_test.go (JSON, bitmap,
//     German verse, HTML, PDF-like), offer
//     "permessage-deflate; client_no_context_takeover; client_max_window_bits".
//   - 13.1-13.7: the JSON set with the offers of deflateOffers13; of each
//     group the cases y = 1, 3, 4, 5, 8, 11 and 16 (16 B to 32 KiB
//     unfragmented, 8 KiB in 256-byte frames, 128 KiB in 1 KiB frames).

// deflateEchoCount is the number of messages of a 12.x.y or 13.x.y case.
const deflateEchoCount = 20

// deflateCases are Autobahn's (message size, fragment size) pairs of cases
// 12.x.1-12.x.18.
var deflateCases = []struct{ size, frag int }{
	{16, 0}, {64, 0}, {256, 0}, {1024, 0}, {4096, 0}, {8192, 0}, {16384, 0}, {32768, 0}, {65536, 0}, {131072, 0},
	{8192, 256}, {16384, 256}, {32768, 256}, {65536, 256}, {131072, 256},
	{131072, 1024}, {131072, 4096}, {131072, 32768},
}

// The answers of wsd: it never keeps a compression context
// (server_no_context_takeover), echoes server_max_window_bits, and does
// not take client context takeover (client_no_context_takeover), so it
// never names client_max_window_bits.
const (
	answerBase = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	answerBits = "permessage-deflate; server_no_context_takeover; server_max_window_bits=%d; client_no_context_takeover"
)

// deflateOffer12 is Autobahn's default offer.
const deflateOffer12 = "permessage-deflate; client_no_context_takeover; client_max_window_bits"

// deflateOffers13 are the offers of groups 13.1-13.7 (Autobahn's
// PerMessageDeflateOffer(requestNoContextTakeover, requestMaxWindowBits)),
// each a header value and the expected answer.
var deflateOffers13 = []struct{ offer, answer string }{
	{deflateOffer12, answerBase},
	{deflateOffer12 + "; server_no_context_takeover", answerBase},
	{deflateOffer12 + "; server_max_window_bits=8", fmt.Sprintf(answerBits, 8)},
	{deflateOffer12 + "; server_max_window_bits=15", fmt.Sprintf(answerBits, 15)},
	{deflateOffer12 + "; server_no_context_takeover; server_max_window_bits=8", fmt.Sprintf(answerBits, 8)},
	{deflateOffer12 + "; server_no_context_takeover; server_max_window_bits=15", fmt.Sprintf(answerBits, 15)},
	{strings.Join([]string{
		deflateOffer12 + "; server_no_context_takeover; server_max_window_bits=8",
		deflateOffer12 + "; server_no_context_takeover",
		deflateOffer12,
	}, ", "), fmt.Sprintf(answerBits, 8)},
}

// deflateSubset13 are the cases y run of each group 13.x.
var deflateSubset13 = []int{1, 3, 4, 5, 8, 11, 16}

// runDeflateEcho runs one 12.x.y or 13.x.y case.
func runDeflateEcho(t *testing.T, tr *transport, set *deflateSet, offer, answer string, size, frag int) {
	t.Logf("%d compressed %s messages of %d bytes, fragments of %d bytes of the compressed payload (0: none); offer %q",
		deflateEchoCount, set.desc, size, frag, offer)
	d := openDeflate(t, tr, offer)
	d.expectAnswer(answer)
	for i := range deflateEchoCount {
		p, z := set.sample(size, i%len(deflateLevels))
		d.sendMessage(set.op, p, z, 0, frag)
		d.expectMessage(set.op, p)
	}
	d.logStats()
	d.CloseHandshake()
}

func TestConformanceDeflate12(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr *transport) {
		for _, set := range deflateSets() {
			for y, c := range deflateCases {
				t.Run(fmt.Sprintf("12.%d.%d", set.group, y+1), func(t *testing.T) {
					parallel(t)
					runDeflateEcho(t, tr, set, deflateOffer12, answerBase, c.size, c.frag)
				})
			}
		}
	})
}

func TestConformanceDeflate13(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr *transport) {
		json := deflateSets()[0]
		for x, o := range deflateOffers13 {
			for _, y := range deflateSubset13 {
				c := deflateCases[y-1]
				t.Run(fmt.Sprintf("13.%d.%d", x+1, y), func(t *testing.T) {
					parallel(t)
					runDeflateEcho(t, tr, json, o.offer, o.answer, c.size, c.frag)
				})
			}
		}
	})
}
