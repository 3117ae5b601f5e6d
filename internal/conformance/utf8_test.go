package conformance

import (
	"bytes"
	"fmt"
	"testing"
	"time"
	"unicode/utf8"

	ws "github.com/wsdproject/wsd/internal/wstest"
)

// utf8Seq is one test payload of the UTF-8 categories 6.5-6.23.
type utf8Seq struct {
	valid bool
	p     []byte
}

// kosme is "κόσμε", the example string of Markus Kuhn's UTF-8 test file.
const kosme = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"

// utf8Categories returns the payloads of Autobahn cases 6.5.x-6.23.x, in
// order (index 0 is category 6.5). They follow the sections of Markus
// Kuhn's "UTF-8 decoder capability and stress test": 63 valid and 69
// invalid sequences.
func utf8Categories() [][]utf8Seq {
	var cats [][]utf8Seq
	add := func(valid bool, ss ...string) {
		var c []utf8Seq
		for _, s := range ss {
			c = append(c, utf8Seq{valid, []byte(s)})
		}
		cats = append(cats, c)
	}
	// 6.5 some valid UTF-8 sequences
	add(true, "hello\x24world", "hello\xc2\xa2world", "hello\xe2\x82\xacworld", "hello\xf0\xa4\xad\xa2world", kosme)
	// 6.6 all prefixes of kosme: valid only when they end on a code point
	var prefixes []utf8Seq
	for i := 1; i <= len(kosme); i++ {
		p := []byte(kosme[:i])
		prefixes = append(prefixes, utf8Seq{utf8.Valid(p), p})
	}
	cats = append(cats, prefixes)
	// 6.7 first possible sequence of a certain length
	add(true, "\x00", "\xc2\x80", "\xe0\xa0\x80", "\xf0\x90\x80\x80")
	// 6.8 first possible sequence of length 5 and 6 (not UTF-8)
	add(false, "\xf8\x88\x80\x80\x80", "\xfc\x84\x80\x80\x80\x80")
	// 6.9 last possible sequence of a certain length
	add(true, "\x7f", "\xdf\xbf", "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf")
	// 6.10 last possible sequence of length 4, 5, 6 (beyond U+10FFFF)
	add(false, "\xf7\xbf\xbf\xbf", "\xfb\xbf\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf\xbf")
	// 6.11 other boundary conditions
	add(true, "\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbd", "\xf4\x8f\xbf\xbf")
	cats[len(cats)-1] = append(cats[len(cats)-1], utf8Seq{false, []byte("\xf4\x90\x80\x80")})
	// 6.12 unexpected continuation bytes
	var all []byte
	for b := 0x80; b < 0xbf; b++ {
		all = append(all, byte(b))
	}
	add(false, "\x80", "\xbf", "\x80\xbf", "\x80\xbf\x80", "\x80\xbf\x80\xbf", "\x80\xbf\x80\xbf\x80", "\x80\xbf\x80\xbf\x80\xbf", string(all))
	// 6.13 lonely start bytes, each followed by a space
	var lonely []string
	for _, r := range [][2]int{{0xc0, 0xdf}, {0xe0, 0xef}, {0xf0, 0xf7}, {0xf8, 0xfb}, {0xfc, 0xfd}} {
		var s []byte
		for b := r[0]; b < r[1]; b++ {
			s = append(s, byte(b), 0x20)
		}
		lonely = append(lonely, string(s))
	}
	add(false, lonely...)
	// 6.14 sequences with the last continuation byte missing
	truncated := []string{"\xc0", "\xe0\x80", "\xf0\x80\x80", "\xf8\x80\x80\x80", "\xfc\x80\x80\x80\x80",
		"\xdf", "\xef\xbf", "\xf7\xbf\xbf", "\xfb\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf"}
	add(false, truncated...)
	// 6.15 concatenation of incomplete sequences
	add(false, string(bytes.Join(func() [][]byte {
		var bs [][]byte
		for _, s := range truncated {
			bs = append(bs, []byte(s))
		}
		return bs
	}(), nil)))
	// 6.16 impossible bytes
	add(false, "\xfe", "\xff", "\xfe\xfe\xff\xff")
	// 6.17 overlong ASCII "/"
	add(false, "\xc0\xaf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf", "\xf8\x80\x80\x80\xaf", "\xfc\x80\x80\x80\x80\xaf")
	// 6.18 maximum overlong sequences
	add(false, "\xc1\xbf", "\xe0\x9f\xbf", "\xf0\x8f\xbf\xbf", "\xf8\x87\xbf\xbf\xbf", "\xfc\x83\xbf\xbf\xbf\xbf")
	// 6.19 overlong NUL
	add(false, "\xc0\x80", "\xe0\x80\x80", "\xf0\x80\x80\x80", "\xf8\x80\x80\x80\x80", "\xfc\x80\x80\x80\x80\x80")
	// 6.20 single UTF-16 surrogates
	add(false, "\xed\xa0\x80", "\xed\xad\xbf", "\xed\xae\x80", "\xed\xaf\xbf", "\xed\xb0\x80", "\xed\xbe\x80", "\xed\xbf\xbf")
	// 6.21 paired UTF-16 surrogates
	add(false, "\xed\xa0\x80\xed\xb0\x80", "\xed\xa0\x80\xed\xbf\xbf", "\xed\xad\xbf\xed\xb0\x80", "\xed\xad\xbf\xed\xbf\xbf",
		"\xed\xae\x80\xed\xb0\x80", "\xed\xae\x80\xed\xbf\xbf", "\xed\xaf\xbf\xed\xb0\x80", "\xed\xaf\xbf\xed\xbf\xbf")
	// 6.22 noncharacters: valid UTF-8
	nonchars := []string{"\xef\xbf\xbe", "\xef\xbf\xbf"}
	for _, z1 := range []byte{0xf0, 0xf1, 0xf2, 0xf3, 0xf4} {
		for _, z2 := range []byte{0x8f, 0x9f, 0xaf, 0xbf} {
			if z1 == 0xf4 && z2 != 0x8f {
				continue // beyond U+10FFFF
			}
			for _, z3 := range []byte{0xbe, 0xbf} {
				if z1 == 0xf0 && z2 == 0x8f {
					continue // overlong
				}
				nonchars = append(nonchars, string([]byte{z1, z2, 0xbf, z3}))
			}
		}
	}
	add(true, nonchars...)
	// 6.23 Unicode specials, replacement character included
	add(true, "\xef\xbf\xb9", "\xef\xbf\xba", "\xef\xbf\xbb", "\xef\xbf\xbc", "\xef\xbf\xbd", "\xef\xbf\xbe", "\xef\xbf\xbf")
	return cats
}

// Group 6: UTF-8 handling.
//
//   - 6.1.x-6.3.x: empty and fragmented valid text, invalid text in one
//     frame and in 1-byte fragments.
//   - 6.4.1-6.4.4: fail fast. The valid prefix is sent, the server must stay
//     silent for 150 ms; then the part that makes the text invalid is sent
//     and close 1007 must follow within 2 s, without the rest of the
//     message.
//   - 6.5.x-6.23.x: the 132 sequences of utf8Categories in one frame:
//     valid ones are echoed, invalid ones get close 1007.
//
// wsd additions:
//   - 6.5.x-cp .. 6.23.x-cp: the same payloads with one fragment per code
//     point (an invalid byte counts as one code point, as utf8.DecodeRune
//     sees it).
//   - 6.5.x-b1 .. 6.23.x-b1: the same payloads with one 1-byte fragment per
//     payload byte.
//   - 6.4.5: the first fragment (FIN=0) holds a surrogate; 1007 must come
//     without any further frame.
//   - 6.4.6: a frame announces 100 bytes; the first 20 hold a surrogate;
//     1007 must come before the rest of the payload is sent.
func TestConformanceUTF8(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr *transport) {
		helloUTF8 := "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!!"
		invalid := kosme + "\xed\xa0\x80" + "edited"
		text := func(p string) ws.Frame { return ws.Msg(ws.OpText, []byte(p)) }
		frag := func(op byte, fin bool, p string) ws.Frame { return ws.Frag(op, fin, []byte(p)) }
		cases := []scriptCase{
			{"6.1.1", "empty text message -> echo", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(text(""))
				c.ExpectText("")
				c.CloseHandshake()
			}},
			{"6.1.2", "text message of 3 empty fragments -> one empty echo", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(frag(ws.OpText, false, ""), frag(ws.OpContinuation, false, ""), frag(ws.OpContinuation, true, ""))
				c.ExpectText("")
				c.CloseHandshake()
			}},
			{"6.1.3", "empty, non-empty, empty fragments -> echo", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(frag(ws.OpText, false, ""), frag(ws.OpContinuation, false, "middle frame payload"), frag(ws.OpContinuation, true, ""))
				c.ExpectText("middle frame payload")
				c.CloseHandshake()
			}},
			{"6.2.1", "valid UTF-8 in one frame -> echo", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(text(helloUTF8))
				c.ExpectText(helloUTF8)
				c.CloseHandshake()
			}},
			{"6.2.2", "valid UTF-8 in 2 fragments split on a code point boundary -> echo", func(t *testing.T, c *ws.Client) {
				i := len("Hello-\u00b5@\u00df\u00f6\u00e4")
				c.WriteFrames(frag(ws.OpText, false, helloUTF8[:i]), frag(ws.OpContinuation, true, helloUTF8[i:]))
				c.ExpectText(helloUTF8)
				c.CloseHandshake()
			}},
			{"6.2.3", "valid UTF-8 in 1-byte fragments -> echo", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Fragments(ws.OpText, []byte(helloUTF8), 1)...)
				c.ExpectText(helloUTF8)
				c.CloseHandshake()
			}},
			{"6.2.4", "kosme in 1-byte fragments -> echo", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Fragments(ws.OpText, []byte(kosme), 1)...)
				c.ExpectText(kosme)
				c.CloseHandshake()
			}},
			{"6.3.1", "invalid UTF-8 (surrogate) in one frame -> 1007", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(text(invalid))
				c.ExpectFail(ws.CloseInvalidPayload)
			}},
			{"6.3.2", "invalid UTF-8 (surrogate) in 1-byte fragments -> 1007", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(ws.Fragments(ws.OpText, []byte(invalid), 1)...)
				c.ExpectFail(ws.CloseInvalidPayload)
			}},
		}

		// 6.4.x fail fast. Payload: kosme, then U+110000 encoded as f4 90 80 80
		// (beyond U+10FFFF), then "edited".
		failFast := kosme + "\xf4\x90\x80\x80" + "edited"
		type ffCase struct {
			id      string
			desc    string
			split   [2]int // part 1 = [:split[0]], part 2 = [split[0]:split[1]]
			inFrame bool   // chops of one frame instead of separate fragments
		}
		for _, ff := range []ffCase{
			{"6.4.1", "fragments: valid, invalid f4908080, rest", [2]int{11, 15}, false},
			{"6.4.2", "fragments: valid...f4, 90 (invalid octet), rest", [2]int{12, 13}, false},
			{"6.4.3", "one frame in chops: valid, invalid f4908080, rest", [2]int{11, 15}, true},
			{"6.4.4", "one frame in chops: valid...f4, 90 (invalid octet), rest", [2]int{12, 13}, true},
		} {
			cases = append(cases, scriptCase{ff.id, ff.desc + " -> silence after part 1, 1007 after part 2", func(t *testing.T, c *ws.Client) {
				p1, p2 := failFast[:ff.split[0]], failFast[ff.split[0]:ff.split[1]]
				if ff.inFrame {
					b := text(failFast).Bytes()
					h := len(b) - len(failFast)
					c.Write(b[:h+len(p1)])
					c.ExpectSilence(silence)
					c.Write(b[h+len(p1) : h+len(p1)+len(p2)])
				} else {
					c.WriteFrames(frag(ws.OpText, false, p1))
					c.ExpectSilence(silence)
					c.WriteFrames(frag(ws.OpContinuation, false, p2))
				}
				c.Timeout = 2 * time.Second
				c.ExpectClose(ws.CloseInvalidPayload)
				c.ExpectTCPClosed()
			}})
		}
		cases = append(cases,
			scriptCase{"6.4.5", "first fragment (FIN=0) holds a surrogate -> 1007 without more frames", func(t *testing.T, c *ws.Client) {
				c.WriteFrames(frag(ws.OpText, false, "abc\xed\xa0\x80def"))
				c.Timeout = 2 * time.Second
				c.ExpectFail(ws.CloseInvalidPayload)
			}},
			scriptCase{"6.4.6", "frame announces 100 bytes, first 20 hold a surrogate -> 1007 before the rest", func(t *testing.T, c *ws.Client) {
				p := append([]byte("0123456789\xed\xa0\x80abcdefg"), bytes.Repeat([]byte("x"), 80)...)
				b := ws.Msg(ws.OpText, p).Bytes()
				h := len(b) - len(p)
				c.Write(b[:h+20])
				c.Timeout = 2 * time.Second
				c.ExpectFail(ws.CloseInvalidPayload)
			}},
		)

		nValid, nInvalid := 0, 0
		for i, cat := range utf8Categories() {
			for j, seq := range cat {
				if utf8.Valid(seq.p) != seq.valid {
					t.Fatalf("table error: 6.%d.%d %x valid=%v", i+5, j+1, seq.p, seq.valid)
				}
				if seq.valid {
					nValid++
				} else {
					nInvalid++
				}
				id := fmt.Sprintf("6.%d.%d", i+5, j+1)
				for _, v := range []struct {
					suffix string
					desc   string
					frames []ws.Frame
				}{
					{"", "one frame", []ws.Frame{ws.Msg(ws.OpText, seq.p)}},
					{"-cp", "one fragment per code point", ws.RuneFragments(seq.p)},
					{"-b1", "one fragment per byte", ws.Fragments(ws.OpText, seq.p, 1)},
				} {
					want := "echo"
					if !seq.valid {
						want = "1007"
					}
					cases = append(cases, scriptCase{id + v.suffix, fmt.Sprintf("text %x, %s -> %s", seq.p, v.desc, want), func(t *testing.T, c *ws.Client) {
						c.WriteFrames(v.frames...)
						if seq.valid {
							c.ExpectMessage(ws.OpText, seq.p)
							c.CloseHandshake()
						} else {
							c.ExpectFail(ws.CloseInvalidPayload)
						}
					}})
				}
			}
		}
		if nValid != 63 || nInvalid != 69 {
			t.Fatalf("table error: %d valid and %d invalid sequences, want 63 and 69", nValid, nInvalid)
		}
		runScripts(t, tr, cases)
	})
}
